//! Authentication and the authorizer hook.
//!
//! Today one admin bearer token (written into the data dir on first start) authenticates
//! everything. Authorization goes through [`Authorizer`]: the server runs
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

/// Maps bearer tokens to users.
#[derive(Debug, Clone)]
pub struct Authenticator {
    admin_token: String,
}

impl Authenticator {
    pub fn new(admin_token: String) -> Self {
        Self { admin_token }
    }

    /// # Errors
    /// [`ApiError::Unauthorized`] when the header is missing, malformed or the token unknown.
    pub fn authenticate(&self, header: Option<&str>) -> Result<User, ApiError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        // Constant time: the response time does not leak how much of a guess matched.
        if bool::from(token.as_bytes().ct_eq(self.admin_token.as_bytes())) {
            Ok(User {
                name: "admin".into(),
                groups: vec!["system:masters".into()],
            })
        } else {
            Err(ApiError::Unauthorized)
        }
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

/// Write a file readable only by its owner (tokens, client configs).
///
/// # Errors
/// IO errors creating or writing the file.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_admin_token_authenticates() {
        let a = Authenticator::new("secret".into());
        assert!(a.authenticate(Some("Bearer secret")).is_ok());
        assert!(matches!(
            a.authenticate(Some("Bearer wrong")),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            a.authenticate(Some("Basic secret")),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(a.authenticate(None), Err(ApiError::Unauthorized)));
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
