//! ABI compatibility: a CC module built against framework ABI 0.9.0 (before the rate-sample
//! hook, pacing and stack parameters were appended) loads into today's host and runs a
//! connection. The fixture (host/test-plugins/abi-0.9.0) is its own cargo workspace with a
//! frozen copy of the 0.9.0 framework; this test builds it offline, from the crates the
//! main build already fetched.

mod common;

use std::path::PathBuf;

use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_CONGESTION};
use plugtcp_cli::builtins::BuiltinNet as _;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::SimNet;

const SEC: u64 = 1_000_000_000;

fn build_old_plugin() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../test-plugins/abi-0.9.0");
    let target = common::target_dir().join("abi-0.9.0");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["build", "--release", "--offline", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building the ABI 0.9.0 fixture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("release/libplugtcp_testplugin_oldreno.so")
}

#[test]
fn a_cc_module_built_against_abi_0_9_0_loads_and_runs_a_transfer() {
    let so = build_old_plugin();
    let mut cfg = SimLinkConfig::bdp_queue(50_000_000, 20_000_000);
    cfg.loss = 0.001;
    let mut net = SimNet::builtin(cfg, 11);
    // Plugins of today before and after it: abi_stable keeps one view of every prefix type
    // across all the libraries a process loads, and the old one must fit it either way.
    let open = |lib: &str| {
        plugtcp_host::registry::loader::open_plugin(&common::target_dir().join(lib)).unwrap();
    };
    open("libplugtcp_cc_cubic.so");
    let (kind, names) = net.a.kldload_path(so.clone()).unwrap();
    open("libplugtcp_stack_bbr.so");
    assert_eq!((kind.name(), names), ("cc", vec!["oldreno".to_string()]));
    // kldstat lists it with the version it was built with.
    let row = net
        .a
        .kldstat()
        .into_iter()
        .find(|r| r.name == "oldreno")
        .unwrap();
    assert_eq!(row.version, "0.9.0");
    // Fields appended after 0.9.0 read as absent: it is window-based.
    let entry = net.a.registry.snapshot().cc("oldreno").unwrap().clone();
    assert!(entry.algo.cong_control().flatten().is_none());
    assert!(entry.algo.features().is_none());
    net.a
        .sysctl_set("net.inet.tcp.cc.algorithm", "oldreno")
        .unwrap();

    let t = common::transfer(&mut net, 8 << 20, 60 * SEC, |n, c| {
        let mut b = [0u8; 16];
        let k =
            n.a.getsockopt(c, IPPROTO_TCP, TCP_CONGESTION, &mut b)
                .unwrap();
        assert_eq!(&b[..7], b"oldreno", "{:?}", &b[..k]);
        0
    });
    assert!(t.intact, "{} bytes", t.got);
    // It really ran: it grew cwnd on the ACKs of the transfer.
    let grown = entry.counters[0].load(std::sync::atomic::Ordering::Relaxed);
    assert!(grown > 1000, "{grown}");
}
