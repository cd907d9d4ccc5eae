//! Pinning the tools image against a real registry on loopback: Debian's docker-registry, with
//! real multi-arch indexes pushed by oci-client.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use dragonfly_injector::config::Config;
use dragonfly_injector::metrics::Metrics;
use dragonfly_injector::pinning::resolver::{ResolveError, Resolver};
use dragonfly_injector::pinning::{self, Pinner, ToolsImageCell};
use dragonfly_injector::server;
use dragonfly_injector::server::ServeArgs;
use oci_client::secrets::RegistryAuth;
use std::sync::Arc;
use std::time::Duration;
use test_kit::free_port;
use test_kit::registry::{push_index, pushing_client, IndexSpec, Registry, RegistryOptions};
use test_kit::{client_config, eventually, fixture, get, review_for, Connection, Pki};

fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml).unwrap()
}

fn plain_resolver(host: &str) -> Resolver {
    Resolver::new(&config(&format!("registry: {{plainHttp: [\"{host}\"], timeout: 5s}}\n")).registry).unwrap()
}

/// A resolver for a plain-HTTP `host` whose Docker config file holds `entry` for it.
fn resolver_with_credentials(dir: &std::path::Path, host: &str, name: &str, entry: &str) -> Resolver {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, format!(r#"{{"auths": {{"{host}": {entry}}}}}"#)).unwrap();
    Resolver::new(
        &config(&format!("registry: {{plainHttp: [\"{host}\"], dockerConfig: {}, timeout: 5s}}\n", path.display()))
            .registry,
    )
    .unwrap()
}

fn pinner(resolver: Resolver, image: &str) -> (Pinner, Arc<ToolsImageCell>, Arc<Metrics>) {
    let tools = config(&format!("tools: {{image: \"{image}\"}}\n")).tools;
    let (first, _) = pinning::initial(&tools);
    let cell = Arc::new(ToolsImageCell::new(first.map(Arc::new)));
    let metrics = Arc::new(Metrics::default());
    let pinner = Pinner {
        resolver,
        image: image.to_owned(),
        refresh_interval: Duration::from_secs(300),
        architectures: vec!["linux/amd64".into(), "linux/arm64".into()],
        cell: cell.clone(),
        metrics: metrics.clone(),
        nodes: None,
    };
    (pinner, cell, metrics)
}

fn injected(cell: &ToolsImageCell) -> String {
    cell.load().as_ref().unwrap().reference.clone()
}

#[tokio::test]
async fn a_tag_resolves_to_its_index_digest_and_attestations_are_not_platforms() {
    test_kit::install_crypto();
    let registry = Registry::start(RegistryOptions::default());
    let client = pushing_client(None);
    let digest = push_index(
        &client,
        &RegistryAuth::Anonymous,
        &registry.host,
        IndexSpec {
            platforms: &["linux/amd64", "linux/arm64", "linux/arm/v7"],
            attestation: true,
            ..IndexSpec::default()
        },
    )
    .await;
    let resolved =
        plain_resolver(&registry.host).resolve(&format!("{}/dragonfly/tools:v1", registry.host), None).await.unwrap();
    assert_eq!(resolved.digest, digest, "the index digest, not a platform's");
    assert!(resolved.is_index);
    assert_eq!(
        resolved.platforms.iter().map(String::as_str).collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm/v7", "linux/arm64"]
    );
    assert_eq!(resolved.pinned, format!("{}/dragonfly/tools:v1@{digest}", registry.host));
}

#[tokio::test]
async fn a_moved_tag_changes_what_is_injected_only_at_the_next_refresh() {
    test_kit::install_crypto();
    let registry = Registry::start(RegistryOptions::default());
    let client = pushing_client(None);
    let image = format!("{}/dragonfly/tools:v1", registry.host);
    let first = push_index(
        &client,
        &RegistryAuth::Anonymous,
        &registry.host,
        IndexSpec { salt: "first", ..IndexSpec::default() },
    )
    .await;
    let (pinner, cell, metrics) = pinner(plain_resolver(&registry.host), &image);
    assert_eq!(injected(&cell), image, "preferred: the tag until a digest is known");
    assert!(cell.load().as_ref().unwrap().unpinned_warning.is_some());
    let mut last = None;
    pinner.refresh(&mut last).await.unwrap();
    assert_eq!(injected(&cell), format!("{image}@{first}"));
    assert!(cell.load().as_ref().unwrap().unpinned_warning.is_none());

    let second = push_index(
        &client,
        &RegistryAuth::Anonymous,
        &registry.host,
        IndexSpec { salt: "second", ..IndexSpec::default() },
    )
    .await;
    assert_ne!(first, second);
    assert_eq!(injected(&cell), format!("{image}@{first}"), "a moved tag changes nothing by itself");
    pinner.refresh(&mut last).await.unwrap();
    assert_eq!(injected(&cell), format!("{image}@{second}"));
    let text = metrics.encode();
    assert!(
        text.contains(&format!("dragonfly_injector_tools_image_info{{image=\"{image}\",digest=\"{second}\"}} 1")),
        "{text}"
    );
    assert!(!text.contains(&first), "the old digest's series is gone");

    // The background loop does the same on its interval.
    let (mut looping, cell, _) = self::pinner(plain_resolver(&registry.host), &image);
    looping.refresh_interval = Duration::from_millis(100);
    let task = tokio::spawn(looping.run());
    eventually(10, "the loop pins the second digest", || {
        let cell = cell.clone();
        let expected = format!("{image}@{second}");
        async move { cell.load().as_ref().is_some_and(|t| t.reference == expected) }
    })
    .await;
    let third = push_index(
        &client,
        &RegistryAuth::Anonymous,
        &registry.host,
        IndexSpec { salt: "third", ..IndexSpec::default() },
    )
    .await;
    eventually(10, "the loop follows the moved tag", || {
        let cell = cell.clone();
        let expected = format!("{image}@{third}");
        async move { cell.load().as_ref().is_some_and(|t| t.reference == expected) }
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn a_stopped_registry_keeps_the_last_good_digest() {
    test_kit::install_crypto();
    let mut registry = Registry::start(RegistryOptions::default());
    let image = format!("{}/dragonfly/tools:v1", registry.host);
    let digest =
        push_index(&pushing_client(None), &RegistryAuth::Anonymous, &registry.host, IndexSpec::default()).await;
    let (pinner, cell, metrics) = pinner(plain_resolver(&registry.host), &image);
    let mut last = None;
    pinner.refresh(&mut last).await.unwrap();
    registry.stop();
    let error = pinner.refresh(&mut last).await.unwrap_err();
    assert_eq!(error.label(), "unreachable", "{error}");
    assert_eq!(injected(&cell), format!("{image}@{digest}"));
    let text = metrics.encode();
    assert!(
        text.contains(r#"dragonfly_injector_tools_image_resolution_failures_total{reason="unreachable"} 1"#),
        "{text}"
    );
    let at = text
        .lines()
        .find(|l| l.starts_with("dragonfly_injector_tools_image_last_resolution_timestamp_seconds "))
        .unwrap();
    assert!(at.rsplit(' ').next().unwrap().parse::<i64>().unwrap() > 1_700_000_000, "the last success stays: {at}");
}

#[tokio::test]
async fn an_index_missing_a_configured_platform_is_reported() {
    test_kit::install_crypto();
    let registry = Registry::start(RegistryOptions::default());
    let image = format!("{}/dragonfly/tools:amd64-only", registry.host);
    push_index(
        &pushing_client(None),
        &RegistryAuth::Anonymous,
        &registry.host,
        IndexSpec { tag: "amd64-only", platforms: &["linux/amd64"], attestation: true, ..IndexSpec::default() },
    )
    .await;
    let (pinner, _, metrics) = pinner(plain_resolver(&registry.host), &image);
    pinner.refresh(&mut None).await.unwrap();
    let text = metrics.encode();
    assert!(text.contains(r#"dragonfly_injector_tools_image_missing_platforms{platform="linux/arm64"} 1"#), "{text}");
    assert!(text.contains(r#"dragonfly_injector_tools_image_missing_platforms{platform="linux/amd64"} 0"#), "{text}");
}

#[tokio::test]
async fn wrong_credentials_fail_fast_and_clearly_and_right_ones_work() {
    test_kit::install_crypto();
    let registry = Registry::start(RegistryOptions { user: Some(("robot", "s3cret")), ..Default::default() });
    let good = RegistryAuth::Basic("robot".into(), "s3cret".into());
    let digest = push_index(&pushing_client(None), &good, &registry.host, IndexSpec::default()).await;
    let temp = tempfile::tempdir().unwrap();
    let resolver_with = |password: &str| {
        resolver_with_credentials(
            temp.path(),
            &registry.host,
            password,
            &format!(r#"{{"username": "robot", "password": "{password}"}}"#),
        )
    };
    let image = format!("{}/dragonfly/tools:v1", registry.host);
    let (pinner, cell, metrics) = pinner(resolver_with("wrong"), &image);
    // Liveness, not speed: the refusal must come back rather than hang.
    let error =
        tokio::time::timeout(Duration::from_secs(30), pinner.refresh(&mut None)).await.expect("no hang").unwrap_err();
    assert!(matches!(error, ResolveError::Unauthorized(_)), "{error:?}");
    assert!(error.to_string().starts_with("registry refused the credentials"), "{error}");
    assert!(metrics.encode().contains(r#"tools_image_resolution_failures_total{reason="unauthorized"} 1"#));
    assert_eq!(injected(&cell), image, "still the tag");

    let resolved = resolver_with("s3cret").resolve(&image, None).await.unwrap();
    assert_eq!(resolved.digest, digest);
    let anonymous = plain_resolver(&registry.host).resolve(&image, None).await.unwrap_err();
    assert_eq!(anonymous.label(), "unauthorized");
}

#[tokio::test]
async fn a_tls_registry_needs_its_ca_and_works_with_it() {
    test_kit::install_crypto();
    let pki = Pki::new("registry ca");
    let leaf = pki.leaf("registry");
    let registry = Registry::start(RegistryOptions { tls: Some(&leaf), ..Default::default() });
    let digest =
        push_index(&pushing_client(Some(&pki.ca_pem)), &RegistryAuth::Anonymous, &registry.host, IndexSpec::default())
            .await;
    let image = format!("{}/dragonfly/tools:v1", registry.host);
    let untrusted = Resolver::new(&config("registry: {timeout: 5s}\n").registry).unwrap();
    let error = untrusted.resolve(&image, None).await.unwrap_err();
    assert_eq!(error.label(), "tls", "{error}");
    let temp = tempfile::tempdir().unwrap();
    let ca = temp.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let trusted =
        Resolver::new(&config(&format!("registry: {{caBundle: {}, timeout: 5s}}\n", ca.display())).registry).unwrap();
    assert_eq!(trusted.resolve(&image, None).await.unwrap().digest, digest);
    let bad = temp.path().join("bad.pem");
    std::fs::write(&bad, "nothing").unwrap();
    let error = Resolver::new(&config(&format!("registry: {{caBundle: {}}}\n", bad.display())).registry).err().unwrap();
    assert!(error.to_string().contains("holds no PEM certificate"), "{error}");
}

#[tokio::test]
async fn a_registry_that_never_answers_is_cut_off_by_the_timeout() {
    test_kit::install_crypto();
    // Accepts connections and then says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = silent.local_addr().unwrap().to_string();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let resolver =
        Resolver::new(&config(&format!("registry: {{plainHttp: [\"{host}\"], timeout: 500ms}}\n")).registry).unwrap();
    // Liveness, not speed: the configured 500 ms bound must end the call, far inside 30 s.
    let error =
        tokio::time::timeout(Duration::from_secs(30), resolver.resolve(&format!("{host}/dragonfly/tools:v1"), None))
            .await
            .expect("the registry call was not cut off")
            .unwrap_err();
    assert!(["timeout", "unreachable"].contains(&error.label()), "{error}");
    held.abort();
}

fn serve_args(dir: &std::path::Path, pki: &Pki, config_yaml: &str) -> ServeArgs {
    test_kit::serve_args(dir, config_yaml, pki.leaf("webhook").write_pair(dir), Duration::ZERO)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_registry_unreachable_preferred_injects_the_tag_with_a_warning_and_required_stays_unready() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("webhook ca");
    let host = format!("127.0.0.1:{}", free_port());
    let image = format!("{host}/dragonfly/tools:v1");
    let registry = format!("registry: {{plainHttp: [\"{host}\"], timeout: 1s}}\n");

    let preferred = server::start(serve_args(temp.path(), &pki, &format!("tools: {{image: \"{image}\"}}\n{registry}")))
        .await
        .unwrap();
    let admin = preferred.admin_addr;
    eventually(
        10,
        "ready with the tag",
        || async move { matches!(get(admin, "/readyz").await, Ok(r) if r.status == 200) },
    )
    .await;
    let mut connection = Connection::open(preferred.webhook_addr, client_config(&pki.ca_pem)).await.unwrap();
    let reply = connection
        .post("/mutate", serde_json::to_vec(&review_for(&fixture("pod-annotated.json"), "apps", "u")).unwrap())
        .await
        .unwrap();
    let response: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let injected = test_kit::apply_response(&fixture("pod-annotated.json"), &response, "u");
    assert_eq!(injected["spec"]["initContainers"][0]["image"], image.as_str());
    let warnings = response["response"]["warnings"].to_string();
    assert!(warnings.contains("not pinned to a digest yet"), "{warnings}");
    eventually(10, "failures and the unpinned injection counted", || async move {
        let text = String::from_utf8(get(admin, "/metrics").await.unwrap().body).unwrap();
        text.contains(r#"tools_image_resolution_failures_total{reason="unreachable"}"#)
            && text.contains("dragonfly_injector_tools_image_unpinned_injections_total 1")
    })
    .await;
    preferred.shutdown().await;

    let temp = tempfile::tempdir().unwrap();
    let required = server::start(serve_args(
        temp.path(),
        &pki,
        &format!("tools: {{image: \"{image}\", pinning: required}}\n{registry}"),
    ))
    .await
    .unwrap();
    let admin = required.admin_addr;
    eventually(10, "the certificate loaded", || async move {
        let reply = get(admin, "/readyz").await.unwrap();
        let text = String::from_utf8(reply.body).unwrap();
        reply.status == 503 && !text.contains("certificate") && text.contains("no usable tools image reference")
    })
    .await;
    required.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_pins_at_start_up_and_injects_the_digest() {
    test_kit::install_crypto();
    let registry = Registry::start(RegistryOptions::default());
    let digest = push_index(
        &pushing_client(None),
        &RegistryAuth::Anonymous,
        &registry.host,
        IndexSpec { attestation: true, ..IndexSpec::default() },
    )
    .await;
    let image = format!("{}/dragonfly/tools:v1", registry.host);
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("webhook ca");
    let yaml =
        format!("tools: {{image: \"{image}\", pinning: required}}\nregistry: {{plainHttp: [\"{}\"]}}\n", registry.host);
    let running = server::start(serve_args(temp.path(), &pki, &yaml)).await.unwrap();
    let admin = running.admin_addr;
    eventually(
        10,
        "ready once pinned",
        || async move { matches!(get(admin, "/readyz").await, Ok(r) if r.status == 200) },
    )
    .await;
    let mut connection = Connection::open(running.webhook_addr, client_config(&pki.ca_pem)).await.unwrap();
    let reply = connection
        .post("/mutate", serde_json::to_vec(&review_for(&fixture("pod-annotated.json"), "apps", "u")).unwrap())
        .await
        .unwrap();
    let response: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let injected = test_kit::apply_response(&fixture("pod-annotated.json"), &response, "u");
    assert_eq!(injected["spec"]["initContainers"][0]["image"], format!("{image}@{digest}"));
    assert!(response["response"].get("warnings").is_none());
    let metrics = String::from_utf8(get(admin, "/metrics").await.unwrap().body).unwrap();
    assert!(metrics.contains(&format!("tools_image_info{{image=\"{image}\",digest=\"{digest}\"}} 1")), "{metrics}");
    running.shutdown().await;

    // A digest in the config is used as given: ready at once, even with the registry gone.
    drop(registry);
    let temp = tempfile::tempdir().unwrap();
    let fixed = format!("{image}@{digest}");
    let running =
        server::start(serve_args(temp.path(), &pki, &format!("tools: {{image: \"{fixed}\", pinning: required}}\n")))
            .await
            .unwrap();
    let admin = running.admin_addr;
    eventually(10, "ready without a registry", || async move {
        matches!(get(admin, "/readyz").await, Ok(r) if r.status == 200)
    })
    .await;
    let metrics = String::from_utf8(get(admin, "/metrics").await.unwrap().body).unwrap();
    assert!(metrics.contains(&format!("digest=\"{digest}\"}} 1")), "{metrics}");
    let failures =
        metrics.lines().filter(|l| l.starts_with("dragonfly_injector_tools_image_resolution_failures_total{"));
    assert!(
        failures.clone().count() > 0 && failures.clone().all(|l| l.ends_with(" 0")),
        "no registry call was made: {metrics}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn the_resolve_command_prints_the_digest_platforms_and_what_is_missing() {
    test_kit::install_crypto();
    let registry = Registry::start(RegistryOptions { user: Some(("robot", "s3cret")), ..Default::default() });
    let auth = RegistryAuth::Basic("robot".into(), "s3cret".into());
    let digest = push_index(
        &pushing_client(None),
        &auth,
        &registry.host,
        IndexSpec { platforms: &["linux/amd64", "linux/s390x"], attestation: true, ..IndexSpec::default() },
    )
    .await;
    let temp = tempfile::tempdir().unwrap();
    let docker_config = temp.path().join("config.json");
    std::fs::write(
        &docker_config,
        format!(r#"{{"auths": {{"{}": {{"username": "robot", "password": "s3cret"}}}}}}"#, registry.host),
    )
    .unwrap();
    let image = format!("{}/dragonfly/tools:v1", registry.host);
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dragonfly-injector"))
            .args(["resolve", &image, "--plain-http", &registry.host, "--timeout", "5s"])
            .args(extra)
            .output()
            .unwrap()
    };
    let output = run(&["--docker-config", docker_config.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains(&format!("digest:    {digest}")), "{text}");
    assert!(text.contains(&format!("pinned:    {image}@{digest}")), "{text}");
    assert!(text.contains("platforms: linux/amd64, linux/s390x"), "{text}");
    assert!(text.contains("missing:   linux/arm64"), "{text}");

    let refused = run(&[]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(stderr.contains("(unauthorized)") && stderr.contains(&image), "{stderr}");
}

#[tokio::test]
async fn a_bearer_token_registry_is_reached_with_basic_credentials_exchanged_for_a_token() {
    test_kit::install_crypto();
    let tokens = test_kit::token::TokenServer::start("robot", "s3cret").await;
    let registry = Registry::start(RegistryOptions { token: Some(&tokens), ..Default::default() });
    let good = RegistryAuth::Basic("robot".into(), "s3cret".into());
    let digest =
        push_index(&pushing_client(None), &good, &registry.host, IndexSpec { salt: "bearer", ..IndexSpec::default() })
            .await;
    let temp = tempfile::tempdir().unwrap();
    let resolver_with = |password: &str| {
        let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("robot:{password}"));
        resolver_with_credentials(temp.path(), &registry.host, password, &format!(r#"{{"auth": "{auth}"}}"#))
    };
    let image = format!("{}/dragonfly/tools:v1", registry.host);
    assert_eq!(resolver_with("s3cret").resolve(&image, None).await.unwrap().digest, digest);
    let refused = resolver_with("wrong").resolve(&image, None).await.unwrap_err();
    assert_eq!(refused.label(), "unauthorized", "{refused}");
    let anonymous = plain_resolver(&registry.host).resolve(&image, None).await.unwrap_err();
    assert_eq!(anonymous.label(), "unauthorized", "{anonymous}");
}
