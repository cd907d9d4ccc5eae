//! Scenarios on the real node: pods that download through dfdaemon, P2P between node A and node
//! B counted at the origin, images of every kind, restarts, and the demo.

use super::*;

/// `scripts/demo.sh`: the whole stack for real, one annotated pod created and printed.
pub(crate) fn demo(env: &Env) {
    let manifest = std::fs::read_to_string(test_kit::repo_root().join("examples/demo-pod.yaml")).unwrap();
    env.namespace("demo", &[]);
    println!("\n$ kubectl create -n demo -f examples/demo-pod.yaml");
    let output = env.plane.kubectl_stdin(&["create", "-n", "demo", "-f", "-"], &manifest);
    print!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());
    println!("\n$ kubectl get pod downloader -n demo -o yaml   # as the API server stored it\n");
    print!("{}", env.kubectl_ok(&["get", "pod", "downloader", "-n", "demo", "-o", "yaml"]));
    println!(
        "\nThe tools image {} is pinned to its multi-arch index digest, resolved from a loopback registry.",
        env.pinned_image
    );

    // The same pod on the real node. Nothing is pulled from the internet here, so it runs a
    // busybox image built by the test instead of debian:bookworm-slim, tolerates the test node's
    // taint, and downloads from the loopback origin, which only dfdaemon can reach.
    let real = env.real();
    let url = real.origin.url("blob-8MiB");
    let parsed =
        env.plane.kubectl_stdin(&["create", "--dry-run=client", "-n", "demo", "-o", "json", "-f", "-"], &manifest);
    assert!(parsed.status.success(), "{}", String::from_utf8_lossy(&parsed.stderr));
    let mut pod: Value = serde_json::from_slice(&parsed.stdout).unwrap();
    let runnable = node_pod("downloader", BUSYBOX, "", json!({}));
    pod["metadata"]["name"] = json!("downloader-on-the-node");
    pod["spec"]["tolerations"] = runnable["spec"]["tolerations"].clone();
    pod["spec"]["restartPolicy"] = json!("Never");
    pod["spec"]["terminationGracePeriodSeconds"] = json!(1);
    let app = &mut pod["spec"]["containers"][0];
    app["image"] = json!(BUSYBOX);
    app["imagePullPolicy"] = json!("Never");
    app["command"] = json!([
        "sh",
        "-c",
        format!(
            "set -x; dfget --version; dfget {url} -O /tmp/blob-8MiB; sha256sum /tmp/blob-8MiB; \
         http_proxy=$HTTP_PROXY wget -q -O /tmp/via-proxy {url}; sha256sum /tmp/via-proxy"
        )
    ]);
    println!("\n$ kubectl create -n demo -f -   # the same pod, runnable here: busybox, the test node's toleration, a download\n");
    let pod = env.run_pod("demo", &pod);
    println!("{}", env.pod_logs("demo", "downloader-on-the-node"));
    println!(
        "init container exit codes: {:?}; the origin's SHA-256 is {}.\n\
         dfget found dfdaemon's socket at its default path and wget went through $HTTP_PROXY, which the pod set\n\
         to $(DRAGONFLY_INJECT_PROXY), dfdaemon's proxy at the node's IP.",
        init_exit_codes(&pod),
        real.files["blob-8MiB"]
    );

    // P2P in two lines: node B fetches the same file through its own dfdaemon, and the origin's
    // byte count says where the bytes came from.
    let path = "/blob-8MiB";
    let before = real.origin.served(path);
    assert_eq!(node_b_downloads(real, &url), real.files["blob-8MiB"]);
    let after = real.origin.served(path);
    assert_within_a_probe(after, before, "node B");
    let parent = real.dragonfly.lock().unwrap().host_id();
    let log = real.peer.lock().unwrap().log("dfdaemon");
    assert!(log.contains(&parent), "node B's dfdaemon names {parent} as its parent:\n{}", tail(&log, 30));
    println!(
        "\nP2P: node B then downloaded the same file through its own dfdaemon, from its peer {parent}.\n\
         The origin's count for {path} went from {before} to {after} bytes: node B cost it only its length probe.\n\
         Everything is cleaned up now."
    );
}

