//! Logs go to standard error (standard output carries `inject`'s manifests): JSON for
//! clusters, text for terminals. hyper, h2, rustls and kube are quiet unless asked for.

use clap::{Args, ValueEnum};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[arg(long, global = true, help_heading = "Global options", env = "DRAGONFLY_INJECTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `info,dragonfly_injector=debug`; RUST_LOG wins if set.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "DRAGONFLY_INJECTOR_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
}

const QUIET: &str = "hyper=warn,hyper_util=warn,h2=warn,rustls=warn,tower=warn,kube=warn,kube_runtime=warn,notify=warn";

pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let LogArgs { log_format, log_level } = args;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(format!("{QUIET},{log_level}"))
            .map_err(|error| anyhow::anyhow!("invalid --log-level {log_level:?}: {error}"))?,
    };
    let json = match log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if json {
        builder
            .with_writer(ArrayFields)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_writer(std::io::stderr).try_init()
    };
    result.map_err(|error| anyhow::anyhow!("cannot install the logger: {error}"))
}

/// tracing's JSON lines hold only strings and numbers; a `warnings` field logged as the JSON
/// text of a list (see the admission line) is written as that list, so that log pipelines get
/// an array. Each event arrives as one whole line.
struct ArrayFields;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ArrayFields {
    type Writer = ArrayLine;

    fn make_writer(&'a self) -> Self::Writer {
        ArrayLine(std::io::stderr())
    }
}

struct ArrayLine(std::io::Stderr);

const EMPTY: &[u8] = br#""warnings":"[]""#;
const LISTED: &[u8] = br#""warnings":"[\""#;

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// The line with its `warnings` string turned into the list it spells; as it was otherwise.
pub fn with_warnings_as_array(line: &[u8]) -> Option<Vec<u8>> {
    if let Some(at) = find(line, EMPTY) {
        let mut fixed = Vec::with_capacity(line.len());
        fixed.extend_from_slice(&line[..at]);
        fixed.extend_from_slice(br#""warnings":[]"#);
        fixed.extend_from_slice(&line[at + EMPTY.len()..]);
        return Some(fixed);
    }
    find(line, LISTED)?;
    let mut value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let text = value.get("warnings")?.as_str()?;
    let list: serde_json::Value = serde_json::from_str(text).ok().filter(serde_json::Value::is_array)?;
    value["warnings"] = list;
    let mut fixed = serde_json::to_vec(&value).ok()?;
    fixed.push(b'\n');
    Some(fixed)
}

impl std::io::Write for ArrayLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match with_warnings_as_array(buf) {
            Some(fixed) => self.0.write_all(&fixed),
            None => self.0.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn warnings_logged_as_list_text_become_a_list() {
        let line = |warnings: &[&str]| {
            let text = serde_json::to_string(warnings).unwrap();
            let mut bytes =
                serde_json::to_vec(&json!({"message": "admission reviewed", "warnings": text, "n": 1})).unwrap();
            bytes.push(b'\n');
            bytes
        };
        let fixed = with_warnings_as_array(&line(&["a \"quoted\" one", "two"])).unwrap();
        let value: Value = serde_json::from_slice(&fixed).unwrap();
        assert_eq!(value["warnings"], json!(["a \"quoted\" one", "two"]));
        assert_eq!(value["n"], 1);
        assert!(fixed.ends_with(b"\n"));
        let empty: Value = serde_json::from_slice(&with_warnings_as_array(&line(&[])).unwrap()).unwrap();
        assert_eq!(empty["warnings"], json!([]));
        assert_eq!(with_warnings_as_array(br#"{"message":"other","warnings":"none"}"#), None, "other lines pass");
    }
}
