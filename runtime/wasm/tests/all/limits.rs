use std::time::{Duration, Instant};

use ketch_test_guests::{HELLO, LOOPER, MEMBOMB, TRAPPER};
use ketch_wasm::{AppConfig, InvokeError};

use crate::support::{get, get_request, handler};

async fn expect_err(h: &ketch_wasm::Handler, path: &str) -> InvokeError {
    match h.handle(get_request(path)).await {
        Ok(resp) => panic!("expected an error, got status {}", resp.status()),
        Err(e) => e,
    }
}

/// A handler of `guest` on `engine` (not the shared test engine).
async fn handler_on(
    engine: &ketch_wasm::Engine,
    guest: &str,
    config: AppConfig,
) -> ketch_wasm::Handler {
    engine
        .load_file(std::path::Path::new(guest), None)
        .await
        .expect("load")
        .handler(config)
        .expect("handler")
}

/// `n` requests to `h` in flight at once, each on its own task.
fn spawn_requests(
    h: &ketch_wasm::Handler,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<(), InvokeError>>> {
    (0..n)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.handle(get_request("/")).await.map(|_| ()) })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_guest_times_out_on_budget_while_hello_still_answers_fast() {
    let budget = Duration::from_millis(300);
    let looper = handler(
        LOOPER,
        AppConfig {
            request_timeout: budget,
            ..AppConfig::default()
        },
    )
    .await;
    let hello = handler(HELLO, AppConfig::default()).await;
    get(&hello, "/warm-up").await;

    // More loopers than worker threads: only yielding at epoch ticks keeps hello serviceable.
    let started = Instant::now();
    let loops = spawn_requests(&looper, 4);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let t = Instant::now();
    let (status, _) = get(&hello, "/").await;
    let hello_latency = t.elapsed();
    assert_eq!(status, 200);
    assert!(
        hello_latency < Duration::from_millis(150),
        "hello took {hello_latency:?} next to busy loopers"
    );

    for l in loops {
        let result = l.await.expect("join");
        assert!(matches!(result, Err(InvokeError::Timeout)), "{result:?}");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= budget, "finished before its budget: {elapsed:?}");
    assert!(
        elapsed < budget + Duration::from_millis(700),
        "overran its budget: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_memory_bomb_hits_its_limit_and_the_next_request_is_fine() {
    let limit = 16 << 20;
    let bomb = handler(
        MEMBOMB,
        AppConfig {
            memory_limit: Some(limit),
            ..AppConfig::default()
        },
    )
    .await;
    let err = expect_err(&bomb, "/").await;
    assert!(
        matches!(err, InvokeError::MemoryLimit { limit: l } if l == limit),
        "{err}"
    );

    let hello = handler(HELLO, AppConfig::default()).await;
    assert_eq!(get(&hello, "/").await.0, 200);
    // The same handler keeps working for the next request too (it just fails again).
    assert!(matches!(
        expect_err(&bomb, "/").await,
        InvokeError::MemoryLimit { .. }
    ));
}

#[tokio::test]
async fn a_panicking_guest_is_reported_as_a_trap() {
    let h = handler(TRAPPER, AppConfig::default()).await;
    let err = expect_err(&h, "/").await;
    let InvokeError::Trap(msg) = &err else {
        panic!("expected a trap, got {err:?}");
    };
    assert!(msg.contains("unreachable"), "{msg}");

    let err = expect_err(&h, "/?unreachable").await;
    assert!(matches!(err, InvokeError::Trap(_)), "{err:?}");
}

#[tokio::test]
async fn requests_beyond_max_concurrency_are_rejected_as_overloaded() {
    let h = handler(
        LOOPER,
        AppConfig {
            request_timeout: Duration::from_millis(300),
            max_concurrency: Some(1),
            ..AppConfig::default()
        },
    )
    .await;
    let first = spawn_requests(&h, 1).remove(0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = expect_err(&h, "/").await;
    assert!(matches!(second, InvokeError::Overloaded), "{second:?}");
    assert!(matches!(
        first.await.expect("join"),
        Err(InvokeError::Timeout)
    ));
    // The slot is free again once the first request ended.
    assert!(matches!(expect_err(&h, "/").await, InvokeError::Timeout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_without_max_concurrency_gets_a_share_of_the_pool_and_no_more_than_the_cap() {
    use std::path::Path;

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ketch-wasm-shared-cache");
    let mut config = ketch_wasm::EngineConfig::with_instances(&dir, 8);
    config.max_memory_per_instance = 64 << 20;
    let engine = ketch_wasm::Engine::new(config).expect("engine");
    let app = engine
        .load_file(Path::new(LOOPER), None)
        .await
        .expect("load");
    // Asking for more than half the node's slots is refused, naming the cap.
    let Err(err) = app.handler(AppConfig {
        max_concurrency: Some(5),
        ..AppConfig::default()
    }) else {
        panic!("max_concurrency 5 of 8 slots was accepted");
    };
    assert!(err.to_string().contains("cap of 4"), "{err}");
    // Unset: a quarter of the pool (2 of 8), so a stuck app leaves the rest to others.
    let looper = app
        .handler(AppConfig {
            request_timeout: Duration::from_millis(400),
            ..AppConfig::default()
        })
        .expect("handler");
    let stuck = spawn_requests(&looper, 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        expect_err(&looper, "/").await,
        InvokeError::Overloaded
    ));
    let hello = handler_on(&engine, HELLO, AppConfig::default()).await;
    assert_eq!(get(&hello, "/").await.0, 200);
    for s in stuck {
        assert!(matches!(s.await.expect("join"), Err(InvokeError::Timeout)));
    }
}

#[tokio::test]
async fn dirty_page_reset_when_asked_for_still_starts_every_request_clean() {
    use std::path::Path;

    use ketch_wasm::Engine;

    use crate::support::small_config;

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ketch-wasm-shared-cache");
    // Off by default (the safe decommit: see EngineConfig::reset_dirty_pages_only).
    assert!(
        !Engine::new(small_config(&dir))
            .expect("engine")
            .resets_dirty_pages_only()
    );

    // A memory bomb that dirties its whole budget, then hello in the same slots, several
    // times; every request behaves as on a fresh slot (with dirty-page reset where this
    // node can use it: PAGEMAP_SCAN and no swap).
    let mut config = small_config(&dir);
    config.max_instances = 2;
    config.reset_dirty_pages_only = true;
    let engine = Engine::new(config).expect("engine");
    let limit = 8 << 20;
    let bomb = handler_on(
        &engine,
        MEMBOMB,
        AppConfig {
            memory_limit: Some(limit),
            ..AppConfig::default()
        },
    )
    .await;
    let hello = handler_on(&engine, HELLO, AppConfig::default()).await;
    for _ in 0..3 {
        assert!(matches!(
            expect_err(&bomb, "/").await,
            InvokeError::MemoryLimit { .. }
        ));
        assert_eq!(get(&hello, "/").await, (200, "hello from ketch\n".into()));
    }
}
