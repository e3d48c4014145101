use std::path::Path;

use ketch_test_guests::{COMMAND, HELLO};
use ketch_wasm::{AppConfig, WasmError};

use crate::support::{load, shared_engine};

#[tokio::test]
async fn random_bytes_are_an_invalid_component() {
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let err = shared_engine().load(&junk, None).await.expect_err("junk");
    assert!(matches!(err, WasmError::InvalidComponent(_)), "{err}");
}

#[tokio::test]
async fn a_core_module_is_an_invalid_component() {
    // The smallest valid core module: magic + version.
    let module = b"\0asm\x01\0\0\0";
    let err = shared_engine()
        .load(module, None)
        .await
        .expect_err("module");
    assert!(matches!(err, WasmError::InvalidComponent(_)), "{err}");
}

#[tokio::test]
async fn a_command_component_is_not_an_http_component() {
    let err = shared_engine()
        .load_file(Path::new(COMMAND), None)
        .await
        .expect_err("command");
    assert!(matches!(err, WasmError::NotHttpComponent(_)), "{err}");
    assert!(
        err.to_string().contains("wasi:http/incoming-handler"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_file_is_an_io_error_naming_the_path() {
    let err = shared_engine()
        .load_file(Path::new("/nonexistent/app.wasm"), None)
        .await
        .expect_err("missing");
    assert!(matches!(err, WasmError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/app.wasm"), "{err}");
}

#[tokio::test]
async fn a_memory_limit_above_the_node_maximum_is_refused() {
    let app = load(HELLO).await;
    let err = app
        .handler(AppConfig {
            memory_limit: Some(1 << 40),
            ..AppConfig::default()
        })
        .expect_err("too much memory");
    assert!(matches!(err, WasmError::InvalidConfig(_)), "{err}");
}
