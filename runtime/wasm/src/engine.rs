//! The per-node [`Engine`]: wasmtime configuration, the epoch ticker, and component loading
//! with its two caches (in memory by digest, on disk by digest + engine compatibility hash).

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// How a freed instance slot is reset when [`EngineConfig::reset_dirty_pages_only`] is off
/// (or the kernel lacks `PAGEMAP_SCAN`): linear memories are decommitted with
/// `madvise(MADV_DONTNEED)`, which returns every page to zero or to the module's image.
/// Keeping the first bytes resident and resetting them with memset instead does not pay for
/// a Rust guest: its stack fills the first 1 MiB, so that memset (~30 µs) costs more than
/// the few page faults it saves. Decommits are batched, so the TLB-shootdown IPIs of one
/// `process_madvise` call are shared by many slots.
const DECOMMIT_BATCH: usize = 16;
/// Bytes of each table reset with memset (tables are small; this covers them whole).
const KEEP_RESIDENT_TABLE: usize = 64 << 10;
/// With [`EngineConfig::reset_dirty_pages_only`]: most bytes of dirtied pages of one linear
/// memory reset in place (copied back from the image or zeroed) and kept resident; dirty
/// pages beyond it are decommitted. A Rust std hello dirties a few dozen pages.
const DIRTY_PAGES_KEPT_RESIDENT: usize = 1 << 20;

use crate::app::{App, Loaded};
use crate::error::WasmError;
use crate::host::HostState;
use crate::tls::OutboundTls;

/// Largest component accepted by [`Engine::load`] / [`Engine::load_file`], checked before the
/// bytes are read or compiled. Real HTTP components are well under 10 MiB.
pub const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;

/// Core instances, memories and tables one component instance may use. A Rust `wasm32-wasip2`
/// component has one main module plus a few adapter shims; these leave generous room.
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 8;

/// Settings for one node's [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory for compiled artifacts (`<digest>-<engine hash>.cwasm`); created if missing.
    /// Only this crate writes there, and only files it wrote are ever loaded as native code.
    pub cache_dir: PathBuf,
    /// Instances alive at once on this node (sizes the pooling allocator). Requests beyond it
    /// fail with [`crate::InvokeError::Overloaded`].
    pub max_instances: u32,
    /// Requests one handler (one Pod) may have in flight when its
    /// [`crate::AppConfig::max_concurrency`] is unset: a share of [`Self::max_instances`], so
    /// one busy or slow app cannot take every instance slot of the node. Default: a quarter.
    pub default_max_concurrency: u32,
    /// The most a handler's [`crate::AppConfig::max_concurrency`] may ask for; more is
    /// refused with [`WasmError::InvalidConfig`]. Default: half of [`Self::max_instances`].
    pub max_concurrency_cap: u32,
    /// Upper bound for one instance's linear memory, in bytes; [`crate::AppConfig::memory_limit`]
    /// may only lower it.
    pub max_memory_per_instance: u64,
    /// How long compiling one component may take before [`WasmError::CompileTimeout`].
    pub compile_timeout: Duration,
    /// Components compiled at once (each compile already uses every core); further loads
    /// of new components wait for a slot. With the input limit ([`MAX_COMPONENT_BYTES`])
    /// this bounds the memory compilation can take. A compile that times out keeps its slot
    /// until Cranelift actually finishes, so timeouts cannot pile up compiles.
    pub max_concurrent_compiles: usize,
    /// Epoch tick: the granularity of request deadlines and of yielding from busy guests.
    pub epoch_tick: Duration,
    /// Reset a freed instance slot by finding the pages its guest dirtied with Linux's
    /// `PAGEMAP_SCAN` ioctl (kernel 6.7+) and resetting just those in place, instead of
    /// decommitting the memory with `madvise`. No page faults, syscalls or TLB-shootdown
    /// IPIs per request: for the hello guest on 2 cores, about 1.8× the requests/s and
    /// half the latency in process (see BENCHMARKS.md).
    ///
    /// **Off by default, because it weakens isolation between requests with the wasmtime
    /// ketch builds on.** wasmtime 48.0.10 resets only dirty pages that are *present* at
    /// the scan: a dirty page that is swapped out, or that the kernel is migrating at that
    /// moment (compaction, NUMA balancing), keeps its contents for the next instance in
    /// that slot, which may belong to another app (fixed in wasmtime 48.0.11, which cargo
    /// cannot resolve from crates.io yet: see the workspace `Cargo.toml`). The engine
    /// therefore ignores this setting, with a warning, when the kernel lacks `PAGEMAP_SCAN`
    /// or swap is configured when it starts; the page-migration race remains. Enable it
    /// only on dedicated nodes without swap that accept that risk.
    /// `runtime/wasm/reset-check` fails if the default is turned on over a wasmtime that
    /// leaks swapped-out pages. [`Engine::resets_dirty_pages_only`] reports whether it is in
    /// effect.
    pub reset_dirty_pages_only: bool,
    /// A PEM bundle of CA certificates that guests' outbound `https://` requests trust in
    /// addition to the platform's roots (e.g. a company CA). Read once, when the engine is
    /// created: changing the file takes a restart.
    pub outbound_ca_file: Option<PathBuf>,
    /// Which addresses guests' outbound connections may reach, whatever names the
    /// allow-lists admit (see [`crate::EgressPolicy`]).
    pub egress: crate::EgressPolicy,
}

