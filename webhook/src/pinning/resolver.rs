//! Resolves an image tag to the digest of what it points at (the multi-arch index) with
//! oci-client, and reads that index's platforms. Every registry call is bounded by a timeout:
//! oci-client has none of its own.

use super::credentials::DockerConfig;
use super::index::{self, ManifestKind, IMAGE_MEDIA_TYPES, INDEX_MEDIA_TYPES};
use super::setup::SetupError;
use crate::config::RegistryConfig;
use crate::image::ImageParts;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// Nested indexes are walked this deep at most.
const MAX_INDEX_DEPTH: usize = 3;

/// Why a resolution failed. The label is a metrics label: keep the set small and fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("registry did not answer within {0:?}")]
    Timeout(Duration),
    #[error("registry unreachable: {0}")]
    Unreachable(String),
    #[error("TLS failure talking to the registry: {0}")]
    Tls(String),
    #[error("registry refused the credentials: {0}")]
    Unauthorized(String),
    #[error("registry is rate-limiting: {0}")]
    RateLimited(String),
    #[error("image not found: {0}")]
    NotFound(String),
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error("registry error: {0}")]
    Registry(String),
    #[error("not an image reference: {0}")]
    InvalidReference(String),
}

crate::labels::metric_labels!(ResolveError {
    Timeout => "timeout",
    Unreachable => "unreachable",
    Tls => "tls",
    Unauthorized => "unauthorized",
    RateLimited => "rate_limited",
    NotFound => "not_found",
    InvalidManifest => "invalid_manifest",
    Registry => "registry",
    InvalidReference => "invalid_reference",
});

/// The whole error chain in one line: reqwest hides the useful part (refused, unknown issuer)
/// in its sources.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// `timeout` is the configured bound: reqwest's own timeouts (connect and read, set to the same
/// bound) are the same event as the outer one, and are labelled so.
fn classify(error: OciDistributionError, timeout: Duration) -> ResolveError {
    let text = chain(&error);
    match &error {
        OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. } => {
            ResolveError::Unauthorized(text)
        }
        OciDistributionError::ImageManifestNotFoundError(_) => ResolveError::NotFound(text),
        OciDistributionError::ServerError { code, .. } => match code {
            401 | 403 => ResolveError::Unauthorized(text),
            404 => ResolveError::NotFound(text),
            429 => ResolveError::RateLimited(text),
            _ => ResolveError::Registry(text),
        },
        OciDistributionError::RegistryError { envelope, .. } => match envelope.errors.first().map(|e| &e.code) {
            Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => ResolveError::Unauthorized(text),
            Some(OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound) => {
                ResolveError::NotFound(text)
            }
            Some(OciErrorCode::Toomanyrequests) => ResolveError::RateLimited(text),
            _ => ResolveError::Registry(text),
        },
        OciDistributionError::RequestError(request) => {
            let lower = text.to_ascii_lowercase();
            if request.is_timeout() {
                ResolveError::Timeout(timeout)
            } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
                ResolveError::Tls(text)
            } else {
                ResolveError::Unreachable(text)
            }
        }
        OciDistributionError::DigestError(_)
        | OciDistributionError::JsonError(_)
        | OciDistributionError::ManifestParsingError(_)
        | OciDistributionError::VersionedParsingError(_)
        | OciDistributionError::UnsupportedMediaTypeError(_) => ResolveError::InvalidManifest(text),
        _ => ResolveError::Registry(text),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The digest the tag points at: the index's, for a multi-arch image.
    pub digest: String,
    /// The configured reference with the digest: `repo:tag@sha256:...`.
    pub pinned: String,
    pub is_index: bool,
    pub platforms: BTreeSet<String>,
}

pub struct Resolver {
    client: Client,
    credentials: DockerConfig,
    timeout: Duration,
}

/// Mozilla's roots, shipped in the binary: the webhook image is FROM scratch and has no CA
/// bundle, and the platform verifier would find nothing to trust.
fn shipped_roots() -> Vec<Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate { encoding: CertificateEncoding::Der, data: der.as_ref().to_vec() })
        .collect()
}

