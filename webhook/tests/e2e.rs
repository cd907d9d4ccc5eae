//! End to end against a real control plane (etcd, kube-apiserver, kube-controller-manager built
//! from the Go module proxy): the chart is installed with `helm install`, the webhook runs on
//! the host with the config and certificate the chart stored, and every scenario reads back what
//! the API server stored. One control plane serves all scenarios; this binary runs them itself
//! (harness = false) so that it can tear everything down whatever happens.
//!
//! This file holds the runner; `e2e/` the rest: `setup.rs` (the stack and the shared helpers),
//! `api_scenarios.rs`, `node_scenarios.rs`, `chart_scenarios.rs` and `csi.rs`.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use dragonfly_injector::server::https::{self, ConnectionLimits};
use oci_client::secrets::RegistryAuth;
use serde_json::{json, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use test_kit::cluster::{control_plane_binaries, spawn_tied, ControlPlane, Options};
use test_kit::dragonfly::{blob, sha256_hex, Dragonfly};
use test_kit::free_port;
use test_kit::node::{Node, NODE_IP, TAINT};
use test_kit::oci::Image;
use test_kit::origin::Origin;
use test_kit::peer::{PeerLink, HOST_LINK_IP, PEER_IP, PEER_NETNS};
use test_kit::registry::{push_index, pushing_client, IndexSpec, Registry, RegistryOptions};
use test_kit::{succeed, wait_for, wait_until, KubeletDir, Leaf, Pki, Waited};

#[path = "e2e/api_scenarios.rs"]
mod api_scenarios;
#[path = "e2e/chart_scenarios.rs"]
mod chart_scenarios;
#[path = "e2e/csi.rs"]
mod csi;
#[path = "e2e/node_scenarios.rs"]
mod node_scenarios;
#[path = "e2e/setup.rs"]
mod setup;

use api_scenarios::*;
use chart_scenarios::*;
use node_scenarios::*;
use setup::*;

const RELEASE_NAMESPACE: &str = "dragonfly-system";
/// Where the node's dfdaemon keeps its socket: deliberately not dfget's default directory.
const HOST_SOCKET_DIR: &str = "/run/dfi-e2e/dragonfly";
const FULLNAME: &str = "df-dragonfly-injector";

type Scenario = (&'static str, fn(&Env));

/// Each scenario function with its name, written once: `scenarios![a, module::b]`.
macro_rules! scenarios {
    ($($scenario:path),+ $(,)?) => {
        vec![$((
            {
                let path = stringify!($scenario);
                path.rsplit("::").next().unwrap_or(path).trim()
            },
            $scenario as fn(&Env),
        )),+]
    };
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scenarios: Vec<Scenario> = scenarios![
        annotated_pod_is_stored_injected,
        unannotated_pod_never_reaches_the_webhook,
        labelled_namespace_injects_and_respects_opt_out,
        deployment_pods_from_the_controller_are_injected,
        baseline_namespace_gets_no_socket_and_a_warning,
        server_side_dry_run_shows_the_injection_and_stores_nothing,
        native_sidecars_and_newer_fields_are_stored_intact,
        // On the real node (while the registry serves the tools image the kubelet pulls).
        an_injected_pod_downloads_with_dfget_through_dfdaemon,
        a_baseline_pod_starts_without_the_socket_and_runs_dfget,
        a_conda_style_image_keeps_its_path_and_finds_dfget,
        a_glibc_image_runs_the_static_tools,
        node_b_gets_a_pods_download_from_node_a_not_the_origin,
        a_pod_on_node_a_gets_node_bs_download_from_node_b,
        plain_http_through_the_proxies_is_shared_between_the_nodes,
        node_b_dying_mid_download_leaves_the_pod_on_node_a_to_the_origin,
        ten_pods_and_node_b_at_once_share_one_download,
        an_init_container_warms_up_with_dfget,
        a_deployments_pod_keeps_downloading_across_a_dfdaemon_restart,
        the_charts_webhook_runs_on_the_node_and_a_rolling_restart_or_certificate_rotation_fails_no_admission,
        reinvocation_injects_a_container_another_webhook_adds,
        certificate_rotation_fails_no_admission,
        a_stopped_webhook_is_visible_with_ignore_and_refuses_with_fail,
        csi::the_csi_plugin_brings_the_socket_to_labelled_restricted_namespaces_only_and_survives_restarts,
        // Last: without the registry, a restarted webhook with required pinning would stay unready.
        a_stopped_registry_keeps_new_pods_on_the_last_good_digest,
    ];
    if args.iter().any(|a| a == "--control-plane-only") {
        // For development: a real API server to poke at, until standard input closes.
        let plane = ControlPlane::start(&control_plane_binaries());
        println!("KUBECONFIG={}", plane.kubeconfig.display());
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        return;
    }
    if args.iter().any(|a| a == "--stack") {
        // For development: the whole stack, to create one's own pods against, until standard
        // input closes. Images go into the node's containerd (`ctr -n k8s.io images import`).
        let mut env = Env::setup();
        let real = env.real();
        println!("KUBECONFIG={}", env.plane.kubeconfig.display());
        println!("CONTAINERD_ADDRESS={}", test_kit::node::CONTAINERD_SOCKET);
        println!("REGISTRY={}", env.registry.lock().unwrap().host);
        println!("TOOLS_IMAGE={}", env.pinned_image);
        println!("ORIGIN_URL={}", real.origin.url("").trim_end_matches('/'));
        println!("ORIGIN_STATS_URL={}", real.origin.stats_url());
        let peer = real.peer.lock().unwrap();
        println!("PEER_NETNS={PEER_NETNS}");
        println!("PEER_DFGET={}", test_kit::dragonfly::binaries().client.join("dfget").display());
        println!("PEER_SOCKET={}", peer.socket().display());
        drop(peer);
        println!("NODE_TOLERATION={TAINT}:NoSchedule");
        // The CSI plugin on the node, and the webhook with its release's config (socket.mode
        // auto): a namespace with this label gets the socket, through hostPath or, where Pod
        // Security forbids that, through the plugin.
        let release = csi::CsiRelease::install(&env);
        env.use_webhook_config(&release.config);
        println!("SOCKET_NAMESPACE_LABEL={}={}", csi::LABEL.0, csi::LABEL.1);
        println!("READY");
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        drop(release);
        let left = env.finish();
        drop(env);
        if !left.is_empty() {
            eprintln!("left behind:\n{}", left.join("\n"));
            std::process::exit(1);
        }
        return;
    }
    if args.iter().any(|a| a == "--demo") {
        let mut env = Env::setup();
        let outcome = catch_unwind(AssertUnwindSafe(|| demo(&env)));
        let left = env.finish();
        drop(env);
        if !left.is_empty() {
            eprintln!("left behind:\n{}", left.join("\n"));
        }
        std::process::exit(i32::from(outcome.is_err() || !left.is_empty()));
    }
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &scenarios {
            println!("{name}: test");
        }
        return;
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let selected: Vec<&Scenario> =
        scenarios.iter().filter(|(name, _)| filter.as_ref().is_none_or(|f| name.contains(f.as_str()))).collect();
    if selected.is_empty() {
        println!("0 passed, 0 failed");
        return;
    }
    println!("running {} end-to-end scenarios", selected.len());
    let mut env = match catch_unwind(Env::setup) {
        Ok(env) => env,
        Err(_) => {
            println!("0 passed, {} failed", selected.len());
            std::process::exit(1);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for (name, scenario) in selected {
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| scenario(&env))) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.1} s)", started.elapsed().as_secs_f64());
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    if failed > 0 {
        println!(
            "--- webhook log (last lines) ---\n{}",
            std::fs::read_to_string(env.work.join("webhook.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    if env.real.is_some() {
        // The node goes first (its pods through the API server), then Dragonfly; then nothing
        // of it may be left on the machine.
        let started = Instant::now();
        let left = env.finish();
        if left.is_empty() {
            passed += 1;
            println!(
                "test the_node_leaves_the_machine_as_it_found_it ... ok ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
        } else {
            failed += 1;
            println!("test the_node_leaves_the_machine_as_it_found_it ... FAILED\n{}", left.join("\n"));
        }
    } else {
        env.stop_webhook();
    }
    drop(env);
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