impl EngineConfig {
    /// Defaults: 100 instances (25 per handler by default, at most 50), 128 MiB per
    /// instance, 120 s compile timeout, 2 compiles at once, 10 ms tick, memory reset by
    /// decommit (not [`EngineConfig::reset_dirty_pages_only`]).
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self::with_instances(cache_dir, 100)
    }

    /// [`EngineConfig::new`] with a pool of `max_instances`, and the per-handler default
    /// share and cap derived from it.
    pub fn with_instances(cache_dir: impl Into<PathBuf>, max_instances: u32) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            max_instances,
            default_max_concurrency: (max_instances / 4).max(1),
            max_concurrency_cap: (max_instances / 2).max(1),
            max_memory_per_instance: 128 * 1024 * 1024,
            compile_timeout: Duration::from_secs(120),
            max_concurrent_compiles: 2,
            epoch_tick: Duration::from_millis(10),
            reset_dirty_pages_only: false,
            outbound_ca_file: None,
            egress: crate::EgressPolicy::default(),
        }
    }
}

/// Load counters, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Components compiled (cache misses on disk).
    pub compiled: u64,
    /// Components loaded from an on-disk artifact.
    pub loaded_from_disk: u64,
    /// Loads answered from the in-memory map (no disk access at all).
    pub loaded_from_memory: u64,
}

