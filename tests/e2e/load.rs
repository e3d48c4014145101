//! A history recorder and load driver for fault tests: N concurrent clients doing a seeded
//! random mix of create / get / compare-and-set update / delete on a few ConfigMaps
//! (`data.v` is unique per write), each operation recorded with its invoke and return
//! instants and its outcome (ok, definite failure, unknown), plus one watcher that follows
//! the namespace through every fault, resuming from the last resourceVersion it saw on the
//! next server whenever its stream breaks.
//!
//! It takes a list of server URLs (a client moves to the next on a connection failure) and
//! the fault as a closure, so the same driver runs single-server restarts today and
//! leader kills or partitions of a cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

use crate::linearizability::{Input, Operation, Output};
use crate::watch_validator::{AckedWrite, EventKind, Snapshot, WatchEvent};

fn configmaps() -> &'static ketch_api::resource::ResourceInfo {
    ketch_api::resource::lookup("configmaps").unwrap()
}

/// The seed of a run: `KETCH_FAULT_SEED` to replay one, else a fresh one. Printed either way.
pub fn seed() -> u64 {
    let seed = std::env::var("KETCH_FAULT_SEED")
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("KETCH_FAULT_SEED={s:?}: must be an unsigned integer"))
        })
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("fault test seed: {seed} (replay with KETCH_FAULT_SEED={seed})");
    seed
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub servers: Vec<String>,
    pub token: String,
    pub clients: usize,
    pub keys: usize,
    pub namespace: String,
    /// Object names are `{prefix}-{key number}`.
    pub prefix: String,
    pub seed: u64,
    /// An operation without an answer by then has an unknown outcome.
    pub op_timeout: Duration,
}

impl LoadConfig {
    pub fn new(servers: Vec<String>, token: &str, seed: u64) -> Self {
        LoadConfig {
            servers,
            token: token.to_string(),
            clients: 8,
            keys: 6,
            namespace: "default".into(),
            prefix: "lin".into(),
            seed,
            op_timeout: Duration::from_secs(3),
        }
    }

    fn name(&self, key: usize) -> String {
        format!("{}-{key}", self.prefix)
    }
}

/// Counts for the report.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub ok: usize,
    /// 404 / 409: the operation definitely did not take effect (or read "not found").
    pub failed: usize,
    pub unknown: usize,
    /// Operations never sent: every server refused the connection until the deadline.
    pub not_sent: usize,
    /// Answers the model has no place for (a 400, a 422, a body without `data.v`): bugs in
    /// the test or the server, reported by the test.
    pub unexpected: Vec<String>,
}

/// What one watcher saw over the whole run.
#[derive(Debug, Default)]
pub struct WatchLog {
    /// The revision it started from (a list's, before any load).
    pub from: u64,
    pub events: Vec<WatchEvent>,
    pub reconnects: usize,
    /// The servers it watched from (indexes into [`LoadConfig::servers`]).
    pub servers: BTreeSet<usize>,
    /// Resumptions the server refused (410: the version is no longer in its history), with
    /// the version it tried: each is a gap the watcher could not close.
    pub expired: Vec<String>,
    /// Whether it saw the fence written after the final list (so it is complete up to it).
    pub complete: bool,
}

/// Everything a run produced.
#[derive(Debug)]
pub struct Recorded {
    pub history: Vec<Operation>,
    pub stats: Stats,
    pub watch: WatchLog,
    /// The final list (objects of the load's keys only).
    pub last: Snapshot,
    pub faults: usize,
}

impl Recorded {
    /// The writes clients saw acknowledged, as the watch must have delivered them.
    pub fn acked_writes(&self) -> Vec<AckedWrite> {
        self.history
            .iter()
            .filter_map(|op| {
                let Output::Written { rv } = op.output else {
                    return None;
                };
                let (kind, value) = match &op.input {
                    Input::Create { value } => (EventKind::Added, Some(value.clone())),
                    Input::Update { value, .. } => (EventKind::Modified, Some(value.clone())),
                    Input::Delete => (EventKind::Deleted, None),
                    Input::Get => return None,
                };
                Some(AckedWrite {
                    key: op.key.clone(),
                    rv,
                    kind,
                    value,
                })
            })
            .collect()
    }

