//! The self-managed TLS mode (`--tls-managed-secret`): the webhook keeps its own CA and serving
//! certificate in a Secret of its namespace, as Kyverno and Gatekeeper do, so that nothing in
//! the rendered chart changes from one render to the next (Argo CD, `helm template`).
//!
//! Every replica runs the same loop, at each check: read the Secret and the webhook
//! configuration; decide ([`rotation::decide`]); write the Secret if something is due; keep the
//! configuration's `caBundle` equal to the Secret's bundle; serve the Secret's pair. There is
//! one writer per change without a Lease: the first write is a create (the loser gets
//! AlreadyExists) and later ones are updates at the resourceVersion read (the loser gets a
//! Conflict); either way the loser reads again and serves what won.
//!
//! The Secret is read through the API rather than mounted: a mounted Secret reaches the pod
//! only at the kubelet's next sync (a minute or more), and a missing one keeps the pod from
//! starting at all.

mod certs;
pub mod rotation;

use super::tls::{parse_pair, CertResolver, Origin};
use crate::config::{parse_duration, parse_nonzero_duration};
use crate::metrics::Metrics;
use certs::{Material, Pair};
use clap::Args;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use rotation::Step;
use rustls::crypto::CryptoProvider;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Self-managed TLS (instead of --tls-cert-file and --tls-key-file)")]
pub struct ManagedTlsArgs {
    /// Keep the CA and serving certificate in this Secret of the injector's namespace: made if
    /// missing, renewed before expiry, served by every replica.
    #[arg(
        long,
        env = "DRAGONFLY_INJECTOR_TLS_MANAGED_SECRET",
        conflicts_with_all = ["tls_cert_file", "tls_key_file"]
    )]
    pub tls_managed_secret: Option<String>,
    /// The MutatingWebhookConfiguration whose caBundle follows the managed CA (and which owns
    /// the Secret, so that both go together).
    #[arg(long, env = "DRAGONFLY_INJECTOR_TLS_MANAGED_WEBHOOK_CONFIGURATION", requires = "tls_managed_secret")]
    pub tls_managed_webhook_configuration: Option<String>,
    /// A name the serving certificate is for: the Service's DNS names, or an IP address.
    /// Repeat the flag or separate names with commas.
    #[arg(long, env = "DRAGONFLY_INJECTOR_TLS_MANAGED_NAMES", value_delimiter = ',', requires = "tls_managed_secret")]
    pub tls_managed_names: Vec<String>,
    /// Validity of each CA; a new one is made in its last third.
    #[arg(long, env = "DRAGONFLY_INJECTOR_TLS_MANAGED_CA_VALIDITY", value_parser = parse_nonzero_duration, default_value = "43800h")]
    pub tls_managed_ca_validity: Duration,
    /// Validity of each serving certificate; a new one is made in its last third.
    #[arg(long, env = "DRAGONFLY_INJECTOR_TLS_MANAGED_CERT_VALIDITY", value_parser = parse_nonzero_duration, default_value = "2160h")]
    pub tls_managed_cert_validity: Duration,
    /// How often each replica reads the Secret and the webhook configuration.
    #[arg(long, env = "DRAGONFLY_INJECTOR_TLS_MANAGED_CHECK_INTERVAL", value_parser = parse_nonzero_duration, default_value = "1m")]
    pub tls_managed_check_interval: Duration,
    /// How long a replica must see a new CA in the webhook configuration before the CA signs
    /// the serving certificate (the API server learns of the change through a watch).
    #[arg(long, env = "DRAGONFLY_INJECTOR_TLS_MANAGED_PROPAGATION_DELAY", value_parser = parse_duration, default_value = "1m")]
    pub tls_managed_propagation_delay: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ManagedTlsError {
    #[error("{0}")]
    Settings(String),
    #[error("{action}: {source}")]
    Api { action: String, source: kube::Error },
    #[error(transparent)]
    Issue(#[from] certs::IssueError),
}

impl ManagedTlsError {
    /// A low-cardinality label for the error's kind.
    pub fn label(&self) -> &'static str {
        match self {
            ManagedTlsError::Settings(_) => "settings",
            ManagedTlsError::Api { .. } => "api",
            ManagedTlsError::Issue(_) => "issue",
        }
    }
}

fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ManagedTlsError {
    let action = action.into();
    move |source| ManagedTlsError::Api { action, source }
}

/// The settings, checked so that a certificate always has time to renew before it expires.
#[derive(Debug, Clone)]
pub struct ManagedSettings {
    pub secret: String,
    pub webhook_configuration: Option<String>,
    pub names: Vec<String>,
    pub ca_validity: Duration,
    pub cert_validity: Duration,
    pub check_interval: Duration,
    pub propagation_delay: Duration,
}

