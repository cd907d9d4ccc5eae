//! Node B's network for the P2P tests: a network namespace of its own ([`PEER_NETNS`]) joined to
//! the host by a veth pair on a /30 link ([`HOST_LINK_IP`] here, [`PEER_IP`] there). Node B's
//! dfdaemon runs in it with its own address and socket ([`crate::dragonfly::Dragonfly::start_peer`]);
//! the scheduler, node A's dfdaemon (its upload and storage servers) and the origin listen on
//! [`HOST_LINK_IP`], so B reaches them and they reach B.
//!
//! Why a link of its own and not the pods' bridge: pods have a route to the bridge's subnet only,
//! so they cannot reach the origin on this link either, and a pod that got the bytes still got
//! them through dfdaemon. Nothing routes beyond the two ends: no default route in the namespace,
//! no forwarding. Dropping a [`PeerLink`] deletes the namespace, which takes the veth pair with it.

use std::path::Path;
use std::process::Command;

pub const PEER_NETNS: &str = "dfi-peer";
/// The host's end of the veth pair.
pub const HOST_LINK: &str = "dfipeer0";
/// The namespace's end.
const PEER_LINK: &str = "dfipeer1";
pub const HOST_LINK_IP: &str = "10.89.0.1";
pub const PEER_IP: &str = "10.89.0.2";

pub struct PeerLink {
    /// `ip netns add` bind-mounts /run/netns on itself the first time; undone on drop if so.
    mounted_netns_dir: bool,
}

fn netns_dir_is_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|line| line.split(' ').nth(4) == Some("/run/netns"))
}

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().expect("ip runs (iproute2)")
}

fn ip_ok(args: &[&str]) {
    let output = ip(args);
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

impl PeerLink {
    /// Creates the namespace and the link (after removing any an interrupted run left).
    pub fn create() -> PeerLink {
        remove();
        let was_mounted = netns_dir_is_mounted();
        ip_ok(&["netns", "add", PEER_NETNS]);
        let link = PeerLink { mounted_netns_dir: !was_mounted && netns_dir_is_mounted() };
        ip_ok(&["link", "add", HOST_LINK, "type", "veth", "peer", "name", PEER_LINK]);
        ip_ok(&["link", "set", PEER_LINK, "netns", PEER_NETNS]);
        ip_ok(&["addr", "add", &format!("{HOST_LINK_IP}/30"), "dev", HOST_LINK]);
        ip_ok(&["link", "set", HOST_LINK, "up"]);
        for args in [
            vec!["addr", "add", &format!("{PEER_IP}/30"), "dev", PEER_LINK],
            vec!["link", "set", PEER_LINK, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["netns", "exec", PEER_NETNS, "ip"];
            full.extend(args.iter().map(|a| &**a));
            ip_ok(&full);
        }
        link
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        remove();
        // Only if nothing else lives there now (the node's pods' namespaces are gone by then).
        let empty = std::fs::read_dir("/run/netns").map(|mut dir| dir.next().is_none()).unwrap_or(false);
        if self.mounted_netns_dir && empty {
            let _ = Command::new("umount").arg("/run/netns").status();
        }
    }
}

fn remove() {
    if Path::new("/run/netns").join(PEER_NETNS).exists() {
        let _ = ip(&["netns", "delete", PEER_NETNS]);
    }
    if Path::new("/sys/class/net").join(HOST_LINK).exists() {
        let _ = ip(&["link", "delete", HOST_LINK]);
    }
}

/// What a peer link could have left behind, as lines (empty when the machine is clean).
pub fn leftovers() -> Vec<String> {
    let mut left = Vec::new();
    if Path::new("/run/netns").join(PEER_NETNS).exists() {
        left.push(format!("netns {PEER_NETNS}"));
    }
    if Path::new("/sys/class/net").join(HOST_LINK).exists() {
        left.push(format!("link {HOST_LINK}"));
    }
    left
}
