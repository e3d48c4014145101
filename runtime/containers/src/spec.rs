//! The OCI runtime spec (`config.json`) ketch hands to containerd for one container of a Pod:
//! a pure function of the Pod's container, the image's config and what the agent prepared
//! (network namespace, cgroup path, bind mounts), so every rule is unit-tested without runc.
//!
//! The spec is modelled on containerd's default Linux spec (`oci.WithDefaultSpec`:
//! `populateDefaultUnixSpec`) with the image config and the Kubernetes fields applied the way
//! the CRI plugin applies them: the same mounts, masked and read-only paths, the same default
//! capability set, `RLIMIT_NOFILE` 1024, all devices denied (runc adds its default allowed
//! devices itself), the `RuntimeDefault` seccomp profile unless the Pod asks for
//! `Unconfined`. Where ketch differs from Kubernetes it is stricter and says so:
//! `allowPrivilegeEscalation` defaults to false (`noNewPrivileges` on), `/proc` is mounted
//! `nosuid,noexec,nodev`, `privileged` and adding `ALL` capabilities are refused (admission
//! refuses them too), and an image user given by name is refused rather than looked up in
//! the image's `/etc/passwd` (this module does no IO; set `runAsUser`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ketch_api::core::{Container, PodSpec, linux_capability};
use oci_spec::OciSpecError;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilities, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::seccomp;

/// The runtime-spec version written to `ociVersion` (what runc 1.1 reports as its own).
pub const OCI_VERSION: &str = "1.0.2-dev";

/// `PATH` when neither the image nor the container sets one (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's (and Docker's) default capability set, in Kubernetes spelling.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// The CFS period for CPU limits, in µs (the kubelet's).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The smallest CFS quota the kernel accepts, in µs (the kubelet rounds up to it as well).
pub const CPU_MIN_QUOTA_US: i64 = 1_000;

/// `RLIMIT_NOFILE`, soft and hard (containerd's default).
pub const NOFILE_LIMIT: u64 = 1024;

/// Host information under `/proc` and `/sys` a container must not read: containerd's list
/// (`oci.populateDefaultUnixSpec`, Docker's too), with `/proc/interrupts`, which containerd 2.1
/// and Kubernetes 1.34 added (it shows the host's per-CPU interrupt counts).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Host switches under `/proc` a container may read but not write (containerd's list).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What the image's OCI config says (from [`ImageConfiguration`]'s `config`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `K=V` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `uid`, `uid:gid`, or names (which [`build`] refuses unless `runAsUser` is set).
    pub user: Option<String>,
}

impl ImageDefaults {
    /// The run defaults of an image; an image without a `config` has none. Empty strings
    /// (`"WorkingDir": ""`, `"User": ""`) mean unset, as they do for Docker.
    pub fn from_config(cfg: &ImageConfiguration) -> Self {
        let Some(c) = cfg.config() else {
            return ImageDefaults::default();
        };
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        ImageDefaults {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: non_empty(c.working_dir()),
            user: non_empty(c.user()),
        }
    }
}

/// The securityContext fields ketch supports, pod-level merged under container-level
/// (container wins), as Kubernetes does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Security {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: bool,
    pub read_only_root_filesystem: bool,
    /// Default false in ketch (Kubernetes defaults to true): `noNewPrivileges` is on unless
    /// the container asks otherwise.
    pub allow_privilege_escalation: bool,
    /// As written in the Pod (any case, `CAP_` optional); [`build`] checks them.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// The `seccompProfile.type` in force (`RuntimeDefault`, `Unconfined`, `Localhost`), the
    /// container's over the Pod's; `None` means `RuntimeDefault`.
    pub seccomp: Option<String>,
}

impl Security {
    /// The container's effective security settings: `runAsUser`, `runAsGroup` and
    /// `runAsNonRoot` fall back to the Pod's; the rest exist on the container only.
    pub fn of(pod: &PodSpec, c: &Container) -> Security {
        let psc = pod.security_context.as_ref();
        let csc = c.security_context.as_ref();
        let caps = csc.and_then(|s| s.capabilities.as_ref());
        Security {
            run_as_user: csc
                .and_then(|s| s.run_as_user)
                .or_else(|| psc.and_then(|s| s.run_as_user)),
            run_as_group: csc
                .and_then(|s| s.run_as_group)
                .or_else(|| psc.and_then(|s| s.run_as_group)),
            run_as_non_root: csc
                .and_then(|s| s.run_as_non_root)
                .or_else(|| psc.and_then(|s| s.run_as_non_root))
                .unwrap_or(false),
            read_only_root_filesystem: csc
                .and_then(|s| s.read_only_root_filesystem)
                .unwrap_or(false),
            allow_privilege_escalation: csc
                .and_then(|s| s.allow_privilege_escalation)
                .unwrap_or(false),
            cap_add: caps.map(|c| c.add.clone()).unwrap_or_default(),
            cap_drop: caps.map(|c| c.drop.clone()).unwrap_or_default(),
            seccomp: csc
                .and_then(|s| s.seccomp_profile.as_ref())
                .or_else(|| psc.and_then(|s| s.seccomp_profile.as_ref()))
                .map(|p| p.type_.clone()),
        }
    }
}

