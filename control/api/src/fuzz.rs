//! Fuzz targets over the decoders of this crate (issue 21): manifest text → documents →
//! admission of every kind, YAML alias expansion, quantities, label selectors and query
//! parameters. Each is a `#[test]` run by bolero: 1 s of random inputs under `cargo test`
//! (`BOLERO_RANDOM_TEST_TIME_MS` raises it), or libFuzzer under `cargo bolero test` (see
//! README.md). The properties: no panic; expansion within the YAML budget; and where a value
//! can be written back (an admitted object, a selector, a quantity, query parameters),
//! reading what was written gives it back. A crash found here becomes a unit test next to the
//! code it is in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ketch_fuzz::{Edits, build_text, check};
use serde_json::Value;

use crate::decode::{admit, admit_status, parse_documents};
use crate::params::{LogParams, QueryParams, ReadParams, from_query};
use crate::quantity::Quantity;
use crate::resource::{RESOURCES, by_kind};
use crate::selector::{LabelSelector, LabelSelectorRequirement, Selector};

/// Largest text a target builds. Far below the server's 3 MiB body cap, so each second of
/// the bounded run tries many inputs; the properties checked do not depend on size (the
/// YAML budget scales with the text, and the caps have unit tests of their own).
const TEXT_CAP: usize = 64 << 10;

/// One input must decode and admit in far less than this even in a debug build; a slower
/// one is a complexity bug (like libyaml's depth × tokens), not noise.
const SLOW_INPUT: Duration = Duration::from_secs(5);

/// Manifests as people write them, YAML and JSON, covering every kind admission serves.
const MANIFESTS: &[&str] = &[
    include_str!("../../../examples/hello/app.yaml"),
    include_str!("../../../examples/counter/app.yaml"),
    include_str!("../../../examples/mixed/app.yaml"),
    include_str!("../../../examples/plain-wasi/app.yaml"),
    include_str!("../../../tests/manifests/k8s-deployment-service.yaml"),
    r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default","labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"file:hello.wasm","env":[{"name":"A","value":"$(B)"}],"ports":[{"containerPort":8080}],"resources":{"requests":{"cpu":"250m","memory":"64Mi"},"limits":{"cpu":1,"memory":"1e9"}}}],"nodeSelector":{"zone":"a"},"tolerations":[{"key":"k","operator":"Exists","effect":"NoSchedule"}]},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
    r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","labels":{"kubernetes.io/hostname":"n1"}},"spec":{"taints":[{"key":"x","value":"y","effect":"NoExecute"}]},"status":{"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},"allocatable":{"cpu":"3500m","memory":"7.5Gi"},"conditions":[{"type":"Ready","status":"True"}]}}"#,
    r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"type":"Opaque","data":{"a":"YWJj"},"stringData":{"b":"xyz"}}"#,
    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","annotations":{"x":"y"}},"data":{"k":"v"},"binaryData":{"b":"AAE="}}"#,
    r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a","labels":{"pod-security.kubernetes.io/enforce":"restricted"}}}"#,
    r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"type":"NodePort","selector":{"app":"web"},"ports":[{"name":"http","port":80,"targetPort":8080,"nodePort":30080,"protocol":"TCP"}]}}"#,
    r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"e.1"},"involvedObject":{"kind":"Pod","name":"p","namespace":"default"},"reason":"Started","message":"m","type":"Normal","count":1}"#,
    r#"{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"r"},"spec":{"replicas":2,"selector":{"matchExpressions":[{"key":"app","operator":"In","values":["web"]}]},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"nginx:1"}]}}}}"#,
    r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l"},"spec":{"holderIdentity":"a","leaseDurationSeconds":15,"renewTime":"2026-01-01T00:00:00.000000Z"}}"#,
    r#"{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"web-1","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":true}}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}"#,
    r#"{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"i"},"spec":{"tls":[{"hosts":["a.example"],"secretName":"t"}],"rules":[{"host":"a.example","http":{"paths":[{"path":"/","pathType":"Prefix","backend":{"service":{"name":"web","port":{"number":80}}}}]}}]}}"#,
    r#"{"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"name":"b"},"spec":{"minAvailable":"50%","selector":{"matchLabels":{"app":"web"}}},"status":{"currentHealthy":1,"desiredHealthy":1,"disruptionsAllowed":0,"expectedPods":2}}"#,
    r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"r"},"rules":[{"apiGroups":[""],"resources":["pods","pods/log"],"verbs":["get","list","watch"]}]}"#,
    r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"b"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},"subjects":[{"kind":"User","name":"alice"},{"kind":"ServiceAccount","name":"d","namespace":"default"}]}"#,
    "a: &x {b: 1}\nc: *x\n---\nkind: List\nitems: [{kind: Pod}]\n",
];

