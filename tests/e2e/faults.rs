//! Fault tests in the style of etcd's robustness suite: a seeded load from 8 clients while
//! the test injects faults, then three checks over what was recorded — every acknowledged
//! write is still there, the history is linearizable per key, and a watcher that ran
//! through every fault saw each change once, in order, with no gap.
//!
//! Today's fault is `kill -9` of the single server and a restart on the same data dir and
//! port. The fast run (~30 s) is part of the normal suite; `KETCH_LONG_FAULTS=1` runs the
//! long one (2 minutes, a kill every 5 s). `KETCH_FAULT_SEED=N` replays a run's operation
//! mix and fault schedule (thread timing still varies).

use std::time::Duration;

use crate::linearizability;
use crate::load::{self, LoadConfig, Recorded};
use crate::support::Server;
use crate::watch_validator;

fn long_run() -> bool {
    std::env::var("KETCH_LONG_FAULTS").is_ok_and(|v| v == "1")
}

/// Check everything a run recorded; panics with the findings.
fn assert_sound(rec: &Recorded, min_faults: usize) {
    let s = &rec.stats;
    eprintln!(
        "fault run: {} ops ({} ok, {} failed, {} unknown, {} never sent), {} faults, \
         {} watch events over {} connections",
        rec.history.len(),
        s.ok,
        s.failed,
        s.unknown,
        s.not_sent,
        rec.faults,
        rec.watch.events.len(),
        rec.watch.reconnects
    );
    assert!(
        s.unexpected.is_empty(),
        "answers outside the model: {:?}",
        &s.unexpected[..s.unexpected.len().min(5)]
    );
    assert!(
        rec.faults >= min_faults,
        "only {} faults injected",
        rec.faults
    );
    // Enough successful work between faults to mean something.
    assert!(
        s.ok >= 100 * (rec.faults + 1),
        "too few successful operations: {}",
        s.ok
    );

    let lost = rec.lost_writes();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {lost:#?}",
        lost.len()
    );

    let t = std::time::Instant::now();
    match linearizability::check(&rec.history) {
        Ok(report) => eprintln!(
            "linearizable: {} keys, {} ops ({} unknown), {} search steps in {:?}",
            report.keys,
            report.operations,
            report.unknown,
            report.steps,
            t.elapsed()
        ),
        Err(e) => panic!("history not linearizable:\n{e}"),
    }
    // The same history with one read made stale must fail: the check has teeth here.
    let corrupted = linearizability::with_stale_read(&rec.history).expect("no read to corrupt");
    match linearizability::check(&corrupted) {
        Err(linearizability::CheckError::NotLinearizable { .. }) => {}
        other => panic!("a planted stale read was not found: {other:?}"),
    }

    // The server persists its recent watch history, so a watcher that was behind at a kill
    // resumes after the restart: no 410, no gap.
    assert!(
        rec.watch.expired.is_empty(),
        "the watcher could not resume: {:?}",
        rec.watch.expired
    );
    assert!(rec.watch.complete, "the watcher never saw the fence");
    let acked = rec.acked_writes();
    let last = Some(&rec.last);
    if let Err(violations) = watch_validator::validate(
        rec.watch.from,
        &Default::default(),
        &rec.watch.events,
        &acked,
        last,
    ) {
        panic!(
            "watch validation failed ({} violations), first ones: {:#?}",
            violations.len(),
            &violations[..violations.len().min(10)]
        );
    }
}

#[test]
fn kill_9_and_restart_under_load_loses_nothing_and_stays_linearizable() {
    let (total, every, min_faults) = if long_run() {
        (
            Duration::from_secs(120),
            Duration::from_secs(5)..=Duration::from_secs(5),
            // Restarts take time out of the 2 minutes too.
            15,
        )
    } else {
        (
            Duration::from_secs(30),
            Duration::from_secs(3)..=Duration::from_secs(5),
            3,
        )
    };
    let seed = load::seed();
    let flags = ["--no-agent"];
    let mut server = Some(Server::start_with(&flags));
    let first = server.as_ref().unwrap();
    let cfg = LoadConfig::new(vec![first.url.clone()], &first.token, seed);
    let rec = load::run_with_faults(cfg, total, every, |_| {
        let (dir, port) = server.take().unwrap().kill9();
        server = Some(Server::start_full(dir, port, &flags));
    });
    assert_sound(&rec, min_faults);
}
