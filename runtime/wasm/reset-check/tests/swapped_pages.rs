//! Whether a freed pooling slot can carry one instance's bytes into the next (another
//! app's, on a node) when a dirty page was swapped out before the reset. Each round: one
//! slot, an instance reads what the previous one left, dirties its memory, pages it out to
//! swap with `MADV_PAGEOUT`, and ends.
//!
//! - ketch-wasm's default reset (decommit with `madvise`) must never leak.
//! - wasmtime's `PAGEMAP_SCAN` reset leaks in 48.0.8 and 48.0.10 (their scan matches only
//!   present pages; fixed in 48.0.11). ketch-wasm may make dirty-page reset its default
//!   only over a wasmtime that passes: the second test fails otherwise. With
//!   `KETCH_RESET_CHECK_STRICT=1` it asserts the pinned wasmtime passes whatever the
//!   default (how a new pin is checked; BENCHMARKS.md, "Dirty-page reset", has the runs).
//!
//! Needs swap (to page out to) and Linux 6.7+ (`PAGEMAP_SCAN`). Without them it says so and
//! passes; without swap it fails under `KETCH_REQUIRE_SWAP=1`, which `tests/run` sets after
//! enabling a swap file.

use wasmtime::{
    Config, Enabled, Engine, Instance, InstanceAllocationStrategy, Module, PoolingAllocationConfig,
    Store,
};

/// One 64 KiB memory; `dirty` writes 0xab to all of it, `residue` counts its non-zero bytes.
/// Encoded from this text (the wat crate is not a dependency of the workspace):
///
/// ```wat
/// (module
///   (memory (export "m") 1)
///   (func (export "dirty") (local $i i32)
///     (loop $l
///       (i32.store8 (local.get $i) (i32.const 0xab))
///       (local.set $i (i32.add (local.get $i) (i32.const 1)))
///       (br_if $l (i32.lt_u (local.get $i) (i32.const 65536)))))
///   (func (export "residue") (result i32) (local $i i32) (local $n i32)
///     (loop $l
///       (if (i32.ne (i32.load8_u (local.get $i)) (i32.const 0))
///         (then (local.set $n (i32.add (local.get $n) (i32.const 1)))))
///       (local.set $i (i32.add (local.get $i) (i32.const 1)))
///       (br_if $l (i32.lt_u (local.get $i) (i32.const 65536))))
///     (local.get $n)))
/// ```
const MODULE: &[u8] = &[
    0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 2, 96, 0, 0, 96, 0, 1, 127, 3, 3, 2, 0, 1, 5, 3, 1, 0, 1, 7,
    23, 3, 1, 109, 2, 0, 5, 100, 105, 114, 116, 121, 0, 0, 7, 114, 101, 115, 105, 100, 117, 101, 0,
    1, 10, 77, 2, 31, 1, 1, 127, 3, 64, 32, 0, 65, 171, 1, 58, 0, 0, 32, 0, 65, 1, 106, 33, 0, 32,
    0, 65, 128, 128, 4, 73, 13, 0, 11, 11, 43, 1, 2, 127, 3, 64, 32, 0, 45, 0, 0, 65, 0, 71, 4, 64,
    32, 1, 65, 1, 106, 33, 1, 11, 32, 0, 65, 1, 106, 33, 0, 32, 0, 65, 128, 128, 4, 73, 13, 0, 11,
    32, 1, 11,
];

const MEMORY: usize = 64 << 10;
const ROUNDS: usize = 10;

fn swap_total_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("SwapTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Whether the check can run here. Without `PAGEMAP_SCAN` ketch does not use the dirty-page
/// reset at all; missing swap fails under `KETCH_REQUIRE_SWAP=1`.
fn runnable() -> bool {
    if !PoolingAllocationConfig::is_pagemap_scan_available() {
        eprintln!("skipped: the kernel has no PAGEMAP_SCAN (Linux 6.7+)");
        return false;
    }
    if swap_total_kib() == 0 {
        assert!(
            std::env::var("KETCH_REQUIRE_SWAP").as_deref() != Ok("1"),
            "KETCH_REQUIRE_SWAP=1 but no swap is configured"
        );
        eprintln!("skipped: no swap is configured");
        return false;
    }
    true
}

/// One module's instances, one after another in one pooling slot, each paged out to swap
/// before it ends; the rounds whose instance found non-zero bytes, with their count.
fn leaks(pool: &PoolingAllocationConfig) -> Vec<(usize, i32)> {
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool.clone()));
    let engine = Engine::new(&config).expect("engine");
    let module = Module::new(&engine, MODULE).expect("module");

    let mut leaks = Vec::new();
    for round in 0..ROUNDS {
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).expect("instance");
        let residue = instance
            .get_typed_func::<(), i32>(&mut store, "residue")
            .expect("residue")
            .call(&mut store, ())
            .expect("call residue");
        if residue != 0 {
            leaks.push((round, residue));
        }
        instance
            .get_typed_func::<(), ()>(&mut store, "dirty")
            .expect("dirty")
            .call(&mut store, ())
            .expect("call dirty");
        let base = instance
            .get_memory(&mut store, "m")
            .expect("memory")
            .data_ptr(&store);
        // SAFETY: `base..base + MEMORY` is this instance's linear memory, mapped and
        // page-aligned; MADV_PAGEOUT only moves its pages to swap (their contents stay).
        let paged_out = unsafe { libc::madvise(base.cast(), MEMORY, libc::MADV_PAGEOUT) };
        assert_eq!(paged_out, 0, "madvise(MADV_PAGEOUT)");
        // The instance ends here: its slot is reset while its pages are out.
        drop(store);
    }
    leaks
}

/// One slot, so every instance reuses the same memory.
fn one_slot() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_memories(1)
        .total_core_instances(1)
        .total_tables(1)
        .max_memory_size(1 << 20);
    pool
}

#[test]
fn the_default_decommit_reset_never_lets_a_swapped_out_page_reach_the_next_instance() {
    if !runnable() {
        return;
    }
    // ketch-wasm's settings when reset_dirty_pages_only is off (batching aside: one slot).
    let mut pool = one_slot();
    pool.pagemap_scan(Enabled::No)
        .linear_memory_keep_resident(0)
        .decommit_batch_size(1);
    let leaks = leaks(&pool);
    assert!(
        leaks.is_empty(),
        "instances saw the previous instance's bytes (round, non-zero bytes): {leaks:?}"
    );
}

#[test]
fn dirty_page_reset_is_the_default_only_over_a_wasmtime_whose_scan_resets_swapped_pages() {
    if !runnable() {
        return;
    }
    // ketch-wasm's settings for its dirty-page reset.
    let mut pool = one_slot();
    pool.pagemap_scan(Enabled::Yes)
        .linear_memory_keep_resident(1 << 20)
        .decommit_batch_size(1);
    let leaks = leaks(&pool);
    eprintln!(
        "PAGEMAP_SCAN reset: {} of {ROUNDS} instances saw the previous instance's bytes {leaks:?}",
        leaks.len()
    );
    let strict = std::env::var("KETCH_RESET_CHECK_STRICT").as_deref() == Ok("1");
    let default_on = ketch_wasm::EngineConfig::new("unused").reset_dirty_pages_only;
    assert!(
        leaks.is_empty() || !(strict || default_on),
        "the pinned wasmtime's PAGEMAP_SCAN reset lets swapped-out dirty pages reach the next \
         instance (round, non-zero bytes): {leaks:?}; dirty-page reset must not be ketch-wasm's \
         default over it (default on: {default_on}, KETCH_RESET_CHECK_STRICT: {strict})"
    );
}
