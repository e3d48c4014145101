//! Join tokens: `K1<ca-sha256>::<id>.<secret>`.
//!
//! The CA hash lets a new server or agent trust the cluster on first contact without a
//! copied CA file (the server it contacts must present a certificate chain to that CA, as
//! kubeadm's `--discovery-token-ca-cert-hash` and k3s's secure token format do); `id.secret`
//! is the bootstrap token (Kubernetes' shape: the id names the stored token, only a hash of
//! the secret is stored).

use std::fmt;
use std::str::FromStr;

use crate::TlsError;

#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Lower-case hex SHA-256 of the CA certificate's DER.
    pub ca_hash: String,
    /// `[a-z0-9]{6}`.
    pub id: String,
    /// `[a-z0-9]{16}`.
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "K1{}::{}.{}", self.ca_hash, self.id, self.secret)
    }
}

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random_word(len: usize) -> String {
    use ring::rand::SecureRandom as _;
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut b = [0u8; 1];
        rng.fill(&mut b).expect("the system RNG works");
        // Rejection sampling: no bias towards the first letters.
        if usize::from(b[0]) < 252 {
            out.push(char::from(ALPHABET[usize::from(b[0]) % ALPHABET.len()]));
        }
    }
    out
}

impl JoinToken {
    /// A new random token for the CA with hash `ca_hash`.
    pub fn generate(ca_hash: &str) -> Self {
        Self {
            ca_hash: ca_hash.to_string(),
            id: random_word(6),
            secret: random_word(16),
        }
    }

    /// What the API server authenticates: `id.secret`.
    pub fn bearer(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

fn word(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
}

/// Parse `id.secret` (the bearer part of a join token).
pub(crate) fn parse_bearer(s: &str) -> Option<(&str, &str)> {
    let (id, secret) = s.split_once('.')?;
    (word(id, 6) && word(secret, 16)).then_some((id, secret))
}

impl JoinToken {
    /// `id` and `secret` of a bootstrap bearer token (`id.secret`), if it has that shape.
    pub fn split_bearer(s: &str) -> Option<(&str, &str)> {
        parse_bearer(s)
    }
}

impl FromStr for JoinToken {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        let bad = || {
            TlsError::Token(
                "expected K1<64 hex digits>::<6 letters or digits>.<16 letters or digits> \
                 (print one with `ketch token create --join`)"
                    .into(),
            )
        };
        let rest = s.trim().strip_prefix("K1").ok_or_else(bad)?;
        let (hash, bearer) = rest.split_once("::").ok_or_else(bad)?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let (id, secret) = parse_bearer(bearer).ok_or_else(bad)?;
        Ok(Self {
            ca_hash: hash.to_ascii_lowercase(),
            id: id.into(),
            secret: secret.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_hides_its_secret() {
        let t = JoinToken::generate(&"ab".repeat(32));
        let s = t.to_string();
        assert_eq!(s.parse::<JoinToken>().unwrap(), t);
        assert!(!format!("{t:?}").contains(&t.secret));
        assert_eq!(
            JoinToken::split_bearer(&t.bearer()),
            Some((&*t.id, &*t.secret))
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let hash = "ab".repeat(32);
        for bad in [
            "",
            "admintoken",
            &format!("K1{hash}::abc.def"),
            &format!("K1{}::abcdef.0123456789abcdef", &hash[..62]),
            &format!("K2{hash}::abcdef.0123456789abcdef"),
            &format!("K1{hash}::ABCDEF.0123456789abcdef"),
        ] {
            assert!(bad.parse::<JoinToken>().is_err(), "{bad}");
        }
        assert!(
            format!("K1{hash}::abcdef.0123456789abcdef")
                .parse::<JoinToken>()
                .is_ok()
        );
    }
}
