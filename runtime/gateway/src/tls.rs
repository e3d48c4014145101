//! Ingress TLS termination: the certificates the gateway's TLS listener presents, chosen by
//! the handshake's SNI host.
//!
//! [`build`] (pure) turns the Ingresses' `spec.tls` entries and the `kubernetes.io/tls`
//! Secrets they name into a [`CertMap`]: host → certificate, exact names first, then
//! `*.example.com` for one more label (`a.example.com`, not `a.b.example.com` or
//! `example.com`), as Kubernetes ingress controllers match. A Secret that is missing, of
//! another type, lacks `tls.crt` or `tls.key`, holds unparsable PEM, or whose key does not
//! match its certificate becomes a [`TlsProblem`] and its hosts get no certificate; every
//! other host keeps working. When two Ingresses name the same host, the older one (by
//! creation time, then namespace/name) keeps it, as ingress-nginx does.
//!
//! **No default certificate.** A handshake whose SNI names no configured host, or that sends
//! no SNI (a client dialing an IP address), is refused (rustls answers with a fatal alert).
//! A self-signed fallback (ingress-nginx's "fake certificate") would only move the failure
//! into the client's certificate check and hand out a certificate for names the operator
//! never configured; refusing says plainly that this host has no TLS here. Plain HTTP stays
//! on the gateway's main listener.
//!
//! The SNI host only picks the certificate: requests are routed by their Host (or HTTP/2
//! `:authority`) exactly as on the plain listener, as ingress-nginx does, so a client that
//! asks for one host's certificate and then names another host reaches that other host's
//! route (which the plain listener serves to anyone anyway).
//!
//! [`CertResolver`] holds the current map behind a lock and swaps it whole when the
//! reflector rebuilds it: new handshakes see the new certificates, connections already
//! established keep theirs, and nothing is dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use ketch_api::core::Secret;
use ketch_api::networking::Ingress;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The Secret type an Ingress TLS entry must name.
pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";
/// The certificate chain's key in such a Secret (PEM).
pub const TLS_CERT_KEY: &str = "tls.crt";
/// The private key's key in such a Secret (PEM).
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";