impl ManagedTlsArgs {
    /// `None` when the mode is off.
    pub fn settings(&self) -> Result<Option<ManagedSettings>, ManagedTlsError> {
        let Some(secret) = self.tls_managed_secret.clone() else { return Ok(None) };
        let names: Vec<String> =
            self.tls_managed_names.iter().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect();
        let refuse = |message: String| Err(ManagedTlsError::Settings(message));
        if names.is_empty() {
            return refuse(
                "--tls-managed-secret needs at least one --tls-managed-names (the Service's DNS names)".into(),
            );
        }
        let (check, delay) = (self.tls_managed_check_interval, self.tls_managed_propagation_delay);
        if self.tls_managed_cert_validity / 3 < (check + delay) * 2 {
            return refuse(format!(
                "--tls-managed-cert-validity {:?} is too short: its last third must span twice the check interval plus the propagation delay ({:?})",
                self.tls_managed_cert_validity,
                (check + delay) * 2
            ));
        }
        if self.tls_managed_ca_validity < self.tls_managed_cert_validity * 3 {
            return refuse(format!(
                "--tls-managed-ca-validity {:?} must be at least three times --tls-managed-cert-validity ({:?})",
                self.tls_managed_ca_validity,
                self.tls_managed_cert_validity * 3
            ));
        }
        Ok(Some(ManagedSettings {
            secret,
            webhook_configuration: self.tls_managed_webhook_configuration.clone(),
            names,
            ca_validity: self.tls_managed_ca_validity,
            cert_validity: self.tls_managed_cert_validity,
            check_interval: check,
            propagation_delay: delay,
        }))
    }
}

/// Keeps the Secret, the webhook configuration and the served pair in step.
pub struct Manager {
    pub settings: ManagedSettings,
    pub namespace: String,
    pub client: kube::Client,
    pub resolver: Arc<CertResolver>,
    pub provider: Arc<CryptoProvider>,
    pub metrics: Arc<Metrics>,
}

/// What this replica remembers between checks.
#[derive(Default)]
struct Memory {
    /// The newest CA (PEM) this replica has seen in the webhook configuration, and since when.
    seen: Option<(String, Instant)>,
    /// The pair being served, so that each change is installed (and reported) once.
    installed: Option<Pair>,
    /// The last reason the stored data was unusable, reported once.
    unreadable: Option<String>,
}

/// How a check ended: settled until the next interval, or worth another look soon (after a
/// write, or a write lost to another replica).
enum Next {
    Settled,
    Soon,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

impl Manager {
    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn configurations(&self) -> Api<MutatingWebhookConfiguration> {
        Api::all(self.client.clone())
    }

    /// Checks now, then at every interval (sooner after a write, and at most every 10 s while
    /// nothing is served yet), until the task is dropped.
    pub async fn run(self) {
        let mut memory = Memory::default();
        loop {
            let next = match self.check(&mut memory).await {
                Ok(Next::Settled) => self.settings.check_interval,
                Ok(Next::Soon) => Duration::from_millis(500),
                Err(error) => {
                    self.resolver.failed(&error, &self.metrics);
                    tracing::warn!(kind = error.label(), secret = %self.settings.secret, "self-managed certificate check failed; retrying");
                    self.settings.check_interval.min(Duration::from_secs(10))
                }
            };
            let next = if self.resolver.is_loaded() { next } else { next.min(Duration::from_secs(10)) };
            tokio::time::sleep(next).await;
        }
    }

    async fn check(&self, memory: &mut Memory) -> Result<Next, ManagedTlsError> {
        let settings = &self.settings;
        let now = unix_now();
        let secret = self.secrets().get_opt(&settings.secret).await.map_err(api("reading the Secret"))?;
        let read = secret.as_ref().map(|s| {
            let data = s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
            certs::read(&data, &settings.names)
        });
        let (stored, material) = match read {
            Some(Ok((stored, material))) => {
                memory.unreadable = None;
                (Some(stored), Some(material))
            }
            Some(Err(reason)) => {
                if memory.unreadable.as_ref() != Some(&reason) {
                    tracing::warn!(secret = %settings.secret, %reason, "the stored certificate is not usable; making a new one");
                    memory.unreadable = Some(reason);
                }
                (None, None)
            }
            None => (None, None),
        };
        let configuration = match &settings.webhook_configuration {
            Some(name) => {
                let found =
                    self.configurations().get_opt(name).await.map_err(api("reading the webhook configuration"))?;
                if found.is_none() {
                    tracing::warn!(webhook_configuration = %name, "the webhook configuration does not exist; its caBundle cannot follow the CA");
                }
                found
            }
            None => None,
        };
        let published_for = match (&settings.webhook_configuration, &material) {
            (None, _) => Some(Duration::MAX),
            (Some(_), Some(material)) if configuration.as_ref().is_some_and(|c| carries(c, &material.cas[0].0)) => {
                let newest = &material.cas[0].0;
                let since = match &memory.seen {
                    Some((pem, since)) if pem == newest => *since,
                    _ => Instant::now(),
                };
                memory.seen = Some((newest.clone(), since));
                Some(since.elapsed())
            }
            _ => {
                memory.seen = None;
                None
            }
        };
        let next = rotation::next_step(stored.as_ref(), now, published_for, settings.propagation_delay);
        if next.step == Step::Wait {
            tracing::debug!(reason = next.reason, "a new serving certificate is due; waiting for the CA to propagate");
        }
        let changed = self.apply(next.step, material.as_ref(), now)?;
        let material = match changed {
            Some(changed) => {
                tracing::info!(step = ?next.step, reason = next.reason, secret = %settings.secret, "writing the self-managed certificate");
                if !self.write(secret, &changed, configuration.as_ref()).await? {
                    return Ok(Next::Soon);
                }
                changed
            }
            None => match material {
                Some(material) => material,
                None => return Ok(Next::Soon),
            },
        };
        if let Some(configuration) = &configuration {
            if !self.publish(configuration, &material.bundle()).await? {
                return Ok(Next::Soon);
            }
        }
        self.serve(memory, &material.leaf);
        Ok(if changed_anything(next.step) { Next::Soon } else { Next::Settled })
    }

