//! The REST API over raw HTTP: status codes, Status bodies, subresources, finalizers.

use serde_json::{Value, json};

use crate::support::Server;

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

async fn send(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = s
        .http()
        .request(method, format!("{}{path}", s.url))
        .bearer_auth(&s.token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_compare_and_set_and_errors_are_kubernetes_status_objects() {
    let s = Server::start();
    let path = "/api/v1/namespaces/default/configmaps";
    let (code, created) = send(&s, reqwest::Method::POST, path, Some(cm("a"))).await;
    assert_eq!(code, 201, "{created}");
    let rv: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        created["metadata"]["uid"].is_string()
            && created["metadata"]["creationTimestamp"].is_string()
    );

    let (code, status) = send(&s, reqwest::Method::POST, path, Some(cm("a"))).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (409, Some("AlreadyExists")),
        "{status}"
    );
    assert_eq!(status["kind"], "Status");

    let mut update = created.clone();
    update["data"]["k"] = json!("v2");
    let (code, updated) = send(
        &s,
        reqwest::Method::PUT,
        &format!("{path}/a"),
        Some(update.clone()),
    )
    .await;
    assert_eq!(code, 200, "{updated}");
    let rv2: u64 = updated["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv);
    // Writing again with the old resourceVersion is stale.
    let (code, status) = send(&s, reqwest::Method::PUT, &format!("{path}/a"), Some(update)).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (409, Some("Conflict")),
        "{status}"
    );

    let (code, status) = send(&s, reqwest::Method::GET, &format!("{path}/missing"), None).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (404, Some("NotFound")),
        "{status}"
    );
    assert_eq!(status["message"], "configmaps \"missing\" not found");

    let mut invalid = cm("b");
    invalid["metadata"]["labels"] = json!({"bad key!": "x"});
    let (code, status) = send(&s, reqwest::Method::POST, path, Some(invalid)).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (422, Some("Invalid")),
        "{status}"
    );
    assert!(
        status["details"]["causes"][0]["field"]
            .as_str()
            .unwrap()
            .starts_with("metadata.labels"),
        "{status}"
    );

    let (code, _) = send(
        &s,
        reqwest::Method::GET,
        "/apis/apps/v1/namespaces/default/widgets",
        None,
    )
    .await;
    assert_eq!(code, 404);
    let (code, status) = send(
        &s,
        reqwest::Method::POST,
        "/api/v1/namespaces/nowhere/configmaps",
        Some(cm("c")),
    )
    .await;
    assert_eq!(code, 404, "{status}");
    // A terminating namespace (held by a finalizer) takes no new objects.
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "closing", "finalizers": ["example.com/hold"]}});
    let (code, created) = send(&s, reqwest::Method::POST, "/api/v1/namespaces", Some(ns)).await;
    assert_eq!(code, 201, "{created}");
    let (code, _) = send(
        &s,
        reqwest::Method::DELETE,
        "/api/v1/namespaces/closing",
        None,
    )
    .await;
    assert_eq!(code, 200);
    let (code, status) = send(
        &s,
        reqwest::Method::POST,
        "/api/v1/namespaces/closing/configmaps",
        Some(cm("c")),
    )
    .await;
    assert_eq!(code, 403, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("because it is being terminated"),
        "{status}"
    );

    // Merge patch.
    let resp = s
        .http()
        .patch(format!("{}{path}/a", s.url))
        .bearer_auth(&s.token)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"data":{"extra":"1"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let patched: Value = resp.json().await.unwrap();
    assert_eq!(patched["data"], json!({"k": "v2", "extra": "1"}));
    // The store merges and admits the patch: a bad value is refused by field, and a patch
    // cannot rename the object.
    // A patch is logged as it came, so one nested too deep for the log to read back is
    // refused before it gets there.
    let deep = format!(
        r#"{{"metadata":{{"annotations":{}1{}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    for (body, code, needle) in [
        (r#"{"data":{"extra":1}}"#, 422, "data.extra"),
        (
            r#"{"metadata":{"name":"b"}}"#,
            400,
            "does not match the name on the URL",
        ),
        (deep.as_str(), 400, "nested deeper than 64 levels"),
    ] {
        let resp = s
            .http()
            .patch(format!("{}{path}/a", s.url))
            .bearer_auth(&s.token)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), code, "{body}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(needle), "{body}: {text}");
    }
    let resp = s
        .http()
        .patch(format!("{}{path}/a", s.url))
        .bearer_auth(&s.token)
        .header("content-type", "application/strategic-merge-patch+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_the_token_are_unauthorized_and_oversized_bodies_rejected() {
    let s = Server::start();
    let url = format!("{}/api/v1/namespaces/default/configmaps", s.url);
    let resp = s.http().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["reason"], "Unauthorized");
    let resp = s
        .http()
        .get(&url)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // YAML when asked for.
    let resp = s
        .http()
        .get(&url)
        .bearer_auth(&s.token)
        .header("accept", "application/yaml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/yaml");
    assert!(
        resp.text()
            .await
            .unwrap()
            .starts_with("apiVersion: v1\nkind: ConfigMapList")
    );
    // YAML request bodies are accepted too.
    let resp = s
        .http()
        .post(&url)
        .bearer_auth(&s.token)
        .header("content-type", "application/yaml")
        .body("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // Health is public; the API and metrics need no more than the token.
    assert_eq!(
        s.http()
            .get(format!("{}/healthz", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let mut big = cm("big");
    big["data"]["k"] = json!("x".repeat(4 << 20));
    // The server answers 413 once it has read the limit and closes the connection without
    // reading the rest, so a client still writing may see a broken pipe instead of the
    // answer (a race a loaded machine loses now and then): ask again until it gets one.
    let mut tries = 0;
    let resp = loop {
        tries += 1;
        match s
            .http()
            .post(&url)
            .bearer_auth(&s.token)
            .json(&big)
            .send()
            .await
        {
            Ok(resp) => break resp,
            Err(e) if e.is_request() && tries < 5 => continue,
            Err(e) => panic!("no answer to an oversized body after {tries} tries: {e}"),
        }
    };
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["reason"], "RequestEntityTooLarge");

    let resp = s
        .http()
        .post(&url)
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body("{\"apiVersion\": \"v1\",\n \"kind\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("line 2"),
        "{body}"
    );
    // The server is still healthy and lost nothing.
    let resp = s
        .http()
        .get(format!("{}/readyz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_is_written_only_through_the_subresource_and_spec_changes_bump_generation() {
    // An Ingress: it has a status subresource and no controller writing it, so the test's
    // compare-and-set writes race nobody.
    let s = Server::start();
    let path = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";
    let backend = json!({"service": {"name": "web", "port": {"number": 80}}});
    let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
        "spec": {"defaultBackend": backend},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.9.9.9"}]}}});
    let (code, created) = send(&s, reqwest::Method::POST, path, Some(ing)).await;
    assert_eq!(code, 201, "{created}");
    assert!(
        created
            .get("status")
            .is_none_or(|st| st.get("loadBalancer").is_none()),
        "status set on create: {created}"
    );
    assert_eq!(created["metadata"]["generation"], 1);

    let mut with_status = created.clone();
    with_status["status"] = json!({"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}});
    let (code, after) = send(
        &s,
        reqwest::Method::PUT,
        &format!("{path}/web/status"),
        Some(with_status),
    )
    .await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(
        after["status"]["loadBalancer"]["ingress"][0]["ip"],
        "127.0.0.1"
    );
    assert_eq!(after["metadata"]["generation"], 1);

    let mut spec_change = after.clone();
    spec_change["spec"]["defaultBackend"]["service"]["name"] = json!("web2");
    spec_change["status"] = json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.42"}]}});
    let (code, after2) = send(
        &s,
        reqwest::Method::PUT,
        &format!("{path}/web"),
        Some(spec_change),
    )
    .await;
    assert_eq!(code, 200, "{after2}");
    assert_eq!(after2["metadata"]["generation"], 2);
    assert_eq!(
        after2["status"]["loadBalancer"]["ingress"][0]["ip"], "127.0.0.1",
        "main-resource PUT must not change status"
    );

    // A merge patch through /status (what a kubelet sends) is merged into the stored object
    // by the store: only the status changes, a stale resourceVersion is a conflict, and the
    // merged status is admitted like any write (422 naming the field).
    let status_patch = |body: Value| {
        s.http()
            .patch(format!("{}{path}/web/status", s.url))
            .bearer_auth(&s.token)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
    };
    let lb = json!({"ingress": [{"ip": "10.1.1.1", "hostname": "web.example"}]});
    let resp =
        status_patch(json!({"spec": {"defaultBackend": null}, "status": {"loadBalancer": lb}}))
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let patched: Value = resp.json().await.unwrap();
    assert_eq!(patched["status"]["loadBalancer"], lb);
    assert_eq!(
        patched["spec"], after2["spec"],
        "a /status patch changed the spec"
    );
    assert_eq!(patched["metadata"]["generation"], 2);
    let stale = after2["metadata"]["resourceVersion"].clone();
    let resp = status_patch(json!({"metadata": {"resourceVersion": stale}, "status": {}}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let resp = status_patch(json!({"status": {"loadBalancer": {"bogus": 1}}}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let invalid: Value = resp.json().await.unwrap();
    assert_eq!(
        invalid["details"]["causes"][0]["field"], "status.loadBalancer.bogus",
        "{invalid}"
    );
    let (_, unchanged) = send(&s, reqwest::Method::GET, &format!("{path}/web"), None).await;
    assert_eq!(unchanged["status"]["loadBalancer"], lb);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_waits_for_finalizers_and_completes_when_they_are_removed() {
    let s = Server::start();
    let path = "/api/v1/namespaces/default/configmaps";
    let mut obj = cm("held");
    obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let (code, _) = send(&s, reqwest::Method::POST, path, Some(obj)).await;
    assert_eq!(code, 201);
    let (code, marked) = send(&s, reqwest::Method::DELETE, &format!("{path}/held"), None).await;
    assert_eq!(code, 200);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    let (code, still) = send(&s, reqwest::Method::GET, &format!("{path}/held"), None).await;
    assert_eq!(code, 200, "{still}");
    let mut release = still.clone();
    release["metadata"]["finalizers"] = json!([]);
    let (code, _) = send(
        &s,
        reqwest::Method::PUT,
        &format!("{path}/held"),
        Some(release),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = send(&s, reqwest::Method::GET, &format!("{path}/held"), None).await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_selectors_metrics_and_discovery_answer() {
    let s = Server::start();
    let c = s.client();
    let pods = ketch_api::resource::lookup("pods").unwrap();
    for (name, node) in [("a", "n1"), ("b", "n2"), ("c", "n1")] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "x", "n": node}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "file:./x.wasm"}]}});
        c.create(pods, Some("default"), &pod).await.unwrap();
    }
    let params = ketch_client::ListParams {
        field_selector: Some("spec.nodeName=n1".into()),
        ..Default::default()
    };
    let list = c.list(pods, Some("default"), &params).await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(list["kind"], "PodList");
    let params = ketch_client::ListParams {
        label_selector: Some("n notin (n1)".into()),
        ..Default::default()
    };
    let list = c.list(pods, None, &params).await.unwrap();
    assert_eq!(list["items"][0]["metadata"]["name"], "b");
    let bad = ketch_client::ListParams {
        field_selector: Some("spec.image=x".into()),
        ..Default::default()
    };
    assert_eq!(
        c.list(pods, None, &bad).await.unwrap_err().code(),
        Some(400)
    );

    let anonymous = s
        .http()
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(anonymous, 401, "metrics need a credential");
    let metrics = s.metrics().await;
    for needle in [
        "ketch_apiserver_requests_total",
        "ketch_apiserver_request_duration_seconds",
        "ketch_raft_term",
        "ketch_store_size_bytes",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from /metrics:\n{metrics}"
        );
    }
    let disco = c.get_path("/apis/apps/v1").await.unwrap();
    assert!(
        disco["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "deployments")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_is_bound_once_through_its_binding_subresource() {
    // No agent, so no node and no scheduler binding: the test is the only binder.
    let s = Server::start_with(&["--no-agent"]);
    let pods = "/api/v1/namespaces/default/pods";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "file:/x.wasm"}]}});
    let (code, created) = send(&s, reqwest::Method::POST, pods, Some(pod)).await;
    assert_eq!(code, 201, "{created}");
    let uid = created["metadata"]["uid"].as_str().unwrap();
    let binding = |uid: &str, node: &str| {
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    };
    let path = format!("{pods}/p/binding");

    let (code, status) = send(
        &s,
        reqwest::Method::POST,
        &path,
        Some(binding("other", "n1")),
    )
    .await;
    assert_eq!(code, 409, "a stale uid must not bind: {status}");
    let (code, status) = send(
        &s,
        reqwest::Method::POST,
        &path,
        Some(binding(uid, "Not_A_Node")),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains("target.name"),
        "{status}"
    );

    let (code, status) = send(&s, reqwest::Method::POST, &path, Some(binding(uid, "n1"))).await;
    assert_eq!(
        (code, status["status"].as_str()),
        (201, Some("Success")),
        "{status}"
    );
    let (_, bound) = send(&s, reqwest::Method::GET, &format!("{pods}/p"), None).await;
    assert_eq!(bound["spec"]["nodeName"], "n1");
    let scheduled = bound["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap();
    assert_eq!(scheduled["status"], "True");

    let (code, status) = send(&s, reqwest::Method::POST, &path, Some(binding(uid, "n2"))).await;
    assert_eq!(code, 409, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("already assigned to node \"n1\""),
        "{status}"
    );
}

#[test]
fn events_expire_after_the_event_ttl() {
    let s = Server::start_with(&["--no-agent", "--event-ttl", "2s"]);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let f = crate::support::write_file(
        s.dir.path(),
        "event.yaml",
        &format!(
            "apiVersion: v1\nkind: Event\nmetadata:\n  name: seen-once\n  namespace: default\ninvolvedObject:\n  kind: Pod\n  name: p\n  namespace: default\nreason: Test\nmessage: once\ntype: Normal\nlastTimestamp: \"{now}\"\n"
        ),
    );
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    assert!(s.ok(&["get", "events", "-o", "name"]).contains("seen-once"));
    crate::support::eventually(20, "the Event expired", || {
        (!s.ok(&["get", "events", "-o", "name"]).contains("seen-once")).then_some(())
    });
}

/// POSTs `obj` to `url` (a path's full URL) with the admin token; the status code.
async fn post(s: &Server, url: &str, obj: &Value) -> u16 {
    let resp = s
        .http()
        .post(url)
        .bearer_auth(&s.token)
        .json(obj)
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_with_limit_and_continue_and_a_stale_token_is_410() {
    let s = Server::start_with(&["--no-agent"]);
    let base = format!("{}/api/v1/namespaces/default/configmaps", s.url);
    for i in 0..5 {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("page-{i}"), "labels": {"set": "paged"}}});
        assert_eq!(post(&s, &base, &cm).await, 201);
    }
    let get = |query: String| {
        let (http, token, base) = (s.http(), s.token.clone(), base.clone());
        async move {
            let resp = http
                .get(format!("{base}?{query}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let code = resp.status().as_u16();
            (code, resp.json::<Value>().await.unwrap())
        }
    };
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Unfiltered (the spliced path) and with a selector (the parsed one) page alike.
    for selector in ["", "&labelSelector=set%3Dpaged"] {
        let mut seen = Vec::new();
        let mut query = format!("limit=2{selector}");
        let mut pages = 0;
        let mut revisions = std::collections::BTreeSet::new();
        let rv = loop {
            let (code, page) = get(query.clone()).await;
            assert_eq!(code, 200, "{page}");
            pages += 1;
            revisions.insert(page["metadata"]["resourceVersion"].to_string());
            // A write elsewhere (another namespace) does not make the token stale.
            let other = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": format!("elsewhere-{pages}{}", selector.len())}});
            let namespaces = format!("{}/api/v1/namespaces", s.url);
            assert_eq!(post(&s, &namespaces, &other).await, 201);
            assert!(names(&page).len() <= 2, "{page}");
            seen.extend(names(&page));
            match page["metadata"]["continue"].as_str() {
                Some(token) => {
                    assert!(page["metadata"]["remainingItemCount"].as_u64().unwrap() > 0);
                    query = format!("limit=2{selector}&continue={token}");
                }
                None => break page["metadata"]["resourceVersion"].clone(),
            }
        };
        assert_eq!(pages, 3, "{selector}");
        assert_eq!(
            revisions.len(),
            1,
            "every page has the first page's version"
        );
        assert!(rv.is_string());
        let want: Vec<String> = (0..5).map(|i| format!("page-{i}")).collect();
        assert_eq!(seen, want, "{selector}");
    }
    // A change under the prefix between pages makes the token too old.
    let (_, first) = get("limit=2".into()).await;
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}});
    assert_eq!(post(&s, &base, &cm).await, 201);
    let (code, body) = get(format!("limit=2&continue={token}")).await;
    assert_eq!(code, 410, "{body}");
    let (code, _) = get("limit=2&continue=garbage".into()).await;
    assert_eq!(code, 400);
}
