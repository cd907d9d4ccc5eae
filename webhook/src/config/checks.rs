//! Checks across keys, run after each value has passed its own: directories the injected
//! containers mount must not overlap. Reported like the parser's own errors, with the key path,
//! line and column, so `serve`, `inject` and `resolve` all name the place to fix.

use super::{Config, SocketMode, SocketMount, ToolsPath};
use std::time::Duration;
use yaml_rust2::parser::{Event, Parser};

/// `a` is `b` or lies inside it.
fn nested(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{}/", b.trim_end_matches('/')))
}

fn overlap(a: &str, b: &str) -> bool {
    nested(a, b) || nested(b, a)
}

/// Lower bounds: a shorter refresh would poll the registry in a hot loop, a shorter timeout
/// would fail every call.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
const MIN_REGISTRY_TIMEOUT: Duration = Duration::from_millis(100);

/// Everything checked after the values themselves: bounds, then overlaps.
pub fn all(config: &Config, text: Option<&str>) -> Result<(), String> {
    bounds(config, text)?;
    cross_fields(config, text)
}

fn located(text: Option<&str>, path: &[&str], problem: String) -> String {
    let at = text
        .and_then(|text| key_position(text, path))
        .map(|(line, column)| format!(" at line {line} column {column}"))
        .unwrap_or_default();
    format!("{}: {problem}{at}", path.join("."))
}

fn bounds(config: &Config, text: Option<&str>) -> Result<(), String> {
    let checks = [
        (config.tools.refresh_interval.0, MIN_REFRESH_INTERVAL, ["tools", "refreshInterval"]),
        (config.registry.timeout.0, MIN_REGISTRY_TIMEOUT, ["registry", "timeout"]),
    ];
    for (value, minimum, path) in checks {
        if value < minimum {
            return Err(located(text, &path, format!("{value:?} is shorter than the minimum, {minimum:?}")));
        }
    }
    Ok(())
}

/// The first overlap found, as `tools.mountPath: ... at line L column C` (`text` locates the key;
/// without it, or for a key left at its default, the location is left out).
fn cross_fields(config: &Config, text: Option<&str>) -> Result<(), String> {
    let tools = config.tools.mount_path.as_str();
    let mut problem = None;
    if config.socket.enabled {
        let socket = SocketMount::for_socket(config.socket.path.as_str());
        if overlap(tools, socket.mount_path) {
            problem = Some(format!(
                "{tools} overlaps the socket's mount at {} (from socket.path {}); choose another directory",
                socket.mount_path, config.socket.path
            ));
        }
    }
    let link_dir = config.tools.link_dir.as_str();
    if problem.is_none() && config.tools.path == ToolsPath::Link && overlap(tools, link_dir) {
        problem = Some(format!("{tools} overlaps tools.linkDir {link_dir}; choose another directory"));
    }
    if let Some(problem) = problem {
        return Err(located(text, &["tools", "mountPath"], problem));
    }
    csi_socket(config, text)
}

/// The CSI plugin publishes the socket's directory, and publishes it only into namespaces with
/// the label: `csi` and `auto` need a dedicated directory and a label.
fn csi_socket(config: &Config, text: Option<&str>) -> Result<(), String> {
    let socket = &config.socket;
    if !socket.enabled || socket.mode == SocketMode::HostPath {
        return Ok(());
    }
    if socket.namespace_label.is_none() {
        return Err(located(
            text,
            &["socket", "mode"],
            "csi and auto need socket.namespaceLabel: the CSI plugin grants the socket only to namespaces with that label"
                .to_owned(),
        ));
    }
    if SocketMount::for_socket(socket.path.as_str()).file_only {
        return Err(located(
            text,
            &["socket", "path"],
            format!(
                "{} is not a dfdaemon.sock in a directory of its own, which the CSI plugin publishes whole; \
                 move the socket or use socket.mode hostPath",
                socket.path
            ),
        ));
    }
    Ok(())
}

enum Frame {
    Mapping { key: Option<String>, expecting_key: bool },
    Sequence,
}

