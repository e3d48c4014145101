//! Authentication and the authorizer hook.
//!
//! A caller is who its client certificate names (verified against the cluster CA by the TLS
//! listener: servers, nodes, users with certificates), else who its bearer token names: the
//! admin token (written into the data dir on first start), or a token stored in the cluster
//! ([`TOKEN_NAMESPACE`]: users, ServiceAccounts, and the join tokens that can only ask for a
//! certificate). Authorization goes through [`Authorizer`]: the server runs
//! [`crate::authz::Chain`] (masters, the Node authorizer, RBAC); [`AdminOnly`] is the
//! baseline.

use std::path::Path;

use subtle::ConstantTimeEq as _;

use super::error::ApiError;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn new(name: &str, groups: &[&str]) -> User {
        User {
            name: name.to_string(),
            groups: groups.iter().map(|g| (*g).to_string()).collect(),
        }
    }
}

/// What a request wants to do, in Kubernetes' authorization vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes<'a> {
    /// get, list, watch, create, update, patch, delete.
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    /// A list's or watch's `fieldSelector`: the Node authorizer lets a node list only the
    /// Pods bound to it (`spec.nodeName=<node>`).
    pub field_selector: Option<&'a str>,
}

/// Decides whether `user` may do `attrs`.
pub trait Authorizer: Send + Sync + 'static {
    /// # Errors
    /// [`ApiError::Forbidden`] naming what was refused.
    fn authorize(&self, user: &User, attrs: &Attributes<'_>) -> Result<(), ApiError>;

    /// Whether `user` may `verb` (`get`, `post`, …) the non-resource `path` (`/version`).
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] naming what was refused.
    fn authorize_non_resource(&self, user: &User, verb: &str, path: &str) -> Result<(), ApiError> {
        if user.groups.iter().any(|g| g == "system:masters") {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
            user.name
        )))
    }

    /// The answer of an access review of `req` for `user` (allowed, denied, the reason).
    fn review(
        &self,
        user: &User,
        req: &crate::authz::Request<'_>,
    ) -> ketch_api::authorization::SubjectAccessReviewStatus {
        let result = match req {
            crate::authz::Request::Resource(a) => self.authorize(user, a),
            crate::authz::Request::NonResource { verb, path } => {
                self.authorize_non_resource(user, verb, path)
            }
        };
        ketch_api::authorization::SubjectAccessReviewStatus {
            allowed: result.is_ok(),
            reason: result.err().map(|e| e.to_string()),
            ..Default::default()
        }
    }

    /// What `user` may do in `namespace`, as far as this authorizer can list it (a
    /// SelfSubjectRulesReview); `incomplete` when it cannot.
    fn rules(
        &self,
        _user: &User,
        _namespace: Option<&str>,
    ) -> ketch_api::authorization::SubjectRulesReviewStatus {
        ketch_api::authorization::SubjectRulesReviewStatus {
            incomplete: true,
            ..Default::default()
        }
    }
}

/// The baseline: only members of `system:masters` (the admin token) may do anything.
#[derive(Debug, Default)]
pub struct AdminOnly;

impl Authorizer for AdminOnly {
    fn authorize(&self, user: &User, attrs: &Attributes<'_>) -> Result<(), ApiError> {
        if user.groups.iter().any(|g| g == "system:masters") {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "user \"{}\" cannot {} resource \"{}\"{}",
            user.name,
            attrs.verb,
            attrs.resource,
            attrs
                .namespace
                .map(|ns| format!(" in namespace \"{ns}\""))
                .unwrap_or_default()
        )))
    }
}

/// Where tokens other than the admin's live: Secrets of type [`TOKEN_SECRET_TYPE`] named
/// `ketch-token-<id>` in this namespace (Kubernetes keeps bootstrap tokens the same way).
/// Only the SHA-256 of a token's secret part is stored.
pub const TOKEN_NAMESPACE: &str = "kube-system";
/// The Secret type of a stored token.
pub const TOKEN_SECRET_TYPE: &str = "ketch.dev/token";
/// A token that may only join a node: it can do nothing but ask for a node certificate.
pub const USAGE_JOIN_NODE: &str = "join-node";
/// A token that may only join a server (a raft peer, which gets the CA's key).
pub const USAGE_JOIN_SERVER: &str = "join-server";
/// A token that authenticates a user or ServiceAccount for the API.
pub const USAGE_AUTHENTICATION: &str = "authentication";
/// The group of every bootstrap (join) token's user, as Kubernetes names it.
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
/// Every authenticated caller is in this group (RBAC can bind it).
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// A server that forwards a request to the leader names its caller in these headers. They
/// are believed only on a connection whose client certificate is a server's, and every
/// server removes them from what it forwards or proxies otherwise.
pub const REMOTE_USER_HEADER: &str = "x-ketch-remote-user";
pub const REMOTE_GROUP_HEADER: &str = "x-ketch-remote-group";