/// Tokens of YAML, JSON and of the fields admission reads, spliced in by the edits.
const MANIFEST_DICT: &[&str] = &[
    "\n",
    "\n  ",
    ": ",
    "- ",
    "---\n",
    "&a ",
    "*a",
    "&b [*a, *a, *a]",
    "*b",
    "<<: *a\n",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "null",
    "~",
    "true",
    "1e999",
    "-1",
    "0x10",
    "9223372036854775808",
    "18446744073709551616",
    "\\u0000",
    "\\ud800",
    "!!binary ",
    "!!str ",
    "? ",
    "|\n  ",
    ">-\n",
    "%YAML 1.2\n",
    "kind: List\nitems:\n",
    "apiVersion: ",
    "kind: ",
    "metadata:",
    "name: ",
    "namespace: ",
    "labels:",
    "annotations:",
    "spec:",
    "status:",
    "containers:",
    "image: ",
    "resources:",
    "cpu: ",
    "memory: ",
    "replicas: ",
    "selector:",
    "matchLabels:",
    "port: ",
    "nodePort: ",
    "targetPort: ",
    "stringData:",
    "data:",
    "ketch.dev/max-concurrency: ",
    "ketch.dev/request-timeout: ",
    "ketch.dev/memory-limit: ",
    "\"\u{e9}\u{1f600}\"",
];

