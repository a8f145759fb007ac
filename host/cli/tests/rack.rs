//! The `rack` function block: RACK-TLP against base on reordering and tail loss, its
//! handoff rules, its sysctls, and a long transfer switched between the two every 50 ms.

mod common;

use plugtcp_host::conn_table::ConnId;
use std::net::SocketAddr;

use plugtcp_abi::segment::th;
use plugtcp_abi::sockopt::{self, IPPROTO_TCP};
use plugtcp_abi::{Errno, TcpState};
use plugtcp_cli::builtins::BuiltinNet as _;
use plugtcp_host::wire;
use plugtcp_host::Host;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};

const SERVER: (std::net::IpAddr, u16) = (ADDR_B, 80);

fn set_stack(h: &mut Host, c: ConnId, name: &str) -> Result<(), Errno> {
    h.setsockopt(c, IPPROTO_TCP, sockopt::TCP_FUNCTION_BLK, name.as_bytes())
}

/// A transfer of `len` bytes A -> B on `stack` (both hosts' default).
fn transfer(
    net: &mut SimNet,
    len: usize,
    stack: &str,
    tick: impl FnMut(&mut SimNet, ConnId) -> usize,
) -> common::Transfer {
    for h in [&mut net.a, &mut net.b] {
        h.sysctl_set("net.inet.tcp.functions_default", stack)
            .unwrap();
    }
    common::transfer(net, len, 600_000_000_000, tick)
}

fn reordering_link() -> SimLinkConfig {
    let mut cfg = SimLinkConfig::bdp_queue(100_000_000, 40_000_000);
    cfg.reorder = 0.01;
    cfg.reorder_min_ns = 2_000_000;
    cfg.reorder_max_ns = 4_000_000;
    cfg
}

/// 1% of segments held back 2-4 ms and nothing lost: every retransmission is spurious.
/// base's duplicate-ACK threshold fires on each reordered segment; RACK's time-based marking
/// waits a reordering window (and widens it on D-SACK).
#[test]
fn rack_makes_ten_times_fewer_spurious_retransmissions_under_reordering() {
    let mut spurious = Vec::new();
    for stack in ["base", "rack"] {
        let mut net = SimNet::builtin(reordering_link(), 21);
        let o = transfer(&mut net, 32 << 20, stack, |_, _| 0);
        assert!(o.intact, "{stack}: {} bytes", o.got);
        assert_eq!(net.link.a_to_b.stats().dropped_queue, 0);
        assert!(net.link.a_to_b.stats().reordered > 100);
        spurious.push(net.a.block_counter("sndrexmitpack"));
    }
    let (base, rack) = (spurious[0], spurious[1]);
    eprintln!("spurious retransmissions over 32 MiB: base {base}, rack {rack}");
    assert!(base >= 50, "base: {base} spurious retransmissions");
    assert!(
        rack * 10 <= base,
        "rack {rack} spurious retransmissions against base {base}"
    );
}

/// The last data segment is lost (first transmission only): nothing follows it to produce
/// duplicate ACKs. RACK's tail loss probe resends it after about two RTTs; base waits for
/// its retransmission timeout.
#[test]
fn rack_recovers_a_lost_tail_with_a_probe_not_a_timeout() {
    let len = 1 << 20;
    let mut done_at = Vec::new();
    for (stack, tlp_limit, rtos) in [("rack", "2", 0u64), ("base", "2", 1), ("rack", "0", 1)] {
        let mut net = SimNet::builtin(SimLinkConfig::bdp_queue(100_000_000, 40_000_000), 22);
        net.a
            .sysctl_set("net.inet.tcp.rack.tlp.limit", tlp_limit)
            .unwrap();
        let mut dropped = false;
        net.drop_if = Some(Box::new(move |a_to_b, pkt| {
            let p = wire::parse(pkt).unwrap();
            // The segment carrying the stream's last byte (ISN + 1 + len - 1 lies in it).
            let last = !p.payload.is_empty() && p.flags & th::FIN != 0;
            if a_to_b && !dropped && last {
                dropped = true;
                return true;
            }
            false
        }));
        let o = transfer(&mut net, len, stack, |_, _| 0);
        assert!(o.intact, "{stack}");
        eprintln!(
            "{stack} (tlp.limit {tlp_limit}): done at {} ms, {} RTOs, {} probes",
            net.now / 1_000_000,
            net.a.block_counter("rexmttimeo"),
            net.a.block_counter("tlp_probes")
        );
        assert_eq!(
            net.a.block_counter("rexmttimeo"),
            rtos,
            "{stack} with rack.tlp.limit={tlp_limit}: {} probes",
            net.a.block_counter("tlp_probes")
        );
        if rtos == 0 {
            assert!(net.a.block_counter("tlp_probes") >= 1);
        }
        done_at.push(net.now);
    }
    assert!(
        done_at[0] + 50_000_000 < done_at[1],
        "the probe repairs the tail sooner than the timeout: {done_at:?}"
    );
}

