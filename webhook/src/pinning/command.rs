//! `dragonfly-injector resolve IMAGE`: prints what `serve` would pin, with the same resolver,
//! credentials and platform check.

use super::index;
use super::resolver::Resolver;
use crate::config::{parse_duration, AbsolutePath, Config, ConfigDuration};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The image, `[registry/]repository:tag`.
    pub image: String,
    /// A config file whose `registry` section and `tools.architectures` apply; flags win.
    #[arg(long, env = "DRAGONFLY_INJECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Docker config file with credentials (`.dockerconfigjson`).
    #[arg(long)]
    pub docker_config: Option<PathBuf>,
    /// PEM certificates to trust besides the shipped public roots.
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    /// A registry (`host[:port]`) to reach over plain HTTP; repeatable.
    #[arg(long)]
    pub plain_http: Vec<String>,
    /// Bound on each registry call.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// `dragonfly-injector resolve IMAGE`: prints what `serve` would pin.
pub async fn run(args: ResolveArgs) -> anyhow::Result<()> {
    let ResolveArgs { image, config, docker_config, ca_bundle, plain_http, timeout } = args;
    let config = match &config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let mut registry = config.registry.clone();
    let absolute = |path: std::path::PathBuf| -> anyhow::Result<AbsolutePath> {
        let path = std::path::absolute(&path)?;
        AbsolutePath::try_from(path.display().to_string()).map_err(anyhow::Error::msg)
    };
    if let Some(path) = docker_config {
        registry.docker_config = Some(absolute(path)?);
    }
    if let Some(path) = ca_bundle {
        registry.ca_bundle = Some(absolute(path)?);
    }
    registry.plain_http.extend(plain_http);
    if let Some(timeout) = timeout {
        registry.timeout = ConfigDuration(timeout);
    }
    let resolver = Resolver::new(&registry)?;
    let resolved = resolver
        .resolve(&image, None)
        .await
        .map_err(|error| anyhow::anyhow!("cannot resolve {image} ({}): {error}", error.label()))?;
    let architectures: Vec<String> = config.tools.architectures.iter().map(|p| p.as_str().to_owned()).collect();
    let missing = if resolved.is_index { index::missing(&architectures, &resolved.platforms) } else { architectures };
    let list = |items: Vec<&str>| if items.is_empty() { "none".to_owned() } else { items.join(", ") };
    println!("image:     {image}");
    println!("digest:    {}", resolved.digest);
    println!("pinned:    {}", resolved.pinned);
    println!("kind:      {}", if resolved.is_index { "index (multi-arch)" } else { "single-platform manifest" });
    println!("platforms: {}", list(resolved.platforms.iter().map(String::as_str).collect()));
    println!("missing:   {}", list(missing.iter().map(String::as_str).collect()));
    Ok(())
}
