use std::path::Path;

use ketch_test_guests::HELLO;
use ketch_wasm::{AppConfig, Engine, EngineStats, WasmError};

use crate::support::{get, small_config};

fn cwasm_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect()
}

#[tokio::test]
async fn a_second_load_of_the_same_bytes_neither_recompiles_nor_touches_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(small_config(dir.path())).expect("engine");
    let bytes = std::fs::read(HELLO).expect("guest");

    let first = engine.load(&bytes, None).await.expect("first load");
    let second = engine.load(&bytes, None).await.expect("second load");
    assert_eq!(first.digest(), second.digest());
    // Each load says whether it compiled.
    assert!(first.compiled() && !second.compiled());
    assert_eq!(
        engine.stats(),
        EngineStats {
            compiled: 1,
            loaded_from_disk: 0,
            loaded_from_memory: 1
        }
    );
    let artifacts = cwasm_files(dir.path());
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let name = artifacts[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with(first.digest()), "{name}");

    // The digest given by the caller works too, and is the same cache key.
    let digest = format!("sha256:{}", first.digest());
    engine
        .load(&[], Some(&digest))
        .await
        .expect("load by digest only");
    assert_eq!(engine.stats().compiled, 1);
}

#[tokio::test]
async fn a_restarted_engine_loads_from_the_on_disk_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let digest;
    let mtime;
    {
        let engine = Engine::new(small_config(dir.path())).expect("engine");
        let app = engine
            .load_file(Path::new(HELLO), None)
            .await
            .expect("load");
        digest = app.digest().to_string();
        assert_eq!(engine.stats().compiled, 1);
        assert!(app.compiled());
        mtime = std::fs::metadata(&cwasm_files(dir.path())[0])
            .expect("artifact")
            .modified()
            .expect("mtime");
    }

    let engine = Engine::new(small_config(dir.path())).expect("restarted engine");
    let app = engine
        .load_file(Path::new(HELLO), Some(&digest))
        .await
        .expect("load");
    assert!(!app.compiled(), "a cache hit on disk is not a compile");
    assert_eq!(
        engine.stats(),
        EngineStats {
            compiled: 0,
            loaded_from_disk: 1,
            loaded_from_memory: 0
        }
    );
    let artifact = &cwasm_files(dir.path())[0];
    assert_eq!(
        std::fs::metadata(artifact)
            .expect("artifact")
            .modified()
            .expect("mtime"),
        mtime
    );
    let h = app.handler(AppConfig::default()).expect("handler");
    assert_eq!(get(&h, "/").await.0, 200);
}

#[tokio::test]
async fn a_corrupt_artifact_is_discarded_and_recompiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let digest = {
        let engine = Engine::new(small_config(dir.path())).expect("engine");
        engine
            .load_file(Path::new(HELLO), None)
            .await
            .expect("load")
            .digest()
            .to_string()
    };
    std::fs::write(&cwasm_files(dir.path())[0], b"garbage").expect("corrupt it");

    let engine = Engine::new(small_config(dir.path())).expect("engine");
    let app = engine
        .load_file(Path::new(HELLO), Some(&digest))
        .await
        .expect("load");
    assert_eq!(engine.stats().compiled, 1);
    let h = app.handler(AppConfig::default()).expect("handler");
    assert_eq!(get(&h, "/").await.0, 200);
}

#[tokio::test]
async fn a_digest_that_does_not_match_the_bytes_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(small_config(dir.path())).expect("engine");
    let bytes = std::fs::read(HELLO).expect("guest");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = engine
        .load(&bytes, Some(&wrong))
        .await
        .expect_err("mismatch");
    assert!(matches!(err, WasmError::Digest { .. }), "{err}");
    assert!(cwasm_files(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_loads_of_one_digest_compile_once_and_say_which_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(small_config(dir.path())).expect("engine");
    let bytes = std::fs::read(HELLO).expect("guest");
    let (a, b) = tokio::join!(engine.load(&bytes, None), engine.load(&bytes, None));
    let (a, b) = (a.expect("first load"), b.expect("second load"));
    assert_eq!(engine.stats().compiled, 1);
    assert_eq!(u8::from(a.compiled()) + u8::from(b.compiled()), 1);
}