/// One per node. Cheap to clone; the epoch ticker thread stops when the last clone — including
/// the ones held by every [`App`] and [`crate::Handler`] — is dropped.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) engine: wasmtime::Engine,
    linker: Linker<HostState>,
    pub(crate) config: EngineConfig,
    /// Hex of the engine's precompile compatibility hash: part of every artifact name.
    engine_hash: String,
    /// digest → loaded component, shared by every load of the same content.
    loaded: Mutex<HashMap<String, Arc<OnceCell<Arc<Loaded>>>>>,
    compiled: AtomicU64,
    /// [`EngineConfig::max_concurrent_compiles`] permits.
    compile_slots: Arc<tokio::sync::Semaphore>,
    from_disk: AtomicU64,
    from_memory: AtomicU64,
    /// Whether [`EngineConfig::reset_dirty_pages_only`] is in effect.
    dirty_pages_only: bool,
    /// The TLS client of every handler's outbound `https://` requests: built once here (root
    /// store parsing costs milliseconds), not per handler or request.
    pub(crate) outbound_tls: OutboundTls,
    /// Dropping this stops the ticker thread.
    _stop_ticker: mpsc::Sender<()>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .field("engine_hash", &self.inner.engine_hash)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Creates the node's engine: pooling allocator sized from `config`, epoch interruption on,
    /// and a ticker thread advancing the epoch every `config.epoch_tick`.
    ///
    /// # Errors
    ///
    /// [`WasmError::InvalidConfig`] for zero or out-of-range limits, [`WasmError::Io`] when the
    /// cache dir cannot be created, [`WasmError::OutboundCaFile`] when
    /// [`EngineConfig::outbound_ca_file`] is unreadable or holds no valid certificate, [`WasmError::Engine`] when wasmtime refuses the settings
    /// (e.g. the pool cannot reserve its address space).
    pub fn new(config: EngineConfig) -> Result<Self, WasmError> {
        if config.max_instances == 0 {
            return Err(WasmError::InvalidConfig("max_instances must be > 0".into()));
        }
        let max_memory = usize::try_from(config.max_memory_per_instance)
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| {
                WasmError::InvalidConfig(format!(
                    "max_memory_per_instance {} is out of range",
                    config.max_memory_per_instance
                ))
            })?;
        if config.epoch_tick.is_zero() {
            return Err(WasmError::InvalidConfig("epoch_tick must be > 0".into()));
        }
        let outbound_tls = OutboundTls::new(config.outbound_ca_file.as_deref())?;
        std::fs::create_dir_all(&config.cache_dir).map_err(|source| WasmError::Io {
            context: format!("creating cache dir {}", config.cache_dir.display()),
            source,
        })?;

        let n = config.max_instances;
        let dirty_pages_only = config.reset_dirty_pages_only && dirty_page_reset_is_usable();
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
            .total_memories(n.saturating_mul(MEMORIES_PER_COMPONENT))
            .total_tables(n.saturating_mul(TABLES_PER_COMPONENT))
            .total_stacks(n)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            .max_memory_size(max_memory)
            .table_keep_resident(KEEP_RESIDENT_TABLE);
        if dirty_pages_only {
            // Nothing is left to decommit after a small guest, so each free returns its slot
            // at once and the next request reuses the same warm slot.
            pool.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(DIRTY_PAGES_KEPT_RESIDENT)
                .decommit_batch_size(1);
        } else {
            pool.pagemap_scan(Enabled::No)
                .linear_memory_keep_resident(0)
                .decommit_batch_size(DECOMMIT_BATCH);
        }

        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            // No component-model-async: it costs ~20 µs per request and p2 does not need it.
            .concurrency_support(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            wasmtime::Engine::new(&wasm).map_err(|e| WasmError::Engine(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        // Full WASI p2, not just the proxy world: a Rust std guest imports wasi:cli even for
        // hello. Capabilities are still deny-by-default through each request's WasiCtx.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        // Always linked (a guest that imports it must load even where no data is granted);
        // a guest that does not import it never reaches it.
        crate::keyvalue::add_to_linker(&mut linker)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;

        let engine_hash = {
            let mut h = Sha256Hasher(Sha256::new());
            engine.precompile_compatibility_hash().hash(&mut h);
            hex(&h.0.finalize()[..16])
        };

        let (stop, stopped) = mpsc::channel::<()>();
        let weak = engine.weak();
        let tick = config.epoch_tick;
        std::thread::Builder::new()
            .name("ketch-wasm-epoch".into())
            .spawn(move || {
                // Ends when the sender (in EngineInner) is dropped.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|source| WasmError::Io {
                context: "spawning the epoch ticker thread".into(),
                source,
            })?;

        let compile_slots = Arc::new(tokio::sync::Semaphore::new(
            config.max_concurrent_compiles.max(1),
        ));
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                config,
                engine_hash,
                loaded: Mutex::new(HashMap::new()),
                compiled: AtomicU64::new(0),
                compile_slots,
                from_disk: AtomicU64::new(0),
                from_memory: AtomicU64::new(0),
                dirty_pages_only,
                outbound_tls,
                _stop_ticker: stop,
            }),
        })
    }

    /// Whether freed slots are reset through `PAGEMAP_SCAN` (see
    /// [`EngineConfig::reset_dirty_pages_only`]): asked for, and usable on this node.
    pub fn resets_dirty_pages_only(&self) -> bool {
        self.inner.dirty_pages_only
    }

    /// Load counters since this engine was created.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            compiled: self.inner.compiled.load(Ordering::Relaxed),
            loaded_from_disk: self.inner.from_disk.load(Ordering::Relaxed),
            loaded_from_memory: self.inner.from_memory.load(Ordering::Relaxed),
        }
    }

    /// Loads a component from bytes. `digest` (`sha256:<hex>` or bare hex) is the content
    /// digest if the caller knows it (e.g. from an OCI manifest); otherwise it is computed.
    ///
    /// Order of lookups: the in-memory map (no I/O), the on-disk artifact
    /// (`<cache_dir>/<digest>-<engine hash>.cwasm`, ~0.1 ms), else a compile on the blocking
    /// pool bounded by `compile_timeout`, written atomically to the cache. Concurrent loads of
    /// the same digest compile once.
    ///
    /// # Errors
    ///
    /// [`WasmError::TooLarge`] above [`MAX_COMPONENT_BYTES`]; [`WasmError::Digest`] for a
    /// malformed digest or one that does not match the bytes; [`WasmError::InvalidComponent`]
    /// when the bytes are not a valid component; [`WasmError::NotHttpComponent`] when it does
    /// not export `wasi:http/incoming-handler`; [`WasmError::UnsupportedImport`];
    /// [`WasmError::CompileTimeout`]; [`WasmError::Io`] for cache I/O.
    pub async fn load(&self, wasm: &[u8], digest: Option<&str>) -> Result<App, WasmError> {
        check_size(wasm.len() as u64)?;
        let (digest, verified) = match digest {
            Some(d) => (normalize_digest(d)?, false),
            None => (sha256_hex(wasm), true),
        };
        self.load_inner(digest, verified, Source::Bytes(wasm)).await
    }

    /// Like [`Engine::load`], from a file. With a `digest` and a cache hit the file is not read.
    ///
    /// # Errors
    ///
    /// As [`Engine::load`], plus [`WasmError::Io`] when the file cannot be read.
    pub async fn load_file(&self, path: &Path, digest: Option<&str>) -> Result<App, WasmError> {
        match digest {
            Some(d) => {
                let digest = normalize_digest(d)?;
                self.load_inner(digest, false, Source::File(path)).await
            }
            None => {
                let bytes = read_limited(path).await?;
                let digest = sha256_hex(&bytes);
                self.load_inner(digest, true, Source::Owned(bytes)).await
            }
        }
    }

    /// Forgets the in-memory entry for `digest` (the on-disk artifact stays). Apps already
    /// loaded keep working.
    pub fn evict(&self, digest: &str) {
        if let Ok(d) = normalize_digest(digest) {
            self.lock_loaded().remove(&d);
        }
    }

    fn lock_loaded(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OnceCell<Arc<Loaded>>>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts).
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn load_inner(
        &self,
        digest: String,
        verified: bool,
        source: Source<'_>,
    ) -> Result<App, WasmError> {
        let cell = self
            .lock_loaded()
            .entry(digest.clone())
            .or_default()
            .clone();
        let mut initialized_here = false;
        let loaded = cell
            .get_or_try_init(|| {
                initialized_here = true;
                self.materialize(&digest, verified, source)
            })
            .await?
            .clone();
        if !initialized_here {
            self.inner.from_memory.fetch_add(1, Ordering::Relaxed);
        }
        let compiled_here = initialized_here && loaded.compiled;
        Ok(App::new(self.clone(), loaded, compiled_here))
    }

    fn artifact_path(&self, digest: &str) -> PathBuf {
        self.inner
            .config
            .cache_dir
            .join(format!("{digest}-{}.cwasm", self.inner.engine_hash))
    }

    /// Disk artifact or compile, then validate as an HTTP handler.
    async fn materialize(
        &self,
        digest: &str,
        verified: bool,
        source: Source<'_>,
    ) -> Result<Arc<Loaded>, WasmError> {
        let artifact = self.artifact_path(digest);
        let mut compiled = false;
        let component = match self.deserialize(&artifact).await {
            Some(component) => {
                self.inner.from_disk.fetch_add(1, Ordering::Relaxed);
                component
            }
            None => {
                compiled = true;
                let bytes = match source {
                    Source::Bytes(b) => b.to_vec(),
                    Source::Owned(b) => b,
                    Source::File(p) => read_limited(p).await?,
                };
                if !verified {
                    let actual = sha256_hex(&bytes);
                    if actual != digest {
                        return Err(WasmError::Digest {
                            given: digest.to_string(),
                            reason: format!("the content's sha256 is {actual}"),
                        });
                    }
                }
                self.compile_to_cache(bytes, &artifact).await?;
                self.inner.compiled.fetch_add(1, Ordering::Relaxed);
                self.deserialize(&artifact).await.ok_or_else(|| {
                    WasmError::Engine(format!(
                        "artifact {} written but could not be loaded",
                        artifact.display()
                    ))
                })?
            }
        };

        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| WasmError::UnsupportedImport(format!("{e:#}")))?;
        let proxy_pre = ProxyPre::new(instance_pre)
            .map_err(|e| WasmError::NotHttpComponent(format!("{e:#}")))?;
        Ok(Arc::new(Loaded {
            digest: digest.to_string(),
            proxy_pre,
            compiled,
        }))
    }

    /// Loads an artifact this crate wrote; `None` when absent or unusable (then recompiled).
    async fn deserialize(&self, artifact: &Path) -> Option<Component> {
        let engine = self.inner.engine.clone();
        let path = artifact.to_path_buf();
        let result = tokio::task::spawn_blocking(move || {
            if !path.is_file() {
                return None;
            }
            #[allow(
                unsafe_code,
                reason = "deserialize_file maps native code; sound because only artifacts this \
                          crate compiled and renamed into its own cache dir are loaded, and \
                          wasmtime checks the engine compatibility header"
            )]
            // SAFETY: `path` is `<cache_dir>/<digest>-<engine hash>.cwasm`, written only by
            // `compile_to_cache` (tmp file + rename, so never partial) from
            // `Engine::precompile_component`; the cache dir belongs to this node's agent.
            let loaded = unsafe { Component::deserialize_file(&engine, &path) };
            match loaded {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "discarding unusable artifact");
                    let _ = std::fs::remove_file(&path);
                    None
                }
            }
        })
        .await;
        result.ok().flatten()
    }

    async fn compile_to_cache(&self, bytes: Vec<u8>, artifact: &Path) -> Result<(), WasmError> {
        let engine = self.inner.engine.clone();
        let artifact = artifact.to_path_buf();
        let timeout = self.inner.config.compile_timeout;
        // Waiting for a slot does not count against the compile's own timeout.
        let slot = self
            .inner
            .compile_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WasmError::Engine("the engine is shutting down".into()))?;
        // Cranelift is CPU-bound for up to seconds: never on the caller's event loop. A
        // compile that times out keeps its blocking thread (and its slot) until it finishes
        // (it cannot be cancelled) but its result is discarded.
        let job = tokio::task::spawn_blocking(move || -> Result<(), WasmError> {
            let _slot = slot;
            let compiled = engine
                .precompile_component(&bytes)
                .map_err(|e| WasmError::InvalidComponent(format!("{e:#}")))?;
            write_atomically(&artifact, &compiled)
        });
        match tokio::time::timeout(timeout, job).await {
            Err(_) => Err(WasmError::CompileTimeout(timeout)),
            Ok(Err(join)) => Err(WasmError::Engine(format!("compile task failed: {join}"))),
            Ok(Ok(result)) => result,
        }
    }
}