    /// The Secret's new contents for `step`, or `None` when nothing is to be written.
    fn apply(&self, step: Step, material: Option<&Material>, now: i64) -> Result<Option<Material>, ManagedTlsError> {
        let settings = &self.settings;
        // A new CA in front of the older ones that have not expired, and its key.
        let rotate = |material: Option<&Material>| -> Result<_, ManagedTlsError> {
            let (ca, window) = certs::new_ca(&settings.secret, settings.ca_validity, now)?;
            let mut cas = vec![(ca.cert, window)];
            cas.extend(material.map(|m| m.unexpired_cas(now)).unwrap_or_default());
            Ok((cas, ca.key))
        };
        // A serving certificate from the first (newest) of `cas`, whose key is `ca_key`.
        let leaf = |cas: &[(String, rotation::Window)], ca_key: &str| {
            let ca = Pair { cert: cas[0].0.clone(), key: ca_key.to_owned() };
            certs::new_leaf(&ca, cas[0].1, &settings.names, settings.cert_validity, now)
        };
        Ok(match (step, material) {
            (Step::Keep | Step::Wait, _) => None,
            (Step::Start, _) | (_, None) => {
                let (cas, ca_key) = rotate(material)?;
                let leaf = leaf(&cas, &ca_key)?;
                Some(Material { cas, ca_key, leaf })
            }
            (Step::NewCa, Some(material)) => {
                let (cas, ca_key) = rotate(Some(material))?;
                Some(Material { cas, ca_key, leaf: material.leaf.clone() })
            }
            (Step::NewLeaf, Some(material)) => {
                Some(Material { leaf: leaf(&material.cas, &material.ca_key)?, ..material.clone() })
            }
            // The newest CA is current here (else the step would be Start): only older ones go.
            (Step::Prune, Some(material)) => Some(Material { cas: material.unexpired_cas(now), ..material.clone() }),
        })
    }