#[test]
fn rack_handoff_rules_follow_freebsd() {
    let mut net = SimNet::builtin(SimLinkConfig::bdp_queue(100_000_000, 10_000_000), 23);
    let server: SocketAddr = SERVER.into();
    let lid = net.b.listen(server, 8).unwrap();
    // CLOSED: fine.
    let c = net.a.socket(server, None).unwrap();
    set_stack(&mut net.a, c, "rack").unwrap();
    set_stack(&mut net.a, c, "base").unwrap();
    // SYN_SENT: EAGAIN.
    net.a.start_connect(c).unwrap();
    assert_eq!(set_stack(&mut net.a, c, "rack"), Err(Errno::EAGAIN));
    assert!(net.run_until(net.now + 1_000_000_000, |n| n.a.state(c)
        == Some(TcpState::Established)));
    set_stack(&mut net.a, c, "rack").unwrap();
    // A FIN sent with data outstanding: EAGAIN (back to base first).
    set_stack(&mut net.a, c, "base").unwrap();
    net.a.send(c, &[7u8; 1000]).unwrap();
    net.a.close(c);
    let tp = net.a.tcpcb(c).unwrap();
    assert!(tp.flight_size() > 1 && tp.t_flags & plugtcp_abi::tcpcb::tf::SENTFIN != 0);
    assert_eq!(set_stack(&mut net.a, c, "rack"), Err(Errno::EAGAIN));
    let _ = net.b.accept(lid);
    // Without SACK: EINVAL.
    let mut net = SimNet::builtin(SimLinkConfig::default(), 24);
    for h in [&mut net.a, &mut net.b] {
        h.sysctl_set("net.inet.tcp.sack.enable", "0").unwrap();
    }
    let lid = net.b.listen(server, 8).unwrap();
    let c = net.a.connect(server, None).unwrap();
    assert!(net.run_until(1_000_000_000, |n| n.a.state(c)
        == Some(TcpState::Established)));
    assert_eq!(set_stack(&mut net.a, c, "rack"), Err(Errno::EINVAL));
    let _ = net.b.accept(lid);
}

#[test]
fn rack_sysctls_have_freebsd_defaults() {
    let net = SimNet::builtin(SimLinkConfig::default(), 25);
    for (name, value) in [
        ("rack.reorder_thresh", "2"),
        ("rack.reorder_fade", "60000000"),
        ("rack.pktdelay", "1"),
        ("rack.tlp.limit", "2"),
        ("rack.timers.tlpminto", "10000"),
    ] {
        let full = format!("net.inet.tcp.{name}");
        assert_eq!(
            net.a.sysctl.get(&full).map(|v| v.to_string()),
            Ok(value.to_string()),
            "{full}"
        );
    }
}

/// 256 MiB over a lossy, reordering link, the sender switching base -> rack -> base every
/// 50 ms: every byte arrives, and no stall outlasts the retransmission timeout.
#[test]
fn switching_base_rack_every_50ms_keeps_the_transfer_whole() {
    let mut cfg = reordering_link();
    cfg.loss = 0.001;
    let mut net = SimNet::builtin(cfg, 26);
    let mut next = 0u64;
    let mut on_rack = false;
    let o = transfer(&mut net, 256 << 20, "base", |n, c| {
        if n.now < next || n.a.state(c) != Some(TcpState::Established) {
            return 0;
        }
        next = n.now + 50_000_000;
        let to = if on_rack { "base" } else { "rack" };
        match set_stack(&mut n.a, c, to) {
            Ok(()) => {
                on_rack = !on_rack;
                1
            }
            // rack refuses while a FIN is out with data (the end of the transfer).
            Err(Errno::EAGAIN) => 0,
            Err(e) => panic!("switch to {to}: {e}"),
        }
    });
    assert!(o.intact, "{} bytes", o.got);
    eprintln!(
        "256 MiB: {} switches, longest stall {} ms (RTO then {} ms), {} s simulated",
        o.ticks,
        o.longest_stall_ns / 1_000_000,
        o.rto_at_stall_ns / 1_000_000,
        net.now / 1_000_000_000
    );
    assert!(o.ticks > 100, "{} switches", o.ticks);
    assert!(
        o.longest_stall_ns <= o.rto_at_stall_ns.max(1),
        "stalled {} ms with an RTO of {} ms",
        o.longest_stall_ns / 1_000_000,
        o.rto_at_stall_ns / 1_000_000
    );
    assert_eq!(net.a.plugin_faults.values().sum::<u64>(), 0);
}