/// The name of the Secret holding token `id`.
pub fn token_secret_name(id: &str) -> String {
    format!("ketch-token-{id}")
}

/// A stored token's fields (the Secret's `data`, base64 as always).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct StoredToken {
    token_secret_sha256: String,
    usage: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    groups: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

fn b64(v: &serde_json::Value) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The token fields of a token Secret, `None` when it is not one or is malformed.
fn stored_token(secret: &serde_json::Value) -> Option<StoredToken> {
    if secret["type"].as_str() != Some(TOKEN_SECRET_TYPE) {
        return None;
    }
    let data = secret["data"].as_object()?;
    let mut text = serde_json::Map::new();
    for (k, v) in data {
        text.insert(k.clone(), serde_json::Value::String(b64(v)?));
    }
    serde_json::from_value(serde_json::Value::Object(text)).ok()
}

/// The user a stored token authenticates, or `None` when the secret does not match, the
/// token expired, or it is malformed.
fn token_user(
    id: &str,
    secret: &str,
    stored: &serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<User> {
    let t = stored_token(stored)?;
    let hash = ketch_tls::sha256_hex(secret.as_bytes());
    if !bool::from(hash.as_bytes().ct_eq(t.token_secret_sha256.as_bytes())) {
        return None;
    }
    if let Some(exp) = t.expiration.as_deref() {
        let exp = chrono::DateTime::parse_from_rfc3339(exp).ok()?;
        if exp <= now {
            return None;
        }
    }
    let user = match t.usage.as_str() {
        USAGE_JOIN_NODE | USAGE_JOIN_SERVER => User {
            name: format!("system:bootstrap:{id}"),
            groups: vec![BOOTSTRAPPERS_GROUP.into(), format!("ketch:{}", t.usage)],
        },
        USAGE_AUTHENTICATION => {
            let name = t.user.filter(|u| !u.is_empty())?;
            let mut groups: Vec<String> = t
                .groups
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect();
            // A token can never claim the admin's group: that needs the admin token or an
            // admin's certificate.
            groups.retain(|g| {
                g != "system:masters"
                    && g != ketch_tls::SERVERS_GROUP
                    && g != ketch_tls::NODES_GROUP
            });
            groups.push(AUTHENTICATED_GROUP.into());
            User { name, groups }
        }
        _ => return None,
    };
    Some(user)
}

/// Maps credentials to users: a client certificate from the cluster CA (servers, nodes,
/// users), the admin token, or a stored token (users, ServiceAccounts, join tokens).
#[derive(Clone)]
pub struct Authenticator {
    admin_token: String,
    /// Stored tokens are read from this server's own applied state (no read barrier: a
    /// token created a moment ago on the leader may need that moment to work here).
    store: Option<crate::store::Store>,
    /// Stored token Secrets are encrypted at rest like every Secret.
    keys: Option<std::sync::Arc<super::encryption::EncryptionKeys>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(admin_token: String) -> Self {
        Self {
            admin_token,
            store: None,
            keys: None,
        }
    }

    /// Also accept the tokens stored in `store`, whose Secrets `keys` open.
    #[must_use]
    pub fn with_store(
        mut self,
        store: crate::store::Store,
        keys: std::sync::Arc<super::encryption::EncryptionKeys>,
    ) -> Self {
        self.store = Some(store);
        self.keys = Some(keys);
        self
    }

    /// Who sent a request: its client certificate (`peer`, verified by the TLS layer),
    /// else its bearer token.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] when neither names a user.
    pub fn authenticate(
        &self,
        headers: &axum::http::HeaderMap,
        peer: Option<&ketch_tls::PeerIdentity>,
    ) -> Result<User, ApiError> {
        if let Some(ketch_tls::PeerIdentity(id)) = peer {
            if id.in_group(ketch_tls::SERVERS_GROUP)
                && let Some(user) = headers
                    .get(REMOTE_USER_HEADER)
                    .and_then(|v| v.to_str().ok())
            {
                // Forwarded by a server, which authenticated the caller.
                let groups = headers
                    .get_all(REMOTE_GROUP_HEADER)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect();
                return Ok(User {
                    name: user.to_string(),
                    groups,
                });
            }
            let mut groups = id.groups.clone();
            groups.push(AUTHENTICATED_GROUP.into());
            return Ok(User {
                name: id.name.clone(),
                groups,
            });
        }
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        self.authenticate_token(token)
    }

    /// The user a bearer token names.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] for an unknown, expired or malformed token.
    pub fn authenticate_token(&self, token: &str) -> Result<User, ApiError> {
        // Constant time: the response time does not leak how much of a guess matched.
        if bool::from(token.as_bytes().ct_eq(self.admin_token.as_bytes())) {
            return Ok(User {
                name: "admin".into(),
                groups: vec!["system:masters".into(), AUTHENTICATED_GROUP.into()],
            });
        }
        let (id, secret) =
            ketch_tls::JoinToken::split_bearer(token).ok_or(ApiError::Unauthorized)?;
        let store = self.store.as_ref().ok_or(ApiError::Unauthorized)?;
        let key = format!("secrets/{TOKEN_NAMESPACE}/{}", token_secret_name(id));
        let mut stored = store
            .get(&key)
            .map_err(|e| ApiError::Internal(format!("reading token {id}: {e}")))?
            .ok_or(ApiError::Unauthorized)?;
        if let Some(keys) = &self.keys {
            keys.open_secret(&key, &mut stored)
                .map_err(|e| ApiError::Internal(format!("reading token {id}: {e}")))?;
        }
        token_user(id, secret, &stored, chrono::Utc::now()).ok_or(ApiError::Unauthorized)
    }
}

/// Read the admin token from `<data_dir>/admin.token`, creating it (mode 0600) on first start.
///
/// # Errors
/// IO errors reading or writing the file.
pub fn load_or_create_token(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, token.as_bytes())?;
    Ok(token)
}