/// Host → certificate, as the TLS listener looks it up.
#[derive(Debug, Default, Clone)]
pub struct CertMap {
    /// Exact host names (lowercase).
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com`: the host minus its first label.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertMap {
    /// The certificate for an SNI host name: its exact entry, else the wildcard one level up.
    pub fn lookup(&self, host: &str) -> Option<&Arc<CertifiedKey>> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(c) = self.exact.get(&host) {
            return Some(c);
        }
        let (_, parent) = host.split_once('.')?;
        self.wildcard.get(parent)
    }

    /// The hosts with a certificate (wildcards as `*.parent`), sorted.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .exact
            .keys()
            .cloned()
            .chain(self.wildcard.keys().map(|p| format!("*.{p}")))
            .collect();
        hosts.sort();
        hosts
    }

    /// Claims `host` for `cert` unless an earlier Ingress has it; whether it was free.
    fn claim(&mut self, host: &str, cert: &Arc<CertifiedKey>) -> bool {
        let host = host.to_ascii_lowercase();
        let (map, key) = match host.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent.to_string()),
            None => (&mut self.exact, host),
        };
        match map.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(cert.clone());
                true
            }
        }
    }
}

/// An Ingress TLS entry whose hosts got no certificate, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TlsProblem {
    /// The Ingress's namespace (the Secret's too).
    pub namespace: String,
    /// The Ingress.
    pub ingress: String,
    /// The Ingress's uid, for an Event about it.
    pub uid: String,
    /// What is wrong, naming the entry, the Secret and the hosts left without TLS.
    pub message: String,
}

/// Builds the certificate map from every Ingress and the TLS Secrets by (namespace, name).
/// `provider` parses the private keys (it must be the listener's).
pub fn build(
    ingresses: &[&Ingress],
    secrets: &BTreeMap<(String, String), Secret>,
    provider: &CryptoProvider,
) -> (CertMap, Vec<TlsProblem>) {
    let mut order: Vec<&Ingress> = ingresses.to_vec();
    order.sort_by(|a, b| {
        let key = |i: &Ingress| {
            (
                i.metadata.creation_timestamp.clone().unwrap_or_default(),
                i.metadata.namespace().to_string(),
                i.metadata.name().to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut map = CertMap::default();
    let mut problems = Vec::new();
    // A Secret named by several entries is parsed once.
    let mut parsed: HashMap<(String, String), Result<Arc<CertifiedKey>, String>> = HashMap::new();
    for ing in order {
        let Some(spec) = &ing.spec else { continue };
        let namespace = ing.metadata.namespace().to_string();
        let name = ing.metadata.name().to_string();
        let problem = |message: String| TlsProblem {
            namespace: namespace.clone(),
            ingress: name.clone(),
            uid: ing.metadata.uid.clone().unwrap_or_default(),
            message,
        };
        for (i, tls) in spec.tls.iter().enumerate() {
            // Admission refuses entries without a Secret or hosts; skip them all the same.
            let Some(secret) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                continue;
            };
            let key = (namespace.clone(), secret.to_string());
            let cert = parsed
                .entry(key.clone())
                .or_insert_with(|| match secrets.get(&key) {
                    None => Err(format!(
                        "Secret {secret:?} not found (or not of type {SECRET_TYPE_TLS})"
                    )),
                    Some(s) => certified_key(s, provider),
                })
                .clone();
            match cert {
                Ok(cert) => {
                    for host in &tls.hosts {
                        if !map.claim(host, &cert) {
                            problems.push(problem(format!(
                                "spec.tls[{i}]: host {host:?} already has a certificate from \
                                 an older Ingress; Secret {secret:?} is not used for it"
                            )));
                        }
                    }
                }
                Err(reason) => problems.push(problem(format!(
                    "spec.tls[{i}]: {reason}; no TLS for {}",
                    tls.hosts.join(", ")
                ))),
            }
        }
    }
    (map, problems)
}

/// A Secret's `tls.crt` chain and `tls.key`, checked to belong together.
fn certified_key(secret: &Secret, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let name = secret.metadata.name();
    let ty = secret.type_.as_deref().unwrap_or("Opaque");
    if ty != SECRET_TYPE_TLS {
        return Err(format!(
            "Secret {name:?} is of type {ty:?}, not {SECRET_TYPE_TLS}"
        ));
    }
    let field = |key: &str| -> Result<Vec<u8>, String> {
        let value = secret
            .data
            .get(key)
            .ok_or_else(|| format!("Secret {name:?} has no {key:?}"))?;
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| format!("Secret {name:?}: {key:?} is not valid base64"))
    };
    let crt = field(TLS_CERT_KEY)?;
    let key = field(TLS_PRIVATE_KEY_KEY)?;
    let chain = CertificateDer::pem_slice_iter(&crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("Secret {name:?}: {TLS_CERT_KEY:?}: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "Secret {name:?}: {TLS_CERT_KEY:?} holds no PEM CERTIFICATE block"
        ));
    }
    // The key's contents never go into a message: only what kind of problem it has.
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| format!("Secret {name:?}: {TLS_PRIVATE_KEY_KEY:?}: {e}"))?;
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| format!("Secret {name:?}: {e}"))
}

/// The TLS listener's certificate resolver: the current [`CertMap`], swapped whole.
#[derive(Debug, Default)]
pub struct CertResolver {
    map: RwLock<Arc<CertMap>>,
}

impl CertResolver {
    /// Swaps in `map`: the next handshakes use it.
    pub fn replace(&self, map: CertMap) {
        *self.map.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
    }

    /// The current map.
    pub fn current(&self) -> Arc<CertMap> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = hello.server_name()?;
        let found = self.current().lookup(host).cloned();
        if found.is_none() {
            tracing::debug!(host, "gateway TLS: no certificate for this SNI host");
        }
        found
    }
}

/// The crypto provider of the TLS listener (ring, as everywhere in ketch: aws-lc-rs needs
/// cmake and minutes of build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS listener's server configuration: certificates from `resolver`, ALPN `h2` then
/// `http/1.1` (the connection is served by hyper's auto builder either way).
///
/// # Errors
/// When the provider supports no safe protocol version (never with ring).
pub fn server_config(
    resolver: Arc<CertResolver>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `hosts` and its key, PEM.
    fn self_signed(hosts: &[&str]) -> (String, String) {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(hosts).expect("certificate");
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn secret(name: &str, ty: &str, data: &[(&str, &str)]) -> Secret {
        let data: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    base64::engine::general_purpose::STANDARD.encode(v).into(),
                )
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "type": ty,
            "data": data,
        }))
        .expect("secret")
    }

    fn ingress(name: &str, created: &str, tls: serde_json::Value) -> Ingress {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "creationTimestamp": created},
            "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
                     "tls": tls},
        }))
        .expect("ingress")
    }

    fn secrets(list: Vec<Secret>) -> BTreeMap<(String, String), Secret> {
        list.into_iter()
            .map(|s| {
                (
                    (
                        s.metadata.namespace().to_string(),
                        s.metadata.name().to_string(),
                    ),
                    s,
                )
            })
            .collect()
    }

    #[test]
    fn exact_hosts_and_one_label_wildcards_get_their_certificates() {
        let (crt, key) = self_signed(&["a.example.com"]);
        let (wcrt, wkey) = self_signed(&["*.example.com"]);
        let ing = ingress(
            "web",
            "2026-01-01T00:00:00Z",
            serde_json::json!([
                {"hosts": ["a.example.com"], "secretName": "a"},
                {"hosts": ["*.example.com"], "secretName": "w"},
            ]),
        );
        let s = secrets(vec![
            secret(
                "a",
                SECRET_TYPE_TLS,
                &[(TLS_CERT_KEY, &crt), (TLS_PRIVATE_KEY_KEY, &key)],
            ),
            secret(
                "w",
                SECRET_TYPE_TLS,
                &[(TLS_CERT_KEY, &wcrt), (TLS_PRIVATE_KEY_KEY, &wkey)],
            ),
        ]);
        let (map, problems) = build(&[&ing], &s, &provider());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(map.hosts(), vec!["*.example.com", "a.example.com"]);
        let a = map.lookup("A.Example.com").expect("exact");
        let b = map.lookup("b.example.com").expect("wildcard");
        assert!(!Arc::ptr_eq(a, b), "the exact host has its own certificate");
        assert!(
            map.lookup("example.com").is_none(),
            "no apex from a wildcard"
        );
        assert!(map.lookup("x.b.example.com").is_none(), "one label only");
        assert!(map.lookup("other.test").is_none());
    }

    #[test]
    fn a_bad_secret_leaves_only_its_hosts_without_a_certificate() {
        let (crt, key) = self_signed(&["good.test"]);
        let (_, other_key) = self_signed(&["other.test"]);
        let ing = ingress(
            "web",
            "2026-01-01T00:00:00Z",
            serde_json::json!([
                {"hosts": ["good.test"], "secretName": "good"},
                {"hosts": ["nokey.test"], "secretName": "nokey"},
                {"hosts": ["garbage.test"], "secretName": "garbage"},
                {"hosts": ["mismatch.test"], "secretName": "mismatch"},
                {"hosts": ["opaque.test"], "secretName": "opaque"},
                {"hosts": ["missing.test"], "secretName": "missing"},
            ]),
        );
        let s = secrets(vec![
            secret(
                "good",
                SECRET_TYPE_TLS,
                &[(TLS_CERT_KEY, &crt), (TLS_PRIVATE_KEY_KEY, &key)],
            ),
            secret("nokey", SECRET_TYPE_TLS, &[(TLS_CERT_KEY, &crt)]),
            secret(
                "garbage",
                SECRET_TYPE_TLS,
                &[(TLS_CERT_KEY, "not pem"), (TLS_PRIVATE_KEY_KEY, &key)],
            ),
            secret(
                "mismatch",
                SECRET_TYPE_TLS,
                &[(TLS_CERT_KEY, &crt), (TLS_PRIVATE_KEY_KEY, &other_key)],
            ),
            secret(
                "opaque",
                "Opaque",
                &[(TLS_CERT_KEY, &crt), (TLS_PRIVATE_KEY_KEY, &key)],
            ),
        ]);
        let (map, problems) = build(&[&ing], &s, &provider());
        assert_eq!(map.hosts(), vec!["good.test"]);
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 5, "{messages:#?}");
        for (m, want) in messages.iter().zip([
            "spec.tls[1]: Secret \"nokey\" has no \"tls.key\"; no TLS for nokey.test",
            "spec.tls[2]: Secret \"garbage\": \"tls.crt\" holds no PEM CERTIFICATE block",
            "spec.tls[3]: Secret \"mismatch\": ",
            "spec.tls[4]: Secret \"opaque\" is of type \"Opaque\", not kubernetes.io/tls",
            "spec.tls[5]: Secret \"missing\" not found",
        ]) {
            assert!(m.starts_with(want), "{m:?} does not start with {want:?}");
        }
        assert!(problems.iter().all(|p| p.uid == "uid-web"));
        assert!(
            !messages.iter().any(|m| m.contains("PRIVATE KEY")),
            "no key material in messages"
        );
    }

    #[test]
    fn the_older_ingress_keeps_a_host_both_claim() {
        let (crt, key) = self_signed(&["shared.test"]);
        let s = secrets(vec![
            secret(
                "one",
                SECRET_TYPE_TLS,
                &[(TLS_CERT_KEY, &crt), (TLS_PRIVATE_KEY_KEY, &key)],
            ),
            secret(
                "two",
                SECRET_TYPE_TLS,
                &[(TLS_CERT_KEY, &crt), (TLS_PRIVATE_KEY_KEY, &key)],
            ),
        ]);
        let newer = ingress(
            "a-newer",
            "2026-02-01T00:00:00Z",
            serde_json::json!([{"hosts": ["shared.test"], "secretName": "two"}]),
        );
        let older = ingress(
            "z-older",
            "2026-01-01T00:00:00Z",
            serde_json::json!([{"hosts": ["shared.test"], "secretName": "one"}]),
        );
        let (map, problems) = build(&[&newer, &older], &s, &provider());
        assert_eq!(map.hosts(), vec!["shared.test"]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].ingress, "a-newer");
    }
}
