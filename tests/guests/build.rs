//! Compiles the guest programs under `programs/` and the apps under `examples/` for
//! `wasm32-wasip2` with nested cargo runs and writes one `pub const NAME: &str =
//! "/abs/path/name.wasm"` per component into `$OUT_DIR`.
//!
//! The nested cargo uses its own target dirs (`<target>/guests`, `<target>/examples`), never
//! the outer build's profile dir, so it never waits on the lock the outer build holds.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest programs: (package and artifact name, constant name).
const PROGRAMS: &[(&str, &str)] = &[
    ("hello", "HELLO"),
    ("looper", "LOOPER"),
    ("membomb", "MEMBOMB"),
    ("trapper", "TRAPPER"),
    ("outbound", "OUTBOUND"),
    ("command", "COMMAND"),
    ("kv", "KV"),
    ("fetch", "FETCH"),
];

/// Examples under `examples/` (each its own workspace), built into `<target>/examples` so their
/// shared dependencies (ketch-sdk) compile once: (directory, artifact name, constant name).
const EXAMPLES: &[(&str, &str, &str)] = &[
    ("hello", "hello", "EXAMPLE_HELLO"),
    ("counter", "counter", "EXAMPLE_COUNTER"),
    ("plain-wasi", "plain_wasi", "EXAMPLE_PLAIN_WASI"),
    ("mixed/frontend", "mixed_frontend", "EXAMPLE_MIXED_FRONTEND"),
];

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let programs = manifest_dir.join("programs");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed={}", programs.display());

    require_target();

    let target_dir = guest_target_dir(&out_dir, "guests");
    cargo_build(&programs.join("Cargo.toml"), &target_dir);

    let artifacts = target_dir.join(TARGET).join("release");
    let mut consts = String::new();
    for (name, konst) in PROGRAMS {
        let path = artifacts.join(format!("{name}.wasm"));
        assert!(
            path.is_file(),
            "guest {name} was built but {} does not exist",
            path.display()
        );
        writeln!(
            consts,
            "/// Path of the `{name}` guest component (built for `{TARGET}`).\npub const {konst}: &str = {:?};",
            path.display().to_string()
        )
        .expect("writing to a String cannot fail");
    }

    let examples = manifest_dir.join("../../examples");
    let sdk = manifest_dir.join("../../sdk");
    println!("cargo:rerun-if-changed={}", sdk.display());
    let examples_target = guest_target_dir(&out_dir, "examples");
    for (dir, artifact, konst) in EXAMPLES {
        let example = examples.join(dir);
        println!("cargo:rerun-if-changed={}", example.join("src").display());
        println!(
            "cargo:rerun-if-changed={}",
            example.join("Cargo.toml").display()
        );
        cargo_build(&example.join("Cargo.toml"), &examples_target);
        let path = examples_target
            .join(TARGET)
            .join("release")
            .join(format!("{artifact}.wasm"));
        assert!(
            path.is_file(),
            "example {dir} was built but {} does not exist",
            path.display()
        );
        writeln!(
            consts,
            "/// Path of the `examples/{dir}` component (built for `{TARGET}`).\npub const {konst}: &str = {:?};",
            path.display().to_string()
        )
        .expect("writing to a String cannot fail");
    }
    std::fs::write(out_dir.join("guests.rs"), consts).expect("write guests.rs to OUT_DIR");
}

/// `cargo build --release --target wasm32-wasip2` of the workspace at `manifest`.
fn cargo_build(manifest: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(manifest.parent().expect("a manifest has a directory"))
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--workspace");
    // The outer build's flags are for the host target, not for the guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("failed to run cargo for {}: {e}", manifest.display()));
    assert!(
        status.success(),
        "building {} for {TARGET} failed (see the cargo output above)",
        manifest.display()
    );
}

/// `<target>/<name>` when `OUT_DIR` has the usual `<target>/<profile>/build/<pkg>/out` shape,
/// else a dir next to `OUT_DIR`. Shared across profiles, so guests are built once.
fn guest_target_dir(out_dir: &Path, name: &str) -> PathBuf {
    match out_dir.ancestors().nth(4) {
        Some(target)
            if out_dir
                .ancestors()
                .nth(2)
                .is_some_and(|b| b.ends_with("build")) =>
        {
            target.join(name)
        }
        _ => out_dir.join(format!("{name}-target")),
    }
}

/// Fails with a clear message when the wasm32-wasip2 standard library is not installed.
fn require_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot {
        let std_dir = sysroot.join("lib/rustlib").join(TARGET);
        assert!(
            std_dir.is_dir(),
            "the {TARGET} target is not installed (no {}): run `rustup target add {TARGET}`",
            std_dir.display()
        );
    }
}
