//! The cluster CA: made once by the first server, shared by every server (a joining server
//! receives it over mutual TLS), signing the certificates of servers, nodes and users.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::{Identity, TlsError};

/// How long the CA is valid (kubeadm's is 10 years too).
const CA_DAYS: i64 = 3650;
/// How long a leaf certificate is valid (kubeadm's and k3s's: one year). Servers issue
/// their own at every start; agents renew theirs with their current one
/// (see the agent's certificate handling).
pub const LEAF_DAYS: i64 = 365;

/// What a leaf certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS client only (users).
    Client,
    /// Server and client: servers and nodes serve their endpoints and call each other.
    ServerAndClient,
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

/// The cluster's certificate authority.
pub struct ClusterCa {
    cert_pem: String,
    key_pem: String,
    hash: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn pem_err(what: &str) -> impl Fn(rcgen::Error) -> TlsError + '_ {
    move |e| TlsError::Pem {
        what: what.to_string(),
        why: e.to_string(),
    }
}

/// The DER of the first certificate in `pem`.
pub fn first_cert_der(pem: &str, what: &str) -> Result<Vec<u8>, TlsError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| TlsError::Pem {
            what: what.to_string(),
            why: "no CERTIFICATE block".into(),
        })?
        .map(|c| c.to_vec())
        .map_err(|e| TlsError::Pem {
            what: what.to_string(),
            why: e.to_string(),
        })
}

fn leaf_params(
    identity: &Identity,
    sans: &[String],
    usage: Usage,
) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(sans.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.name.as_str());
    // One O per certificate: rcgen's distinguished name holds one value per attribute type.
    // Every identity ketch issues a certificate for has one group.
    if let Some(g) = identity.groups.first() {
        dn.push(DnType::OrganizationName, g.as_str());
    }
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match usage {
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks that differ between machines.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(LEAF_DAYS);
    Ok(params)
}

impl ClusterCa {
    /// A new CA (ECDSA P-256).
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "ketch-ca");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(CA_DAYS);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// The CA from its certificate and key (PEM).
    ///
    /// # Errors
    /// [`TlsError::Pem`] when either does not parse.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(pem_err("the CA key"))?;
        let der = first_cert_der(cert_pem, "the CA certificate")?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(pem_err("the CA certificate"))?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            hash: sha256_hex(&der),
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key: only servers hold it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Hex SHA-256 of the CA certificate's DER (what join tokens pin).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// A new key and a certificate for it naming `identity`, valid for `sans` (IP addresses
    /// or DNS names).
    ///
    /// # Errors
    /// Key generation or signing failed, or a SAN is neither an IP address nor a DNS name.
    pub fn issue(
        &self,
        identity: &Identity,
        sans: &[String],
        usage: Usage,
    ) -> Result<Issued, TlsError> {
        let key = KeyPair::generate()?;
        let cert = leaf_params(identity, sans, usage)?.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A certificate for the public key of `csr_pem`. Everything else the CSR asks for
    /// (subject, names, usages) is ignored: the caller decides the identity from what the
    /// requester proved, never from what it claims.
    ///
    /// # Errors
    /// [`TlsError::Pem`] for a CSR that does not parse or whose signature is wrong.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &Identity,
        sans: &[String],
        usage: Usage,
    ) -> Result<String, TlsError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(pem_err("the certificate signing request"))?;
        csr.params = leaf_params(identity, sans, usage)?;
        Ok(csr.signed_by(&self.issuer)?.pem())
    }
}

/// A new private key and a certificate signing request for it (PEM): what a joining server
/// or agent sends, keeping its key.
///
/// # Errors
/// Key generation or encoding failed.
pub fn csr(common_name: &str) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let req = params.serialize_request(&key)?;
    Ok((req.pem()?, key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{identity_of, node_identity};

    #[test]
    fn a_ca_signs_csrs_with_the_identity_it_decides() {
        let ca = ClusterCa::generate().unwrap();
        let again = ClusterCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(ca.hash(), again.hash());
        // The requester claims to be an admin; the CA names it what it proved.
        let (csr_pem, _key) = csr("system:masters-wannabe").unwrap();
        let cert = ca
            .sign_csr(
                &csr_pem,
                &node_identity("a"),
                &["10.0.0.1".into()],
                Usage::ServerAndClient,
            )
            .unwrap();
        let der = first_cert_der(&cert, "cert").unwrap();
        assert_eq!(identity_of(&der), Some(node_identity("a")));
        assert!(
            ca.sign_csr("garbage", &node_identity("a"), &[], Usage::Client)
                .is_err()
        );
    }
}
