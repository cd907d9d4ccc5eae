//! The Helm chart, rendered by the pinned Helm (scripts/helm.sh) and checked by parsing what it
//! renders: the webhook entries and selectors, the certificates, the RBAC rules, and the config
//! file, which must load with the webhook's own config loader.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use base64::Engine as _;
use dragonfly_injector::config::{Config, HostFrom, LabelRequirement, Pinning, SocketMode, DEFAULT_TOOLS_IMAGE};
use dragonfly_injector::offline::yaml::parse_documents;
use rustls::client::danger::ServerCertVerifier as _;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

const NAMESPACE: &str = "dragonfly-system";
const FULLNAME: &str = "df-dragonfly-injector";

fn helm() -> &'static PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| test_kit::cached_tool("helm.sh"))
}

fn chart() -> String {
    test_kit::repo_root().join("charts/dragonfly-injector").display().to_string()
}

fn helm_run(args: &[&str]) -> Output {
    Command::new(helm()).args(args).output().unwrap()
}

fn template(extra: &[&str]) -> Output {
    let chart = chart();
    let mut args = vec!["template", "df", chart.as_str(), "--namespace", NAMESPACE];
    args.extend_from_slice(extra);
    helm_run(&args)
}

fn render(extra: &[&str]) -> Vec<Value> {
    let output = template(extra);
    assert!(output.status.success(), "helm template {extra:?}: {}", String::from_utf8_lossy(&output.stderr));
    parse_documents(&String::from_utf8(output.stdout).unwrap()).unwrap()
}

fn all<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    let found = all(documents, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

fn config_of(documents: &[Value]) -> Config {
    let text = one(documents, "ConfigMap")["data"]["config.yaml"].as_str().unwrap();
    Config::from_yaml(text).unwrap_or_else(|e| panic!("the chart's config does not load: {e}\n{text}"))
}

fn pem_of(base64_text: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(base64_text.as_str().unwrap()).unwrap()
}

#[test]
fn lint_is_clean_in_every_mode() {
    let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    for values in [
        vec![],
        vec!["--set", "tls.mode=generate"],
        vec!["--set", "tls.mode=certManager"],
        vec![
            "--set",
            "tls.mode=secret",
            "--set",
            "tls.secret.name=mine",
            "--set",
            &format!("tls.secret.caBundle={ca}"),
        ],
        vec!["--set", "webhook.url=https://192.0.2.10:9443/mutate"],
        vec![
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "injection.enabled=false",
            "--set",
            "tools.checkNodeArchitectures=false",
        ],
        vec!["--set", "csi.enabled=true"],
    ] {
        let chart = chart();
        let mut args = vec!["lint", "--strict", chart.as_str()];
        args.extend(values.iter().copied());
        let output = helm_run(&args);
        assert!(
            output.status.success(),
            "lint {values:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_default_install_has_everything_the_webhook_needs() {
    let documents = render(&[]);
    let mut kinds: Vec<&str> = documents.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "MutatingWebhookConfiguration",
            "Pod",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    assert_eq!(
        one(&documents, "Pod")["metadata"]["annotations"]["helm.sh/hook"],
        "test",
        "the only pod is the helm test"
    );
    for document in &documents {
        let labels = &document["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "dragonfly-injector", "{}", document["kind"]);
        assert_eq!(labels["app.kubernetes.io/instance"], "df");
    }
    let service = one(&documents, "Service");
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "https");
}

#[test]
fn webhook_entries_send_only_pods_that_can_be_injected() {
    let documents = render(&[]);
    let configuration = one(&documents, "MutatingWebhookConfiguration");
    let webhooks = configuration["webhooks"].as_array().unwrap();
    let names: Vec<&str> = webhooks.iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["namespace.pods.dragonfly.io", "annotated.pods.dragonfly.io", "legacy-namespace.pods.dragonfly.io"]
    );
    for webhook in webhooks {
        assert_eq!(webhook["admissionReviewVersions"], serde_json::json!(["v1"]));
        assert_eq!(webhook["sideEffects"], "None");
        assert_eq!(webhook["failurePolicy"], "Ignore");
        assert_eq!(webhook["timeoutSeconds"], 5);
        assert_eq!(webhook["reinvocationPolicy"], "IfNeeded");
        assert_eq!(webhook["matchPolicy"], "Equivalent");
        assert_eq!(
            webhook["rules"],
            serde_json::json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}])
        );
        assert_eq!(
            webhook["clientConfig"]["service"],
            serde_json::json!({"name": FULLNAME, "namespace": NAMESPACE, "path": "/mutate", "port": 443})
        );
        let expressions = webhook["namespaceSelector"]["matchExpressions"].as_array().unwrap();
        assert_eq!(
            expressions[0],
            serde_json::json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE]})
        );
        assert_eq!(webhook["matchConditions"].as_array().unwrap().len(), 1);
    }
    let selector = |i: usize| webhooks[i]["namespaceSelector"]["matchExpressions"].as_array().unwrap()[1..].to_vec();
    assert_eq!(
        selector(0),
        [serde_json::json!({"key": "dragonfly.io/inject-p2p", "operator": "In", "values": ["enabled", "true"]})]
    );
    assert_eq!(
        selector(1),
        [
            serde_json::json!({"key": "dragonfly.io/inject-p2p", "operator": "NotIn", "values": ["enabled", "true"]}),
            serde_json::json!({"key": "dragonfly.io/inject", "operator": "NotIn", "values": ["true"]}),
        ]
    );
    // Ordinary namespaces: only annotated pods reach the webhook.
    let asks = webhooks[1]["matchConditions"][0]["expression"].as_str().unwrap();
    assert!(asks.contains("object.metadata.annotations['dragonfly.io/inject-p2p'] == 'true'"), "{asks}");
    assert!(asks.contains("object.metadata.annotations['dragonfly.io/inject'] == 'true'"), "{asks}");
    let opt_out = webhooks[0]["matchConditions"][0]["expression"].as_str().unwrap();
    assert!(opt_out.contains("!= 'false'"), "{opt_out}");

    let without_legacy = render(&["--set", "injection.legacyKeys=false", "--set", "excludeNamespaces={batch}"]);
    let webhooks = one(&without_legacy, "MutatingWebhookConfiguration")["webhooks"].as_array().unwrap().clone();
    assert_eq!(webhooks.len(), 2);
    assert!(!webhooks[1]["matchConditions"][0]["expression"].as_str().unwrap().contains("'dragonfly.io/inject' in"));
    assert_eq!(
        webhooks[0]["namespaceSelector"]["matchExpressions"][0]["values"],
        serde_json::json!(["batch", NAMESPACE])
    );

    let fail = render(&["--set", "webhook.failurePolicy=Fail", "--set", "webhook.timeoutSeconds=10"]);
    let webhook = &one(&fail, "MutatingWebhookConfiguration")["webhooks"][0];
    assert_eq!((webhook["failurePolicy"].as_str(), webhook["timeoutSeconds"].as_i64()), (Some("Fail"), Some(10)));
    assert!(all(&render(&["--set", "injection.enabled=false"]), "MutatingWebhookConfiguration").is_empty());
}