/// The heart of it: an annotated pod starts on a real node, the tools init container copies the
/// Dragonfly tools, and dfget from the app container's PATH downloads a file larger than 4 MiB
/// (so dfdaemon asks the real scheduler) through the mounted socket into the pod's own
/// filesystem, with nothing but the injected environment. The origin listens on the host's
/// loopback, which the pod cannot reach: the bytes came through dfdaemon.
pub(crate) fn an_injected_pod_downloads_with_dfget_through_dfdaemon(env: &Env) {
    let real = env.real();
    let url = real.origin.url("blob-8MiB");
    // dfget finds the socket at its default path although the host keeps it elsewhere; the
    // proxy is reached at the node's IP (HOST_IP), not at a node name no DNS here resolves.
    let script = format!(
        "set -e; dfget --version; dfget '{url}' -O /tmp/blob; sha256sum /tmp/blob; \
         echo proxy=$DRAGONFLY_INJECT_PROXY; http_proxy=$DRAGONFLY_INJECT_PROXY wget -q -O /tmp/proxied '{url}'; \
         sha256sum /tmp/proxied"
    );
    let before = real.origin.requests.load(std::sync::atomic::Ordering::Relaxed);
    let pod = env
        .run_pod("e2e-node", &node_pod("dfget-download", BUSYBOX, &script, json!({"dragonfly.io/inject-p2p": "true"})));
    assert_eq!(init_exit_codes(&pod), [("dragonfly-tools".to_owned(), 0)], "{}", pod["status"]);
    let logs = env.pod_logs("e2e-node", "dfget-download");
    assert!(
        logs.contains(&format!("{}  /tmp/blob", real.files["blob-8MiB"])),
        "the downloaded file's SHA-256 matches the origin's:\n{logs}"
    );
    assert!(logs.contains(&format!("proxy=http://{NODE_IP}:4001")), "{logs}");
    assert!(
        logs.contains(&format!("{}  /tmp/proxied", real.files["blob-8MiB"])),
        "the same bytes through dfdaemon's proxy:\n{logs}"
    );
    assert!(logs.contains(&format!("dfget {}", test_kit::pinned("DRAGONFLY_CLIENT_VERSION"))), "{logs}");
    assert!(
        real.origin.requests.load(std::sync::atomic::Ordering::Relaxed) > before,
        "dfdaemon fetched from the origin"
    );
    let log = real.dragonfly.lock().unwrap().log("dfdaemon");
    assert!(
        log.contains("blob-8MiB"),
        "dfdaemon handled the task:\n{}",
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
}

/// Node B downloads `url` with dfget through its own dfdaemon's socket, as a pod there would
/// (`--console`: dfget's log goes to its output, not under /var/log on the host); returns the
/// file's SHA-256.
pub(crate) fn node_b_downloads(real: &Real, url: &str) -> String {
    let peer = real.peer.lock().unwrap();
    let out = peer.dir.join(format!("download-{}", url.rsplit('/').next().unwrap()));
    let output = peer
        .tool("dfget")
        .env("DFGET_TRANSFER_FROM_DFDAEMON", "true")
        .arg("--endpoint")
        .arg(peer.socket())
        .args(["--console", "--no-progress", url, "-O"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "node B's dfget: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let sum = sha256_hex(&std::fs::read(&out).unwrap());
    std::fs::remove_file(&out).unwrap();
    sum
}

/// An injected pod on node A downloads with dfget, and the pod's SHA-256 line.
pub(crate) fn pod_on_node_a_downloads(env: &Env, name: &str, url: &str) -> String {
    let script = format!("set -e; dfget '{url}' -O /tmp/file; sha256sum /tmp/file");
    env.run_pod("e2e-node", &node_pod(name, BUSYBOX, &script, json!({"dragonfly.io/inject-p2p": "true"})));
    env.pod_logs("e2e-node", name)
}

/// Content over 4 MiB (smaller tasks skip the scheduler), new to every dfdaemon: its URL, its
/// path at the origin and its SHA-256.
pub(crate) fn new_content(real: &Real, seed: &str) -> (String, String, String) {
    const SIZE: u64 = 16 * 1024 * 1024 + 4099;
    let url = real.origin.generated_url(SIZE, seed);
    let path = format!("/gen/{SIZE}/{seed}");
    (url, path, test_kit::origin::generated_sha256(SIZE, seed))
}

/// P2P: an injected pod on node A downloads new content through its node's dfdaemon; then node
/// B downloads it and the origin serves nothing more: B got every piece from A, and B's log
/// names A's host as the parent the scheduler gave it.
pub(crate) fn node_b_gets_a_pods_download_from_node_a_not_the_origin(env: &Env) {
    let real = env.real();
    let (url, path, sum) = new_content(real, "a-then-b");
    let logs = pod_on_node_a_downloads(env, "p2p-a-then-b", &url);
    assert!(logs.contains(&format!("{sum}  /tmp/file")), "{logs}");
    let after_a = real.origin.served(&path);
    assert!(after_a >= 16 * 1024 * 1024, "node A went back to the origin for it: {after_a} bytes");
    assert!(after_a <= 16 * 1024 * 1024 + 4099 + 1, "node A fetched more than the file and its probe: {after_a}");
    assert_eq!(node_b_downloads(real, &url), sum);
    assert_within_a_probe(real.origin.served(&path), after_a, "node B");
    let node_a = real.dragonfly.lock().unwrap().host_id();
    let log = real.peer.lock().unwrap().log("dfdaemon");
    assert!(log.contains(&node_a), "node B's dfdaemon names {node_a} as its parent:\n{}", tail(&log, 30));
    println!("origin served {path}: {after_a} bytes, once; node B's pieces came from {node_a}");
}

/// P2P the other way: node B downloads first (from the origin), then an injected pod on node A
/// gets the same content from B, and the origin serves nothing more.
pub(crate) fn a_pod_on_node_a_gets_node_bs_download_from_node_b(env: &Env) {
    let real = env.real();
    let (url, path, sum) = new_content(real, "b-then-a");
    assert_eq!(node_b_downloads(real, &url), sum);
    let after_b = real.origin.served(&path);
    assert!(after_b >= 16 * 1024 * 1024, "node B went back to the origin for it: {after_b} bytes");
    let logs = pod_on_node_a_downloads(env, "p2p-b-then-a", &url);
    assert!(logs.contains(&format!("{sum}  /tmp/file")), "{logs}");
    assert_within_a_probe(real.origin.served(&path), after_b, "the pod on node A");
    let node_b = real.peer.lock().unwrap().host_id();
    let log = real.dragonfly.lock().unwrap().log("dfdaemon");
    assert!(log.contains(&node_b), "node A's dfdaemon names {node_b} as its parent:\n{}", tail(&log, 30));
}

/// P2P through the proxy: a pod on node A fetches new content with plain HTTP through
/// `$DRAGONFLY_INJECT_PROXY` (no Dragonfly tool involved), then a client on node B fetches it
/// through B's proxy; the origin serves it once, and B's log names A as the parent.
pub(crate) fn plain_http_through_the_proxies_is_shared_between_the_nodes(env: &Env) {
    let real = env.real();
    let (url, path, sum) = new_content(real, "proxy-a-then-b");
    let script =
        format!("set -e; http_proxy=$DRAGONFLY_INJECT_PROXY wget -q -O /tmp/file '{url}'; sha256sum /tmp/file");
    let annotations = json!({"dragonfly.io/inject-p2p": "true"});
    env.run_pod("e2e-node", &node_pod("p2p-proxy", BUSYBOX, &script, annotations));
    let logs = env.pod_logs("e2e-node", "p2p-proxy");
    assert!(logs.contains(&format!("{sum}  /tmp/file")), "{logs}");
    let after_a = real.origin.served(&path);
    assert!(after_a >= 16 * 1024 * 1024, "node A's proxy went back to the origin for it: {after_a} bytes");
    // Node B's client: busybox wget on the host, through B's proxy on B's address.
    let peer = real.peer.lock().unwrap();
    let out = peer.dir.join("proxied");
    let proxy = format!("http://{PEER_IP}:{}", test_kit::dragonfly::PROXY_PORT);
    succeed(Command::new("/bin/busybox").args(["wget", "-q", "-O"]).arg(&out).arg(&url).env("http_proxy", &proxy));
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), sum);
    std::fs::remove_file(&out).unwrap();
    assert_within_a_probe(real.origin.served(&path), after_a, "node B's proxy");
    let node_a = real.dragonfly.lock().unwrap().host_id();
    let log = peer.log("dfdaemon");
    assert!(log.contains(&node_a), "node B's dfdaemon names {node_a} as its parent:\n{}", tail(&log, 30));
}

/// Node B's dfdaemon dies while a pod on node A is getting pieces from it: the pod still
/// completes with the right SHA-256, and the origin serves what B no longer can. For this one B
/// serves pieces at 4 MB/s (dfdaemon's `upload.bandwidthLimit`), so the pod is certainly
/// mid-download when B goes (16 MiB from B alone takes four seconds): B goes once it has sent A
/// its first whole piece. B is killed, not stopped: a stopped dfdaemon first finishes the pieces
/// it is serving, and A had asked for all five at once, so after a stop A still had every piece
/// from B (seen here). B then starts again as it was, before any assertion, so that a failure
/// here leaves the later scenarios their node.
pub(crate) fn node_b_dying_mid_download_leaves_the_pod_on_node_a_to_the_origin(env: &Env) {
    let real = env.real();
    real.peer.lock().unwrap().restart_dfdaemon_with_upload_limit(Some("4MB"));
    let (url, path, sum) = new_content(real, "b-stops");
    assert_eq!(node_b_downloads(real, &url), sum);
    let after_b = real.origin.served(&path);
    let node_b = real.peer.lock().unwrap().host_id();
    let seen = real.dragonfly.lock().unwrap().log("dfdaemon").len();
    let (served_a_piece, logs) = std::thread::scope(|scope| {
        let pod = scope.spawn(|| pod_on_node_a_downloads(env, "p2p-b-stops", &url));
        // B has sent A one whole piece (B's upload counter, which starts at zero with B): at
        // 4 MB/s the file's other four pieces are still on their way. Then B is gone.
        let served = wait_until(Duration::from_secs(120), Duration::from_millis(50), || {
            Ok(upload_traffic(&real.peer.lock().unwrap().metrics()) > 0)
        });
        real.peer.lock().unwrap().kill_dfdaemon();
        (served, pod.join())
    });
    real.peer.lock().unwrap().restart_dfdaemon_with_upload_limit(None);
    let logs = logs.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(served_a_piece.is_ok(), "node B never sent node A a piece");
    assert!(logs.contains(&format!("{sum}  /tmp/file")), "{logs}");
    let after_a = real.origin.served(&path);
    let log = real.dragonfly.lock().unwrap().log("dfdaemon");
    assert!(
        log.get(seen..).unwrap_or("").contains(&node_b),
        "node A's dfdaemon does not name node B ({node_b}) as its parent:\n{}",
        tail(log.get(seen..).unwrap_or(""), 40)
    );
    assert!(
        after_a > after_b + 1,
        "the origin served nothing more ({after_b} -> {after_a} bytes): the pod had every piece before B stopped; \
         node A's dfdaemon:\n{}",
        tail(log.get(seen..).unwrap_or(""), 40)
    );
    println!("e2e: p2p: node B died mid-transfer; the origin then served node A {} more bytes", after_a - after_b);
}

/// Ten injected pods on node A and a client on node B download one new 64 MiB file at once: the
/// origin serves it about once (each downloader may add its probe byte; two nodes starting
/// together may both fetch a few pieces before either has them). With E2E_P2P_BASELINE=1, ten
/// plain wgets straight from the origin on the host too, for BENCHMARKS.md ("P2P"): a
/// measurement, so the suite leaves it out.
pub(crate) fn ten_pods_and_node_b_at_once_share_one_download(env: &Env) {
    const SIZE: u64 = 64 * 1024 * 1024;
    let real = env.real();
    let seed = "ten-at-once";
    let (url, path) = (real.origin.generated_url(SIZE, seed), format!("/gen/{SIZE}/{seed}"));
    let sum = test_kit::origin::generated_sha256(SIZE, seed);
    env.ensure_namespace("e2e-node");
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for i in 0..10 {
            let (url, sum) = (&url, &sum);
            scope.spawn(move || {
                let logs = pod_on_node_a_downloads(env, &format!("p2p-ten-{i}"), url);
                assert!(logs.contains(&format!("{sum}  /tmp/file")), "{logs}");
            });
        }
        assert_eq!(node_b_downloads(real, &url), sum);
    });
    let p2p = started.elapsed();
    let served = real.origin.served(&path);
    assert!(served >= SIZE, "{served}");
    assert!(served <= SIZE + SIZE / 2, "the origin served {served} bytes for eleven downloads of {SIZE}");
    println!(
        "e2e: p2p: ten pods on node A and node B downloaded {} MiB at once in {:.1} s, the origin serving {served} \
         bytes ({:.2}x the file)",
        SIZE >> 20,
        p2p.as_secs_f64(),
        served as f64 / SIZE as f64,
    );
    if std::env::var_os("E2E_P2P_BASELINE").is_none() {
        return;
    }
    // The same ten downloads without Dragonfly: every one from the origin.
    let direct = real.origin.generated_url(SIZE, "ten-direct");
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..10 {
            scope.spawn(|| {
                let output =
                    Command::new("/bin/busybox").args(["wget", "-q", "-O", "/dev/null", &direct]).output().unwrap();
                assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            });
        }
    });
    let plain = started.elapsed();
    let direct_served = real.origin.served(&format!("/gen/{SIZE}/ten-direct"));
    println!(
        "e2e: p2p baseline: ten plain wgets from the origin took {:.1} s, the origin serving {direct_served} bytes",
        plain.as_secs_f64()
    );
}

