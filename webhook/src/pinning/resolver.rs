//! Resolves an image tag to the digest of what it points at (the multi-arch index) with
//! oci-client, and reads that index's platforms. Every registry call is bounded by a timeout:
//! oci-client has none of its own.

use super::credentials::DockerConfig;
use super::index::{self, ManifestKind, IMAGE_MEDIA_TYPES, INDEX_MEDIA_TYPES};
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
}

impl ResolveError {
    pub const LABELS: [&'static str; 8] =
        ["timeout", "unreachable", "tls", "unauthorized", "rate_limited", "not_found", "invalid_manifest", "registry"];

    pub fn label(&self) -> &'static str {
        match self {
            ResolveError::Timeout(_) => "timeout",
            ResolveError::Unreachable(_) => "unreachable",
            ResolveError::Tls(_) => "tls",
            ResolveError::Unauthorized(_) => "unauthorized",
            ResolveError::RateLimited(_) => "rate_limited",
            ResolveError::NotFound(_) => "not_found",
            ResolveError::InvalidManifest(_) => "invalid_manifest",
            ResolveError::Registry(_) => "registry",
        }
    }
}

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

fn classify(error: OciDistributionError) -> ResolveError {
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
                ResolveError::Unreachable(text)
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

/// Why the resolver cannot be built from the registry settings: a start-up error, never a
/// failure on every refresh.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read Docker config {path}: {source}")]
    ReadDockerConfig { path: PathBuf, source: std::io::Error },
    #[error("invalid Docker config {path}: {message}")]
    InvalidDockerConfig { path: PathBuf, message: String },
    #[error("cannot read CA bundle {path}: {source}")]
    ReadCaBundle { path: PathBuf, source: std::io::Error },
    #[error("CA bundle {path} holds no PEM certificate")]
    EmptyCaBundle { path: PathBuf },
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
            Ok(result) => result.map_err(classify),
            Err(_) => Err(ResolveError::Timeout(self.timeout)),
        }
    }

    /// Resolves `image` (`[registry/]repository:tag`). `known` is the digest from the previous
    /// resolution: when the tag still points there, the index is not fetched again.
    pub async fn resolve(&self, image: &str, known: Option<&Resolved>) -> Result<Resolved, ResolveError> {
        let parts = ImageParts::parse(image).map_err(|error| ResolveError::NotFound(error.to_string()))?;
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
        ];
        assert_eq!(errors.map(|e| e.label()), ResolveError::LABELS);
    }
}
