//! The self-managed certificates: made with rcgen (ECDSA P-256), and read back from a Secret's
//! data with x509-parser, which also tells which stored CA signed the serving certificate.
//!
//! The Secret is a `kubernetes.io/tls` Secret with two more keys: `ca.crt` is the bundle of
//! trusted CAs, newest first (what the webhook configuration's `caBundle` carries), and
//! `ca.key` is the newest CA's key.

use super::rotation::{Stored, Window};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use x509_parser::certificate::X509Certificate;

/// How far back certificates start, for clocks (the API server's) slightly behind ours.
pub const BACKDATE_SECONDS: i64 = 60;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// A certificate and its private key, in PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// Everything the Secret holds, readable and consistent.
#[derive(Debug, Clone)]
pub struct Material {
    /// The trusted CAs in PEM, newest first, each with its validity.
    pub cas: Vec<(String, Window)>,
    /// The newest CA's key.
    pub ca_key: String,
    pub leaf: Pair,
}

impl Material {
    /// The Secret's data: the bundle, the newest CA's key, and the serving pair.
    pub fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            (CA_CERT.to_owned(), self.bundle().into_bytes()),
            (CA_KEY.to_owned(), self.ca_key.clone().into_bytes()),
            (TLS_CERT.to_owned(), self.leaf.cert.clone().into_bytes()),
            (TLS_KEY.to_owned(), self.leaf.key.clone().into_bytes()),
        ])
    }

    /// The PEM bundle of trusted CAs: the webhook configuration's `caBundle`.
    pub fn bundle(&self) -> String {
        self.cas.iter().map(|(pem, _)| pem.as_str()).collect()
    }

    /// The CAs not yet expired at `now`.
    pub fn unexpired_cas(&self, now: i64) -> Vec<(String, Window)> {
        self.cas.iter().filter(|(_, window)| !window.expired(now)).cloned().collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot make a certificate: the time {0} is out of range")]
    Time(i64),
}

fn validity(params: &mut CertificateParams, now: i64, not_after: i64) -> Result<(), IssueError> {
    let time = |unix: i64| time::OffsetDateTime::from_unix_timestamp(unix).map_err(|_| IssueError::Time(unix));
    params.not_before = time(now - BACKDATE_SECONDS)?;
    params.not_after = time(not_after)?;
    Ok(())
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 4)
}

/// A new CA named after `name` and the time, so that each generation has its own subject, with
/// its validity as [`read`] will see it.
pub fn new_ca(name: &str, lifetime: Duration, now: i64) -> Result<(Pair, Window), IssueError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, format!("{name}-ca-{now}"));
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let not_after = now.saturating_add(seconds(lifetime));
    validity(&mut params, now, not_after)?;
    let cert = params.self_signed(&key)?;
    Ok((Pair { cert: cert.pem(), key: key.serialize_pem() }, Window { issued: now, not_after }))
}

/// A serving certificate for `names` (DNS names, or IP addresses) from `ca`, ending no later
/// than the CA does.
pub fn new_leaf(
    ca: &Pair,
    ca_window: Window,
    names: &[String],
    lifetime: Duration,
    now: i64,
) -> Result<Pair, IssueError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, names.first().cloned().unwrap_or_else(|| "dragonfly-injector".to_owned()));
    params.distinguished_name = subject;
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(name.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, now.saturating_add(seconds(lifetime)).min(ca_window.not_after))?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pair { cert: cert.pem(), key: key.serialize_pem() })
}

/// The validity of a PEM certificate this module made, read back: the tests' check on what
/// [`new_ca`] returns.
#[cfg(test)]
pub fn window_of(pem: &str) -> Result<Window, String> {
    let der = der_blocks(pem)?.into_iter().next().ok_or("no CERTIFICATE block")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| format!("not X.509: {e}"))?;
    Ok(window(&cert))
}

fn window(cert: &X509Certificate<'_>) -> Window {
    Window {
        issued: cert.validity().not_before.timestamp() + BACKDATE_SECONDS,
        not_after: cert.validity().not_after.timestamp(),
    }
}

fn der_blocks(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|block| block.map(|b| b.contents).map_err(|e| format!("not PEM: {e}")))
        .collect()
}

fn pem_block(der: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Reads a Secret's data. `Err` says why nothing in it can be used as it is.
pub fn read(data: &BTreeMap<String, Vec<u8>>, names: &[String]) -> Result<(Stored, Material), String> {
    let text = |key: &str| -> Result<String, String> {
        let bytes = data.get(key).ok_or_else(|| format!("no {key}"))?;
        String::from_utf8(bytes.clone()).map_err(|_| format!("{key} is not text"))
    };
    let bundle = der_blocks(&text(CA_CERT)?).map_err(|e| format!("{CA_CERT}: {e}"))?;
    let mut cas = Vec::new();
    let mut parsed = Vec::new();
    for der in &bundle {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("{CA_CERT}: not X.509: {e}"))?;
        cas.push((pem_block(der), window(&cert)));
        parsed.push(cert);
    }
    let newest = parsed.first().ok_or_else(|| format!("{CA_CERT} holds no certificate"))?;
    let ca_key = text(CA_KEY)?;
    let key = KeyPair::from_pem(&ca_key).map_err(|e| format!("{CA_KEY}: {e}"))?;
    if key.public_key_raw() != newest.public_key().subject_public_key.data.as_ref() {
        return Err(format!("{CA_KEY} is not the key of the first CA in {CA_CERT}"));
    }
    let leaf = Pair { cert: text(TLS_CERT)?, key: text(TLS_KEY)? };
    let leaf_der = der_blocks(&leaf.cert)?.into_iter().next().ok_or_else(|| format!("{TLS_CERT} is empty"))?;
    let (_, leaf_cert) =
        x509_parser::parse_x509_certificate(&leaf_der).map_err(|e| format!("{TLS_CERT}: not X.509: {e}"))?;
    let leaf_issuer = parsed.iter().position(|ca| leaf_cert.verify_signature(Some(ca.public_key())).is_ok());
    let stored = Stored {
        cas: cas.iter().map(|(_, w)| *w).collect(),
        leaf: window(&leaf_cert),
        leaf_issuer,
        leaf_names_match: names_of(&leaf_cert) == names.iter().map(|n| normalise(n)).collect(),
    };
    Ok((stored, Material { cas, ca_key, leaf }))
}

