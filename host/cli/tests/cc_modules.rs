//! The eight CC modules in a host: TCP_CONGESTION in every state, TCP_CCALGOOPT, the
//! registry's mod_cc rules, reload of a rebuilt module under live connections, switching
//! modules every 100 ms during a transfer, and each algorithm's behaviour on the issue's
//! bottleneck (100 Mbit/s, 40 ms RTT, one-BDP queue).

mod common;

use plugtcp_host::conn_table::ConnId;
use std::net::SocketAddr;

use plugtcp_abi::sockopt::{self, IPPROTO_TCP};
use plugtcp_abi::{Errno, TcpState};
use plugtcp_cli::builtins::BuiltinNet as _;
use plugtcp_cli::ccsim::{self, CcExperiment, FREEBSD_MODULES};
use plugtcp_host::Host;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};

const SERVER: (std::net::IpAddr, u16) = (ADDR_B, 80);

fn cc_of(h: &mut Host, c: ConnId) -> String {
    let mut b = [0u8; 32];
    let n = h
        .getsockopt(c, IPPROTO_TCP, sockopt::TCP_CONGESTION, &mut b)
        .unwrap();
    // FreeBSD copies the name out with its NUL.
    assert_eq!(b[n - 1], 0, "TCP_CONGESTION ends with its NUL");
    String::from_utf8(b[..n - 1].to_vec()).unwrap()
}

fn set_cc(h: &mut Host, c: ConnId, name: &str) -> Result<(), Errno> {
    h.setsockopt(c, IPPROTO_TCP, sockopt::TCP_CONGESTION, name.as_bytes())
}

fn users(h: &Host, name: &str) -> usize {
    h.registry.snapshot().cc_any(name).unwrap().users()
}

fn lossy_link() -> SimLinkConfig {
    let mut cfg = SimLinkConfig::bdp_queue(100_000_000, 20_000_000);
    cfg.loss = 0.002;
    cfg.reorder = 0.005;
    cfg.reorder_min_ns = 1_000_000;
    cfg.reorder_max_ns = 3_000_000;
    cfg.ecn_threshold_bytes = Some(cfg.queue_limit_bytes / 4);
    cfg
}

#[test]
fn all_eight_modules_are_available_with_newreno_the_default() {
    let mut net = SimNet::builtin(SimLinkConfig::default(), 1);
    let h = &mut net.a;
    let rows = common::cc_available_rows(h);
    let names: Vec<&str> = rows.iter().skip(1).map(|r| r[0].as_str()).collect();
    for m in FREEBSD_MODULES {
        assert!(names.contains(&m), "{m} missing from {rows:?}");
    }
    // tcp(4)'s default; cubic is one sysctl away.
    let newreno = rows.iter().find(|r| r[0] == "newreno").unwrap();
    assert_eq!(newreno[1..], ["*", "0"], "{rows:?}");
    assert_eq!(
        h.sysctl
            .get("net.inet.tcp.cc.algorithm")
            .unwrap()
            .to_string(),
        "newreno"
    );
    assert_eq!(
        h.sysctl_set("net.inet.tcp.cc.algorithm", "nosuch").err(),
        Some(Errno::ESRCH)
    );
    // Each module's sysctls with FreeBSD's defaults.
    for (name, value) in [
        ("htcp.adaptive_backoff", "0"),
        ("htcp.rtt_scaling", "0"),
        ("vegas.alpha", "1"),
        ("vegas.beta", "3"),
        ("dctcp.alpha", "1024"),
        ("dctcp.shift_g", "4"),
        ("dctcp.slowstart", "0"),
        ("cdg.beta_delay", "70"),
        ("cdg.beta_loss", "50"),
        ("cdg.exp_backoff_scale", "3"),
        ("cdg.smoothing_factor", "8"),
        ("cdg.loss_compete_consec_cong", "5"),
        ("cdg.loss_compete_hold_backoff", "5"),
        ("cdg.alpha_inc", "0"),
        ("cdg.version", "1"),
        ("chd.queue_threshold", "20"),
        ("chd.pmax", "50"),
        ("chd.queue_min", "5"),
        ("chd.loss_fair", "1"),
        ("chd.use_max", "1"),
        ("hd.queue_threshold", "20"),
        ("hd.pmax", "5"),
        ("hd.queue_min", "5"),
        ("hystartplusplus.n_rttsamples", "8"),
        ("hystartplusplus.css_rounds", "5"),
    ] {
        let full = format!("net.inet.tcp.cc.{name}");
        assert_eq!(
            h.sysctl.get(&full).map(|v| v.to_string()),
            Ok(value.to_string()),
            "{full}"
        );
    }
    assert_eq!(
        h.sysctl_set("net.inet.tcp.cc.dctcp.alpha", "1025").err(),
        Some(Errno::EINVAL)
    );
}