/// The bytes a dfdaemon has sent other peers, from its metrics (`dragonfly_client_upload_traffic`,
/// counted when a piece has gone out whole; absent until the first one).
pub(crate) fn upload_traffic(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("dragonfly_client_upload_traffic "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |bytes| bytes as u64)
}

/// Every dfdaemon that starts a task asks the origin for its first byte (`Range: bytes=0-0`,
/// how it learns the length) before it looks for peers; every other byte of a file served once
/// must come from a peer. So a later downloader may add that one byte to the origin's count.
pub(crate) fn assert_within_a_probe(now: u64, before: u64, who: &str) {
    assert!(now <= before + 1, "{who}'s download reached the origin: {before} -> {now} bytes");
}

pub(crate) fn tail(log: &str, lines: usize) -> String {
    let mut last: Vec<&str> = log.lines().rev().take(lines).collect();
    last.reverse();
    last.join("\n")
}

/// Under Pod Security `baseline` the socket (a hostPath) is left out, and the pod must still
/// start and run the copied tools: injection never breaks a pod.
pub(crate) fn a_baseline_pod_starts_without_the_socket_and_runs_dfget(env: &Env) {
    // The namespace exists from baseline_namespace_gets_no_socket_and_a_warning when both run.
    if !env.kubectl(&["get", "namespace", "e2e-baseline"]).status.success() {
        env.namespace("e2e-baseline", &[("pod-security.kubernetes.io/enforce", "baseline")]);
        let probe = pod("probe", json!({"dragonfly.io/inject-p2p": "true"}));
        env.wait_until_webhook_knows("e2e-baseline", &probe, |p| is_injected(p) && !p.to_string().contains("hostPath"));
    }
    let script = "set -e; dfget --version; test ! -e /var/run/dragonfly/dfdaemon.sock && echo no-socket";
    let pod = env.run_pod(
        "e2e-baseline",
        &node_pod("baseline-run", BUSYBOX, script, json!({"dragonfly.io/inject-p2p": "true"})),
    );
    assert!(is_injected(&pod) && !pod.to_string().contains("hostPath"), "{pod}");
    assert_eq!(init_exit_codes(&pod), [("dragonfly-tools".to_owned(), 0)], "{}", pod["status"]);
    let logs = env.pod_logs("e2e-baseline", "baseline-run");
    assert!(logs.contains("no-socket") && logs.contains("dfget "), "{logs}");
}

