//! The `inject` command itself: its arguments, reading the inputs, the engine over each document,
//! and writing the output (the server feature: it pins with the registry client and parses its
//! arguments with clap).

use super::yaml;
use crate::config::Config;
use crate::image::ImageParts;
use crate::inject::{self, NamespaceLabels, Outcome, PodContext, Settings};
use crate::pinning::resolver::Resolver;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

const EXAMPLES: &str = "Examples:
  dragonfly-injector inject -f deployment.yaml
  dragonfly-injector inject -f manifests/ -f extra.json -o json > injected.json
  kustomize build overlays/prod | dragonfly-injector inject -f - --pin
  dragonfly-injector inject -f app.yaml --namespace-labels dragonfly.io/inject-p2p=enabled

Standard error gets one line per resource (injected, unchanged or skipped, and why) and the
warnings; --quiet keeps only the warnings.";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct InjectArgs {
    /// A manifest file, a directory (its .yaml, .yml and .json files, recursively, in name
    /// order), or `-` for standard input; repeat for more.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// The output format (default: the input's; yaml for several inputs).
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<Format>,
    /// The config file (YAML); the embedded defaults without it.
    #[arg(long, env = "DRAGONFLY_INJECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Labels of the target namespace, `k=v,k2=v2`: namespace opt-in and Pod Security level.
    #[arg(long, value_parser = parse_labels)]
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// Resolve the tools image's tag to its index digest first, as `serve` pins it (with the
    /// config's registry settings); without it the output names the tag.
    #[arg(long)]
    pub pin: bool,
    /// Only warnings on standard error, not the line per resource.
    #[arg(short, long)]
    pub quiet: bool,
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

/// What became of each resource, and the warnings, for standard error.
#[derive(Debug, Default)]
pub struct Report {
    pub resources: Vec<String>,
    pub warnings: Vec<String>,
}

/// A workload found in the manifests: its kind, name and namespace.
pub struct Resource {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

/// Calls `act` on the pod template of `object` (recursing into `List` kinds); reports what is
/// not a workload. `origin` names the document for one that has no kind.
pub fn each_template(
    object: &mut Value,
    origin: &str,
    report: &mut Report,
    act: &mut dyn FnMut(&mut Value, &Resource, &mut Report),
) {
    let Some(kind) = object.get("kind").and_then(Value::as_str).map(str::to_owned) else {
        report.resources.push(format!("skipped    {origin}: not a Kubernetes object (no kind)"));
        return;
    };
    let metadata = object.get("metadata");
    let text = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (name, namespace) = (text("name"), text("namespace"));
    let name = if name.is_empty() { text("generateName") } else { name };
    if kind.ends_with("List") {
        if let Some(Value::Array(items)) = object.get_mut("items") {
            for (index, item) in items.iter_mut().enumerate() {
                each_template(item, &format!("{origin}, item {}", index + 1), report, act);
            }
        }
        return;
    }
    let Some(pointer) = template_pointer(&kind) else {
        report.resources.push(format!("unchanged  {kind}/{name}: not a workload"));
        return;
    };
    let Some(template) = object.pointer_mut(pointer) else {
        report.warnings.push(format!("{kind}/{name}: has no pod template at {pointer}; left as it is"));
        report.resources.push(format!("skipped    {kind}/{name}: no pod template"));
        return;
    };
    act(template, &Resource { kind, name, namespace }, report);
}

impl Injector<'_> {
    /// Injects one object in place; `origin` names it for the report when it has no kind.
    pub fn inject_object(&self, object: &mut Value, origin: &str, report: &mut Report) {
        each_template(object, origin, report, &mut |template, resource, report| {
            let Resource { kind, name, namespace } = resource;
            let context = PodContext {
                namespace,
                namespace_labels: NamespaceLabels::Known(self.namespace_labels),
                tools_image: self.tools_image,
            };
            let decision = inject::evaluate(template, &context, self.settings);
            report.warnings.extend(decision.warnings.into_iter().map(|w| format!("{kind}/{name}: {w}")));
            report.resources.push(match &decision.outcome {
                Outcome::Injected(status) => {
                    format!("injected   {kind}/{name} ({}; containers {})", status.parts(), status.containers.join(","))
                }
                Outcome::Unchanged => format!("unchanged  {kind}/{name}: already injected"),
                Outcome::Skipped(reason) => format!("skipped    {kind}/{name}: {}", reason.label()),
            });
            if let Some(patched) = decision.patched {
                *template = patched;
            }
        });
    }
}

