//! The chart's own webhook Deployment on the node, from the baked image: a rolling restart and
//! certificate rotation under admissions.

use super::*;

/// The webhook as users run it: the chart's Deployment on the node, from the image `docker
/// buildx bake` built, pulled by digest; the kubelet's probes gate the Service's endpoints and
/// the API server calls it through the Service (with `failurePolicy: Fail`, so any failed call
/// refuses a pod). Then a rolling restart while pods keep being admitted: none may fail.
pub(crate) fn the_charts_webhook_runs_on_the_node_and_a_rolling_restart_or_certificate_rotation_fails_no_admission(
    env: &Env,
) {
    const RELEASE: &str = "nodewh";
    const NAMESPACE: &str = "dragonfly-node";
    let deployment = format!("deployment/{RELEASE}-dragonfly-injector");
    let (taint_key, taint_value) = TAINT.split_once('=').unwrap();
    let helm = test_kit::cached_tool("helm.sh");
    let chart = test_kit::repo_root().join("charts/dragonfly-injector");
    let sets = [
        "webhook.failurePolicy=Fail".to_owned(),
        // The chart's default mode, the self-managed certificate, with lifetimes short enough
        // that the scenario sees serving certificates renewed and the CA replaced under load:
        // a certificate every 20 s, a CA at 60 s.
        "tls.managed.certValidity=30s".to_owned(),
        "tls.managed.caValidity=90s".to_owned(),
        "tls.managed.checkInterval=1s".to_owned(),
        "tls.managed.propagationDelay=3s".to_owned(),
        format!("tolerations[0].key={taint_key}"),
        "tolerations[0].operator=Equal".to_owned(),
        "tolerations[0].effect=NoSchedule".to_owned(),
        "webhook.shutdownDelaySeconds=3".to_owned(),
        "webhook.drainTimeoutSeconds=5".to_owned(),
    ];
    // Published as a chart is: packaged, pushed to the (loopback) registry as an OCI artifact,
    // and installed from oci://.
    let version = std::fs::read_to_string(chart.join("Chart.yaml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("version:").map(|v| v.trim().to_owned()))
        .expect("the chart's version");
    let packaged = env.work.join("packaged");
    succeed(Command::new(&helm).arg("package").arg(&chart).arg("--destination").arg(&packaged));
    let registry_host = env.registry.lock().unwrap().host.clone();
    let pushed = succeed(
        Command::new(&helm)
            .arg("push")
            .arg(packaged.join(format!("dragonfly-injector-{version}.tgz")))
            .arg(format!("oci://{registry_host}/charts"))
            .arg("--plain-http"),
    );
    let said = format!("{}{}", String::from_utf8_lossy(&pushed.stdout), String::from_utf8_lossy(&pushed.stderr));
    assert!(said.contains("Digest: sha256:"), "{said}");
    let mut install = Command::new(&helm);
    install.args(["install", RELEASE]).arg(format!("oci://{registry_host}/charts/dragonfly-injector")).args([
        "--version",
        &version,
        "--plain-http",
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--kubeconfig",
    ]);
    install.arg(&env.plane.kubeconfig).args(env.node_release_args());
    for set in &sets {
        install.args(["--set", set]);
    }
    install.args(["--set-string", &format!("tolerations[0].value={taint_value}")]);
    // Whatever happens below, the release goes: its webhook (failurePolicy Fail) would refuse
    // every later pod once its pods are gone.
    struct Uninstall<'a>(&'a std::path::Path, &'a std::path::Path);
    impl Drop for Uninstall<'_> {
        fn drop(&mut self) {
            let _ = Command::new(self.0)
                .args(["uninstall", RELEASE, "--namespace", NAMESPACE, "--kubeconfig"])
                .arg(self.1)
                .output();
        }
    }
    let _uninstall = Uninstall(&helm, &env.plane.kubeconfig);
    succeed(&mut install);

    let rollout = |what: &str| {
        let output = env.kubectl(&["rollout", "status", &deployment, "-n", NAMESPACE, "--timeout=180s"]);
        assert!(
            output.status.success(),
            "{what}: {}{}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            env.kubectl_ok(&["get", "pods", "-n", NAMESPACE, "-o", "wide"]),
            String::from_utf8_lossy(
                &env.kubectl(&["logs", "-n", NAMESPACE, &deployment, "--previous", "--tail=20"]).stdout
            )
        );
    };
    rollout("the chart's webhook becomes ready on the node");
    let admissions = |pod: &str| -> f64 {
        let metrics =
            env.kubectl_ok(&["get", "--raw", &format!("/api/v1/namespaces/{NAMESPACE}/pods/{pod}:9090/proxy/metrics")]);
        metrics
            .lines()
            .filter(|l| l.starts_with("dragonfly_injector_admission_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let pods = |state: &str| -> Vec<String> {
        env.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            &format!("app.kubernetes.io/instance={RELEASE}"),
            "--field-selector",
            &format!("status.phase={state}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_owned)
        .collect()
    };
    env.ensure_namespace("e2e-node");
    let probe = pod("through-the-service", json!({"dragonfly.io/inject-p2p": "true"}));
    let admit = || {
        env.plane.kubectl_stdin(
            &["create", "--dry-run=server", "-n", "e2e-node", "-f", "-", "-o", "json"],
            &probe.to_string(),
        )
    };
    // The replicas are ready once they serve a certificate and the configuration carries its CA;
    // the API server learns of that through its watch.
    wait_for(Duration::from_secs(30), "the first admission through the Service", || admit().status.success());
    for _ in 0..4 {
        let output = admit();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(is_injected(&serde_json::from_slice(&output.stdout).unwrap()));
    }
    let served: f64 = pods("Running").iter().map(|p| admissions(p)).sum();
    assert!(served >= 4.0, "the API server called the webhook pods through the Service: {served}");

    // The rolling restart, with admissions all along (bounded: at most 600, or 4 minutes).
    let restarted = env.kubectl(&["rollout", "restart", &deployment, "-n", NAMESPACE]);
    assert!(restarted.status.success(), "{}", String::from_utf8_lossy(&restarted.stderr));
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut admitted, mut refused) = (0, Vec::new());
    let mut done_at: Option<Instant> = None;
    for _ in 0..600 {
        let output = admit();
        if output.status.success() {
            admitted += 1;
        } else {
            refused.push(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        let status = env.kubectl(&["rollout", "status", &deployment, "-n", NAMESPACE, "--watch=false"]);
        let complete = String::from_utf8_lossy(&status.stdout).contains("successfully rolled out");
        // Keep going a little past the rollout, while the old pods drain.
        if complete && done_at.is_none() {
            done_at = Some(Instant::now());
        }
        if done_at.is_some_and(|t| t.elapsed() > Duration::from_secs(8)) || Instant::now() > deadline {
            break;
        }
    }
    assert!(done_at.is_some(), "the rollout did not complete in time");
    assert!(
        refused.is_empty(),
        "{} of {} admissions failed during the rolling restart:\n{}",
        refused.len(),
        admitted + refused.len(),
        refused.join("\n")
    );
    assert!(admitted >= 10, "admissions kept coming during the restart: {admitted}");
    eprintln!("e2e: {admitted} admissions during the webhook's rolling restart, none failed");

    // Rotation under load: admissions all along while the replicas renew their serving
    // certificate and replace the CA (bounded: at most 1,200 admissions, or 4 minutes).
    let secret_name = format!("{RELEASE}-dragonfly-injector-managed-tls");
    let stored = || -> (String, String) {
        let secret: Value =
            serde_json::from_str(&env.kubectl_ok(&["get", "secret", &secret_name, "-n", NAMESPACE, "-o", "json"]))
                .unwrap();
        let decode = |key: &str| base64_text(secret["data"][key].as_str().unwrap());
        (decode("ca.crt"), decode("tls.crt"))
    };
    let first_ca =
        |bundle: &str| bundle.split_inclusive("-----END CERTIFICATE-----\n").next().unwrap_or_default().to_owned();
    let (bundle, _) = stored();
    let (mut cas, mut leaves) =
        (std::collections::BTreeSet::from([first_ca(&bundle)]), std::collections::BTreeSet::new());
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut admitted, mut refused) = (0, Vec::new());
    for n in 0..1200 {
        let output = admit();
        if output.status.success() {
            admitted += 1;
        } else {
            refused.push(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        if n % 5 == 0 {
            let (bundle, leaf) = stored();
            cas.insert(first_ca(&bundle));
            leaves.insert(leaf);
        }
        // Two CAs and, after the switch, certificates from the new one: at least four.
        if (cas.len() >= 2 && leaves.len() >= 5) || Instant::now() > deadline {
            break;
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {} admissions failed while the certificate rotated:\n{}",
        refused.len(),
        admitted + refused.len(),
        refused.join("\n")
    );
    assert!(
        cas.len() >= 2 && leaves.len() >= 5,
        "rotations seen: {} CAs, {} serving certificates",
        cas.len(),
        leaves.len()
    );
    // The API server trusts what the Secret says, and so the configuration follows it.
    let (bundle, _) = stored();
    let configured = env.kubectl_ok(&[
        "get",
        "mutatingwebhookconfiguration",
        &format!("{RELEASE}-dragonfly-injector"),
        "-o",
        "jsonpath={.webhooks[*].clientConfig.caBundle}",
    ]);
    for encoded in configured.split_whitespace() {
        assert_eq!(base64_text(encoded), bundle, "every webhook's caBundle is the Secret's bundle");
    }
    eprintln!(
        "e2e: {admitted} admissions while the webhook rotated {} CAs and {} serving certificates, none failed",
        cas.len(),
        leaves.len()
    );

    // Uninstalling takes the Secret too: the webhook configuration owns it.
    succeed(
        Command::new(&helm)
            .args(["uninstall", RELEASE, "--namespace", NAMESPACE, "--kubeconfig"])
            .arg(&env.plane.kubeconfig),
    );
    wait_for(Duration::from_secs(60), "the managed Secret collected after uninstall", || {
        let output = env.kubectl(&["get", "secret", &secret_name, "-n", NAMESPACE]);
        !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("NotFound")
    });
}