    /// The history with unknown create/update outcomes settled by the watch, as etcd's
    /// robustness suite does: every write puts a unique `data.v`, so a write whose value
    /// the (complete, separately validated) watch delivered took effect at that
    /// resourceVersion, sometime before the end of the run; one whose value it never
    /// delivered did not happen. Unknown deletes stay unknown (a deletion carries no value
    /// of its own). Without this, a whole-cluster restart leaves hundreds of writes
    /// "maybe happened" forever, and the search over them explodes.
    pub fn settled_history(&self) -> Vec<Operation> {
        if !self.watch.complete {
            return self.history.clone();
        }
        let seen: HashMap<(&str, &str), u64> = self
            .watch
            .events
            .iter()
            .filter(|e| e.kind != EventKind::Deleted)
            .filter_map(|e| Some(((e.key.as_str(), e.value.as_deref()?), e.rv)))
            .collect();
        let end = self
            .history
            .iter()
            .map(|o| o.ret.max(o.call))
            .max()
            .unwrap_or(0)
            + 1;
        self.history
            .iter()
            .filter_map(|op| {
                let value = match (&op.output, &op.input) {
                    (Output::Unknown, Input::Create { value } | Input::Update { value, .. }) => {
                        value
                    }
                    _ => return Some(op.clone()),
                };
                let rv = seen.get(&(op.key.as_str(), value.as_str()))?;
                Some(Operation {
                    ret: end,
                    output: Output::Written { rv: *rv },
                    ..op.clone()
                })
            })
            .collect()
    }

    /// Acknowledged writes the final reads contradict: a key whose final version is older
    /// than its newest acknowledged write, or that is gone although nothing deleted it.
    pub fn lost_writes(&self) -> Vec<String> {
        let mut newest: HashMap<&str, &Operation> = HashMap::new();
        for op in &self.history {
            if let Output::Written { rv } = op.output
                && newest
                    .get(op.key.as_str())
                    .is_none_or(|o| matches!(o.output, Output::Written { rv: r } if r < rv))
            {
                newest.insert(&op.key, op);
            }
        }
        let maybe_deleted = |key: &str| {
            self.history
                .iter()
                .any(|o| o.key == key && o.input == Input::Delete && o.output == Output::Unknown)
        };
        let mut lost = Vec::new();
        for (key, op) in newest {
            let Output::Written { rv } = op.output else {
                continue;
            };
            match self.last.objects.get(key) {
                Some((_, now)) if *now < rv => lost.push(format!(
                    "{key}: {op:?} acknowledged, final version {now} is older"
                )),
                None if op.input != Input::Delete && !maybe_deleted(key) => lost.push(format!(
                    "{key}: {op:?} acknowledged, the object is gone and nothing deleted it"
                )),
                _ => {}
            }
        }
        lost
    }
}

/// Nanoseconds since the run started: the history's clock.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// A client's connections: one per server, moving to the next on a connection failure.
struct Conn {
    clients: Vec<ketch_client::Client>,
    current: usize,
}

impl Conn {
    fn new(cfg: &LoadConfig, start: usize) -> Self {
        let clients = cfg
            .servers
            .iter()
            .map(|s| crate::support::client_for(std::slice::from_ref(s), &cfg.token))
            .collect();
        Conn {
            clients,
            current: start % cfg.servers.len(),
        }
    }

    fn client(&self) -> &ketch_client::Client {
        &self.clients[self.current]
    }

    fn next(&mut self) {
        self.current = (self.current + 1) % self.clients.len();
    }
}

fn is_connect_error(e: &ketch_client::Error) -> bool {
    matches!(e, ketch_client::Error::Http { source, .. } if source.is_connect())
}

/// The outcome of one attempt as the history records it; `None`: never sent.
type Attempt = Option<Result<Value, ketch_client::Error>>;

/// Run `send` against the current server, moving on after connection failures (which
/// prove the request was not sent) until `timeout` is up.
async fn with_failover<F, Fut>(conn: &mut Conn, timeout: Duration, send: F) -> Attempt
where
    F: Fn(ketch_client::Client) -> Fut,
    Fut: std::future::Future<Output = Result<Value, ketch_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut refused_in_a_row = 0;
    loop {
        match tokio::time::timeout_at(deadline, send(conn.client().clone())).await {
            Err(_) => return Some(Err(timed_out())),
            Ok(Err(e)) if is_connect_error(&e) => {
                conn.next();
                refused_in_a_row += 1;
                if refused_in_a_row % conn.clients.len() == 0 {
                    // Every server refused: wait for one to come back.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
            }
            Ok(r) => return Some(r),
        }
    }
}