#[test]
fn tcp_congestion_in_every_state_keeps_cwnd_and_moves_pcb_counts() {
    let mut net = SimNet::builtin(SimLinkConfig::bdp_queue(100_000_000, 10_000_000), 2);
    let server: SocketAddr = SERVER.into();
    let lid = net.b.listen(server, 8).unwrap();
    // CLOSED: before connect.
    let c = net.a.socket(server, None).unwrap();
    assert_eq!(net.a.state(c), Some(TcpState::Closed));
    set_cc(&mut net.a, c, "vegas").unwrap();
    assert_eq!(cc_of(&mut net.a, c), "vegas");
    assert_eq!(
        set_cc(&mut net.a, c, "nosuch"),
        Err(Errno::ESRCH),
        "unknown module"
    );
    assert_eq!(cc_of(&mut net.a, c), "vegas", "kept after a failed switch");
    // SYN_SENT.
    net.a.start_connect(c).unwrap();
    assert_eq!(net.a.state(c), Some(TcpState::SynSent));
    set_cc(&mut net.a, c, "htcp").unwrap();
    assert_eq!((users(&net.a, "vegas"), users(&net.a, "htcp")), (0, 1));
    // ESTABLISHED with data in flight: cwnd and ssthresh stay.
    let data = common::payload(4 << 20, 1);
    let mut sent = 0;
    let mut srv = None;
    net.run_until(2_000_000_000, |n| {
        if n.a.state(c) == Some(TcpState::Established) && sent < data.len() {
            sent += n.a.send(c, &data[sent..]).unwrap_or(0);
        }
        if srv.is_none() {
            srv = n.b.accept(lid).ok();
        }
        if let Some(s) = srv {
            let mut b = [0u8; 65536];
            while matches!(n.b.recv(s, &mut b), Ok(k) if k > 0) {}
        }
        n.a.tcpcb(c).is_some_and(|tp| tp.flight_size() > 100_000)
    });
    for m in FREEBSD_MODULES {
        let before = net.a.tcpcb(c).map(|tp| (tp.snd_cwnd, tp.snd_ssthresh));
        set_cc(&mut net.a, c, m).unwrap();
        assert_eq!(cc_of(&mut net.a, c), m);
        assert_eq!(
            net.a.tcpcb(c).map(|tp| (tp.snd_cwnd, tp.snd_ssthresh)),
            before,
            "switch to {m} kept cwnd and ssthresh"
        );
        assert_eq!(users(&net.a, m), 1, "{m}'s PCB count");
        let others: usize = FREEBSD_MODULES
            .iter()
            .filter(|&&o| o != m)
            .map(|o| users(&net.a, o))
            .sum();
        assert_eq!(others, 0, "the old module let go of the connection");
    }
    // FIN_WAIT_1 and later: still switchable.
    net.a.close(c);
    assert!(matches!(
        net.a.state(c),
        Some(TcpState::FinWait1 | TcpState::FinWait2)
    ));
    set_cc(&mut net.a, c, "newreno").unwrap();
    assert_eq!(cc_of(&mut net.a, c), "newreno");
    // CLOSE_WAIT on the other side.
    net.run_until(net.now + 1_000_000_000, |n| {
        srv.is_some_and(|s| n.b.state(s) == Some(TcpState::CloseWait))
    });
    let s = srv.unwrap();
    assert_eq!(net.b.state(s), Some(TcpState::CloseWait));
    set_cc(&mut net.b, s, "dctcp").unwrap();
    assert_eq!(cc_of(&mut net.b, s), "dctcp");
}

#[test]
fn tcp_ccalgoopt_limits_and_enoent_without_ctl_output() {
    let mut net = SimNet::builtin(SimLinkConfig::default(), 3);
    let server: SocketAddr = SERVER.into();
    let c = net.a.socket(server, None).unwrap();
    set_cc(&mut net.a, c, "newreno").unwrap();
    let opt = |name: u32, val: u32| {
        let mut b = name.to_ne_bytes().to_vec();
        b.extend(val.to_ne_bytes());
        b
    };
    net.a
        .setsockopt(c, IPPROTO_TCP, sockopt::TCP_CCALGOOPT, &opt(1, 70))
        .unwrap();
    let mut b = opt(1, 0);
    let n = net
        .a
        .getsockopt(c, IPPROTO_TCP, sockopt::TCP_CCALGOOPT, &mut b)
        .unwrap();
    assert_eq!(&b[..n], &opt(1, 70)[..], "newreno beta read back");
    let big = vec![0u8; sockopt::TCP_CCALGOOPT_MAX + 1];
    assert_eq!(
        net.a
            .setsockopt(c, IPPROTO_TCP, sockopt::TCP_CCALGOOPT, &big),
        Err(Errno::EINVAL),
        "above 2048 bytes"
    );
    assert_eq!(sockopt::TCP_CCALGOOPT_MAX, 2048);
    set_cc(&mut net.a, c, "cubic").unwrap();
    assert_eq!(
        net.a
            .setsockopt(c, IPPROTO_TCP, sockopt::TCP_CCALGOOPT, &opt(1, 70)),
        Err(Errno::ENOENT),
        "cubic has no ctl_output"
    );
}

