//! Registry credentials from a Docker config file: the `.dockerconfigjson` of a
//! `kubernetes.io/dockerconfigjson` Secret, mounted into the webhook's pod.

use super::setup::SetupError;
use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    /// base64 of `user:password`.
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    /// A bearer token for the registry itself.
    registrytoken: Option<String>,
}

/// `https://index.docker.io/v1/`, `docker.io`, `registry-1.docker.io` name one registry; keys may
/// carry a scheme and a path.
fn normalise(registry: &str) -> String {
    let host = registry.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_owned(),
        _ => host,
    }
}

impl DockerConfig {
    pub fn load(path: &Path) -> Result<Self, SetupError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SetupError::ReadDockerConfig { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|message| SetupError::InvalidDockerConfig { path: path.to_owned(), message })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: DockerConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (registry, entry) in &config.auths {
            entry.credentials().map_err(|e| format!("auths.{registry}: {e}"))?;
        }
        Ok(config)
    }

    /// The credentials for `registry`, or anonymous access.
    pub fn auth_for(&self, registry: &str) -> RegistryAuth {
        let wanted = normalise(registry);
        self.auths
            .iter()
            .find(|(key, _)| normalise(key) == wanted)
            .and_then(|(_, entry)| entry.credentials().ok())
            .unwrap_or(RegistryAuth::Anonymous)
    }
}

impl DockerAuth {
    fn credentials(&self) -> Result<RegistryAuth, String> {
        if let Some(token) = self.registrytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(RegistryAuth::Bearer(token.clone()));
        }
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            return Ok(RegistryAuth::Basic(user.clone(), password.clone()));
        }
        match &self.auth {
            Some(encoded) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| "auth is not base64".to_owned())?;
                let text = String::from_utf8(decoded).map_err(|_| "auth is not UTF-8".to_owned())?;
                let (user, password) = text.split_once(':').ok_or("auth is not user:password")?;
                Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()))
            }
            None => Ok(RegistryAuth::Anonymous),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(auth: RegistryAuth) -> Option<(String, String)> {
        match auth {
            RegistryAuth::Basic(user, password) => Some((user, password)),
            _ => None,
        }
    }

    #[test]
    fn credentials_are_found_under_any_spelling_of_the_registry() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("robot:s3cret");
        let config = DockerConfig::parse(&format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{encoded}"}},
                "registry.local:5000": {{"username": "u", "password": "p"}},
                "ghcr.io": {{"registrytoken": "tok"}}
            }}}}"#
        ))
        .unwrap();
        assert_eq!(basic(config.auth_for("index.docker.io")), Some(("robot".into(), "s3cret".into())));
        assert_eq!(basic(config.auth_for("docker.io")), Some(("robot".into(), "s3cret".into())));
        assert_eq!(basic(config.auth_for("registry.local:5000")), Some(("u".into(), "p".into())));
        assert!(matches!(config.auth_for("ghcr.io"), RegistryAuth::Bearer(t) if t == "tok"));
        assert!(matches!(config.auth_for("quay.io"), RegistryAuth::Anonymous));
    }

    #[test]
    fn broken_files_are_refused_with_the_entry_named() {
        assert!(DockerConfig::parse("not json").is_err());
        let error = DockerConfig::parse(r#"{"auths": {"r.io": {"auth": "%%%"}}}"#).unwrap_err();
        assert!(error.contains("auths.r.io") && error.contains("base64"), "{error}");
        let error = DockerConfig::load(Path::new("/nonexistent/config.json")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/config.json"), "{error}");
    }
}