/// A client's pause after an operation with an unknown outcome.
const UNKNOWN_BACKOFF: Duration = Duration::from_millis(100);

fn timed_out() -> ketch_client::Error {
    ketch_client::Error::Config("timed out".into())
}

fn rv_of(v: &Value) -> Option<u64> {
    v.pointer("/metadata/resourceVersion")?
        .as_str()?
        .parse()
        .ok()
}

fn value_of(v: &Value) -> Option<String> {
    v.pointer("/data/v")?.as_str().map(str::to_string)
}

/// Map an attempt to the model's output; `Err` is an answer the model has no place for.
fn classify(input: &Input, r: Result<Value, ketch_client::Error>) -> Result<Output, String> {
    match r {
        Ok(obj) => {
            let rv = rv_of(&obj).ok_or_else(|| format!("no resourceVersion in {obj}"))?;
            Ok(match input {
                Input::Get => Output::Found {
                    value: value_of(&obj).ok_or_else(|| format!("no data.v in {obj}"))?,
                    rv,
                },
                _ => Output::Written { rv },
            })
        }
        Err(e) => match (e.code(), input) {
            (Some(404), Input::Create { .. }) => Err(format!("404 on create: {e}")),
            (Some(404), _) => Ok(Output::NotFound),
            (Some(409), Input::Create { .. }) => Ok(Output::AlreadyExists),
            (Some(409), Input::Update { .. }) => Ok(Output::Conflict),
            // 5xx and 429: the server may or may not have done it.
            (Some(c), _) if c >= 500 || c == 429 => Ok(Output::Unknown),
            (Some(_), _) => Err(format!("{input:?}: {e}")),
            (None, _) => Ok(Output::Unknown),
        },
    }
}

struct Shared {
    cfg: LoadConfig,
    clock: Clock,
    history: Mutex<Vec<Operation>>,
    stats: Mutex<Stats>,
    stop: AtomicBool,
}

impl Shared {
    /// Perform `input` on key `key` for `client`, and record it.
    async fn perform(&self, conn: &mut Conn, client: usize, key: usize, input: Input) -> Output {
        let name = self.cfg.name(key);
        let ns = self.cfg.namespace.clone();
        let cm = configmaps();
        let call = self.clock.now();
        let attempt = {
            let (name, ns, input) = (&name, &ns, &input);
            with_failover(conn, self.cfg.op_timeout, move |c| async move {
                let body = |v: &str, rv: Option<u64>| {
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "resourceVersion": rv.map(|r| r.to_string())},
                        "data": {"v": v}})
                };
                match input {
                    Input::Create { value } => c.create(cm, Some(ns), &body(value, None)).await,
                    Input::Get => c.get(cm, Some(ns), name).await,
                    Input::Update { value, expected_rv } => {
                        c.replace(cm, Some(ns), name, &body(value, Some(*expected_rv)))
                            .await
                    }
                    Input::Delete => c.delete(cm, Some(ns), name).await,
                }
            })
            .await
        };
        let ret = self.clock.now();
        let mut stats = self.stats.lock().unwrap();
        let Some(r) = attempt else {
            stats.not_sent += 1;
            return Output::Unknown;
        };
        let output = match classify(&input, r) {
            Ok(o) => o,
            Err(why) => {
                stats.unexpected.push(why);
                Output::Unknown
            }
        };
        match output {
            Output::Unknown => stats.unknown += 1,
            Output::Written { .. } | Output::Found { .. } => stats.ok += 1,
            _ => stats.failed += 1,
        }
        drop(stats);
        self.history.lock().unwrap().push(Operation {
            client,
            key: name,
            call,
            ret,
            input,
            output: output.clone(),
        });
        output
    }

    async fn client_loop(self: Arc<Self>, client: usize) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            self.cfg.seed ^ (client as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let mut conn = Conn::new(&self.cfg, client);
        // The last version this client saw per key: what its CAS updates expect.
        let mut known: HashMap<usize, u64> = HashMap::new();
        let mut seq = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let key = rng.random_range(0..self.cfg.keys);
            seq += 1;
            let value = format!("c{client}-{seq}");
            let roll = rng.random_range(0..100);
            let input = match (roll, known.get(&key)) {
                (0..20, _) => Input::Create { value },
                (20..50, Some(&rv)) => Input::Update {
                    value,
                    expected_rv: rv,
                },
                (50..65, _) => Input::Delete,
                _ => Input::Get,
            };
            let deletes = input == Input::Delete;
            match self.perform(&mut conn, client, key, input).await {
                Output::Written { rv } | Output::Found { rv, .. } if !deletes => {
                    known.insert(key, rv);
                }
                // Gone, or changed by someone else: read before the next update.
                Output::Written { .. } | Output::NotFound | Output::Conflict => {
                    known.remove(&key);
                }
                // A 503 from a follower that still forwards to a dead leader comes back at
                // once: back off on another server as a real client would, instead of
                // piling up thousands of unknown outcomes (each one the checker must place
                // anywhere after its call, which makes the search explode).
                Output::Unknown => {
                    conn.next();
                    tokio::time::sleep(UNKNOWN_BACKOFF).await;
                }
                _ => {}
            }
        }
    }
}

