//! Every acknowledged write survives `kill -9` of the server at any moment, and nothing
//! half-written appears.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::Server;

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9_mid_stream() {
    let configmaps = ketch_api::resource::lookup("configmaps").unwrap();
    let mut server = Server::start();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    for round in 0..3 {
        let c = server.client();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..16 {
            let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let name = format!("r{round}-w{w}-{i}");
                    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                        "data": {"payload": name.repeat(20)}});
                    match c.create(configmaps, Some("default"), &obj).await {
                        Ok(_) => {
                            acked.lock().unwrap().insert(name);
                        }
                        Err(_) => break, // the server died under us
                    }
                    i += 1;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        // Kill while writes are in flight.
        let (dir, port) = server.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        server = Server::start_in(dir, port);
        let list = server
            .client()
            .list(configmaps, Some("default"), &Default::default())
            .await
            .unwrap();
        let items = list["items"].as_array().unwrap();
        let stored: BTreeSet<String> = items
            .iter()
            .map(|o| {
                let name = o["metadata"]["name"].as_str().unwrap().to_string();
                assert_eq!(
                    o["data"]["payload"],
                    Value::String(name.repeat(20)),
                    "half-written object {name}"
                );
                name
            })
            .collect();
        let acked = acked.lock().unwrap();
        let lost: Vec<_> = acked.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            lost.iter().take(5).collect::<Vec<_>>()
        );
        assert!(
            acked.len() > 50 * (round as usize + 1),
            "too few writes to mean anything: {}",
            acked.len()
        );
    }
}
