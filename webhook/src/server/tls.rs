//! The serving certificate: loaded from PEM files, swapped without a restart when they change.
//!
//! Kubernetes updates a mounted Secret by writing a new timestamped directory and swapping the
//! `..data` symlink, so the certificate's directory is watched (never the file, whose inode
//! the watch would pin). A slow poll backs the watch up on filesystems without inotify. A pair
//! that fails to load (a half-written swap, a key that does not match) is logged and the
//! previous pair keeps serving.

use crate::metrics::{Metrics, ResultLabels};
use arc_swap::ArcSwapOption;
use notify::Watcher as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `cert` and `key` name where each came from: a file's path, or a Secret's key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate {cert}: {reason}")]
    Certificate { cert: String, reason: String },
    #[error("cannot read private key {key}: {reason}")]
    Key { key: String, reason: String },
    #[error("certificate {cert} and key {key} do not form a usable pair: {source}")]
    Pair { cert: String, key: String, source: rustls::Error },
}

pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// notAfter of the leaf certificate, as a Unix time.
    pub not_after: i64,
}

/// The two files' bytes, as read: what decides whether anything changed.
type Contents = (Vec<u8>, Vec<u8>);

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<Contents, TlsError> {
    let cert_pem = std::fs::read(cert_path)
        .map_err(|e| TlsError::Certificate { cert: cert_path.display().to_string(), reason: e.to_string() })?;
    let key_pem = std::fs::read(key_path)
        .map_err(|e| TlsError::Key { key: key_path.display().to_string(), reason: e.to_string() })?;
    Ok((cert_pem, key_pem))
}

pub fn load_pair(cert_path: &Path, key_path: &Path, provider: &CryptoProvider) -> Result<LoadedCert, TlsError> {
    let (cert_pem, key_pem) = read_pair(cert_path, key_path)?;
    let names = Origin::files(cert_path, key_path);
    parse_pair(&names, &cert_pem, &key_pem, provider)
}

/// Where a pair came from, for messages.
pub struct Origin {
    pub cert: String,
    pub key: String,
}

impl Origin {
    fn files(cert: &Path, key: &Path) -> Origin {
        Origin { cert: cert.display().to_string(), key: key.display().to_string() }
    }
}

/// A pair from PEM bytes, wherever they came from (files, or a Secret in the self-managed mode).
pub fn parse_pair(
    origin: &Origin,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<LoadedCert, TlsError> {
    let cert_error = |reason: String| TlsError::Certificate { cert: origin.cert.clone(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(format!("not PEM: {e}")))?;
    let leaf = chain.first().ok_or_else(|| cert_error("no CERTIFICATE block".into()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| cert_error(format!("not X.509: {e}")))?;
    let not_after = parsed.validity().not_after.timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Key { key: origin.key.clone(), reason: format!("no private key in PEM: {e}") })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Pair {
        cert: origin.cert.clone(),
        key: origin.key.clone(),
        source,
    })?;
    Ok(LoadedCert { key: Arc::new(certified), not_after })
}

/// Hands rustls whatever pair is current; `None` (no certificate yet) fails the handshake.
#[derive(Debug, Default)]
pub struct CertResolver {
    current: ArcSwapOption<CertifiedKey>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

impl CertResolver {
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Serves `loaded` from the next handshake on, and says so in the metrics and the log.
    pub fn install(&self, loaded: LoadedCert, origin: &Origin, metrics: &Metrics) {
        let first = !self.is_loaded();
        self.current.store(Some(loaded.key));
        metrics.certificate_expiry.set(loaded.not_after);
        metrics.certificate_reloads.get_or_create(&ResultLabels { result: "success" }).inc();
        tracing::info!(cert = %origin.cert, not_after = loaded.not_after, first, "serving certificate loaded");
    }

    /// A pair that could not be used: counted, and logged as an error until one has loaded.
    pub fn failed(&self, error: &dyn std::fmt::Display, metrics: &Metrics) {
        metrics.certificate_reloads.get_or_create(&ResultLabels { result: "failure" }).inc();
        if self.is_loaded() {
            tracing::warn!(%error, "certificate change not applied; the previous certificate keeps serving");
        } else {
            tracing::error!(%error, "no serving certificate yet; not ready until one loads");
        }
    }
}

pub fn server_config(
    resolver: Arc<CertResolver>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Keeps the resolver's pair in step with the files.
pub struct CertReloader {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub resolver: Arc<CertResolver>,
    pub provider: Arc<CryptoProvider>,
    pub metrics: Arc<Metrics>,
    /// Backstop for filesystems where the directory watch sees nothing.
    pub poll_interval: Duration,
}

/// What the reloader last saw, so that each change is acted on, and reported, once.
#[derive(Default)]
struct Seen {
    /// The files' bytes at the last read that succeeded, whether they parsed or not.
    contents: Option<Contents>,
    /// The last read failure (a file missing mid-swap, say), until the files read again.
    read_error: Option<String>,
}

impl CertReloader {
    /// Loads the pair if the files changed. Returns whether a new pair is now being served.
    fn reload(&self, seen: &mut Seen) -> bool {
        tracing::debug!(cert = %self.cert_path.display(), "reading the certificate files");
        let contents = match read_pair(&self.cert_path, &self.key_path) {
            Ok(contents) => contents,
            Err(error) => {
                let message = error.to_string();
                if seen.read_error.as_ref() != Some(&message) {
                    self.resolver.failed(&error, &self.metrics);
                    seen.read_error = Some(message);
                }
                return false;
            }
        };
        seen.read_error = None;
        if seen.contents.as_ref() == Some(&contents) {
            return false;
        }
        let (cert_pem, key_pem) = &contents;
        let origin = Origin::files(&self.cert_path, &self.key_path);
        let parsed = parse_pair(&origin, cert_pem, key_pem, &self.provider);
        seen.contents = Some(contents);
        match parsed {
            Ok(loaded) => {
                self.resolver.install(loaded, &origin, &self.metrics);
                true
            }
            Err(error) => {
                self.resolver.failed(&error, &self.metrics);
                false
            }
        }
    }

    /// Loads the pair now, then follows changes until the task is dropped.
    pub async fn run(self) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut seen = Seen::default();
        self.reload(&mut seen);
        // Watch both files' directories; keep the watcher alive for as long as this task runs.
        let _watcher = {
            let dirs: std::collections::BTreeSet<PathBuf> = [&self.cert_path, &self.key_path]
                .iter()
                .map(|p| p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned())
                .collect();
            // Only changes: reading the files (ours included) raises access events, and reacting
            // to those re-read the pair 20 times a second forever.
            let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                    let _ = tx.send(());
                }
            });
            match watcher {
                Ok(mut watcher) => {
                    for dir in &dirs {
                        if let Err(error) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                            tracing::warn!(dir = %dir.display(), %error, "cannot watch the certificate directory; polling only");
                        }
                    }
                    Some(watcher)
                }
                Err(error) => {
                    tracing::warn!(%error, "no filesystem watcher; polling the certificate only");
                    None
                }
            }
        };
        let mut poll = tokio::time::interval(self.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            tokio::select! {
                Some(()) = rx.recv() => {
                    // A swap is several events (new dir, symlink, rename): let it settle, then
                    // load once.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = poll.tick() => {}
            }
            self.reload(&mut seen);
        }
    }
}