#[test]
fn deregistration_ebusy_and_forced_move_to_the_default() {
    let mut net = SimNet::builtin(SimLinkConfig::default(), 4);
    let server: SocketAddr = SERVER.into();
    let c = net.a.socket(server, None).unwrap();
    set_cc(&mut net.a, c, "htcp").unwrap();
    assert_eq!(
        net.a.kldunload("newreno", false),
        Err(Errno::EBUSY),
        "default"
    );
    assert_eq!(net.a.kldunload("htcp", false), Err(Errno::EBUSY), "in use");
    net.a.kldunload("htcp", true).unwrap();
    assert_eq!(cc_of(&mut net.a, c), "newreno", "moved to the default");
    assert_eq!(set_cc(&mut net.a, c, "htcp"), Err(Errno::ESRCH), "gone");
    assert!(net
        .a
        .sysctl
        .get("net.inet.tcp.cc.htcp.adaptive_backoff")
        .is_err());
    // An unused module goes at once.
    net.a.kldunload("vegas", false).unwrap();
    assert!(net.a.registry.snapshot().cc_any("vegas").is_none());
}

#[test]
fn reload_a_rebuilt_module_takes_over_live_connections() {
    let mut net = SimNet::builtin(lossy_link(), 5);
    let so = |v: u32| {
        common::target_dir()
            .join(format!("libplugtcp_testplugin_reload_cc_v{v}.so"))
            .to_str()
            .unwrap()
            .to_string()
    };
    net.a.kldload(&so(1)).unwrap();
    net.a
        .sysctl_set("net.inet.tcp.cc.reloadcc.knob", "42")
        .unwrap();
    net.a
        .sysctl_set("net.inet.tcp.cc.algorithm", "reloadcc")
        .unwrap();
    let version = |h: &mut Host, c: ConnId| {
        let mut b = [0u8; 16];
        let n = h
            .getsockopt(c, IPPROTO_TCP, sockopt::TCP_CCALGOOPT, &mut b)
            .unwrap();
        String::from_utf8(b[..n].to_vec()).unwrap()
    };
    let mut reloaded_at = None;
    let mut seen = Vec::new();
    let t = common::transfer(&mut net, 8 << 20, 120_000_000_000, |n, c| {
        if n.a.state(c) != Some(TcpState::Established) {
            return 0;
        }
        if seen.is_empty() {
            seen.push(version(&mut n.a, c));
        }
        if reloaded_at.is_none()
            && n.a
                .tcpcb(c)
                .is_some_and(|tp| tp.snd_una.wrapping_sub(tp.iss) > 2 << 20)
        {
            // The same file name twice would be the same library: a rebuild is a new file.
            assert_eq!(
                n.a.kldload(&so(1)).unwrap_err().errno(),
                Errno::EEXIST,
                "same version again"
            );
            n.a.kldload(&so(2)).unwrap();
            reloaded_at = Some(n.now);
            seen.push(version(&mut n.a, c));
        }
        0
    });
    assert!(
        t.intact,
        "every byte intact across the reload ({} bytes)",
        t.got
    );
    assert!(reloaded_at.is_some());
    assert_eq!(
        seen,
        ["1.0.0", "2.0.0"],
        "the live connection runs the new build"
    );
    let rows = net.a.kldstat();
    let row = rows.iter().find(|r| r.name == "reloadcc").unwrap();
    assert_eq!(row.version, "2.0.0");
    assert_eq!(
        net.a
            .sysctl
            .get("net.inet.tcp.cc.reloadcc.knob")
            .unwrap()
            .to_string(),
        "42",
        "parameter values survive a reload"
    );
    assert_eq!(
        net.a
            .sysctl
            .get("net.inet.tcp.cc.algorithm")
            .unwrap()
            .to_string(),
        "reloadcc",
        "still the default"
    );
}