/// A running load (clients and watcher on their own runtime, so the test thread is free
/// to inject faults with blocking calls).
pub struct Load {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    clients: Vec<tokio::task::JoinHandle<()>>,
    watcher: tokio::task::JoinHandle<WatchLog>,
}

impl Load {
    /// Start the watcher (from the current revision) and the clients.
    pub fn start(cfg: LoadConfig) -> Load {
        assert!(!cfg.servers.is_empty(), "LoadConfig.servers: empty");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            clock: Clock(Instant::now()),
            history: Mutex::default(),
            stats: Mutex::default(),
            stop: AtomicBool::new(false),
            cfg,
        });
        let from = rt.block_on(async {
            let mut conn = Conn::new(&shared.cfg, 0);
            let list = list_namespace(&shared.cfg, &mut conn).await;
            rv_of(&list).expect("list resourceVersion")
        });
        let watcher = rt.spawn(watch_loop(shared.clone(), from));
        let clients = (0..shared.cfg.clients)
            .map(|c| rt.spawn(shared.clone().client_loop(c)))
            .collect();
        Load {
            rt,
            shared,
            clients,
            watcher,
        }
    }

    /// Stop the clients, read every key once more (recorded), list, write a fence object
    /// and wait for the watcher to see it; then hand back everything recorded.
    pub fn finish(self, faults: usize) -> Recorded {
        let Load {
            rt,
            shared,
            clients,
            watcher,
        } = self;
        shared.stop.store(true, Ordering::Relaxed);
        let (last, watch) = rt.block_on(async {
            for c in clients {
                c.await.unwrap();
            }
            let mut conn = Conn::new(&shared.cfg, 0);
            let final_client = shared.cfg.clients;
            for key in 0..shared.cfg.keys {
                // Until a definite answer: the final state must be known.
                for _ in 0..20 {
                    if shared.perform(&mut conn, final_client, key, Input::Get).await
                        != Output::Unknown
                    {
                        break;
                    }
                }
            }
            let list = list_namespace(&shared.cfg, &mut conn).await;
            let mut last = Snapshot {
                rv: rv_of(&list).expect("list resourceVersion"),
                objects: BTreeMap::new(),
            };
            for o in list["items"].as_array().unwrap() {
                let name = o["metadata"]["name"].as_str().unwrap();
                if name.starts_with(&format!("{}-", shared.cfg.prefix)) {
                    last.objects
                        .insert(name.to_string(), (value_of(o), rv_of(o).unwrap()));
                }
            }
            // Events are delivered in revision order, so once the watcher has the fence
            // (written after the list) it has everything up to the list.
            let fence_obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{}fence", shared.cfg.prefix)}, "data": {"v": "fence"}});
            with_failover(&mut conn, Duration::from_secs(30), |c| {
                let (ns, obj) = (shared.cfg.namespace.clone(), fence_obj.clone());
                async move { c.create(configmaps(), Some(&ns), &obj).await }
            })
            .await
            .expect("a server for the fence")
            .expect("the fence write");
            let watch = tokio::time::timeout(Duration::from_secs(30), watcher)
                .await
                .expect("the watcher to see the fence within 30 s")
                .unwrap();
            (last, watch)
        });
        let mut history = shared.history.lock().unwrap().clone();
        history.sort_by_key(|o| o.call);
        Recorded {
            history,
            stats: shared.stats.lock().unwrap().clone(),
            watch,
            last,
            faults,
        }
    }
}

