//! `dragonfly-injector inject`: the engine run offline over manifests for GitOps, like
//! `istioctl kube-inject`.
//! Reads YAML or JSON (one or many documents), injects Pods and the pod templates of workload
//! kinds, and writes every document back in order. Output is produced whole before anything is
//! written, so a bad document leaves standard output empty.

pub mod yaml;

use crate::config::Config;
use crate::inject::{self, NamespaceLabels, PodContext, Settings};
use anyhow::Context as _;
use clap::Args;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The manifest file, or `-` for standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: String,
    /// The config file (YAML); the embedded defaults without it.
    #[arg(long, env = "DRAGONFLY_INJECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Labels of the target namespace, `k=v,k2=v2`: namespace opt-in and Pod Security level.
    #[arg(long, value_parser = parse_labels)]
    pub namespace_labels: Option<BTreeMap<String, String>>,
}

pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
            _ => Err(format!("{pair:?} is not key=value")),
        })
        .collect()
}

/// Where each workload kind keeps its pod template.
fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "ReplicationController" => {
            Some("/spec/template")
        }
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        "PodTemplate" => Some("/template"),
        _ => None,
    }
}

pub struct Injector<'a> {
    pub settings: &'a Settings,
    pub tools_image: &'a str,
    pub namespace_labels: &'a BTreeMap<String, String>,
}

impl Injector<'_> {
    /// Injects one object in place (recursing into `List` kinds); returns warnings for the user.
    pub fn inject_object(&self, object: &mut Value, warnings: &mut Vec<String>) {
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
        if kind.ends_with("List") {
            if let Some(Value::Array(items)) = object.get_mut("items") {
                for item in items {
                    self.inject_object(item, warnings);
                }
            }
            return;
        }
        let Some(pointer) = template_pointer(&kind) else { return };
        let metadata = object.get("metadata");
        let text = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (name, namespace) = (text("name"), text("namespace"));
        let Some(template) = object.pointer_mut(pointer) else {
            warnings.push(format!("{kind}/{name}: has no pod template at {pointer}; left as it is"));
            return;
        };
        let context = PodContext {
            namespace: &namespace,
            namespace_labels: NamespaceLabels::Known(self.namespace_labels),
            tools_image: self.tools_image,
        };
        let decision = inject::evaluate(template, &context, self.settings);
        warnings.extend(decision.warnings.into_iter().map(|w| format!("{kind}/{name}: {w}")));
        if let Some(patched) = decision.patched {
            *template = patched;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// JSON when the first meaningful character opens an object or array; YAML otherwise.
pub fn detect_format(input: &str) -> Format {
    match input.trim_start().chars().next() {
        Some('{' | '[') => Format::Json,
        _ => Format::Yaml,
    }
}

/// Parses every document. Empty YAML documents (`---` with nothing after) are dropped.
pub fn parse_documents(input: &str) -> anyhow::Result<(Format, Vec<Value>)> {
    let format = detect_format(input);
    let documents = match format {
        Format::Json => {
            let mut documents = Vec::new();
            for document in serde_json::Deserializer::from_str(input).into_iter::<Value>() {
                documents
                    .push(document.with_context(|| format!("document {} is not valid JSON", documents.len() + 1))?);
            }
            documents
        }
        Format::Yaml => yaml::parse_documents(input).context("not valid YAML")?,
    };
    Ok((format, documents))
}

pub fn render_documents(format: Format, documents: &[Value]) -> anyhow::Result<String> {
    let mut output = String::new();
    for (index, document) in documents.iter().enumerate() {
        match format {
            Format::Json => {
                output.push_str(&serde_json::to_string_pretty(document)?);
                output.push('\n');
            }
            Format::Yaml => {
                if index > 0 {
                    output.push_str("---\n");
                }
                output.push_str(&yaml::to_yaml(document));
            }
        }
    }
    Ok(output)
}

/// The whole command: returns the output text and the warnings.
pub fn inject_text(input: &str, injector: &Injector<'_>) -> anyhow::Result<(String, Vec<String>)> {
    let (format, mut documents) = parse_documents(input)?;
    let mut warnings = Vec::new();
    for document in &mut documents {
        injector.inject_object(document, &mut warnings);
    }
    Ok((render_documents(format, &documents)?, warnings))
}

/// Reserved, not committed: pages are touched only as deep as a document goes.
const DEEP_STACK_BYTES: usize = 256 << 20;

pub fn run(args: InjectArgs) -> anyhow::Result<()> {
    let InjectArgs { file, config, namespace_labels } = args;
    let config = match &config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let settings = Settings::new(&config, None);
    let input = if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
        text
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?
    };
    let labels = namespace_labels.unwrap_or_default();
    let tools_image = config.tools.image.to_string();
    // Documents may nest 10,000 deep (as go-yaml allows), and values are cloned, compared and
    // dropped recursively: the work runs on a thread with room for that, whatever the main
    // thread's stack limit.
    let (output, warnings) = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("inject".into())
            .stack_size(DEEP_STACK_BYTES)
            .spawn_scoped(scope, || {
                let injector = Injector { settings: &settings, tools_image: &tools_image, namespace_labels: &labels };
                let result = inject_text(&input, &injector);
                drop(input);
                result
            })
            .context("cannot start the injecting thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("the injecting thread panicked"))?
    })
    .with_context(|| format!("cannot inject {file}"))?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    std::io::stdout().lock().write_all(output.as_bytes()).context("cannot write standard output")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_labels_parse_as_comma_separated_pairs() {
        let labels =
            parse_labels("dragonfly.io/inject-p2p=enabled, pod-security.kubernetes.io/enforce=baseline").unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
        assert!(parse_labels("novalue").is_err());
        assert!(parse_labels("=v").is_err());
    }
}