#[test]
fn switching_cc_every_100ms_across_all_eight_delivers_every_byte() {
    let mut net = SimNet::builtin(lossy_link(), 6);
    for h in [&mut net.a, &mut net.b] {
        h.sysctl_set("net.inet.tcp.ecn.enable", "1").unwrap();
    }
    let mut next = 0u64;
    let mut switches = 0usize;
    let mut used = std::collections::BTreeSet::new();
    let t = common::transfer(&mut net, 24 << 20, 300_000_000_000, |n, c| {
        if n.now >= next && n.a.tcpcb(c).is_some() {
            let m = FREEBSD_MODULES[switches % FREEBSD_MODULES.len()];
            set_cc(&mut n.a, c, m).unwrap();
            used.insert(m);
            switches += 1;
            next = n.now + 100_000_000;
        }
        0
    });
    assert!(t.intact, "digest ({} bytes)", t.got);
    assert_eq!(used.len(), 8, "every module took a turn");
    assert!(switches >= 16, "{switches} switches");
    assert_eq!(net.a.plugin_faults.values().sum::<u64>(), 0);
}

fn experiment(cc: &str, flows: usize) -> ccsim::CcResult {
    let mut e = CcExperiment::standard(cc, flows);
    if cc == "dctcp" {
        e = e.with_ecn_marking();
    }
    ccsim::run(&e).unwrap()
}

#[test]
fn loss_based_modules_fill_the_link_and_share_it_fairly() {
    for cc in ["newreno", "cubic", "htcp"] {
        let one = experiment(cc, 1);
        assert!(one.utilisation >= 0.90, "{cc}: {one:?}");
        let two = experiment(cc, 2);
        assert!(two.utilisation >= 0.90, "{cc}: {two:?}");
        assert!(two.jain >= 0.9, "{cc}: {two:?}");
    }
}

#[test]
fn dctcp_keeps_the_queue_near_its_marking_threshold() {
    let r = experiment("dctcp", 1);
    let k = r.ecn_threshold_bytes.unwrap();
    assert!(r.ce_marks > 0, "{r:?}");
    assert_eq!(r.queue_drops, 0, "{r:?}");
    assert!(
        r.max_queue_bytes <= k + 8 * 1500,
        "queue {} above K {} plus a few packets: {r:?}",
        r.max_queue_bytes,
        k
    );
    assert!(r.utilisation >= 0.90, "{r:?}");
    let two = experiment("dctcp", 2);
    assert!(two.jain >= 0.9, "{two:?}");
}

#[test]
fn delay_based_modules_keep_queueing_delay_well_under_loss_based() {
    let loss_based = experiment("newreno", 1)
        .mean_queue_delay_ms
        .min(experiment("cubic", 1).mean_queue_delay_ms);
    for cc in ["vegas", "cdg", "chd", "hd"] {
        let one = experiment(cc, 1);
        assert!(
            one.mean_queue_delay_ms <= loss_based / 2.0,
            "{cc}: {:.2} ms against {loss_based:.2} ms for the loss-based ones: {one:?}",
            one.mean_queue_delay_ms
        );
        let two = experiment(cc, 2);
        assert!(two.jain >= 0.9, "{cc}: {two:?}");
    }
}

/// HyStart++ (RFC 9406) in the first slow start of newreno and cubic: with windows that do
/// not limit the sender (8 MiB buffers from the start) and a 4-BDP queue, leaving slow start
/// on the RTT's rise overflows the queue far less than slow start left only by loss (the
/// same run with the RTT thresholds out of reach).
#[test]
fn hystart_plus_plus_cuts_the_slow_start_overshoot() {
    let run = |cc: &str, hystart: bool| {
        let mut e = CcExperiment::standard(cc, 1);
        e.queue_bdp = 4.0;
        e.warmup_ns = 0;
        e.measure_ns = 3_000_000_000;
        for (k, v) in [
            ("recvspace", "8388608"),
            ("sendspace", "8388608"),
            ("recvbuf_max", "33554432"),
            ("sendbuf_max", "33554432"),
        ] {
            e.sysctls.push((k.into(), v.into()));
        }
        if !hystart {
            for k in ["minrtt_thresh", "maxrtt_thresh"] {
                e.sysctls
                    .push((format!("cc.hystartplusplus.{k}"), i32::MAX.to_string()));
            }
        }
        ccsim::run(&e).unwrap()
    };
    for cc in ["newreno", "cubic"] {
        let (with, without) = (run(cc, true), run(cc, false));
        assert!(
            with.queue_drops * 2 < without.queue_drops,
            "{cc}: {} drops with HyStart++, {} without",
            with.queue_drops,
            without.queue_drops
        );
    }
}
