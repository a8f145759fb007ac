//! Transfers over the simulated link: bytes delivered intact (SHA-256), under loss,
//! reordering, duplication and ECN marking.

use std::net::SocketAddr;

use plugtcp_abi::TcpState;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};
use sha2::{Digest, Sha256};

mod common;
use common::payload;
use plugtcp_cli::builtins::BuiltinNet as _;

const SEC: u64 = 1_000_000_000;

/// A sends `data` to B and closes; returns what B read until end of stream, with `recv`
/// or, if `zero_copy`, with `recv_with`.
fn transfer(net: &mut SimNet, data: &[u8], deadline: u64, zero_copy: bool) -> Vec<u8> {
    let server: SocketAddr = (ADDR_B, 5001).into();
    let lid = net.b.listen(server, 128).unwrap();
    let c = net.a.connect(server, None).unwrap();
    let mut sent = 0usize;
    let mut got = Vec::with_capacity(data.len());
    let mut accepted = None;
    let mut eof = false;
    let mut closed = false;
    let mut buf = vec![0u8; 256 * 1024];
    let ok = net.run_until(deadline, |n| {
        if sent < data.len() && n.a.state(c) == Some(TcpState::Established) {
            if let Ok(k) = n.a.send(c, &data[sent..]) {
                sent += k;
            }
        }
        if sent == data.len() && !closed && n.a.state(c) == Some(TcpState::Established) {
            n.a.close(c);
            closed = true;
        }
        if accepted.is_none() {
            accepted = n.b.accept(lid).ok();
        }
        if let Some(s) = accepted {
            loop {
                let r = if zero_copy {
                    n.b.recv_with(s, |run| {
                        assert!(!run.is_empty(), "called without bytes");
                        // Take a part only, to exercise partial consumption.
                        let k = run.len().div_ceil(2);
                        got.extend_from_slice(&run[..k]);
                        k
                    })
                } else {
                    n.b.recv(s, &mut buf)
                        .inspect(|&k| got.extend_from_slice(&buf[..k]))
                };
                match r {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        eof
    });
    assert!(
        ok,
        "transfer did not finish by {} s (sent {sent}, got {})",
        deadline / SEC,
        got.len()
    );
    if let Some(s) = accepted {
        net.b.close(s);
    }
    got
}

fn check(net: &mut SimNet, len: usize, seed: u64, deadline: u64) {
    check_with(net, len, seed, deadline, false)
}

fn check_with(net: &mut SimNet, len: usize, seed: u64, deadline: u64, zero_copy: bool) {
    let data = payload(len, seed);
    let got = transfer(net, &data, deadline, zero_copy);
    assert_eq!(got.len(), data.len());
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(&data),
        "delivered bytes differ"
    );
}

#[test]
fn perfect_link_one_megabyte() {
    let mut net = SimNet::builtin(SimLinkConfig::default(), 1);
    check(&mut net, 1 << 20, 7, 10 * SEC);
}

/// `recv_with` hands out the bytes in place; consuming part of each run loses nothing.
#[test]
fn zero_copy_reads_with_loss() {
    let mut cfg = SimLinkConfig::bdp_queue(100_000_000, 10_000_000);
    cfg.loss = 0.01;
    cfg.seed = 5;
    let mut net = SimNet::builtin(cfg, 5);
    check_with(&mut net, 2 << 20, 13, 60 * SEC, true);
}

/// On a lossless link nothing is retransmitted and nothing arrives out of order, and LRO's
/// placement loses nothing: merged segments end at buffer chunk ends (packets that cross
/// one are split there). Several MTUs and buffer sizes, so that segments end at many
/// different places in the chunks (and a reader that frees its buffer in many steps sends
/// window updates, which are no duplicate ACKs).
#[test]
fn perfect_link_lro_places_every_byte() {
    for (mtu, space) in [
        (1500, 65536),
        (1500, 4 << 20),
        (9000, 300_000),
        (65535, 4 << 20),
    ] {
        let mut net = SimNet::builtin(SimLinkConfig::default(), 1);
        for h in [&mut net.a, &mut net.b] {
            h.mtu = mtu;
            for name in ["sendspace", "recvspace"] {
                h.sysctl_set(&format!("net.inet.tcp.{name}"), &space.to_string())
                    .unwrap();
            }
        }
        let server: SocketAddr = (ADDR_B, 5001).into();
        let lid = net.b.listen(server, 8).unwrap();
        let c = net.a.connect(server, None).unwrap();
        let data = payload(16 << 20, 23);
        let (mut sent, mut got, mut s) = (0, Vec::new(), None);
        let mut buf = vec![0u8; 100_000];
        assert!(net.run_until(60 * SEC, |n| {
            s = s.or_else(|| n.b.accept(lid).ok());
            if let Ok(k) = n.a.send(c, &data[sent..]) {
                sent += k;
            }
            if let Some(s) = s {
                while let Ok(k) = n.b.recv(s, &mut buf) {
                    if k == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..k]);
                }
            }
            got.len() == data.len()
        }));
        assert_eq!(Sha256::digest(&got), Sha256::digest(&data));
        let (a, b) = (net.a.tcpcb(c).unwrap(), net.b.tcpcb(s.unwrap()).unwrap());
        let lro = net.b.offload_stats();
        let case = format!("MTU {mtu}, buffers {space}: {lro:?}");
        assert_eq!((a.t_sndrexmitpack, b.t_rcvoopack), (0, 0), "{case}");
        // Every data packet placed, except jumbo ones larger than a 16 KiB chunk (they
        // take the ordinary path); at MTU 1500 about 11 fill a chunk, so segments merge
        // about that many.
        if mtu <= 9000 {
            assert!(lro.lro_queued > (16 << 20) / mtu as u64, "{case}");
        }
        if mtu == 1500 {
            assert!(lro.lro_queued > 5 * lro.lro_flushed, "{case}");
        }
    }
}