    /// Creates or updates the Secret; `false` when another replica wrote first.
    async fn write(
        &self,
        existing: Option<Secret>,
        material: &Material,
        configuration: Option<&MutatingWebhookConfiguration>,
    ) -> Result<bool, ManagedTlsError> {
        let data = material.to_data().into_iter().map(|(k, v)| (k, ByteString(v))).collect();
        let result = match existing {
            None => {
                let owner = configuration.and_then(|c| {
                    Some(OwnerReference {
                        api_version: "admissionregistration.k8s.io/v1".into(),
                        kind: "MutatingWebhookConfiguration".into(),
                        name: c.metadata.name.clone()?,
                        uid: c.metadata.uid.clone()?,
                        ..Default::default()
                    })
                });
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.settings.secret.clone()),
                        namespace: Some(self.namespace.clone()),
                        labels: Some(
                            [("app.kubernetes.io/managed-by".to_owned(), "dragonfly-injector".to_owned())].into(),
                        ),
                        owner_references: owner.map(|o| vec![o]),
                        ..Default::default()
                    },
                    type_: Some("kubernetes.io/tls".into()),
                    data: Some(data),
                    ..Default::default()
                };
                self.secrets().create(&PostParams::default(), &secret).await.map(|_| ())
            }
            Some(mut secret) => {
                // The resourceVersion read is kept: a replica that wrote since gets a Conflict.
                secret.data = Some(data);
                secret.string_data = None;
                self.secrets().replace(&self.settings.secret, &PostParams::default(), &secret).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(error) if is_status(&error, 409) => {
                tracing::debug!("another replica wrote the Secret first; reading it again");
                Ok(false)
            }
            Err(error) => Err(api("writing the Secret")(error)),
        }
    }

    /// Sets every webhook's caBundle to `bundle`; `false` when the configuration changed under us.
    async fn publish(
        &self,
        configuration: &MutatingWebhookConfiguration,
        bundle: &str,
    ) -> Result<bool, ManagedTlsError> {
        let webhooks = configuration.webhooks.as_deref().unwrap_or_default();
        if webhooks.iter().all(|w| w.client_config.ca_bundle.as_ref().is_some_and(|b| b.0 == bundle.as_bytes())) {
            return Ok(true);
        }
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bundle);
        // A strategic merge patch merges webhooks by name and touches nothing else; the
        // resourceVersion makes it fail rather than overwrite a change made since the read.
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": configuration.metadata.resource_version},
            "webhooks": webhooks.iter().map(|w| serde_json::json!({"name": w.name, "clientConfig": {"caBundle": encoded}})).collect::<Vec<_>>(),
        });
        let name = configuration.metadata.name.clone().unwrap_or_default();
        match self.configurations().patch(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
            Ok(_) => {
                tracing::info!(webhook_configuration = %name, "caBundle set to the managed CA bundle");
                Ok(true)
            }
            Err(error) if is_status(&error, 409) => Ok(false),
            Err(error) => Err(api("updating the webhook configuration's caBundle")(error)),
        }
    }

    fn serve(&self, memory: &mut Memory, leaf: &Pair) {
        if memory.installed.as_ref() == Some(leaf) {
            return;
        }
        let origin = Origin {
            cert: format!("Secret {}/{} {}", self.namespace, self.settings.secret, certs::TLS_CERT),
            key: format!("Secret {}/{} {}", self.namespace, self.settings.secret, certs::TLS_KEY),
        };
        match parse_pair(&origin, leaf.cert.as_bytes(), leaf.key.as_bytes(), &self.provider) {
            Ok(loaded) => self.resolver.install(loaded, &origin, &self.metrics),
            Err(error) => self.resolver.failed(&error, &self.metrics),
        }
        memory.installed = Some(leaf.clone());
    }
}

fn changed_anything(step: Step) -> bool {
    !matches!(step, Step::Keep | Step::Wait)
}

/// Whether every webhook of the configuration trusts `ca` (PEM).
fn carries(configuration: &MutatingWebhookConfiguration, ca: &str) -> bool {
    let webhooks = configuration.webhooks.as_deref().unwrap_or_default();
    webhooks.iter().all(|w| {
        w.client_config
            .ca_bundle
            .as_ref()
            .and_then(|bundle| std::str::from_utf8(&bundle.0).ok())
            .is_some_and(|bundle| bundle.contains(ca.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        tls: super::super::TlsArgs,
    }

    fn parse(args: &[&str]) -> Result<Option<ManagedSettings>, String> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        cli.tls.managed.settings().map_err(|e| e.to_string())
    }

    #[test]
    fn the_mode_is_off_unless_a_secret_is_named_and_excludes_the_files() {
        assert!(parse(&["--tls-cert-file=a", "--tls-key-file=b"]).unwrap().is_none());
        let managed =
            parse(&["--tls-managed-secret=s", "--tls-managed-names=a.ns.svc,a.ns.svc.cluster.local"]).unwrap();
        assert_eq!(managed.unwrap().names, ["a.ns.svc", "a.ns.svc.cluster.local"]);
        let both = parse(&["--tls-managed-secret=s", "--tls-managed-names=a", "--tls-cert-file=a", "--tls-key-file=b"]);
        assert!(both.unwrap_err().contains("cannot be used with"));
        assert!(parse(&[]).unwrap_err().contains("--tls-cert-file"));
    }

    #[test]
    fn lifetimes_that_leave_no_time_to_renew_are_refused() {
        let base = ["--tls-managed-secret=s", "--tls-managed-names=a"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        assert!(with(&[]).unwrap().is_some(), "the defaults are consistent");
        assert!(with(&["--tls-managed-cert-validity=5m"]).unwrap_err().contains("too short"));
        let ok = with(&[
            "--tls-managed-cert-validity=30s",
            "--tls-managed-ca-validity=90s",
            "--tls-managed-check-interval=1s",
            "--tls-managed-propagation-delay=3s",
        ]);
        assert!(ok.unwrap().is_some());
        let short_ca = with(&["--tls-managed-cert-validity=720h", "--tls-managed-ca-validity=1440h"]);
        assert!(short_ca.unwrap_err().contains("at least three times"));
        assert!(parse(&["--tls-managed-secret=s"]).unwrap_err().contains("at least one --tls-managed-names"));
    }
}
