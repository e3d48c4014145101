//! Joining a cluster: the certificate request a new server or agent makes with a join
//! token, trusting only the CA the token pins (served by the API server's
//! `/cluster/certificates`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CertificateKind {
    Node,
    Server,
}

/// `POST /cluster/certificates` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateRequest {
    pub kind: CertificateKind,
    /// For a node: its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// For a server: its raft node id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<u64>,
    /// PEM certificate signing request; only its public key is used.
    pub csr: String,
    /// IP addresses and DNS names the certificate is valid for (where the node's endpoint
    /// and gateway, or the server's API, are reached).
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// `POST /cluster/certificates` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateAnswer {
    /// PEM.
    pub certificate: String,
    /// The cluster CA, PEM.
    pub ca: String,
}

/// `https://host:port` for a member's `host:port` or URL.
pub fn base_url(address: &str) -> String {
    let a = address.trim_end_matches('/');
    let a = a
        .strip_prefix("https://")
        .or_else(|| a.strip_prefix("http://"))
        .unwrap_or(a);
    format!("https://{a}")
}

/// What an error answer says (a `Status` body's message, else the body), with the URL.
pub async fn refusal(url: &str, resp: reqwest::Response) -> String {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or(body);
    format!("{url}: HTTP {status}: {message}")
}

/// Ask `address` for a certificate with join token `token` (trusting only the CA it pins),
/// for a new key kept here. Returns the key, the certificate and the CA (PEM).
///
/// # Errors
/// [`Error::Config`] for a malformed token or a refusal (with the server's message);
/// [`Error::Http`] when the member cannot be reached or does not hold the pinned CA.
pub async fn request_certificate(
    address: &str,
    token: &str,
    req: CertificateRequest,
    key_pem: String,
) -> Result<(ketch_tls::Issued, String), Error> {
    let token: ketch_tls::JoinToken = token
        .parse()
        .map_err(|e: ketch_tls::TlsError| Error::Config(format!("--token: {e}")))?;
    let tls = ketch_tls::pinned_client_config(&token.ca_hash)
        .map_err(|e| Error::Config(e.to_string()))?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Config(format!("building an HTTP client: {e}")))?;
    let url = format!("{}/cluster/certificates", base_url(address));
    let resp = http
        .post(&url)
        .bearer_auth(token.bearer())
        .json(&req)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|source| Error::Http {
            url: url.clone(),
            source,
        })?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(Error::Config(refusal(&url, resp).await));
    }
    let answer: CertificateAnswer = resp.json().await.map_err(|e| Error::Decode {
        url: url.clone(),
        message: e.to_string(),
    })?;
    let ca_der = ketch_tls::first_cert_der(&answer.ca, "the cluster CA")
        .map_err(|e| Error::Config(format!("{url}: {e}")))?;
    if ketch_tls::sha256_hex(&ca_der) != token.ca_hash {
        return Err(Error::Config(format!(
            "{url}: the CA it sent is not the one the join token pins"
        )));
    }
    Ok((
        ketch_tls::Issued {
            cert_pem: answer.certificate,
            key_pem,
        },
        answer.ca,
    ))
}