/// [`EngineConfig::reset_dirty_pages_only`] needs `PAGEMAP_SCAN` and a node without swap (a
/// swapped-out dirty page would survive the reset).
fn dirty_page_reset_is_usable() -> bool {
    if !PoolingAllocationConfig::is_pagemap_scan_available() {
        tracing::warn!(
            "reset_dirty_pages_only ignored: the kernel has no PAGEMAP_SCAN (needs Linux 6.7+); \
             freed Wasm instance slots are decommitted instead"
        );
        return false;
    }
    match swap_total_kib() {
        Some(0) => true,
        Some(kib) => {
            tracing::warn!(
                swap_kib = kib,
                "reset_dirty_pages_only ignored: swap is configured (a dirty page swapped out \
                 would survive the reset)"
            );
            false
        }
        None => {
            tracing::warn!(
                "reset_dirty_pages_only ignored: cannot read SwapTotal from /proc/meminfo"
            );
            false
        }
    }
}

/// `SwapTotal` from `/proc/meminfo`, in KiB.
fn swap_total_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_swap_total(&meminfo)
}

fn parse_swap_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("SwapTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

enum Source<'a> {
    Bytes(&'a [u8]),
    Owned(Vec<u8>),
    File(&'a Path),
}

fn check_size(size: u64) -> Result<(), WasmError> {
    if size > MAX_COMPONENT_BYTES {
        return Err(WasmError::TooLarge {
            size,
            limit: MAX_COMPONENT_BYTES,
        });
    }
    Ok(())
}

async fn read_limited(path: &Path) -> Result<Vec<u8>, WasmError> {
    let io = |source| WasmError::Io {
        context: format!("reading component {}", path.display()),
        source,
    };
    let size = tokio::fs::metadata(path).await.map_err(io)?.len();
    check_size(size)?;
    let bytes = tokio::fs::read(path).await.map_err(io)?;
    check_size(bytes.len() as u64)?;
    Ok(bytes)
}

/// Writes `<artifact>.<random>.tmp`, fsyncs it, then renames it into place, so a reader never
/// sees a partial artifact and concurrent writers (two nodes sharing a dir) are harmless.
fn write_atomically(artifact: &Path, bytes: &[u8]) -> Result<(), WasmError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    // A random name created exclusively: nobody else's file (or symlink) is written through.
    let tmp = artifact.with_extension(format!("{:016x}.tmp", rand::random::<u64>()));
    let io = |context: &str, source| WasmError::Io {
        context: format!("{context} {}", tmp.display()),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("creating", e))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io("writing", e));
    drop(file);
    if let Err(e) = written
        .and_then(|()| std::fs::rename(&tmp, artifact).map_err(|e| io("renaming into place", e)))
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Accepts `sha256:<64 hex>` or `<64 hex>`; returns lowercase hex (safe as a file name).
fn normalize_digest(d: &str) -> Result<String, WasmError> {
    let hex = d.strip_prefix("sha256:").unwrap_or(d).to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WasmError::Digest {
            given: d.to_string(),
            reason: "expected sha256:<64 hex digits>".into(),
        });
    }
    Ok(hex)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Feeds `Hash` input into sha256: a stable, process-independent key for