/// An image in the style of conda and CUDA images: its `ENV PATH` puts its own directory first,
/// and its command is a bare name found only there. Injection must not replace that PATH (the
/// pod would never start); the tools are reached through the default PATH's /usr/local/bin.
pub(crate) fn a_conda_style_image_keeps_its_path_and_finds_dfget(env: &Env) {
    const CONDA: &str = "registry.local/e2e/conda-style:1";
    let app = "#!/bin/sh\necho \"conda-app runs; PATH=$PATH\"\ndfget --version\n";
    let image = busybox_image(CONDA)
        .file("/opt/conda/bin/conda-app", 0o755, app.as_bytes().to_vec())
        .env("PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    env.real().node.lock().unwrap().import(&image);
    let mut manifest = node_pod("conda-style", CONDA, "", json!({"dragonfly.io/inject-p2p": "true"}));
    manifest["spec"]["containers"][0]["command"] = json!(["conda-app"]);
    let pod = env.run_pod("e2e-node", &manifest);
    assert!(is_injected(&pod), "{pod}");
    let logs = env.pod_logs("e2e-node", "conda-style");
    assert!(logs.contains("conda-app runs; PATH=/opt/conda/bin:"), "the image's PATH is intact:\n{logs}");
    assert!(logs.contains("dfget "), "dfget found on the default PATH:\n{logs}");
}

/// A glibc root like a Debian image's: the host's own dynamically linked programs with the
/// libraries `ldd` says they load, at the same paths.
pub(crate) fn glibc_image(name: &str, programs: &[&str]) -> Image {
    let mut image = Image::new(name)
        .dir("/tmp", 0o1777)
        .dir("/etc", 0o755)
        .env("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut files = std::collections::BTreeSet::new();
    for program in programs {
        let path = String::from_utf8(succeed(Command::new("sh").args(["-c", &format!("command -v {program}")])).stdout)
            .unwrap()
            .trim()
            .to_owned();
        files.insert(path.clone());
        let ldd = String::from_utf8(succeed(Command::new("ldd").arg(&path)).stdout).unwrap();
        for word in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
            files.insert(word.to_owned());
        }
    }
    for file in files {
        let real = std::fs::canonicalize(&file).unwrap();
        image = image.host_file(&file, 0o755, &real);
    }
    // /bin/sh for `sh -c`, as Debian has it.
    image.symlink("/bin/sh", "/usr/bin/dash")
}

/// A Debian-style (glibc) image runs the injected static tools beside its own dynamic programs.
pub(crate) fn a_glibc_image_runs_the_static_tools(env: &Env) {
    const DEBIAN: &str = "registry.local/e2e/glibc:1";
    env.real().node.lock().unwrap().import(&glibc_image(DEBIAN, &["dash", "sha256sum", "cat"]));
    let url = env.real().origin.url("blob-1MiB");
    let script = format!("set -e; dfget '{url}' -O /tmp/small; sha256sum /tmp/small; dfcache --version");
    env.run_pod("e2e-node", &node_pod("glibc-app", DEBIAN, &script, json!({"dragonfly.io/inject-p2p": "true"})));
    let logs = env.pod_logs("e2e-node", "glibc-app");
    assert!(logs.contains(&format!("{}  /tmp/small", env.real().files["blob-1MiB"])), "{logs}");
    assert!(logs.contains("dfcache "), "{logs}");
}

/// With `dragonfly.io/inject-init-containers`, the pod's own init container runs after the tools
/// init container and downloads with dfget into a volume the app then reads: a model warm-up.
pub(crate) fn an_init_container_warms_up_with_dfget(env: &Env) {
    let url = env.real().origin.url("blob-8MiB");
    let mut manifest = node_pod(
        "warm-up",
        BUSYBOX,
        "sha256sum /data/model",
        json!({"dragonfly.io/inject-p2p": "true", "dragonfly.io/inject-init-containers": "true"}),
    );
    manifest["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    manifest["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    manifest["spec"]["initContainers"] = json!([{"name": "fetch-model", "image": BUSYBOX, "imagePullPolicy": "Never",
        "command": ["dfget", url, "-O", "/data/model"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]);
    let pod = env.run_pod("e2e-node", &manifest);
    assert_eq!(
        init_exit_codes(&pod),
        [("dragonfly-tools".to_owned(), 0), ("fetch-model".to_owned(), 0)],
        "the tools first, then the warm-up: {}",
        pod["status"]
    );
    let logs = env.pod_logs("e2e-node", "warm-up");
    assert!(logs.contains(&format!("{}  /data/model", env.real().files["blob-8MiB"])), "{logs}");
}

/// A Deployment's pods (ReplicaSet controller, kube-scheduler) are injected and run; dfdaemon
/// restarts (as a DaemonSet rollout does, recreating its socket) and the running pod's next
/// download still works, because the socket's directory is mounted, not the file.
pub(crate) fn a_deployments_pod_keeps_downloading_across_a_dfdaemon_restart(env: &Env) {
    env.ensure_namespace("e2e-node");
    let pod = node_pod("x", BUSYBOX, "sleep 3600", json!({"dragonfly.io/inject-p2p": "true"}));
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "downloader"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "downloader"}},
            "template": {"metadata": {"labels": {"app": "downloader"}, "annotations": pod["metadata"]["annotations"]},
                "spec": pod["spec"].clone()}}});
    let mut deployment = deployment;
    deployment["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    let output = env.plane.kubectl_stdin(&["create", "-n", "e2e-node", "-f", "-"], &deployment.to_string());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = env.kubectl(&["rollout", "status", "deployment/downloader", "-n", "e2e-node", "--timeout=120s"]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let url = env.real().origin.url("blob-8MiB");
    let download = |file: &str| {
        let output = env.kubectl(&[
            "exec",
            "-n",
            "e2e-node",
            "deployment/downloader",
            "--",
            "sh",
            "-c",
            &format!("dfget '{url}' -O /tmp/{file} && sha256sum /tmp/{file}"),
        ]);
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let sum = &env.real().files["blob-8MiB"];
    assert!(download("before").contains(sum.as_str()));
    env.real().dragonfly.lock().unwrap().restart_dfdaemon();
    assert!(download("after").contains(sum.as_str()), "a download after dfdaemon's restart");
    let output = env.kubectl(&["delete", "deployment", "downloader", "-n", "e2e-node", "--wait=false"]);
    assert!(output.status.success());
}