fn normalise(name: &str) -> String {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => name.to_ascii_lowercase(),
    }
}

fn names_of(cert: &X509Certificate<'_>) -> BTreeSet<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else { return BTreeSet::new() };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?).to_string()),
                16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 2] = ["injector.ns.svc", "127.0.0.1"];

    fn names() -> Vec<String> {
        NAMES.map(str::to_owned).to_vec()
    }

    fn material(now: i64) -> Material {
        let (ca, ca_window) = new_ca("test", Duration::from_secs(900), now).unwrap();
        assert_eq!(window_of(&ca.cert).unwrap(), ca_window, "the window returned is the certificate's");
        let leaf = new_leaf(&ca, ca_window, &names(), Duration::from_secs(300), now).unwrap();
        Material { cas: vec![(ca.cert, ca_window)], ca_key: ca.key, leaf }
    }

    #[test]
    fn what_is_made_reads_back_current_and_serves_over_rustls() {
        let now = 1_800_000_000;
        let made = material(now);
        let (stored, read_back) = read(&made.to_data(), &names()).unwrap();
        assert_eq!(stored.cas, vec![Window { issued: now, not_after: now + 900 }]);
        assert_eq!(stored.leaf, Window { issued: now, not_after: now + 300 });
        assert!(
            !stored.leaf.renewal_due(now + 199) && stored.leaf.renewal_due(now + 200),
            "backdating is not lifetime"
        );
        assert_eq!(stored.leaf_issuer, Some(0));
        assert!(stored.leaf_names_match);
        assert_eq!(read_back.bundle(), made.bundle(), "the bundle is written back byte for byte");
        // rustls takes the pair, and a client trusting the bundle accepts the leaf for each name.
        let provider = rustls::crypto::ring::default_provider();
        let origin = crate::server::tls::Origin { cert: "test".into(), key: "test".into() };
        crate::server::tls::parse_pair(&origin, made.leaf.cert.as_bytes(), made.leaf.key.as_bytes(), &provider)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der_blocks(&made.bundle()).unwrap().remove(0).into()).unwrap();
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider.into()).build().unwrap();
        let leaf = der_blocks(&made.leaf.cert).unwrap().remove(0).into();
        let at = rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(now as u64 + 10));
        for name in NAMES {
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            use rustls::client::danger::ServerCertVerifier as _;
            verifier.verify_server_cert(&leaf, &[], &name, &[], at).unwrap();
        }
    }

    #[test]
    fn a_leaf_from_an_older_ca_and_other_names_are_told_apart() {
        let now = 1_800_000_000;
        let old = material(now);
        let (new_ca, new_window) = new_ca("test", Duration::from_secs(900), now + 1).unwrap();
        let rotated = Material {
            cas: vec![(new_ca.cert.clone(), new_window), old.cas[0].clone()],
            ca_key: new_ca.key,
            leaf: old.leaf.clone(),
        };
        let (stored, _) = read(&rotated.to_data(), &names()).unwrap();
        assert_eq!(stored.leaf_issuer, Some(1));
        let (stored, _) = read(&old.to_data(), &["other.ns.svc".to_owned()]).unwrap();
        assert!(!stored.leaf_names_match);
    }

    #[test]
    fn unusable_data_says_why() {
        let made = material(1_800_000_000);
        let mut data = made.to_data();
        data.remove(CA_KEY);
        assert_eq!(read(&data, &names()).unwrap_err(), "no ca.key");
        let other = material(1_800_000_000);
        let mut data = made.to_data();
        data.insert(CA_KEY.to_owned(), other.ca_key.into_bytes());
        assert!(read(&data, &names()).unwrap_err().contains("is not the key of the first CA"));
        let mut data = made.to_data();
        data.insert(CA_CERT.to_owned(), b"not pem".to_vec());
        assert!(read(&data, &names()).unwrap_err().contains("holds no certificate"));
    }

    #[test]
    fn the_leaf_never_outlives_its_ca() {
        let now = 1_800_000_000;
        let (ca, ca_window) = new_ca("test", Duration::from_secs(100), now).unwrap();
        let leaf = new_leaf(&ca, ca_window, &names(), Duration::from_secs(1000), now).unwrap();
        assert_eq!(window_of(&leaf.cert).unwrap().not_after, now + 100);
    }
}