/// `precompile_compatibility_hash` (std's `DefaultHasher` makes no stability promise).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_normalized_to_lowercase_hex() {
        let hex64 = "AB".repeat(32);
        assert_eq!(
            normalize_digest(&format!("sha256:{hex64}")).unwrap(),
            "ab".repeat(32)
        );
        assert_eq!(normalize_digest(&hex64).unwrap(), "ab".repeat(32));
    }

    #[test]
    fn digests_that_could_escape_the_cache_dir_are_rejected() {
        assert!(normalize_digest("../../etc/passwd").is_err());
        assert!(normalize_digest(&format!("sha256:{}/", "a".repeat(63))).is_err());
        assert!(normalize_digest("sha512:abc").is_err());
    }

    #[test]
    fn swap_total_is_read_from_meminfo() {
        let meminfo = "MemTotal:       24000000 kB\nSwapTotal:       2097148 kB\nSwapFree: 1 kB\n";
        assert_eq!(parse_swap_total(meminfo), Some(2_097_148));
        assert_eq!(parse_swap_total("SwapTotal:             0 kB\n"), Some(0));
        assert_eq!(parse_swap_total("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn sizes_above_the_limit_are_refused() {
        assert!(check_size(MAX_COMPONENT_BYTES).is_ok());
        assert!(matches!(
            check_size(MAX_COMPONENT_BYTES + 1),
            Err(WasmError::TooLarge { .. })
        ));
    }
}
