//! `ketch describe KIND NAME`: an object's header fields, its spec and status as YAML, and
//! the Events about it.

use clap::Args;
use ketch_api::resource::{ResourceInfo, lookup};
use ketch_client::ListParams;
use serde_json::Value;

use super::shared::{Connection, Namespace, client, resolve_kind};
use crate::printer;

#[derive(Args, Debug)]
pub struct DescribeArgs {
    kind: String,
    name: String,
    #[command(flatten)]
    ns: Namespace,
}

pub async fn run(conn: &Connection, args: DescribeArgs) -> anyhow::Result<()> {
    let DescribeArgs {
        kind,
        name,
        ns: namespace,
    } = args;
    let info = resolve_kind(&kind)?;
    let client = client(conn).await?;
    let ns = info.namespaced.then(|| namespace.or_default());
    let obj = client.get(info, ns, &name).await?;
    print!("{}", describe_text(info, &obj));
    let events_info = lookup("events").expect("events are registered");
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut selector = format!(
        "involvedObject.name={name},involvedObject.kind={}",
        info.kind
    );
    if !uid.is_empty() {
        selector.push_str(&format!(",involvedObject.uid={uid}"));
    }
    let params = ListParams {
        label_selector: None,
        field_selector: Some(selector),
    };
    let events = client
        .list(events_info, Some(ns.unwrap_or("default")), &params)
        .await?;
    let items = events
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        println!("Events:  <none>");
    } else {
        println!("Events:");
        let now = chrono::Utc::now();
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|e| {
                let r = printer::row(events_info, e, false, false, now);
                // LAST SEEN, TYPE, REASON, (object omitted: it is this one), MESSAGE
                vec![r[1].clone(), r[2].clone(), r[0].clone(), r[4].clone()]
            })
            .collect();
        let table = printer::render(&["TYPE", "REASON", "AGE", "MESSAGE"], &rows);
        for line in table.lines() {
            println!("  {line}");
        }
    }
    Ok(())
}

/// Header lines like kubectl's, then the spec and status as YAML.
fn describe_text(info: &ResourceInfo, obj: &Value) -> String {
    let s = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let map = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_object)
            .map(|m| {
                // kubectl leaves its apply record out: it repeats the whole manifest.
                m.iter()
                    .filter(|(k, _)| k.as_str() != crate::manifest::LAST_APPLIED)
                    .collect::<Vec<_>>()
            })
            .filter(|m| !m.is_empty())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("\n                 ")
            })
            .unwrap_or_else(|| "<none>".into())
    };
    let mut out = String::new();
    out.push_str(&format!("Name:            {}\n", s("/metadata/name")));
    if info.namespaced {
        out.push_str(&format!("Namespace:       {}\n", s("/metadata/namespace")));
    }
    out.push_str(&format!(
        "Kind:            {} ({})\n",
        info.kind,
        info.api_version()
    ));
    out.push_str(&format!("Labels:          {}\n", map("/metadata/labels")));
    out.push_str(&format!(
        "Annotations:     {}\n",
        map("/metadata/annotations")
    ));
    out.push_str(&format!("UID:             {}\n", s("/metadata/uid")));
    out.push_str(&format!(
        "Created:         {}\n",
        s("/metadata/creationTimestamp")
    ));
    out.push_str(&format!(
        "ResourceVersion: {}\n",
        s("/metadata/resourceVersion")
    ));
    if let Some(g) = obj.pointer("/metadata/generation") {
        out.push_str(&format!("Generation:      {g}\n"));
    }
    if info.kind == "Node" {
        // kubectl's one-line summary; the whole list is in the spec below.
        let taints: Vec<String> = obj
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|t| {
                let key = t["key"].as_str().unwrap_or_default();
                let effect = t["effect"].as_str().unwrap_or_default();
                match t["value"].as_str() {
                    Some(v) => format!("{key}={v}:{effect}"),
                    None => format!("{key}:{effect}"),
                }
            })
            .collect();
        let taints = if taints.is_empty() {
            "<none>".to_string()
        } else {
            taints.join("\n                 ")
        };
        out.push_str(&format!("Taints:          {taints}\n"));
        let cordoned = obj.pointer("/spec/unschedulable") == Some(&Value::Bool(true));
        out.push_str(&format!("Unschedulable:   {cordoned}\n"));
    }
    let deleting = s("/metadata/deletionTimestamp");
    if !deleting.is_empty() {
        out.push_str(&format!("Terminating:     since {deleting}\n"));
    }
    if info.kind == "Secret" {
        out.push_str(&secret_data(obj));
    }
    let mut rest = obj.clone();
    if let Some(o) = rest.as_object_mut() {
        for k in ["apiVersion", "kind", "metadata"] {
            o.remove(k);
        }
        if info.kind == "Secret" {
            // Shown above as sizes; the values are never printed.
            for k in ["type", "data", "stringData"] {
                o.remove(k);
            }
        }
        for (k, v) in o.iter() {
            let title = format!("{}{}", k[..1].to_uppercase(), &k[1..]);
            out.push_str(&format!("{title}:\n"));
            let yaml = serde_yaml::to_string(v).unwrap_or_default();
            for line in yaml.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out
}

/// A Secret's type and each key's size, as kubectl prints them (`password:  7 bytes`):
/// never a value.
fn secret_data(obj: &Value) -> String {
    use base64::Engine as _;
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("Opaque");
    let mut out = format!("\nType:  {kind}\n\nData\n====\n");
    let data = obj.get("data").and_then(Value::as_object);
    let width = data
        .into_iter()
        .flat_map(|d| d.keys())
        .map(String::len)
        .max()
        .unwrap_or(0);
    for (k, v) in data.into_iter().flatten() {
        let size = v
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map_or_else(
                || "<not base64>".to_string(),
                |b| format!("{} bytes", b.len()),
            );
        out.push_str(&format!("{:<w$}  {size}\n", format!("{k}:"), w = width + 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describing_a_secret_shows_sizes_and_never_values() {
        let info = ketch_api::resource::lookup("secrets").unwrap();
        let record = r#"{"data":{"password":"aHVudGVyMg=="}}"#;
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "default",
                "annotations": {(crate::manifest::LAST_APPLIED): record, "team": "x"}},
            "type": "Opaque", "immutable": true,
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4=", "empty": ""}});
        let text = describe_text(info, &secret);
        for value in ["aHVudGVyMg", "hunter2", "YWRtaW4", "admin"] {
            assert!(!text.contains(value), "{value} in:\n{text}");
        }
        assert!(text.contains("Type:  Opaque\n"), "{text}");
        assert!(text.contains("\nData\n====\n"), "{text}");
        assert!(text.contains("password:  7 bytes\n"), "{text}");
        assert!(text.contains("user:      5 bytes\n"), "{text}");
        assert!(text.contains("empty:     0 bytes\n"), "{text}");
        assert!(text.contains("Annotations:     team=x\n"), "{text}");
        assert!(text.contains("Immutable:\n  true"), "{text}");
    }
}