/// Everything [`build`] needs for one container.
#[derive(Debug, Clone, Copy)]
pub struct SpecInput<'a> {
    /// The Pod name (or its `spec.hostname`).
    pub hostname: &'a str,
    pub image: &'a ImageDefaults,
    /// Kubernetes `command`: replaces ENTRYPOINT, and then CMD is ignored; `$(VAR)` expands
    /// from `env`.
    pub command: &'a [String],
    /// Kubernetes `args`: replaces CMD; `$(VAR)` expands from `env`.
    pub args: &'a [String],
    /// The resolved container env, merged over the image's (container wins).
    pub env: &'a [(String, String)],
    /// Overrides the image's working directory; default `/`.
    pub working_dir: Option<&'a str>,
    /// Bytes; `None` or 0 is no limit. Swap is limited to the same value, i.e. no swap.
    pub memory_limit: Option<u64>,
    /// CPU limit in millicores; `None` or 0 is no limit.
    pub cpu_limit_millis: Option<u64>,
    pub pids_limit: i64,
    pub security: &'a Security,
    /// The Pod's network namespace to join; `None` gives the container a new one of its own.
    pub netns: Option<&'a Path>,
    /// E.g. `/ketch/<container id>` (cgroupfs driver).
    pub cgroups_path: &'a str,
    /// Bind mounts as (destination, host source, read-only), e.g. `/etc/hosts`; mounted after
    /// the default ones, so they may cover them.
    pub extra_mounts: &'a [(String, String, bool)],
}

/// Why no spec could be built; each message names the field to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{field}: unknown capability {name:?}")]
    UnknownCapability { field: String, name: String },
    #[error(
        "{field}: adding ALL capabilities is not supported: list the capabilities the container needs"
    )]
    AddAllCapabilities { field: String },
    #[error("image user {user:?} is not numeric: set securityContext.runAsUser")]
    NonNumericUser { user: String },
    #[error("image user {user:?} has a non-numeric group: set securityContext.runAsGroup")]
    NonNumericGroup { user: String },
    #[error("{field}: {value} is not a Linux id (0 to 4294967294)")]
    IdOutOfRange { field: &'static str, value: i64 },
    #[error(
        "container has runAsNonRoot and image will run as root: set securityContext.runAsUser to a non-zero uid or use an image with a non-root USER"
    )]
    RunsAsRoot,
    /// Validation refuses `Localhost` profiles; a spec must never run under a filter other
    /// than the one asked for, so the spec refuses it too.
    #[error(
        "securityContext.seccompProfile.localhostProfile: a Localhost seccomp profile is not supported yet"
    )]
    LocalhostSeccomp,
    #[error("securityContext.seccompProfile.type: unknown type {0:?}")]
    UnknownSeccompType(String),
    #[error("no command: the image has no ENTRYPOINT/CMD and the container sets no command")]
    NoCommand,
    #[error("{field}: {path:?} is not an absolute path")]
    NotAbsolute { field: &'static str, path: String },
    #[error("{field}: {value} is too large")]
    TooLarge { field: &'static str, value: u64 },
    /// An oci-spec builder refused a value: a bug in this module, not in the Pod.
    #[error("building the OCI spec: {0}")]
    Oci(String),
}

fn oci(e: OciSpecError) -> SpecError {
    SpecError::Oci(e.to_string())
}

/// The container's capabilities (bounding = effective = permitted), Kubernetes spelling:
/// [`DEFAULT_CAPABILITIES`] minus `drop` (`ALL` drops every default) plus `add`, so a
/// capability both dropped and added is kept.
///
/// # Errors
/// [`SpecError::UnknownCapability`] for a name that is not a Linux capability,
/// [`SpecError::AddAllCapabilities`] for `ALL` in `add`.
pub fn effective_capabilities(security: &Security) -> Result<Vec<&'static str>, SpecError> {
    let field = |list: &str, j: usize| format!("securityContext.capabilities.{list}[{j}]");
    let mut drop_all = false;
    let mut drops = Vec::new();
    for (j, name) in security.cap_drop.iter().enumerate() {
        if name.eq_ignore_ascii_case("ALL") {
            drop_all = true;
        } else {
            drops.push(
                linux_capability(name).ok_or_else(|| SpecError::UnknownCapability {
                    field: field("drop", j),
                    name: name.clone(),
                })?,
            );
        }
    }
    let mut caps: Vec<&'static str> = if drop_all {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .into_iter()
            .filter(|c| !drops.contains(c))
            .collect()
    };
    for (j, name) in security.cap_add.iter().enumerate() {
        if name.eq_ignore_ascii_case("ALL") {
            return Err(SpecError::AddAllCapabilities {
                field: field("add", j),
            });
        }
        let cap = linux_capability(name).ok_or_else(|| SpecError::UnknownCapability {
            field: field("add", j),
            name: name.clone(),
        })?;
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    Ok(caps)
}

