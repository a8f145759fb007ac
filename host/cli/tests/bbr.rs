//! Rate-based congestion control: the bbr CC module under base and rack, the bbr function
//! block, live switches to and from both with every byte intact, pacing in TCP_INFO, the
//! blocks' own sysctls, and rack's pacing.

mod common;

use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_CONGESTION, TCP_FUNCTION_BLK, TCP_INFO};
use plugtcp_abi::stack::{tcpi_off, TCP_INFO_LEN};
use plugtcp_abi::Errno;
use plugtcp_cli::builtins::{BuiltinHost as _, BuiltinNet as _};
use plugtcp_cli::ccsim::{self, CcExperiment};
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::Host;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::SimNet;

const SEC: u64 = 1_000_000_000;

/// 100 Mbit/s, 40 ms RTT, one BDP of queue, 0.2 % loss.
fn net(seed: u64) -> SimNet {
    let mut cfg = SimLinkConfig::bdp_queue(100_000_000, 40_000_000);
    cfg.loss = 0.002;
    cfg.seed = seed;
    let mut net = SimNet::builtin(cfg, seed);
    for h in [&mut net.a, &mut net.b] {
        h.sysctl_set("net.inet.tcp.recvbuf_max", "4194304").unwrap();
        h.sysctl_set("net.inet.tcp.sendbuf_max", "4194304").unwrap();
    }
    net
}

fn pacing_rate(h: &mut Host, c: ConnId) -> u64 {
    let mut info = [0u8; TCP_INFO_LEN];
    h.getsockopt(c, IPPROTO_TCP, TCP_INFO, &mut info).unwrap();
    u64::from_ne_bytes(info[tcpi_off::PACING_RATE..][..8].try_into().unwrap())
}

fn cc_name(h: &mut Host, c: ConnId) -> String {
    let mut b = [0u8; 16];
    let n = h
        .getsockopt(c, IPPROTO_TCP, TCP_CONGESTION, &mut b)
        .unwrap();
    String::from_utf8_lossy(&b[..n])
        .trim_end_matches('\0')
        .to_string()
}

/// A 48 MiB transfer during which `steps` happen at the given virtual times: each sets an
/// option on the sender and checks what it should see then.
#[allow(clippy::type_complexity)]
fn transfer_with(
    net: &mut SimNet,
    steps: &mut [(u64, &mut dyn FnMut(&mut Host, ConnId))],
) -> common::Transfer {
    let mut next = 0;
    common::transfer(net, 48 << 20, 120 * SEC, |n, c| {
        if next < steps.len() && n.now >= steps[next].0 {
            (steps[next].1)(&mut n.a, c);
            next += 1;
            return 1;
        }
        0
    })
}

#[test]
fn tcp_congestion_cubic_bbr_cubic_mid_transfer_keeps_every_byte() {
    let mut net = net(3);
    net.a
        .sysctl_set("net.inet.tcp.cc.algorithm", "cubic")
        .unwrap();
    let set = |h: &mut Host, c: ConnId, cc: &str| {
        h.setsockopt(c, IPPROTO_TCP, TCP_CONGESTION, cc.as_bytes())
            .unwrap()
    };
    let (mut seen_bbr, mut seen_back) = (0, u64::MAX);
    let t = transfer_with(
        &mut net,
        &mut [
            (SEC, &mut |h, c| {
                assert_eq!(pacing_rate(h, c), 0, "cubic is not paced");
                set(h, c, "bbr");
            }),
            (3 * SEC, &mut |h, c| {
                assert_eq!(cc_name(h, c), "bbr");
                seen_bbr = pacing_rate(h, c);
                set(h, c, "cubic");
            }),
            (4 * SEC, &mut |h, c| seen_back = pacing_rate(h, c)),
        ],
    );
    assert!(t.intact, "{} bytes", t.got);
    assert_eq!(t.ticks, 3);
    // Under bbr the host paced it at a rate near the path's (12.5 MB/s of 100 Mbit/s).
    assert!((5_000_000..40_000_000).contains(&seen_bbr), "{seen_bbr}");
    // Back on cubic the pacing bbr set went with it.
    assert_eq!(seen_back, 0);
}

#[test]
fn tcp_function_blk_base_bbr_rack_mid_transfer_keeps_every_byte() {
    let mut net = net(5);
    let set = |h: &mut Host, c: ConnId, b: &str| {
        h.setsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, b.as_bytes())
            .unwrap()
    };
    let (mut on_bbr, mut on_rack) = (0, u64::MAX);
    let t = transfer_with(
        &mut net,
        &mut [
            (SEC, &mut |h, c| set(h, c, "bbr")),
            (3 * SEC, &mut |h, c| {
                on_bbr = pacing_rate(h, c);
                // The block runs its own model: the connection's CC module stays newreno.
                assert_eq!(cc_name(h, c), "newreno");
                set(h, c, "rack");
            }),
            (4 * SEC, &mut |h, c| on_rack = pacing_rate(h, c)),
        ],
    );
    assert!(t.intact, "{} bytes", t.got);
    assert_eq!(t.ticks, 3);
    assert!((5_000_000..40_000_000).contains(&on_bbr), "{on_bbr}");
    assert_eq!(on_rack, 0, "rack does not pace by default (use_pacing=0)");
    // The block's model counted its own work.
    assert!(net.a.block_counter("startup_exits") >= 1);
}