/// Removes the injection from one object in place, as its record says.
pub fn uninject_object(object: &mut Value, origin: &str, report: &mut Report) {
    each_template(object, origin, report, &mut |template, Resource { kind, name, .. }, report| {
        report.resources.push(match inject::undo(template) {
            Some(status) => {
                format!("uninjected {kind}/{name} ({}; containers {})", status.parts(), status.containers.join(","))
            }
            None => format!("unchanged  {kind}/{name}: not injected"),
        });
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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

/// One input: where it came from and its text.
pub struct Input {
    pub name: String,
    pub text: String,
}

/// Injects every document of every input; returns the output text and the report. `output`:
/// the format to write (default: the input's when there is one, YAML otherwise).
pub fn inject_inputs(
    inputs: &[Input],
    output: Option<Format>,
    injector: &Injector<'_>,
) -> anyhow::Result<(String, Report)> {
    process_inputs(inputs, output, &mut |document, origin, report| injector.inject_object(document, origin, report))
}

/// Applies `act` to every document of every input, in order, and renders them all.
pub fn process_inputs(
    inputs: &[Input],
    output: Option<Format>,
    act: &mut dyn FnMut(&mut Value, &str, &mut Report),
) -> anyhow::Result<(String, Report)> {
    let mut documents = Vec::new();
    let mut formats = Vec::new();
    let mut report = Report::default();
    for input in inputs {
        let (format, parsed) = parse_documents(&input.text).with_context(|| format!("cannot read {}", input.name))?;
        formats.push(format);
        for (index, mut document) in parsed.into_iter().enumerate() {
            act(&mut document, &format!("{}, document {}", input.name, index + 1), &mut report);
            documents.push(document);
        }
    }
    let format = output.unwrap_or(match formats.as_slice() {
        [only] => *only,
        _ => Format::Yaml,
    });
    Ok((render_documents(format, &documents)?, report))
}

/// The inputs `-f` names: `-` (standard input, once), files, and directories walked for their
/// .yaml, .yml and .json files in name order.
fn read_inputs(names: &[String]) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for name in names {
        if name == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
            inputs.push(Input { name: "standard input".into(), text });
            continue;
        }
        let path = Path::new(name);
        if path.is_dir() {
            let mut files = Vec::new();
            walk(path, &mut files).with_context(|| format!("cannot read the directory {name}"))?;
            files.sort();
            for file in files {
                let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
                inputs.push(Input { name: file.display().to_string(), text });
            }
        } else {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
            inputs.push(Input { name: name.clone(), text });
        }
    }
    Ok(inputs)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
            files.push(path);
        }
    }
    Ok(())
}

/// The tools image to write: the config's, or with `--pin` the digest its tag points at now.
fn tools_image(config: &Config, pin: bool, warnings: &mut Vec<String>) -> anyhow::Result<String> {
    let image = config.tools.image.to_string();
    if ImageParts::parse(&image).is_ok_and(|parts| parts.digest.is_some()) {
        return Ok(image);
    }
    if !pin {
        warnings.push(format!(
            "the tools image {image} is written by tag: nodes may pull different builds (--pin resolves it to its digest)"
        ));
        return Ok(image);
    }
    let resolver = Resolver::new(&config.registry)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match runtime.block_on(resolver.resolve(&image, None)) {
        Ok(resolved) => Ok(resolved.pinned),
        Err(error) => {
            warnings.push(format!("could not pin {image} ({}: {error}); the output names the tag", error.label()));
            Ok(image)
        }
    }
}

/// Reserved, not committed: pages are touched only as deep as a document goes.
const DEEP_STACK_BYTES: usize = 256 << 20;

pub fn run(args: InjectArgs) -> anyhow::Result<()> {
    let InjectArgs { files, output, config, namespace_labels, pin, quiet } = args;
    let config = match &config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let settings = Settings::new(&config, None);
    let mut warnings = Vec::new();
    let tools_image = tools_image(&config, pin, &mut warnings)?;
    let labels = namespace_labels.unwrap_or_default();
    let injector = Injector { settings: &settings, tools_image: &tools_image, namespace_labels: &labels };
    run_over(&files, output, quiet, warnings, &mut |document, origin, report| {
        injector.inject_object(document, origin, report)
    })
}

const UNINJECT_EXAMPLES: &str = "Examples:
  dragonfly-injector uninject -f injected.yaml > original.yaml
  dragonfly-injector inject -f app.yaml | dragonfly-injector uninject -f -   # gives app.yaml's objects back";

/// `dragonfly-injector uninject`: removes what `inject` (or the webhook) added, as each pod's
/// `dragonfly.io/injected` record says.
#[derive(Debug, Args)]
#[command(after_help = UNINJECT_EXAMPLES)]
pub struct UninjectArgs {
    /// A manifest file, a directory (its .yaml, .yml and .json files, recursively, in name
    /// order), or `-` for standard input; repeat for more.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// The output format (default: the input's; yaml for several inputs).
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<Format>,
    /// Only warnings on standard error, not the line per resource.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run_uninject(args: UninjectArgs) -> anyhow::Result<()> {
    let UninjectArgs { files, output, quiet } = args;
    run_over(&files, output, quiet, Vec::new(), &mut uninject_object)
}

/// Reads `files`, applies `act` to every document, writes the report and the warnings to
/// standard error and the documents to standard output, whole or not at all.
fn run_over(
    files: &[String],
    output: Option<Format>,
    quiet: bool,
    warnings: Vec<String>,
    act: &mut (dyn FnMut(&mut Value, &str, &mut Report) + Send),
) -> anyhow::Result<()> {
    let inputs = read_inputs(files)?;
    // Documents may nest 10,000 deep (as go-yaml allows), and values are cloned, compared and
    // dropped recursively: the work runs on a thread with room for that, whatever the main
    // thread's stack limit.
    let (text, report) = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("offline".into())
            .stack_size(DEEP_STACK_BYTES)
            .spawn_scoped(scope, || {
                let result = process_inputs(&inputs, output, act);
                drop(inputs);
                result
            })
            .context("cannot start the worker thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("the worker thread panicked"))?
    })?;
    if !quiet {
        for line in &report.resources {
            eprintln!("{line}");
        }
    }
    for warning in warnings.iter().chain(&report.warnings) {
        eprintln!("warning: {warning}");
    }
    std::io::stdout().lock().write_all(text.as_bytes()).context("cannot write standard output")?;
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