/// The process arguments, Kubernetes-style: `command` + `args` when `command` is set, else
/// ENTRYPOINT + (`args` if set, else CMD). `$(VAR)` in `command` and `args` expands from
/// `env` ([`ketch_api::env::expand`]); the image's ENTRYPOINT and CMD are taken as they are, as
/// the kubelet does.
///
/// # Errors
/// [`SpecError::NoCommand`] when that is empty.
pub fn process_args(
    image: &ImageDefaults,
    command: &[String],
    args: &[String],
    env: &[(String, String)],
) -> Result<Vec<String>, SpecError> {
    let expand = |v: &String| ketch_api::env::expand(v, env);
    let argv: Vec<String> = if !command.is_empty() {
        command.iter().chain(args).map(expand).collect()
    } else if !args.is_empty() {
        let args = args.iter().map(expand);
        image.entrypoint.iter().cloned().chain(args).collect()
    } else {
        image.entrypoint.iter().chain(&image.cmd).cloned().collect()
    };
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// The image env with the container's entries replacing same-named ones in place and new
/// ones appended (containerd's `replaceOrAppendEnvValues`); `PATH` first when neither sets it.
pub fn merge_env(image: &[String], container: &[(String, String)]) -> Vec<String> {
    let mut env: Vec<String> = Vec::with_capacity(image.len() + container.len() + 1);
    let mut set = |entry: String| match env.iter_mut().find(|e| env_key(e) == env_key(&entry)) {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    };
    for e in image {
        set(e.clone());
    }
    for (k, v) in container {
        set(format!("{k}={v}"));
    }
    if !env.iter().any(|e| env_key(e) == "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    env
}

fn linux_id(field: &'static str, value: i64) -> Result<u32, SpecError> {
    // (uid_t)-1 means "unchanged" to the kernel's set*id calls; it is no one's id.
    u32::try_from(value)
        .ok()
        .filter(|v| *v != u32::MAX)
        .ok_or(SpecError::IdOutOfRange { field, value })
}

/// (uid, gid) of the process: `runAsUser`/`runAsGroup`, else the image's numeric `uid` or
/// `uid:gid`, else 0. With `runAsUser` set the image's user is ignored entirely, so the group
/// is `runAsGroup` or 0 (the CRI plugin would look the uid up in the image's `/etc/passwd`).
///
/// # Errors
/// [`SpecError::NonNumericUser`]/[`SpecError::NonNumericGroup`] for an image user given by
/// name that `runAsUser`/`runAsGroup` do not override, [`SpecError::IdOutOfRange`],
/// [`SpecError::RunsAsRoot`] when `runAsNonRoot` is set and the uid is 0.
pub fn process_user(image: &ImageDefaults, security: &Security) -> Result<(u32, u32), SpecError> {
    let image_user = image.user.as_deref().filter(|u| !u.is_empty());
    let (image_uid, image_gid) = match image_user.map(|u| u.split_once(':')) {
        None => (None, None),
        Some(None) => (image_user, None),
        Some(Some((u, g))) => (Some(u), Some(g).filter(|g| !g.is_empty())),
    };
    let whole = || image_user.unwrap_or_default().to_string();
    let uid = match security.run_as_user {
        Some(v) => linux_id("securityContext.runAsUser", v)?,
        None => match image_uid {
            None => 0,
            Some(u) => u
                .parse()
                .map_err(|_| SpecError::NonNumericUser { user: whole() })?,
        },
    };
    let gid = match (security.run_as_group, security.run_as_user, image_gid) {
        (Some(v), _, _) => linux_id("securityContext.runAsGroup", v)?,
        (None, Some(_), _) | (None, None, None) => 0,
        (None, None, Some(g)) => g
            .parse()
            .map_err(|_| SpecError::NonNumericGroup { user: whole() })?,
    };
    if security.run_as_non_root && uid == 0 {
        return Err(SpecError::RunsAsRoot);
    }
    Ok((uid, gid))
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| (*o).to_string()).collect::<Vec<_>>())
        .build()
        .map_err(oci)
}