/// List the namespace's ConfigMaps, waiting up to 30 s for a server.
async fn list_namespace(cfg: &LoadConfig, conn: &mut Conn) -> Value {
    with_failover(conn, Duration::from_secs(30), |c| {
        let ns = cfg.namespace.clone();
        async move { c.list(configmaps(), Some(&ns), &Default::default()).await }
    })
    .await
    .expect("a server to list from within 30 s")
    .expect("listing the namespace")
}

/// Follow all ConfigMaps of the namespace from `from`, across reconnects, until the fence
/// appears; every event of the load's keys is recorded.
async fn watch_loop(shared: Arc<Shared>, from: u64) -> WatchLog {
    let cfg = &shared.cfg;
    let fence_name = format!("{}fence", cfg.prefix);
    let key_prefix = format!("{}-", cfg.prefix);
    let mut log = WatchLog {
        from,
        ..WatchLog::default()
    };
    let mut conn = Conn::new(cfg, 0);
    let mut rv = from;
    loop {
        let opened = conn
            .client()
            .watch_once(
                configmaps(),
                Some(&cfg.namespace),
                &ketch_client::ListParams::default(),
                Some(&rv.to_string()),
            )
            .await;
        let mut resp = match opened {
            Ok(r) => r,
            Err(e) if e.code() == Some(410) => {
                log.expired.push(format!("resuming from {rv}: {e}"));
                return log;
            }
            Err(e) => {
                if is_connect_error(&e) {
                    conn.next();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        log.reconnects += 1;
        log.servers.insert(conn.current);
        let mut buf: Vec<u8> = Vec::new();
        loop {
            if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                    log.expired.push(format!(
                        "undecodable watch line: {}",
                        String::from_utf8_lossy(&line)
                    ));
                    return log;
                };
                let obj = &ev["object"];
                let kind = match ev["type"].as_str() {
                    Some("ADDED") => EventKind::Added,
                    Some("MODIFIED") => EventKind::Modified,
                    Some("DELETED") => EventKind::Deleted,
                    Some("BOOKMARK") => {
                        rv = rv_of(obj).unwrap_or(rv).max(rv);
                        continue;
                    }
                    _ => {
                        log.expired.push(format!("watch error event: {ev}"));
                        return log;
                    }
                };
                let ev_rv = rv_of(obj).expect("event resourceVersion");
                rv = ev_rv;
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                if name == fence_name {
                    log.complete = true;
                    return log;
                }
                if name.starts_with(&key_prefix) {
                    log.events.push(WatchEvent {
                        kind,
                        key: name.to_string(),
                        rv: ev_rv,
                        value: value_of(obj),
                    });
                }
                continue;
            }
            // Bookmarks come every 5 s on an idle stream: 10 s of silence is a dead one.
            match tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await {
                Ok(Ok(Some(chunk))) => buf.extend_from_slice(&chunk),
                // Broken, ended or silent: resume from the last version seen, on the
                // next server (this one may be dead or cut off; any server can serve a
                // watch from a resourceVersion, from the same revision space).
                _ => {
                    conn.next();
                    break;
                }
            }
        }
    }
}

/// Run `cfg`'s load for `total`, calling `fault(n)` (blocking: kill, restart, partition,
/// heal…) after a pause drawn from `every` (seeded), until the time is up.
pub fn run_with_faults(
    cfg: LoadConfig,
    total: Duration,
    every: RangeInclusive<Duration>,
    mut fault: impl FnMut(usize),
) -> Recorded {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let load = Load::start(cfg);
    let end = Instant::now() + total;
    let mut faults = 0;
    loop {
        let pause = rng.random_range(every.clone());
        if Instant::now() + pause >= end {
            std::thread::sleep(end.saturating_duration_since(Instant::now()));
            break;
        }
        std::thread::sleep(pause);
        fault(faults);
        faults += 1;
    }
    load.finish(faults)
}