/// Counts what a decoded value holds in the units of `bounded_yaml`'s budget: a node, or a
/// byte of a string or key.
fn units(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len().max(1),
        Value::Array(items) => 1 + items.iter().map(units).sum::<usize>(),
        Value::Object(map) => {
            1 + map
                .iter()
                .map(|(k, v)| k.len().max(1) + units(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// Admits `doc` as `info`'s kind and checks what admission promises: an admitted object is
/// admitted again unchanged, and survives JSON encoding; errors render.
fn admit_and_check(info: &'static crate::ResourceInfo, doc: Value) {
    let status = doc.get("status").cloned();
    match admit(info, doc) {
        Ok(admitted) => {
            let again = admit(info, admitted.clone());
            assert_eq!(
                again.as_ref(),
                Ok(&admitted),
                "admitting an admitted {} changed it",
                info.kind
            );
            let text = serde_json::to_string(&admitted).expect("admitted objects encode");
            let back: Value = serde_json::from_str(&text).expect("admitted JSON decodes");
            assert_eq!(back, admitted, "an admitted {} survives JSON", info.kind);
        }
        Err(invalid) => {
            let _ = invalid.to_string();
            let _ = invalid.to_status();
        }
    }
    if let Some(status) = status
        && let Ok(admitted) = admit_status(info, status)
    {
        assert_eq!(
            admit_status(info, admitted.clone()),
            Ok(admitted),
            "admitting an admitted {} status changed it",
            info.kind
        );
    }
}

#[test]
fn fuzz_manifest_text_decodes_and_admits_without_panicking() {
    check!().with_type::<Edits>().for_each(|edits| {
        let text = build_text(MANIFESTS, MANIFEST_DICT, edits, TEXT_CAP);
        let started = Instant::now();
        if let Ok(docs) = parse_documents(&text) {
            // Without a known kind, admit as some kind anyway (a field of one kind's
            // manifest read as another's is what a wrong `kind:` does).
            let fallback = &RESOURCES[text.len() % RESOURCES.len()];
            for doc in docs {
                let info = match (doc.get("apiVersion"), doc.get("kind")) {
                    (Some(Value::String(v)), Some(Value::String(k))) => by_kind(v, k),
                    _ => None,
                }
                .unwrap_or(fallback);
                admit_and_check(info, doc);
            }
        }
        assert!(
            started.elapsed() < SLOW_INPUT,
            "{} bytes took {:?}",
            text.len(),
            started.elapsed()
        );
    });
}

#[test]
fn fuzz_yaml_aliases_expand_within_the_budget() {
    const ALIASES: &[&str] = &[
        "a: &a [x, y, z]\nb: [*a, *a, *a, *a]\nc: &c [*a, *a, *a, *a]\nd: [*c, *c, *c, *c]\n",
        "x: &s \"0123456789012345678901234567890123456789\"\ny: [*s, *s, *s, *s, *s, *s]\n",
        "base: &base\n  image: file:x.wasm\n  env: [{name: A, value: b}]\nspec:\n  <<: *base\n",
        "- &k key\n- {*k : v}\n",
    ];
    const DICT: &[&str] = &[
        "&a ",
        "*a",
        "&b ",
        "*b",
        "*c",
        "*s",
        "[",
        "]",
        "{",
        "}",
        ", ",
        ": ",
        "\n",
        "\n- ",
        "<<: ",
        "---\n",
        "- *a\n",
        "[*a, *a, *a, *a, *a, *a, *a, *a]",
    ];
    check!().with_type::<Edits>().for_each(|edits| {
        let text = build_text(ALIASES, DICT, edits, TEXT_CAP);
        // JSON input never expands; this target is about YAML.
        if text.trim_start().starts_with(['{', '[']) {
            return;
        }
        if let Ok(docs) = parse_documents(&text) {
            let used: usize = docs.iter().map(units).sum();
            let budget = text.len() * crate::bounded_yaml::EXPANSION_PER_BYTE
                + crate::bounded_yaml::EXPANSION_FLOOR;
            assert!(
                used <= budget,
                "{} bytes of YAML became {used} units (budget {budget})",
                text.len()
            );
        }
    });
}

/// A quantity built from parts, so its value is known without parsing it.
type QuantityParts = (bool, u64, u32, u8, u8);

const SUFFIXES: &[(&str, i32, u32)] = &[
    ("", 0, 0),
    ("n", -9, 0),
    ("u", -6, 0),
    ("m", -3, 0),
    ("k", 3, 0),
    ("M", 6, 0),
    ("G", 9, 0),
    ("T", 12, 0),
    ("P", 15, 0),
    ("E", 18, 0),
    ("Ki", 0, 10),
    ("Mi", 0, 20),
    ("Gi", 0, 30),
    ("Ti", 0, 40),
    ("Pi", 0, 50),
    ("Ei", 0, 60),
];

#[test]
fn fuzz_quantities_parse_without_panicking_and_admitted_ones_stay_readable() {
    const SEEDS: &[&str] = &[
        "250m",
        "1",
        "1.5Gi",
        "0.0001",
        "1e3",
        "5e-1",
        "-100m",
        "+2k",
        "1E",
        "100Ei",
        "1e400",
        "99999999999999999999999999999999999999999",
        "128Mi",
        ".5",
        "1.",
        "0",
        "-0",
    ];
    const DICT: &[&str] = &[
        "e",
        "E",
        "e-",
        "e+",
        ".",
        "-",
        "+",
        "9",
        "0",
        "m",
        "Ki",
        "Ei",
        "i",
        "99999999999",
        "0000000000",
        "1000",
        "e1000",
        "\u{1f600}",
        " ",
    ];
    check!().with_type::<Edits>().for_each(|edits| {
        let text = build_text(SEEDS, DICT, edits, 256);
        let q = Quantity::new(text.as_str());
        let _ = Quantity::parse(&text).map(|p| p.is_negative());
        let (millis, value) = (q.millis(), q.value());
        if q.check_non_negative().is_ok() {
            // What admission accepts every consumer can read (check_non_negative's promise).
            assert!(
                millis.is_ok() && value.is_ok(),
                "{text:?}: {millis:?} {value:?}"
            );
        }
        let _ = serde_json::from_str::<Quantity>(&text);
    });
}

#[test]
fn fuzz_quantities_written_from_parts_read_back_as_those_parts() {
    check!()
        .with_type::<QuantityParts>()
        .for_each(|&(negative, int, frac, frac_len, suffix)| {
            let frac_len = u32::from(frac_len % 10);
            let frac = if frac_len == 0 {
                0
            } else {
                u64::from(frac) % 10u64.pow(frac_len)
            };
            let (suffix, e10, e2) = SUFFIXES[usize::from(suffix) % SUFFIXES.len()];
            let text = format!(
                "{}{int}{}{suffix}",
                if negative { "-" } else { "" },
                if frac_len == 0 {
                    String::new()
                } else {
                    format!(".{frac:0width$}", width = frac_len as usize)
                }
            );
            let parsed = Quantity::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let mantissa = u128::from(int) * 10u128.pow(frac_len) + u128::from(frac);
            assert_eq!(parsed.mantissa, mantissa, "{text:?}");
            assert_eq!(parsed.exp10, e10 - frac_len as i32, "{text:?}");
            assert_eq!((parsed.exp2, parsed.negative), (e2, negative), "{text:?}");
            // The value in thousandths, exactly, when it fits: rounded up away from zero.
            let scaled = Quantity::new(text.as_str()).millis();
            let exact = i128::try_from(mantissa).ok().and_then(|m| {
                let m = m.checked_mul(1i128.checked_shl(e2)?)?;
                let e = e10 - frac_len as i32 + 3;
                if e >= 0 {
                    m.checked_mul(10i128.checked_pow(e as u32)?)
                } else {
                    let div = 10i128.checked_pow(e.unsigned_abs())?;
                    Some((m + div - 1) / div)
                }
            });
            match exact.and_then(|m| i64::try_from(m).ok()) {
                Some(m) => assert_eq!(scaled, Ok(if negative { -m } else { m }), "{text:?}"),
                None => assert!(scaled.is_err() || exact.is_none(), "{text:?}: {scaled:?}"),
            }
        });
}

const SELECTORS: &[&str] = &[
    "app=web",
    "app==web,tier!=db",
    "env in (prod,staging),!canary",
    "tier notin (fe, be),app",
    "example.com/role=x",
    "a.b/c-d_e=f.g",
    "",
];
const SELECTOR_DICT: &[&str] = &[
    "=",
    "==",
    "!=",
    "!",
    ",",
    " in ",
    " notin ",
    "(",
    ")",
    " ",
    "k8s.io/",
    "-",
    "_",
    ".",
    "a",
    "\u{e9}",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "/",
    ">",
    "<",
    "\t",
];

#[test]
fn fuzz_label_selectors_parse_and_print_back_to_the_same_selector() {
    check!()
        .with_type::<(Edits, Vec<(u8, u8)>)>()
        .for_each(|(edits, labels)| {
            let text = build_text(SELECTORS, SELECTOR_DICT, edits, 4096);
            let Ok(selector) = Selector::parse(&text) else {
                return;
            };
            let printed = selector.to_string();
            assert_eq!(
                Selector::parse(&printed).as_ref(),
                Ok(&selector),
                "{text:?} printed as {printed:?}"
            );
            let words = [
                "app",
                "web",
                "tier",
                "db",
                "1",
                "",
                "canary",
                "example.com/role",
            ];
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|&(k, v)| {
                    let word = |i: u8| words[usize::from(i) % words.len()].to_string();
                    (word(k), word(v))
                })
                .collect();
            let _ = selector.matches(&labels);
        });
}

#[test]
fn fuzz_label_selector_specs_convert_without_panicking() {
    check!()
        .with_type::<(Vec<(Edits, Edits)>, Vec<(Edits, u8, Vec<Edits>)>)>()
        .for_each(|(labels, expressions)| {
            let word = |e: &Edits| build_text(SELECTORS, SELECTOR_DICT, e, 300);
            let spec = LabelSelector {
                match_labels: labels.iter().map(|(k, v)| (word(k), word(v))).collect(),
                match_expressions: expressions
                    .iter()
                    .map(|(key, op, values)| LabelSelectorRequirement {
                        key: word(key),
                        operator: ["In", "NotIn", "Exists", "DoesNotExist", "Gt", ""]
                            [usize::from(*op) % 6]
                            .to_string(),
                        values: values.iter().map(word).collect(),
                    })
                    .collect(),
            };
            if let Ok(selector) = Selector::from_label_selector(&spec) {
                // The spec form converts to the query form and back.
                let printed = selector.to_string();
                assert_eq!(
                    Selector::parse(&printed).as_ref(),
                    Ok(&selector),
                    "{spec:?} printed as {printed:?}"
                );
            }
        });
}

#[test]
fn fuzz_query_parameters_parse_and_write_back() {
    const SEEDS: &[&str] = &[
        "labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3Dn1&limit=500&continue=abc",
        "watch=1&resourceVersion=12&timeoutSeconds=300&allowWatchBookmarks=true",
        "propagationPolicy=Foreground&dryRun=All",
        "container=c&follow=true&tailLines=10&timestamps=1",
        "watch=&limit=-1&timeoutSeconds=99999999999999999999",
    ];
    const DICT: &[&str] = &[
        "&",
        "=",
        "%",
        "%3D",
        "%ZZ",
        "+",
        "watch",
        "limit",
        "timeoutSeconds",
        "continue",
        "tailLines",
        "true",
        "false",
        "0",
        "-",
        "18446744073709551616",
        "%F0%9F",
        ";",
    ];
    check!().with_type::<Edits>().for_each(|edits| {
        let query = build_text(SEEDS, DICT, edits, 4096);
        // ReadParams and LogParams refuse nothing (their documented leniency).
        assert!(from_query::<ReadParams>(&query).is_ok(), "{query:?}");
        assert!(from_query::<LogParams>(&query).is_ok(), "{query:?}");
        if let Ok(params) = from_query::<QueryParams>(&query) {
            let written = serde_urlencoded::to_string(&params).expect("params encode");
            assert_eq!(
                from_query::<QueryParams>(&written).as_ref(),
                Ok(&params),
                "{query:?} written as {written:?}"
            );
        }
    });
}