/// Line and column (1-based) of the key at `path` in the first document, if it is written there.
pub fn key_position(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    // A value (scalar, alias or collection) has ended: its mapping now expects a key.
    let value_done = |stack: &mut Vec<Frame>| {
        if let Some(Frame::Mapping { expecting_key, .. }) = stack.last_mut() {
            *expecting_key = true;
        }
    };
    loop {
        let (event, mark) = parser.next_token().ok()?;
        match event {
            Event::StreamEnd | Event::DocumentEnd => return None,
            Event::MappingStart(..) => stack.push(Frame::Mapping { key: None, expecting_key: true }),
            Event::SequenceStart(..) => stack.push(Frame::Sequence),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                value_done(&mut stack);
            }
            Event::Scalar(text, ..) => match stack.last_mut() {
                Some(Frame::Mapping { key, expecting_key }) if *expecting_key => {
                    *key = Some(text);
                    *expecting_key = false;
                    let keys: Vec<&str> = stack
                        .iter()
                        .map(|frame| match frame {
                            Frame::Mapping { key: Some(key), .. } => key.as_str(),
                            _ => "",
                        })
                        .collect();
                    if keys == path {
                        return Some((mark.line(), mark.col() + 1));
                    }
                }
                _ => value_done(&mut stack),
            },
            Event::Alias(_) => value_done(&mut stack),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_located_in_block_and_flow_style() {
        let text = "proxy:\n  port: 4001\ntools:\n  binaries: [dfget, dfcache]\n  resources: {limits: {cpu: 1}}\n  mountPath: /x\n";
        assert_eq!(key_position(text, &["tools", "mountPath"]), Some((6, 3)));
        assert_eq!(key_position(text, &["proxy", "port"]), Some((2, 3)));
        assert_eq!(key_position("tools: {mountPath: /x}\n", &["tools", "mountPath"]), Some((1, 9)));
        assert_eq!(key_position(text, &["mountPath"]), None, "only the full path matches");
        assert_eq!(key_position("mountPath: [", &["mountPath"]), Some((1, 1)));
        assert_eq!(key_position("tools: [", &["tools", "mountPath"]), None, "a broken document gives none");
    }

    #[test]
    fn intervals_below_their_minimum_are_refused_with_the_key() {
        let error = Config::from_yaml("tools:\n  refreshInterval: 1ms\n").unwrap_err();
        assert_eq!(error, "tools.refreshInterval: 1ms is shorter than the minimum, 10s at line 2 column 3");
        let error = Config::from_yaml("registry: {timeout: 10ms}\n").unwrap_err();
        assert!(error.starts_with("registry.timeout: 10ms is shorter than the minimum, 100ms"), "{error}");
        Config::from_yaml("tools: {refreshInterval: 10s}\nregistry: {timeout: 100ms}\n").unwrap();
    }

    #[test]
    fn overlapping_directories_name_the_key_and_its_line() {
        let cases = [
            ("tools: {mountPath: /var/run/dragonfly}\n", "overlaps the socket's mount"),
            ("tools:\n  mountPath: /var/run/dragonfly/bin\n", "overlaps the socket's mount"),
            ("tools: {mountPath: /var}\nsocket: {path: /var/lib/df/d.sock}\n", "overlaps the socket's mount"),
            ("tools: {mountPath: /usr/local/bin}\n", "overlaps tools.linkDir"),
        ];
        for (text, wanted) in cases {
            let error = Config::from_yaml(text).unwrap_err();
            assert!(error.starts_with("tools.mountPath: ") && error.contains(wanted), "{text}: {error}");
            assert!(error.contains(" at line "), "{error}");
        }
        // The same directories are fine when the part they would collide with is off.
        Config::from_yaml("tools: {mountPath: /var/run/dragonfly/bin}\nsocket: {enabled: false}\n").unwrap();
        Config::from_yaml("tools: {mountPath: /usr/local/bin, path: prepend}\n").unwrap();
        // A file-mounted socket leaves its directory free.
        Config::from_yaml("tools: {mountPath: /var/run/dragonfly/bin}\nsocket: {path: /run/df.sock}\n").unwrap();
    }

    #[test]
    fn csi_and_auto_need_a_label_and_a_socket_directory_of_its_own() {
        for mode in ["csi", "auto"] {
            let error = Config::from_yaml(&format!("socket:\n  mode: {mode}\n")).unwrap_err();
            assert!(error.starts_with("socket.mode: csi and auto need socket.namespaceLabel"), "{error}");
            assert!(error.ends_with(" at line 2 column 3"), "{error}");
            let text = format!("socket: {{mode: {mode}, namespaceLabel: a=b, path: /var/run/dfdaemon.sock}}\n");
            let error = Config::from_yaml(&text).unwrap_err();
            assert!(error.starts_with("socket.path: /var/run/dfdaemon.sock is not a dfdaemon.sock"), "{error}");
            let config = Config::from_yaml(&format!("socket: {{mode: {mode}, namespaceLabel: a=b}}\n")).unwrap();
            assert_eq!(config.socket.csi_driver.as_str(), "csi.dragonfly.io");
        }
        // hostPath, the default, needs neither; a disabled socket is never checked.
        Config::from_yaml("socket: {path: /var/run/dfdaemon.sock}\n").unwrap();
        Config::from_yaml("socket: {enabled: false, mode: csi}\n").unwrap();
        assert!(Config::from_yaml("socket: {mode: hostpath}\n").is_err(), "modes are spelt as documented");
    }
}