/// containerd's default Linux mounts, then the extra bind mounts.
fn mounts(extra: &[(String, String, bool)]) -> Result<Vec<Mount>, SpecError> {
    let mut mounts = vec![
        // No set-uid binaries, executables or device nodes through /proc: nothing a container
        // needs is there, and it is the host kernel's surface.
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ];
    for (dest, source, read_only) in extra {
        for (field, path) in [("mount destination", dest), ("mount source", source)] {
            if !path.starts_with('/') {
                return Err(SpecError::NotAbsolute {
                    field,
                    path: path.clone(),
                });
            }
        }
        let mode = if *read_only { "ro" } else { "rw" };
        mounts.push(mount(dest, "bind", source, &["rbind", "rprivate", mode])?);
    }
    Ok(mounts)
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace, SpecError> {
    let b = LinuxNamespaceBuilder::default().typ(typ);
    match path {
        Some(p) => b.path(p.to_path_buf()),
        None => b,
    }
    .build()
    .map_err(oci)
}

/// The runtime spec for one container.
///
/// # Errors
/// A [`SpecError`] naming the field when the Pod asks for something the spec cannot express
/// (unknown capability, non-numeric image user, root under `runAsNonRoot`, no command,
/// relative paths, limits beyond `i64`).
pub fn build(input: &SpecInput<'_>) -> Result<Spec, SpecError> {
    let security = input.security;
    let args = process_args(input.image, input.command, input.args, input.env)?;
    let (uid, gid) = process_user(input.image, security)?;
    let caps = effective_capabilities(security)?;

    let (cwd_field, cwd) = match (input.working_dir, input.image.working_dir.as_deref()) {
        (Some(dir), _) if !dir.is_empty() => ("workingDir", dir),
        (_, Some(dir)) if !dir.is_empty() => ("image WorkingDir", dir),
        _ => ("workingDir", "/"),
    };
    if !cwd.starts_with('/') {
        return Err(SpecError::NotAbsolute {
            field: cwd_field,
            path: cwd.to_string(),
        });
    }

    let cap_set = caps
        .iter()
        .map(|c| {
            Capability::from_str(c)
                .map_err(|_| SpecError::Oci(format!("capability {c} unknown to oci-spec")))
        })
        .collect::<Result<HashSet<Capability>, _>>()?;
    // Not inheritable or ambient, as containerd: a non-root process keeps no capability
    // across exec, and file capabilities grant only what the bounding set allows.
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(cap_set.clone()));
    capabilities.set_effective(Some(cap_set.clone()));
    capabilities.set_permitted(Some(cap_set));
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);

    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(uid)
                .gid(gid)
                .build()
                .map_err(oci)?,
        )
        .args(args)
        .env(merge_env(&input.image.env, input.env))
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(NOFILE_LIMIT)
                .hard(NOFILE_LIMIT)
                .build()
                .map_err(oci)?,
        ])
        .no_new_privileges(!security.allow_privilege_escalation)
        .build()
        .map_err(oci)?;

    let mut resources = LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .map_err(oci)?,
        ])
        .pids(
            LinuxPidsBuilder::default()
                .limit(input.pids_limit)
                .build()
                .map_err(oci)?,
        );
    if let Some(bytes) = input.memory_limit.filter(|b| *b > 0) {
        let limit = i64::try_from(bytes).map_err(|_| SpecError::TooLarge {
            field: "resources.limits.memory",
            value: bytes,
        })?;
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(limit)
                .build()
                .map_err(oci)?,
        );
    }
    if let Some(millis) = input.cpu_limit_millis.filter(|m| *m > 0) {
        // The kubelet's MilliCPUToQuota: millis × period / 1000.
        let quota = millis
            .checked_mul(CPU_PERIOD_US / 1000)
            .and_then(|q| i64::try_from(q).ok())
            .ok_or(SpecError::TooLarge {
                field: "resources.limits.cpu",
                value: millis,
            })?
            .max(CPU_MIN_QUOTA_US);
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD_US)
                .build()
                .map_err(oci)?,
        );
    }

    let namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Ipc, None)?,
        namespace(LinuxNamespaceType::Uts, None)?,
        namespace(LinuxNamespaceType::Mount, None)?,
        namespace(LinuxNamespaceType::Network, input.netns)?,
    ];
    let cap_names: Vec<String> = caps.iter().map(|c| (*c).to_string()).collect();
    let seccomp = match security.seccomp.as_deref() {
        None | Some("RuntimeDefault") => Some(seccomp::default_profile(&cap_names)),
        // Pod Security lets only a `privileged` namespace ask for this.
        Some("Unconfined") => None,
        Some("Localhost") => return Err(SpecError::LocalhostSeccomp),
        Some(other) => return Err(SpecError::UnknownSeccompType(other.to_string())),
    };
    let linux = LinuxBuilder::default()
        .resources(resources.build().map_err(oci)?)
        .cgroups_path(PathBuf::from(input.cgroups_path))
        .namespaces(namespaces)
        .masked_paths(MASKED_PATHS.map(String::from).to_vec())
        .readonly_paths(READONLY_PATHS.map(String::from).to_vec())
        .build()
        .map_err(oci)?;
    let mut linux = linux;
    linux.set_seccomp(seccomp);

    let mut spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(security.read_only_root_filesystem)
                .build()
                .map_err(oci)?,
        )
        .mounts(mounts(input.extra_mounts)?)
        .process(process)
        .hostname(input.hostname)
        .linux(linux)
        .build()
        .map_err(oci)?;
    // The builder's defaults carry an empty annotation map; containerd adds its own.
    spec.set_annotations(None);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use ketch_api::core::{Capabilities, PodSecurityContext, SecurityContext};
    use serde_json::{Value, json};

    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    fn nginx() -> ImageDefaults {
        ImageDefaults {
            entrypoint: strings(&["/docker-entrypoint.sh"]),
            cmd: strings(&["nginx", "-g", "daemon off;"]),
            env: strings(&["PATH=/usr/local/bin:/usr/bin:/bin", "NGINX_VERSION=1.27.0"]),
            working_dir: None,
            user: None,
        }
    }

    const NO_ARGS: &[String] = &[];

    fn input<'a>(image: &'a ImageDefaults, security: &'a Security) -> SpecInput<'a> {
        SpecInput {
            hostname: "web-0",
            image,
            command: NO_ARGS,
            args: NO_ARGS,
            env: &[],
            working_dir: None,
            memory_limit: None,
            cpu_limit_millis: None,
            pids_limit: 4096,
            security,
            netns: None,
            cgroups_path: "/ketch/c1",
            extra_mounts: &[],
        }
    }

    fn json_of(input: &SpecInput<'_>) -> Value {
        serde_json::to_value(build(input).unwrap()).unwrap()
    }

    fn sorted(v: &Value) -> Vec<String> {
        let mut out: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn image_defaults_come_from_the_image_config_and_empty_strings_mean_unset() {
        let cfg: ImageConfiguration = serde_json::from_value(json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {
                "Entrypoint": ["/entry"],
                "Cmd": ["serve", "--port=80"],
                "Env": ["PATH=/bin", "A=1"],
                "WorkingDir": "",
                "User": "1000:1000"
            }
        }))
        .unwrap();
        assert_eq!(
            ImageDefaults::from_config(&cfg),
            ImageDefaults {
                entrypoint: strings(&["/entry"]),
                cmd: strings(&["serve", "--port=80"]),
                env: strings(&["PATH=/bin", "A=1"]),
                working_dir: None,
                user: Some("1000:1000".into()),
            }
        );
        let bare: ImageConfiguration = serde_json::from_value(json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        assert_eq!(ImageDefaults::from_config(&bare), ImageDefaults::default());
    }

    #[test]
    fn container_security_context_wins_over_the_pods() {
        let pod = PodSpec {
            security_context: Some(PodSecurityContext {
                run_as_user: Some(1000),
                run_as_group: Some(3000),
                run_as_non_root: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Container {
            security_context: Some(SecurityContext {
                run_as_user: Some(2000),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    add: strings(&["NET_ADMIN"]),
                    drop: strings(&["ALL"]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            Security::of(&pod, &c),
            Security {
                run_as_user: Some(2000),
                run_as_group: Some(3000),
                run_as_non_root: true,
                read_only_root_filesystem: true,
                allow_privilege_escalation: false,
                cap_add: strings(&["NET_ADMIN"]),
                cap_drop: strings(&["ALL"]),
                seccomp: None,
            }
        );
        assert_eq!(
            Security::of(&PodSpec::default(), &Container::default()),
            Security::default()
        );
    }

    #[test]
    fn args_follow_kubernetes_command_and_args_rules() {
        let img = nginx();
        let cmd = strings(&["/bin/sh", "-c"]);
        let args = strings(&["echo hi"]);
        assert_eq!(
            process_args(&img, &[], &[], &[]).unwrap(),
            strings(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
        );
        assert_eq!(
            process_args(&img, &[], &args, &[]).unwrap(),
            strings(&["/docker-entrypoint.sh", "echo hi"])
        );
        assert_eq!(
            process_args(&img, &cmd, &[], &[]).unwrap(),
            strings(&["/bin/sh", "-c"]),
            "command set: CMD is ignored"
        );
        assert_eq!(
            process_args(&img, &cmd, &args, &[]).unwrap(),
            strings(&["/bin/sh", "-c", "echo hi"])
        );
        let empty = ImageDefaults::default();
        assert_eq!(
            process_args(&empty, &[], &[], &[]),
            Err(SpecError::NoCommand)
        );
        assert_eq!(
            SpecError::NoCommand.to_string(),
            "no command: the image has no ENTRYPOINT/CMD and the container sets no command"
        );
        assert_eq!(process_args(&empty, &[], &args, &[]).unwrap(), args);
    }

    #[test]
    fn command_and_args_expand_from_the_container_env_but_the_image_defaults_do_not() {
        let env = [
            ("GREETING".to_string(), "hi".to_string()),
            ("TARGET".to_string(), "http://backend/".to_string()),
        ];
        let img = ImageDefaults {
            entrypoint: strings(&["/bin/echo", "$(GREETING)"]),
            cmd: strings(&["$(TARGET)"]),
            ..ImageDefaults::default()
        };
        assert_eq!(
            process_args(&img, &[], &[], &env).unwrap(),
            strings(&["/bin/echo", "$(GREETING)", "$(TARGET)"]),
            "ENTRYPOINT and CMD are the image's, not expanded"
        );
        assert_eq!(
            process_args(&img, &[], &strings(&["$(TARGET)", "$$(TARGET)"]), &env).unwrap(),
            strings(&["/bin/echo", "$(GREETING)", "http://backend/", "$(TARGET)"])
        );
        let cmd = strings(&["wget", "-O-", "$(TARGET)x"]);
        let args = strings(&["$(MISSING)", "$(GREETING)-$(GREETING)"]);
        assert_eq!(
            process_args(&img, &cmd, &args, &env).unwrap(),
            strings(&["wget", "-O-", "http://backend/x", "$(MISSING)", "hi-hi"])
        );
    }

    #[test]
    fn container_env_replaces_image_env_in_place_and_path_is_defaulted() {
        let env = [
            ("NGINX_VERSION".to_string(), "custom".to_string()),
            ("B".to_string(), "2".to_string()),
        ];
        assert_eq!(
            merge_env(&nginx().env, &env),
            strings(&[
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "NGINX_VERSION=custom",
                "B=2"
            ])
        );
        assert_eq!(
            merge_env(&strings(&["A=1"]), &[]),
            strings(&[&format!("PATH={DEFAULT_PATH}"), "A=1"])
        );
        let path = [("PATH".to_string(), "/opt/bin".to_string())];
        assert_eq!(merge_env(&[], &path), strings(&["PATH=/opt/bin"]));
        // Values may contain '=': only the first one separates the key.
        assert_eq!(
            merge_env(&strings(&["PATH=/bin", "Q=a=b"]), &[]),
            strings(&["PATH=/bin", "Q=a=b"])
        );
    }

    #[test]
    fn user_comes_from_run_as_user_then_the_numeric_image_user_then_root() {
        let sec = Security::default();
        let img = |user: &str| ImageDefaults {
            user: Some(user.into()),
            ..ImageDefaults::default()
        };
        assert_eq!(process_user(&ImageDefaults::default(), &sec), Ok((0, 0)));
        assert_eq!(process_user(&img("1000"), &sec), Ok((1000, 0)));
        assert_eq!(process_user(&img("1000:2000"), &sec), Ok((1000, 2000)));
        let nobody = process_user(&img("nobody"), &sec).unwrap_err();
        assert_eq!(
            nobody.to_string(),
            "image user \"nobody\" is not numeric: set securityContext.runAsUser"
        );
        assert_eq!(
            process_user(&img("1000:staff"), &sec)
                .unwrap_err()
                .to_string(),
            "image user \"1000:staff\" has a non-numeric group: set securityContext.runAsGroup"
        );

        let run_as = Security {
            run_as_user: Some(65534),
            ..Security::default()
        };
        assert_eq!(
            process_user(&img("nobody:nogroup"), &run_as),
            Ok((65534, 0)),
            "runAsUser replaces the image user, group included"
        );
        let both = Security {
            run_as_user: Some(10),
            run_as_group: Some(20),
            ..Security::default()
        };
        assert_eq!(process_user(&img("1:2"), &both), Ok((10, 20)));
        let group_only = Security {
            run_as_group: Some(20),
            ..Security::default()
        };
        assert_eq!(
            process_user(&img("1000:staff"), &group_only),
            Ok((1000, 20))
        );
        let huge = Security {
            run_as_user: Some(1 << 32),
            ..Security::default()
        };
        assert_eq!(
            process_user(&ImageDefaults::default(), &huge)
                .unwrap_err()
                .to_string(),
            "securityContext.runAsUser: 4294967296 is not a Linux id (0 to 4294967294)"
        );
    }

    #[test]
    fn run_as_non_root_refuses_uid_zero() {
        let sec = Security {
            run_as_non_root: true,
            ..Security::default()
        };
        let err = process_user(&ImageDefaults::default(), &sec).unwrap_err();
        assert_eq!(err, SpecError::RunsAsRoot);
        assert!(
            err.to_string()
                .starts_with("container has runAsNonRoot and image will run as root"),
            "the kubelet's wording: {err}"
        );
        let explicit_root = Security {
            run_as_user: Some(0),
            ..sec.clone()
        };
        assert_eq!(
            process_user(&ImageDefaults::default(), &explicit_root),
            Err(SpecError::RunsAsRoot)
        );
        let image_user = ImageDefaults {
            user: Some("101".into()),
            ..ImageDefaults::default()
        };
        assert_eq!(process_user(&image_user, &sec), Ok((101, 0)));
    }

    #[test]
    fn capabilities_are_the_defaults_minus_drop_plus_add() {
        let caps = |add: &[&str], drop: &[&str]| {
            effective_capabilities(&Security {
                cap_add: strings(add),
                cap_drop: strings(drop),
                ..Security::default()
            })
        };
        assert_eq!(caps(&[], &[]).unwrap(), DEFAULT_CAPABILITIES.to_vec());
        assert_eq!(
            caps(&["net_bind_service"], &["ALL"]).unwrap(),
            vec!["NET_BIND_SERVICE"]
        );
        let c = caps(&["CAP_SYS_ADMIN", "KILL"], &["NET_RAW", "mknod"]).unwrap();
        assert!(c.contains(&"SYS_ADMIN") && c.contains(&"KILL"));
        assert!(!c.contains(&"NET_RAW") && !c.contains(&"MKNOD"));
        assert_eq!(c.len(), DEFAULT_CAPABILITIES.len() - 2 + 1);
        let kept = caps(&["CHOWN"], &["CHOWN"]).unwrap();
        assert!(kept.contains(&"CHOWN"), "add wins over drop");
        assert_eq!(kept.len(), DEFAULT_CAPABILITIES.len());
        assert_eq!(
            caps(&["FOO"], &[]).unwrap_err().to_string(),
            "securityContext.capabilities.add[0]: unknown capability \"FOO\""
        );
        assert_eq!(
            caps(&[], &["CHOWN", "BAR"]).unwrap_err().to_string(),
            "securityContext.capabilities.drop[1]: unknown capability \"BAR\""
        );
        assert_eq!(
            caps(&["all"], &[]).unwrap_err(),
            SpecError::AddAllCapabilities {
                field: "securityContext.capabilities.add[0]".into()
            }
        );
    }

    #[test]
    fn every_linux_capability_maps_to_an_oci_capability() {
        for name in ketch_api::core::LINUX_CAPABILITIES {
            let cap = Capability::from_str(name).unwrap();
            assert_eq!(
                serde_json::to_value(cap).unwrap(),
                json!(format!("CAP_{name}"))
            );
        }
    }

    #[test]
    fn the_spec_json_carries_what_containerd_and_runc_need() {
        let sec = Security {
            read_only_root_filesystem: true,
            cap_add: strings(&["NET_ADMIN"]),
            cap_drop: strings(&["ALL"]),
            ..Security::default()
        };
        let image = nginx();
        let env = [("MODE".to_string(), "prod".to_string())];
        let mounts = [
            (
                "/etc/hosts".to_string(),
                "/var/lib/ketch/p/hosts".to_string(),
                true,
            ),
            (
                "/data".to_string(),
                "/var/lib/ketch/p/data".to_string(),
                false,
            ),
        ];
        let netns = Path::new("/var/run/netns/ketch-p");
        let json = json_of(&SpecInput {
            env: &env,
            memory_limit: Some(128 << 20),
            cpu_limit_millis: Some(250),
            netns: Some(netns),
            extra_mounts: &mounts,
            ..input(&image, &sec)
        });

        assert_eq!(json["ociVersion"], "1.0.2-dev");
        assert_eq!(json["hostname"], "web-0");
        assert_eq!(json["root"], json!({"path": "rootfs", "readonly": true}));
        assert!(json.get("annotations").is_none());

        let p = &json["process"];
        assert_eq!(
            p["args"],
            json!(["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
        );
        assert_eq!(p["terminal"], false);
        assert_eq!(p["user"], json!({"uid": 0, "gid": 0}));
        assert_eq!(
            p["env"],
            json!([
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "NGINX_VERSION=1.27.0",
                "MODE=prod"
            ])
        );
        assert_eq!(p["cwd"], "/");
        assert_eq!(p["noNewPrivileges"], true);
        assert_eq!(
            p["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}])
        );
        assert!(p.get("oomScoreAdj").is_none());
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(
                sorted(&p["capabilities"][set]),
                vec!["CAP_NET_ADMIN"],
                "{set}"
            );
        }
        assert!(p["capabilities"].get("inheritable").is_none());
        assert!(p["capabilities"].get("ambient").is_none());

        let linux = &json["linux"];
        assert_eq!(
            linux["resources"]["memory"],
            json!({"limit": 134217728, "swap": 134217728})
        );
        assert_eq!(
            linux["resources"]["cpu"],
            json!({"quota": 25000, "period": 100000})
        );
        assert_eq!(linux["resources"]["pids"], json!({"limit": 4096}));
        assert_eq!(
            linux["resources"]["devices"],
            json!([{"allow": false, "access": "rwm"}])
        );
        assert_eq!(linux["cgroupsPath"], "/ketch/c1");
        assert_eq!(
            linux["namespaces"],
            json!([
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network", "path": "/var/run/netns/ketch-p"}
            ])
        );
        assert_eq!(linux["maskedPaths"], json!(MASKED_PATHS));
        assert_eq!(linux["readonlyPaths"], json!(READONLY_PATHS));
        assert_eq!(linux["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(linux["seccomp"]["defaultErrnoRet"], 1);
        assert!(linux.get("devices").is_none());

        let mounts = json["mounts"].as_array().unwrap();
        let dests: Vec<&str> = mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            vec![
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/etc/hosts",
                "/data"
            ]
        );
        assert_eq!(
            mounts[7],
            json!({
                "destination": "/etc/hosts",
                "type": "bind",
                "source": "/var/lib/ketch/p/hosts",
                "options": ["rbind", "rprivate", "ro"]
            })
        );
        assert_eq!(mounts[8]["options"], json!(["rbind", "rprivate", "rw"]));
        assert_eq!(
            mounts[0],
            json!({
                "destination": "/proc",
                "type": "proc",
                "source": "proc",
                "options": ["nosuid", "noexec", "nodev"]
            })
        );
        assert_eq!(
            mounts[2]["options"],
            json!([
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5"
            ])
        );

        // What containerd stores is this JSON: it must read back as the same spec.
        let back: Spec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(back).unwrap(), json);
    }

    #[test]
    fn defaults_give_a_writable_root_the_default_capabilities_and_a_netns_of_its_own() {
        let sec = Security::default();
        let image = nginx();
        let json = json_of(&input(&image, &sec));
        assert_eq!(json["root"]["readonly"], false);
        let defaults: Vec<String> = {
            let mut d: Vec<String> = DEFAULT_CAPABILITIES
                .iter()
                .map(|c| format!("CAP_{c}"))
                .collect();
            d.sort();
            d
        };
        assert_eq!(
            sorted(&json["process"]["capabilities"]["bounding"]),
            defaults
        );
        assert_eq!(json["linux"]["namespaces"][4], json!({"type": "network"}));
        assert!(json["linux"]["resources"].get("memory").is_none());
        assert!(json["linux"]["resources"].get("cpu").is_none());
        assert!(
            json["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["type"] != "cgroup" && n["type"] != "user")
        );
    }

    #[test]
    fn allow_privilege_escalation_turns_no_new_privileges_off() {
        let sec = Security {
            allow_privilege_escalation: true,
            ..Security::default()
        };
        let image = nginx();
        assert_eq!(
            json_of(&input(&image, &sec))["process"]["noNewPrivileges"],
            false
        );
    }

    #[test]
    fn cpu_quota_is_millis_times_100_with_a_floor_of_1000() {
        let sec = Security::default();
        let image = nginx();
        let quota = |millis| {
            json_of(&SpecInput {
                cpu_limit_millis: Some(millis),
                ..input(&image, &sec)
            })["linux"]["resources"]["cpu"]["quota"]
                .clone()
        };
        assert_eq!(quota(1), json!(1000));
        assert_eq!(quota(10), json!(1000));
        assert_eq!(quota(1500), json!(150_000));
        let too_much = build(&SpecInput {
            cpu_limit_millis: Some(u64::MAX),
            ..input(&image, &sec)
        });
        assert!(matches!(
            too_much,
            Err(SpecError::TooLarge {
                field: "resources.limits.cpu",
                ..
            })
        ));
        let too_much = build(&SpecInput {
            memory_limit: Some(u64::MAX),
            ..input(&image, &sec)
        });
        assert!(matches!(too_much, Err(SpecError::TooLarge { .. })));
    }

    #[test]
    fn the_working_directory_must_be_absolute() {
        let sec = Security::default();
        let mut image = nginx();
        image.working_dir = Some("/app".into());
        assert_eq!(json_of(&input(&image, &sec))["process"]["cwd"], "/app");
        assert_eq!(
            json_of(&SpecInput {
                working_dir: Some("/srv"),
                ..input(&image, &sec)
            })["process"]["cwd"],
            "/srv"
        );
        assert_eq!(
            build(&SpecInput {
                working_dir: Some("srv"),
                ..input(&image, &sec)
            })
            .unwrap_err()
            .to_string(),
            "workingDir: \"srv\" is not an absolute path"
        );
        let mounts = [("etc/hosts".to_string(), "/h".to_string(), true)];
        assert_eq!(
            build(&SpecInput {
                extra_mounts: &mounts,
                ..input(&image, &sec)
            })
            .unwrap_err()
            .to_string(),
            "mount destination: \"etc/hosts\" is not an absolute path"
        );
    }

    #[test]
    fn seccomp_follows_the_final_capabilities() {
        let image = nginx();
        let with_admin = Security {
            cap_add: strings(&["SYS_ADMIN"]),
            ..Security::default()
        };
        let json = json_of(&input(&image, &with_admin));
        let allowed = &json["linux"]["seccomp"]["syscalls"][0]["names"];
        assert!(allowed.as_array().unwrap().contains(&json!("mount")));
        let json = json_of(&input(&image, &Security::default()));
        let allowed = &json["linux"]["seccomp"]["syscalls"][0]["names"];
        assert!(!allowed.as_array().unwrap().contains(&json!("mount")));
    }

    #[test]
    fn the_seccomp_profile_type_chooses_the_filter() {
        let image = nginx();
        for ty in [None, Some("RuntimeDefault")] {
            let sec = Security {
                seccomp: ty.map(String::from),
                ..Security::default()
            };
            let json = json_of(&input(&image, &sec));
            assert_eq!(
                json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO",
                "{ty:?}"
            );
        }
        let unconfined = Security {
            seccomp: Some("Unconfined".into()),
            ..Security::default()
        };
        let json = json_of(&input(&image, &unconfined));
        assert!(json["linux"].get("seccomp").is_none(), "{json}");
        let localhost = Security {
            seccomp: Some("Localhost".into()),
            ..Security::default()
        };
        assert_eq!(
            build(&input(&image, &localhost)).unwrap_err(),
            SpecError::LocalhostSeccomp
        );
    }

    #[test]
    fn the_containers_seccomp_profile_wins_over_the_pods() {
        use ketch_api::core::SeccompProfile;
        let profile = |t: &str| {
            Some(SeccompProfile {
                type_: t.into(),
                localhost_profile: None,
            })
        };
        let mut pod = PodSpec {
            security_context: Some(PodSecurityContext {
                seccomp_profile: profile("Unconfined"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut c = Container::default();
        assert_eq!(
            Security::of(&pod, &c).seccomp.as_deref(),
            Some("Unconfined")
        );
        c.security_context = Some(SecurityContext {
            seccomp_profile: profile("RuntimeDefault"),
            ..Default::default()
        });
        assert_eq!(
            Security::of(&pod, &c).seccomp.as_deref(),
            Some("RuntimeDefault")
        );
        pod.security_context = None;
        c.security_context = None;
        assert_eq!(Security::of(&pod, &c).seccomp, None);
    }
}