/// One bbr flow over 100 Mbit/s, 40 ms for 15 s: near the link rate with a small queue,
/// where cubic fills the queue.
fn short(cc: &str, stack: &str, queue_bdp: f64) -> ccsim::CcResult {
    let mut e = CcExperiment::standard(cc, 1);
    e.stack = Some(stack.to_string());
    e.queue_bdp = queue_bdp;
    e.warmup_ns = 5 * SEC;
    e.measure_ns = 10 * SEC;
    ccsim::run(&e).unwrap()
}

#[test]
fn bbr_fills_the_link_without_filling_the_queue_on_every_block() {
    let cubic = short("cubic", "base", 4.0);
    for (cc, stack) in [("bbr", "base"), ("bbr", "rack"), ("newreno", "bbr")] {
        let r = short(cc, stack, 4.0);
        assert!(r.utilisation > 0.90, "{cc} on {stack}: {r:?}");
        assert!(
            r.mean_queue_delay_ms * 4.0 < cubic.mean_queue_delay_ms,
            "{cc} on {stack}: {} ms against cubic's {} ms",
            r.mean_queue_delay_ms,
            cubic.mean_queue_delay_ms
        );
        // A tenth of a BDP of queue is enough.
        let shallow = short(cc, stack, 0.1);
        assert!(shallow.utilisation > 0.85, "{cc} on {stack}: {shallow:?}");
    }
}

#[test]
fn block_sysctls_have_ranges_and_reach_connections() {
    let mut h = Host::empty(Default::default());
    h.register_builtins();
    let int = |h: &Host, name: &str| match h.sysctl.get(name) {
        Ok(plugtcp_host::sysctl::SysctlValue::Int(v)) => Some(v),
        _ => None,
    };
    // The bbr block's tunables (the model's parameters) and rack's pacing ones.
    assert_eq!(int(&h, "net.inet.tcp.bbr.beta"), Some(700));
    assert_eq!(int(&h, "net.inet.tcp.rack.use_pacing"), Some(0));
    assert_eq!(int(&h, "net.inet.tcp.rack.pacing.pace_max_seg"), Some(40));
    assert_eq!(
        h.sysctl_set("net.inet.tcp.bbr.beta", "1001"),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.sysctl_set("net.inet.tcp.rack.use_pacing", "2"),
        Err(Errno::EINVAL)
    );
    h.sysctl_set("net.inet.tcp.bbr.beta", "650").unwrap();
    assert_eq!(int(&h, "net.inet.tcp.bbr.beta"), Some(650));
    // The module's own sysctls are separate.
    assert_eq!(int(&h, "net.inet.tcp.cc.bbr.beta"), Some(700));
}

#[test]
fn rack_paces_when_use_pacing_is_set() {
    let mut net = net(9);
    for h in [&mut net.a, &mut net.b] {
        h.sysctl_set("net.inet.tcp.functions_default", "rack")
            .unwrap();
    }
    let rates = std::cell::RefCell::new(Vec::new());
    let t = transfer_with(
        &mut net,
        &mut [
            (SEC, &mut |h, c| {
                rates.borrow_mut().push(pacing_rate(h, c));
                h.sysctl_set("net.inet.tcp.rack.use_pacing", "1").unwrap();
            }),
            (2 * SEC, &mut |h, c| {
                let tp = h.tcpcb(c).unwrap();
                let bw = tp.snd_cwnd as u64 * 1_000_000 / tp.t_srtt.max(1) as u64;
                rates.borrow_mut().push(bw);
                rates.borrow_mut().push(pacing_rate(h, c));
                h.sysctl_set("net.inet.tcp.rack.use_pacing", "0").unwrap();
            }),
            (3 * SEC, &mut |h, c| {
                rates.borrow_mut().push(pacing_rate(h, c))
            }),
        ],
    );
    assert!(t.intact);
    let rates = rates.into_inner();
    assert_eq!(rates[0], 0);
    // 200 % of cwnd/srtt in congestion avoidance (250 % in slow start), headers included.
    let (bw, rate) = (rates[1] as f64, rates[2] as f64);
    assert!((1.8 * bw..3.0 * bw).contains(&rate), "{rates:?}");
    assert_eq!(rates[3], 0);
}

#[test]
fn both_bbr_libraries_load_and_kldstat_lists_them() {
    let mut h = common::empty_host();
    let dir = common::target_dir();
    // The defaults first (a default is EBUSY to unload).
    for lib in ["libplugtcp_stack_base.so", "libplugtcp_cc_newreno.so"] {
        h.kldload_path(dir.join(lib)).unwrap();
    }
    let (cc, cc_names) = h.kldload_path(dir.join("libplugtcp_cc_bbr.so")).unwrap();
    let (blk, blk_names) = h.kldload_path(dir.join("libplugtcp_stack_bbr.so")).unwrap();
    assert_eq!((cc.name(), cc_names), ("cc", vec!["bbr".to_string()]));
    assert_eq!((blk.name(), blk_names), ("stack", vec!["bbr".to_string()]));
    let rows: Vec<_> = h
        .kldstat()
        .into_iter()
        .filter(|r| r.name == "bbr")
        .map(|r| (r.kind, r.file.rsplit('/').next().unwrap_or("").to_string()))
        .collect();
    assert_eq!(
        rows,
        [
            ("cc", "libplugtcp_cc_bbr.so".to_string()),
            ("stack", "libplugtcp_stack_bbr.so".to_string())
        ]
    );
    // Blocks and modules have names of their own; FreeBSD's kld names tell them apart.
    assert_eq!(h.kldunload("bbr", false), Err(Errno::EEXIST));
    h.kldunload("tcp_bbr", false).unwrap();
    h.kldunload("cc_bbr", false).unwrap();
    assert_eq!(h.kldunload("bbr", false), Err(Errno::ENOENT));
}