impl Resolver {
    /// Reads the credentials and CA bundle the config names; a file that cannot be used is an
    /// error here, at start-up, not a failure on every refresh.
    pub fn new(config: &RegistryConfig) -> Result<Self, SetupError> {
        let RegistryConfig { docker_config, ca_bundle, plain_http, timeout } = config;
        let credentials = match docker_config {
            Some(path) => DockerConfig::load(std::path::Path::new(path.as_str()))?,
            None => DockerConfig::default(),
        };
        let mut roots = shipped_roots();
        if let Some(path) = ca_bundle {
            let path = PathBuf::from(path.as_str());
            let pem = std::fs::read(&path).map_err(|source| SetupError::ReadCaBundle { path: path.clone(), source })?;
            if !String::from_utf8_lossy(&pem).contains("BEGIN CERTIFICATE") {
                return Err(SetupError::EmptyCaBundle { path });
            }
            roots.push(Certificate { encoding: CertificateEncoding::Pem, data: pem });
        }
        let client = Client::new(ClientConfig {
            protocol: if plain_http.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(plain_http.clone())
            },
            extra_root_certificates: roots,
            connect_timeout: Some(timeout.0),
            read_timeout: Some(timeout.0),
            platform_resolver: None,
            ..ClientConfig::default()
        });
        Ok(Resolver { client, credentials, timeout: timeout.0 })
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, OciDistributionError>>,
    ) -> Result<T, ResolveError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|error| classify(error, self.timeout)),
            Err(_) => Err(ResolveError::Timeout(self.timeout)),
        }
    }

    /// Resolves `image` (`[registry/]repository:tag`). `known` is the digest from the previous
    /// resolution: when the tag still points there, the index is not fetched again.
    pub async fn resolve(&self, image: &str, known: Option<&Resolved>) -> Result<Resolved, ResolveError> {
        let parts = ImageParts::parse(image).map_err(|error| ResolveError::InvalidReference(error.to_string()))?;
        // Built from the parts: parsing with oci-client would compile its reference regex first.
        let reference: Reference = parts.reference();
        let auth = self.credentials.auth_for(reference.resolve_registry());
        let digest = self.bounded(self.client.fetch_manifest_digest(&reference, &auth)).await?;
        if let Some(known) = known.filter(|k| k.digest == digest) {
            return Ok(known.clone());
        }
        let accepted: Vec<&str> = INDEX_MEDIA_TYPES.iter().chain(IMAGE_MEDIA_TYPES.iter()).copied().collect();
        let mut platforms = BTreeSet::new();
        let mut pending = vec![(digest.clone(), 0)];
        let mut is_index = true;
        while let Some((next, depth)) = pending.pop() {
            let by_digest = reference.clone_with_digest(next.clone());
            let (bytes, _) = self.bounded(self.client.pull_manifest_raw(&by_digest, &auth, &accepted)).await?;
            let actual = format!("sha256:{:x}", Sha256::digest(&bytes));
            if actual != next {
                return Err(ResolveError::InvalidManifest(format!("{next} arrived with digest {actual}")));
            }
            match index::read_manifest(&bytes).map_err(ResolveError::InvalidManifest)? {
                ManifestKind::Index { platforms: found, nested } => {
                    platforms.extend(found);
                    if depth + 1 >= MAX_INDEX_DEPTH && !nested.is_empty() {
                        return Err(ResolveError::InvalidManifest(format!(
                            "indexes nested deeper than {MAX_INDEX_DEPTH}"
                        )));
                    }
                    pending.extend(nested.into_iter().map(|d| (d, depth + 1)));
                }
                ManifestKind::Image if depth == 0 => is_index = false,
                ManifestKind::Image => {}
            }
        }
        let pinned = parts.with_digest(&digest);
        Ok(Resolved { digest, pinned, is_index, platforms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_roots_are_shipped_for_scratch_images() {
        // The webhook image has no CA bundle; without these, TLS to public registries fails.
        let roots = shipped_roots();
        assert!(roots.len() > 100, "{}", roots.len());
        assert!(roots.iter().all(|r| matches!(r.encoding, CertificateEncoding::Der) && !r.data.is_empty()));
    }

    #[test]
    fn error_labels_are_the_documented_set() {
        let errors = [
            ResolveError::Timeout(Duration::from_secs(1)),
            ResolveError::Unreachable(String::new()),
            ResolveError::Tls(String::new()),
            ResolveError::Unauthorized(String::new()),
            ResolveError::RateLimited(String::new()),
            ResolveError::NotFound(String::new()),
            ResolveError::InvalidManifest(String::new()),
            ResolveError::Registry(String::new()),
            ResolveError::InvalidReference(String::new()),
        ];
        assert_eq!(errors.map(|e| e.label()), ResolveError::LABELS);
    }
}