/// Write a file readable only by its owner (tokens, client configs), atomically through a
/// temporary file with a random name created exclusively ([`crate::files::write_private`]).
///
/// # Errors
/// IO errors creating or writing the file.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    crate::files::write_private(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(axum::http::header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_admin_token_authenticates_without_a_store() {
        let a = Authenticator::new("secret".into());
        assert!(
            a.authenticate(&headers(Some("Bearer secret")), None)
                .is_ok()
        );
        for bad in [
            Some("Bearer wrong"),
            Some("Basic secret"),
            None,
            Some("Bearer abcdef.0123456789abcdef"),
        ] {
            assert!(
                matches!(
                    a.authenticate(&headers(bad), None),
                    Err(ApiError::Unauthorized)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_certificate_names_the_caller_and_only_servers_may_forward_one() {
        let a = Authenticator::new("secret".into());
        let mut h = headers(Some("Bearer secret"));
        h.insert(REMOTE_USER_HEADER, "alice".parse().unwrap());
        h.append(REMOTE_GROUP_HEADER, "devs".parse().unwrap());
        // A node's certificate wins over the token, and its remote-user header is ignored.
        let node = ketch_tls::PeerIdentity(ketch_tls::node_identity("a"));
        let u = a.authenticate(&h, Some(&node)).unwrap();
        assert_eq!(u.name, "system:node:a");
        assert!(u.groups.contains(&"system:nodes".to_string()));
        // A server forwards the caller it authenticated.
        let server = ketch_tls::PeerIdentity(ketch_tls::server_identity(7));
        let u = a.authenticate(&h, Some(&server)).unwrap();
        assert_eq!(
            u,
            User {
                name: "alice".into(),
                groups: vec!["devs".into()]
            }
        );
    }

    fn token_secret(data: &[(&str, &str)]) -> serde_json::Value {
        use base64::Engine as _;
        let data: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_string(),
                    base64::engine::general_purpose::STANDARD.encode(v).into(),
                )
            })
            .collect();
        serde_json::json!({"type": TOKEN_SECRET_TYPE, "data": data})
    }

    #[test]
    fn stored_tokens_check_their_secret_expiry_and_usage() {
        let now = chrono::Utc::now();
        let hash = ketch_tls::sha256_hex(b"0123456789abcdef");
        let user = token_secret(&[
            ("token-secret-sha256", &hash),
            ("usage", USAGE_AUTHENTICATION),
            ("user", "alice"),
            ("groups", "devs, system:masters,ops"),
        ]);
        let u = token_user("abcdef", "0123456789abcdef", &user, now).unwrap();
        assert_eq!(u.name, "alice");
        // A stored token cannot make itself an admin.
        assert_eq!(u.groups, vec!["devs", "ops", AUTHENTICATED_GROUP]);
        assert!(token_user("abcdef", "0123456789abcdeX", &user, now).is_none());
        let join = token_secret(&[
            ("token-secret-sha256", &hash),
            ("usage", USAGE_JOIN_NODE),
            ("expiration", "2000-01-01T00:00:00Z"),
        ]);
        assert!(
            token_user("abcdef", "0123456789abcdef", &join, now).is_none(),
            "expired"
        );
        let join = token_secret(&[
            ("token-secret-sha256", &hash),
            ("usage", USAGE_JOIN_NODE),
            ("expiration", "2999-01-01T00:00:00Z"),
        ]);
        let u = token_user("abcdef", "0123456789abcdef", &join, now).unwrap();
        assert_eq!(u.name, "system:bootstrap:abcdef");
        assert_eq!(u.groups, vec![BOOTSTRAPPERS_GROUP, "ketch:join-node"]);
        let mut wrong_type = user.clone();
        wrong_type["type"] = "Opaque".into();
        assert!(token_user("abcdef", "0123456789abcdef", &wrong_type, now).is_none());
    }

    #[test]
    fn the_token_file_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let t1 = load_or_create_token(dir.path()).unwrap();
        let t2 = load_or_create_token(dir.path()).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 64);
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