#[test]
fn the_generated_certificate_is_signed_by_the_ca_bundle_and_names_the_service() {
    let documents = render(&["--set", "tls.mode=generate"]);
    let secret = one(&documents, "Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let ca_bundle = one(&documents, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"].clone();
    assert_eq!(secret["data"]["ca.crt"], ca_bundle, "the Secret's CA is the one the API server trusts");
    let ca_pem = pem_of(&ca_bundle);
    let leaf_pem = pem_of(&secret["data"]["tls.crt"]);
    let key_pem = pem_of(&secret["data"]["tls.key"]);
    let (_, ca) = x509_parser::pem::parse_x509_pem(&ca_pem).unwrap();
    let ca = ca.parse_x509().unwrap();
    let (_, leaf) = x509_parser::pem::parse_x509_pem(&leaf_pem).unwrap();
    let leaf = leaf.parse_x509().unwrap();
    assert!(ca.is_ca());
    assert_eq!(leaf.issuer(), ca.subject());
    // Verified as the API server's TLS client will: chained to the caBundle, for each name.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(x509_parser::pem::parse_x509_pem(&ca_pem).unwrap().1.contents))
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let leaf_der =
        rustls::pki_types::CertificateDer::from(x509_parser::pem::parse_x509_pem(&leaf_pem).unwrap().1.contents);
    for name in [format!("{FULLNAME}.{NAMESPACE}.svc"), format!("{FULLNAME}.{NAMESPACE}.svc.cluster.local")] {
        let server_name = rustls::pki_types::ServerName::try_from(name.clone()).unwrap();
        verifier
            .verify_server_cert(&leaf_der, &[], &server_name, &[], rustls::pki_types::UnixTime::now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let names: Vec<String> =
        leaf.subject_alternative_name().unwrap().unwrap().value.general_names.iter().map(|n| n.to_string()).collect();
    for name in [
        FULLNAME.to_owned(),
        format!("{FULLNAME}.{NAMESPACE}"),
        format!("{FULLNAME}.{NAMESPACE}.svc"),
        format!("{FULLNAME}.{NAMESPACE}.svc.cluster.local"),
    ] {
        assert!(names.contains(&format!("DNSName({name})")), "{name} missing from {names:?}");
    }
    assert!(String::from_utf8(key_pem).unwrap().contains("PRIVATE KEY"));
}

#[test]
fn the_self_managed_mode_renders_the_same_every_time_and_carries_no_key_material() {
    // What Argo CD and `helm template | kubectl apply` need: nothing random in the render.
    let first = template(&[]);
    assert!(first.status.success());
    assert_eq!(first.stdout, template(&[]).stdout, "two renders are identical");
    let generated = template(&["--set", "tls.mode=generate"]);
    assert_ne!(generated.stdout, template(&["--set", "tls.mode=generate"]).stdout, "unlike the generate mode");
    let documents = render(&[]);
    assert!(all(&documents, "Secret").is_empty(), "the webhook makes its own Secret");
    for webhook in one(&documents, "MutatingWebhookConfiguration")["webhooks"].as_array().unwrap() {
        assert!(webhook["clientConfig"].get("caBundle").is_none(), "the webhook fills in the caBundle");
    }
    let spec = &one(&documents, "Deployment")["spec"]["template"]["spec"];
    assert!(!spec["volumes"].as_array().unwrap().iter().any(|v| v["name"] == "tls"), "no Secret is mounted");
    let args: Vec<&str> =
        spec["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let names = format!("--tls-managed-names={FULLNAME},{FULLNAME}.{NAMESPACE},{FULLNAME}.{NAMESPACE}.svc,{FULLNAME}.{NAMESPACE}.svc.cluster.local");
    for expected in [
        names.as_str(),
        "--tls-managed-ca-validity=43800h",
        "--tls-managed-cert-validity=2160h",
        "--tls-managed-check-interval=1m",
        "--tls-managed-propagation-delay=1m",
    ] {
        assert!(args.contains(&expected), "{expected} in {args:?}");
    }
    // Without a webhook configuration there is no caBundle to follow.
    let documents = render(&["--set", "injection.enabled=false"]);
    let args = one(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(!args.contains("--tls-managed-webhook-configuration") && args.contains("--tls-managed-secret"), "{args}");
}

#[test]
fn cert_manager_and_existing_secret_modes() {
    let documents = render(&["--set", "tls.mode=certManager"]);
    assert!(all(&documents, "Secret").is_empty(), "cert-manager writes the Secret");
    let certificate = one(&documents, "Certificate");
    assert_eq!(certificate["spec"]["secretName"], format!("{FULLNAME}-tls"));
    let dns: Vec<&str> =
        certificate["spec"]["dnsNames"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert!(dns.contains(&format!("{FULLNAME}.{NAMESPACE}.svc").as_str()));
    assert_eq!(one(&documents, "Issuer")["spec"]["selfSigned"], serde_json::json!({}));
    let configuration = one(&documents, "MutatingWebhookConfiguration");
    assert_eq!(
        configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NAMESPACE}/{FULLNAME}")
    );
    assert!(configuration["webhooks"][0]["clientConfig"].get("caBundle").is_none());
    let with_issuer = render(&[
        "--set",
        "tls.mode=certManager",
        "--set",
        "tls.certManager.issuerRef.name=corp-ca",
        "--set",
        "tls.certManager.issuerRef.kind=ClusterIssuer",
    ]);
    assert!(all(&with_issuer, "Issuer").is_empty());
    assert_eq!(
        one(&with_issuer, "Certificate")["spec"]["issuerRef"],
        serde_json::json!({"name": "corp-ca", "kind": "ClusterIssuer"})
    );

    let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    let documents = render(&[
        "--set",
        "tls.mode=secret",
        "--set",
        "tls.secret.name=corp-tls",
        "--set",
        &format!("tls.secret.caBundle={ca}"),
    ]);
    assert!(all(&documents, "Secret").is_empty());
    assert_eq!(
        pem_of(&one(&documents, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"]),
        ca.as_bytes()
    );
    let volumes = &one(&documents, "Deployment")["spec"]["template"]["spec"]["volumes"];
    assert!(volumes.as_array().unwrap().iter().any(|v| v["secret"]["secretName"] == "corp-tls"));
    let missing = template(&["--set", "tls.mode=secret"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("tls.secret.caBundle (PEM) is required"));
    let missing = template(&["--set", "tls.mode=secret", "--set", &format!("tls.secret.caBundle={ca}")]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("tls.secret.name is required"));
}

#[test]
fn a_url_replaces_the_service_for_a_webhook_outside_the_cluster() {
    let documents = render(&["--set", "webhook.url=https://192.0.2.10:9443/mutate", "--set", "tls.mode=generate"]);
    for webhook in one(&documents, "MutatingWebhookConfiguration")["webhooks"].as_array().unwrap() {
        assert_eq!(webhook["clientConfig"]["url"], "https://192.0.2.10:9443/mutate");
        assert!(webhook["clientConfig"].get("service").is_none());
        assert!(webhook["clientConfig"]["caBundle"].is_string());
    }
    // Self-managed, the certificate is for the URL's host.
    let documents = render(&["--set", "webhook.url=https://192.0.2.10:9443/mutate"]);
    let args = one(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert!(args.as_array().unwrap().contains(&Value::from("--tls-managed-names=192.0.2.10")), "{args}");
    assert!(!template(&["--set", "webhook.url=http://insecure/mutate"]).status.success(), "only https URLs");
}

#[test]
fn the_config_file_loads_in_the_webhook_and_follows_the_values() {
    let defaults = config_of(&render(&[]));
    assert_eq!(defaults.tools.image.as_str(), DEFAULT_TOOLS_IMAGE, "chart and binary agree on the default tools image");
    assert_eq!(defaults, Config { tools: defaults.tools.clone(), ..Config::default() });
    assert_eq!(defaults.tools, Config::default().tools, "the chart's defaults are the binary's defaults");

    let digest = format!("sha256:{}", "ab".repeat(32));
    let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    let documents = render(&[
        "--set",
        "proxy.port=65001",
        "--set",
        "proxy.hostFrom=hostIP",
        "--set",
        "socket.enabled=false",
        "--set",
        "socket.namespaceLabel=example.com/dfdaemon-socket=allowed",
        "--set",
        "limits.containers=40",
        "--set",
        "transferFromDfdaemon=false",
        "--set",
        &format!("tools.image.digest={digest}"),
        "--set",
        "tools.image.tag=v9",
        "--set",
        "tools.pinning=required",
        "--set",
        "tools.refreshInterval=90s",
        "--set",
        "tools.pullSecrets={regcred}",
        "--set",
        "tools.architectures={linux/amd64,linux/s390x}",
        "--set",
        "registry.dockerConfigSecret=registry-creds",
        "--set",
        &format!("registry.caBundle={ca}"),
        "--set",
        "registry.plainHttp={registry.local:5000}",
        "--set",
        "excludeNamespaces={kube-system,batch}",
    ]);
    let config = config_of(&documents);
    assert_eq!(config.proxy.port.0, 65001);
    assert_eq!(config.proxy.host_from, HostFrom::HostIp);
    assert!(!config.socket.enabled);
    assert_eq!(String::from(config.socket.namespace_label.clone().unwrap()), "example.com/dfdaemon-socket=allowed");
    assert_eq!(config.limits.containers.0, 40);
    assert!(!config.transfer_from_dfdaemon.0);
    assert_eq!(config.tools.image.as_str(), format!("docker.io/dragonflyoss/dragonfly-injector-tools:v9@{digest}"));
    assert_eq!(config.tools.pinning, Pinning::Required);
    assert_eq!(config.tools.refresh_interval.0.as_secs(), 90);
    assert_eq!(config.tools.image_pull_secrets[0].as_str(), "regcred");
    assert_eq!(config.tools.architectures[1].as_str(), "linux/s390x");
    assert_eq!(config.registry.plain_http, ["registry.local:5000"]);
    assert_eq!(config.exclude_namespaces.0.iter().map(|n| n.as_str()).collect::<Vec<_>>(), ["kube-system", "batch"]);
    // Files the config names are where the Deployment mounts them.
    let pod = &one(&documents, "Deployment")["spec"]["template"]["spec"];
    let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
    let docker_config = config.registry.docker_config.as_ref().unwrap().as_str().to_owned();
    assert!(mounts.iter().any(|m| docker_config.starts_with(m["mountPath"].as_str().unwrap())), "{docker_config}");
    assert!(pod["volumes"].as_array().unwrap().iter().any(|v| v["secret"]["secretName"] == "registry-creds"));
    let ca_path = config.registry.ca_bundle.as_ref().unwrap().as_str().to_owned();
    assert_eq!(ca_path, "/etc/dragonfly-injector/config/registry-ca.pem");
    assert_eq!(one(&documents, "ConfigMap")["data"]["registry-ca.pem"].as_str().unwrap().trim(), ca);
}

#[test]
fn the_security_contexts_can_be_replaced_for_openshift_or_a_fixed_uid() {
    let documents = render(&[
        "--set",
        "podSecurityContext.runAsUser=1000750000",
        "--set",
        "containerSecurityContext.privileged=false",
    ]);
    let spec = &one(&documents, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(spec["securityContext"]["runAsUser"], 1000750000);
    assert_eq!(spec["containers"][0]["securityContext"]["privileged"], false);
    assert_eq!(spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"], true, "the rest stays");
}

#[test]
fn the_deployment_is_restricted_probed_and_rolls_on_config_changes() {
    let documents = render(&[]);
    let deployment = one(&documents, "Deployment");
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(spec["terminationGracePeriodSeconds"], 30, "delay 5 s + drain 15 s + 10 s");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert!(spec["securityContext"].get("runAsUser").is_none(), "no fixed UID: OpenShift assigns one");
    assert_eq!(spec["topologySpreadConstraints"][0]["topologyKey"], "kubernetes.io/hostname");
    let container = &spec["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["readinessProbe"]["httpGet"], serde_json::json!({"path": "/readyz", "port": "admin"}));
    assert_eq!(container["livenessProbe"]["httpGet"], serde_json::json!({"path": "/livez", "port": "admin"}));
    assert_eq!(container["image"], "docker.io/dragonflyoss/dragonfly-injector:v0.1.0");
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], "serve");
    for expected in [
        "--config=/etc/dragonfly-injector/config/config.yaml",
        "--tls-managed-secret=df-dragonfly-injector-managed-tls",
        "--tls-managed-webhook-configuration=df-dragonfly-injector",
        "--listen=0.0.0.0:9443",
        "--admin-listen=0.0.0.0:9090",
        "--shutdown-delay=5s",
        "--drain-timeout=15s",
    ] {
        assert!(args.contains(&expected), "{expected} in {args:?}");
    }
    assert_eq!(container["env"][0]["name"], "POD_NAMESPACE");
    assert_eq!(deployment["spec"]["template"]["metadata"]["annotations"]["dragonfly.io/inject-p2p"], "false");
    let checksum = |documents: &[Value]| {
        one(documents, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone()
    };
    assert_eq!(checksum(&documents), checksum(&render(&[])));
    assert_ne!(
        checksum(&documents),
        checksum(&render(&["--set", "proxy.port=65001"])),
        "a config change rolls the pods"
    );
    assert_eq!(one(&documents, "PodDisruptionBudget")["spec"]["minAvailable"], 1);
}

#[test]
fn rbac_is_the_least_the_webhook_needs() {
    let rules = |documents: &[Value]| one(documents, "ClusterRole")["rules"].clone();
    assert_eq!(
        rules(&render(&[])),
        serde_json::json!([
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
            {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
                "resourceNames": [FULLNAME], "verbs": ["get", "patch"]},
        ])
    );
    assert_eq!(
        rules(&render(&["--set", "tools.checkNodeArchitectures=false", "--set", "tls.mode=generate"])),
        serde_json::json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}])
    );
    // The self-managed Secret: read and updated by name; create cannot be limited to a name.
    let role = one(&render(&[]), "Role").clone();
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        role["rules"],
        serde_json::json!([
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [format!("{FULLNAME}-managed-tls")], "verbs": ["get", "update"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        ])
    );
    assert!(all(&render(&["--set", "tls.mode=generate"]), "Role").is_empty());
    let binding = one(&render(&[]), "ClusterRoleBinding").clone();
    assert_eq!(
        binding["subjects"][0],
        serde_json::json!({"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE})
    );
}

#[test]
fn wrong_value_types_fail_with_the_schema_message() {
    for (set, needle) in [
        ("replicaCount=two", "replicaCount"),
        ("webhook.timeoutSeconds=60", "timeoutSeconds"),
        ("tools.pinning=always", "pinning"),
        ("proxy.port=70000", "port"),
        ("prxy.port=4001", "prxy"),
        ("tools.refreshInterval=soon", "refreshInterval"),
        ("tls.mode=manual", "mode"),
    ] {
        let output = template(&["--set", set]);
        assert!(!output.status.success(), "{set} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("values don't meet the specifications of the schema"), "{set}: {stderr}");
        assert!(stderr.contains(needle), "{set}: {stderr}");
    }
}

#[test]
fn the_helm_test_pod_asks_for_injection_outside_the_release_namespace() {
    let output = template(&["--show-only", "templates/tests/test-injection.yaml"]);
    assert!(output.status.success());
    let pod = &parse_documents(&String::from_utf8(output.stdout).unwrap()).unwrap()[0];
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    assert_eq!(pod["metadata"]["annotations"]["dragonfly.io/inject-p2p"], "true");
    assert_eq!(pod["metadata"]["namespace"], "default");
    let script = pod["spec"]["containers"][0]["command"][2].as_str().unwrap();
    assert!(script.contains("$DRAGONFLY_INJECT_PROXY") && script.contains("/dragonfly/bin/dfget"), "{script}");
    assert!(script.contains("FAIL: ") && script.contains("ok: the pod was injected"), "says what it found: {script}");
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    assert!(pod["spec"]["containers"][0]["resources"]["limits"]["memory"].is_string());
}

#[test]
fn artifact_hub_lists_the_images_the_chart_deploys() {
    let chart: Value = serde_json::to_value(
        parse_documents(&std::fs::read_to_string(format!("{}/Chart.yaml", chart())).unwrap()).unwrap().remove(0),
    )
    .unwrap();
    let images = parse_documents(chart["annotations"]["artifacthub.io/images"].as_str().unwrap()).unwrap().remove(0);
    let listed: Vec<&str> = images.as_array().unwrap().iter().map(|i| i["image"].as_str().unwrap()).collect();
    let documents = render(&[]);
    let webhook = one(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap();
    assert_eq!(listed, [webhook, config_of(&documents).tools.image.as_str()]);
    assert!(chart["annotations"]["artifacthub.io/changes"].as_str().unwrap().contains("kind: added"));
}

#[test]
fn it_installs_as_a_dependency_of_another_chart() {
    let temp = tempfile::tempdir().unwrap();
    let parent = temp.path().join("dragonfly-stack");
    std::fs::create_dir_all(parent.join("templates")).unwrap();
    std::fs::write(
        parent.join("Chart.yaml"),
        format!(
            "apiVersion: v2\nname: dragonfly-stack\nversion: 1.0.0\ndependencies:\n  - name: dragonfly-injector\n    version: 0.1.0\n    repository: file://{}\n    condition: dragonfly-injector.enabled\n",
            chart()
        ),
    )
    .unwrap();
    // Dragonfly's settings reach the subchart through the documented global, as a parent that
    // keeps them under its client.config would set it.
    std::fs::write(
        parent.join("values.yaml"),
        "global:\n  dragonfly: {proxyPort: 65001, socketPath: /run/dragonfly/dfdaemon.sock}\ndragonfly-injector:\n  enabled: true\n",
    )
    .unwrap();
    let build = helm_run(&["dependency", "build", parent.to_str().unwrap()]);
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let output = helm_run(&["template", "stack", parent.to_str().unwrap(), "--namespace", "dragonfly-system"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let documents = parse_documents(&String::from_utf8(output.stdout).unwrap()).unwrap();
    assert_eq!(one(&documents, "Deployment")["metadata"]["name"], "stack-dragonfly-injector");
    let config = config_of(&documents);
    assert_eq!(config.proxy.port.0, 65001, "the global proxy port reaches the subchart");
    assert_eq!(config.socket.path.as_str(), "/run/dragonfly/dfdaemon.sock");
}

#[test]
fn names_registries_and_extra_pod_settings_follow_the_values() {
    let documents = render(&[
        "--set",
        "fullnameOverride=dfi",
        "--set",
        "global.imageRegistry=mirror.local:5000",
        "--set",
        "global.imagePullSecrets[0].name=mirror-pull",
        "--set",
        "imagePullSecrets[0].name=own-pull",
        "--set",
        "hostNetwork=true",
        "--set",
        "extraArgs={--max-connections=512,--idle-timeout=300s}",
        "--set",
        "extraVolumes[0].name=extra",
        "--set",
        "extraVolumes[0].emptyDir.medium=Memory",
        "--set",
        "extraVolumeMounts[0].name=extra",
        "--set",
        "extraVolumeMounts[0].mountPath=/extra",
    ]);
    let deployment = one(&documents, "Deployment");
    assert_eq!(deployment["metadata"]["name"], "dfi");
    assert!(documents.iter().all(|d| d["metadata"]["name"].as_str().is_none_or(|n| n.starts_with("dfi"))));
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "mirror.local:5000/dragonflyoss/dragonfly-injector:v0.1.0");
    assert_eq!(
        config_of(&documents).tools.image.as_str(),
        "mirror.local:5000/dragonflyoss/dragonfly-injector-tools:v0.1.0",
        "the injected tools image comes from the mirror too"
    );
    assert_eq!(pod["imagePullSecrets"], serde_json::json!([{"name": "mirror-pull"}, {"name": "own-pull"}]));
    assert_eq!(
        (pod["hostNetwork"].as_bool(), pod["dnsPolicy"].as_str()),
        (Some(true), Some("ClusterFirstWithHostNet"))
    );
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.ends_with(&["--max-connections=512", "--idle-timeout=300s"]), "{args:?}");
    assert!(pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "extra" && v["emptyDir"]["medium"] == "Memory"));
    assert!(container["volumeMounts"].as_array().unwrap().iter().any(|m| m["mountPath"] == "/extra"));
    let test = template(&[
        "--show-only",
        "templates/tests/test-injection.yaml",
        "--set",
        "global.imageRegistry=mirror.local:5000",
    ]);
    let test = &parse_documents(&String::from_utf8(test.stdout).unwrap()).unwrap()[0];
    assert_eq!(test["spec"]["containers"][0]["image"], "mirror.local:5000/library/busybox:1.37");
}

#[test]
fn the_disruption_budget_exists_only_where_it_cannot_block_a_drain() {
    assert_eq!(all(&render(&[]), "PodDisruptionBudget").len(), 1, "two replicas by default");
    assert!(all(&render(&["--set", "replicaCount=1"]), "PodDisruptionBudget").is_empty());
}

#[test]
fn an_optional_network_policy_limits_who_connects_to_each_port() {
    assert!(all(&render(&[]), "NetworkPolicy").is_empty(), "off by default");
    let documents = render(&[
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.adminFrom[0].namespaceSelector.matchLabels.name=monitoring",
    ]);
    let policy = one(&documents, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        one(&documents, "Deployment")["spec"]["selector"]["matchLabels"]
    );
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(rules[0]["ports"][0]["port"], 9443);
    assert!(rules[0].get("from").is_none(), "the API server may come from anywhere");
    assert_eq!(rules[1]["ports"][0]["port"], 9090);
    assert_eq!(rules[1]["from"][0]["namespaceSelector"]["matchLabels"]["name"], "monitoring");
}

/// The chart's values in file order, each with its `# --` description: what the chart README
/// lists. A key whose value is a mapping is listed itself when described (its children are then
/// part of its default), through its children otherwise.
fn values_rows() -> (String, Vec<String>) {
    let text = std::fs::read_to_string(format!("{}/values.yaml", chart())).unwrap();
    let values = parse_documents(&text).unwrap().remove(0);
    let mut rows = String::new();
    let mut undocumented = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut description: Option<String> = None;
    let mut listed: Vec<Vec<String>> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(rest) = trimmed.strip_prefix("# --") {
            description = Some(rest.trim().to_owned());
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('#') {
            if let Some(text) = description.as_mut().filter(|_| indent > 0 || !rest.is_empty()) {
                text.push(' ');
                text.push_str(rest.trim());
            }
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else { continue };
        if key.is_empty() || key.starts_with('-') || key.contains([' ', '{', '[', '"']) {
            continue;
        }
        while stack.last().is_some_and(|(depth, _)| *depth >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_owned()));
        let path: Vec<String> = stack.iter().map(|(_, k)| k.clone()).collect();
        let described = description.take();
        if listed.iter().any(|parent| path.starts_with(parent)) {
            continue;
        }
        let value = path.iter().fold(&values, |v, k| &v[k.as_str()]);
        if value.as_object().is_some_and(|m| !m.is_empty()) && described.is_none() {
            continue;
        }
        let kind = match value {
            Value::Null => "string",
            Value::Bool(_) => "bool",
            Value::Number(_) => "int",
            Value::String(_) => "string",
            Value::Array(_) => "list",
            Value::Object(_) => "object",
        };
        let name = path.join(".");
        if described.is_none() {
            undocumented.push(name.clone());
        }
        let about = described.unwrap_or_default().replace('|', "\\|");
        rows.push_str(&format!("| `{name}` | {kind} | `{}` | {about} |\n", serde_json::to_string(value).unwrap()));
        listed.push(path);
    }
    (rows, undocumented)
}

#[test]
fn the_chart_readme_lists_every_value_with_its_description() {
    let (rows, undocumented) = values_rows();
    assert!(undocumented.is_empty(), "values without a `# --` description in values.yaml: {undocumented:?}");
    let readme = format!(
        "# dragonfly-injector chart\n\n\
         Injects Dragonfly's P2P proxy, the dfdaemon socket and dfget into Kubernetes pods. The\n\
         project's [README](../../README.md) explains installing, opting in and what is injected.\n\n\
         <!-- Generated from values.yaml by `UPDATE_CHART_README=1 cargo test --test helm_chart`;\n\
         a test fails while this file and values.yaml disagree. -->\n\n\
         ## Values\n\n\
         | key | type | default | description |\n|---|---|---|---|\n{rows}"
    );
    let path = format!("{}/README.md", chart());
    if std::env::var_os("UPDATE_CHART_README").is_some() {
        std::fs::write(&path, &readme).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == readme,
        "charts/dragonfly-injector/README.md is not what values.yaml says; run UPDATE_CHART_README=1 cargo test --test helm_chart"
    );
}

fn named<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    all(documents, kind).into_iter().find(|d| d["metadata"]["name"] == name).unwrap_or_else(|| panic!("{kind} {name}"))
}

#[test]
fn the_csi_plugin_comes_only_with_csi_enabled_and_grants_the_socket_only_by_label() {
    let plain = render(&[]);
    assert!(all(&plain, "CSIDriver").is_empty() && all(&plain, "DaemonSet").is_empty());
    assert_eq!(config_of(&plain).socket.mode, SocketMode::HostPath);
    assert_eq!(config_of(&plain).socket.namespace_label, None);

    let documents = render(&["--set", "csi.enabled=true"]);
    let driver = one(&documents, "CSIDriver");
    assert_eq!(driver["metadata"]["name"], "csi.dragonfly.io");
    assert_eq!(
        driver["spec"],
        serde_json::json!({"attachRequired": false, "podInfoOnMount": true,
            "volumeLifecycleModes": ["Ephemeral"], "fsGroupPolicy": "None"})
    );
    let config = config_of(&documents);
    assert_eq!(config.socket.mode, SocketMode::Auto);
    let label = LabelRequirement::try_from("dragonfly.io/dfdaemon-socket=allowed".to_owned()).unwrap();
    assert_eq!(config.socket.namespace_label, Some(label));
    assert_eq!(config.socket.csi_driver.as_str(), "csi.dragonfly.io");

    let daemonset = one(&documents, "DaemonSet");
    let pod = &daemonset["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["args"][0], "csi");
    assert_eq!(container["securityContext"]["privileged"], true);
    let env = |name: &str| {
        container["env"].as_array().unwrap().iter().find(|e| e["name"] == name).map(|e| e["value"].clone())
    };
    assert_eq!(env("DRAGONFLY_CSI_NAMESPACE_LABEL"), Some("dragonfly.io/dfdaemon-socket=allowed".into()));
    assert_eq!(env("DRAGONFLY_CSI_KUBELET_DIR"), Some("/var/lib/kubelet".into()));
    assert_eq!(
        container["volumeMounts"][0],
        serde_json::json!({"name": "kubelet-dir", "mountPath": "/var/lib/kubelet", "mountPropagation": "Bidirectional"})
    );
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    assert_eq!(volumes[1]["hostPath"], serde_json::json!({"path": "/var/run/dragonfly", "type": "DirectoryOrCreate"}));
    assert_eq!(pod["spec"]["tolerations"], serde_json::json!([{"operator": "Exists"}]));
    assert_eq!(pod["spec"]["priorityClassName"], "system-node-critical");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    // The webhook's Service never selects the plugin's pods.
    let service = one(&documents, "Service")["spec"]["selector"].as_object().unwrap().clone();
    let labels = pod["metadata"]["labels"].as_object().unwrap();
    assert!(service.iter().any(|(k, v)| labels.get(k) != Some(v)), "{service:?} selects {labels:?}");
    // Its only permission: namespace labels.
    let role = named(&documents, "ClusterRole", &format!("{FULLNAME}-csi"));
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}])
    );
    let binding = named(&documents, "ClusterRoleBinding", &format!("{FULLNAME}-csi"));
    assert_eq!(binding["subjects"][0]["name"], format!("{FULLNAME}-csi"));

    // Moved kubelet directory and socket, an administrator's own label, always csi.
    let moved = render(&[
        "--set",
        "csi.enabled=true",
        "--set",
        "csi.kubeletDir=/var/snap/microk8s/common/var/lib/kubelet/",
        "--set",
        "socket.namespaceLabel=example.com/dfdaemon=yes",
        "--set",
        "socket.path=/run/df/dfdaemon.sock",
        "--set",
        "socket.mode=csi",
    ]);
    let config = config_of(&moved);
    assert_eq!(config.socket.mode, SocketMode::Csi);
    assert_eq!(config.socket.namespace_label.map(String::from).as_deref(), Some("example.com/dfdaemon=yes"));
    let pod = &one(&moved, "DaemonSet")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/var/snap/microk8s/common/var/lib/kubelet");
    assert_eq!(pod["volumes"][1]["hostPath"]["path"], "/run/df");
    let env = pod["containers"][0]["env"].to_string();
    assert!(
        env.contains("example.com/dfdaemon=yes") && env.contains("/var/snap/microk8s/common/var/lib/kubelet"),
        "{env}"
    );

    // csi or auto without the plugin, or the plugin without any label, fail at install.
    for (values, said) in [
        (vec!["--set", "socket.mode=csi"], "socket.mode csi needs the CSI plugin: set csi.enabled=true"),
        (vec!["--set", "socket.mode=auto"], "socket.mode auto needs the CSI plugin"),
        (
            vec!["--set", "csi.enabled=true", "--set", "csi.namespaceLabel="],
            "grants the socket only to namespaces with a label",
        ),
    ] {
        let output = template(&values);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(said), "{values:?}: {stderr}");
    }
    // hostPath mode beside the plugin is allowed: the label still gates the socket.
    let beside = render(&["--set", "csi.enabled=true", "--set", "socket.mode=hostPath"]);
    assert_eq!(config_of(&beside).socket.mode, SocketMode::HostPath);
    assert!(config_of(&beside).socket.namespace_label.is_some());
}