/// LRO merges in-order segments that arrive together (one batch: here an unlimited-rate
/// link delivers each burst at once); with loss, reordering, duplicates and corruption the
/// bytes are the same as without it, and it merged many packets.
#[test]
fn lro_on_and_off_deliver_the_same_bytes() {
    let mut counts = Vec::new();
    for lro in [true, false] {
        let mut cfg = SimLinkConfig {
            delay_ns: 1_000_000,
            ..SimLinkConfig::default()
        };
        cfg.corrupt = 0.002;
        cfg.loss = 0.005;
        cfg.reorder = 0.01;
        cfg.duplicate = 0.01;
        cfg.seed = 21;
        let mut net = SimNet::builtin(cfg, 21);
        net.b.lro_enabled = lro;
        check(&mut net, 4 << 20, 17, 60 * SEC);
        counts.push(net.b.offload_stats());
    }
    let (on, off) = (counts[0], counts[1]);
    assert!(
        on.lro_queued > 2 * on.lro_flushed && on.lro_flushed > 0,
        "merged: {on:?}"
    );
    assert_eq!((off.lro_queued, off.lro_flushed), (0, 0));
}

#[test]
fn gigabit_20ms_with_loss() {
    let mut cfg = SimLinkConfig::bdp_queue(1_000_000_000, 20_000_000);
    cfg.loss = 0.001;
    cfg.seed = 3;
    let mut net = SimNet::builtin(cfg, 3);
    check(&mut net, 16 << 20, 11, 60 * SEC);
}

mod property {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the network does (loss up to 10%, reordering, duplication, ECN marking,
        /// any seed), the bytes B reads are exactly the bytes A wrote.
        #[test]
        fn delivered_equals_sent(
            seed in any::<u64>(),
            loss in 0.0f64..0.10,
            reorder in 0.0f64..0.05,
            duplicate in 0.0f64..0.05,
            ecn in any::<bool>(),
            len in 1usize..300_000,
        ) {
            let mut cfg = SimLinkConfig::bdp_queue(50_000_000, 10_000_000);
            cfg.loss = loss;
            cfg.reorder = reorder;
            cfg.reorder_min_ns = 1_000_000;
            cfg.reorder_max_ns = 4_000_000;
            cfg.duplicate = duplicate;
            cfg.jitter_ns = 500_000;
            cfg.ecn_threshold_bytes = ecn.then_some(cfg.queue_limit_bytes / 4);
            cfg.seed = seed;
            let mut net = SimNet::builtin(cfg, seed);
            let data = payload(len, seed);
            // Either reader: copying, or zero-copy with partial consumption.
            let got = transfer(&mut net, &data, 3_600 * SEC, seed & 1 == 1);
            prop_assert_eq!(got.len(), data.len());
            prop_assert!(Sha256::digest(&got) == Sha256::digest(&data), "delivered bytes differ");
        }
    }
}
