//! The base stack on the simulated link: exact segments where the RFCs are exact, state
//! transitions, errors, and intact data.

use plugtcp_host::conn_table::ConnId;
use std::net::SocketAddr;

use plugtcp_abi::segment::{th, to, SegOut, TcpOpts};
use plugtcp_abi::{Errno, TcpState};
use plugtcp_host::conn::OffloadStats;
use plugtcp_host::usrreq::Shutdown;
use plugtcp_host::wire::{self, Parsed};
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{Captured, SimNet, ADDR_A, ADDR_B};

const MS: u64 = 1_000_000;
mod common;
use common::established;
use plugtcp_cli::builtins::{BuiltinHost as _, BuiltinNet as _};

const SEC: u64 = 1_000_000_000;

fn link_10ms() -> SimLinkConfig {
    SimLinkConfig {
        delay_ns: 5 * MS,
        bandwidth_bps: 100_000_000,
        seed: 9,
        ..Default::default()
    }
}

fn segments(rec: &[Captured], a_to_b: bool) -> Vec<(u64, Parsed<'_>)> {
    rec.iter()
        .filter(|c| c.a_to_b == a_to_b)
        .map(|c| (c.time, wire::parse(&c.bytes).unwrap()))
        .collect()
}

/// The raw TCP option bytes of an IPv4 packet.
fn raw_options(pkt: &[u8]) -> &[u8] {
    let ihl = (pkt[0] & 0x0f) as usize * 4;
    let doff = (pkt[ihl + 12] >> 4) as usize * 4;
    &pkt[ihl + 20..ihl + doff]
}

#[test]
fn handshake_segments_exact() {
    let mut net = SimNet::builtin(link_10ms(), 1);
    net.record = Some(Vec::new());
    established(&mut net);
    let rec = net.record.take().unwrap();
    let (syn_raw, synack_raw) = (&rec[0], &rec[1]);
    assert!(syn_raw.a_to_b && !synack_raw.a_to_b);
    let syn = wire::parse(&syn_raw.bytes).unwrap();
    let synack = wire::parse(&synack_raw.bytes).unwrap();
    let ack = wire::parse(&rec[2].bytes).unwrap();

    assert_eq!(syn.flags, th::SYN);
    assert_eq!(syn.ack, 0);
    // FreeBSD's order: mss, nop, wscale, sackOK, TS (20 bytes, no padding).
    let o = raw_options(&syn_raw.bytes);
    assert_eq!(o.len(), 20);
    assert_eq!(&o[..4], &[2, 4, 0x05, 0xb4], "mss 1460");
    // FreeBSD: the smallest shift with 65535 << shift >= 2 MiB (recvbuf_max) is 6.
    assert_eq!(&o[4..8], &[1, 3, 3, 6], "nop, wscale 6");
    assert_eq!(&o[8..10], &[4, 2], "sackOK");
    assert_eq!(&o[10..12], &[8, 10], "TS");
    assert_eq!(&o[16..20], &[0, 0, 0, 0], "TS ecr 0 on a SYN");
    assert_eq!(syn.win, 65535, "SYN window unscaled, recvspace 64 KiB");

    assert_eq!(synack.flags, th::SYN | th::ACK);
    assert_eq!(synack.ack, syn.seq.wrapping_add(1));
    let o = raw_options(&synack_raw.bytes);
    assert_eq!(o.len(), 20);
    assert_eq!(
        (o[0], o[4], o[5], o[8], o[10]),
        (2, 1, 3, 4, 8),
        "same order on the SYN-ACK"
    );
    assert_eq!(synack.opts.tsecr, syn.opts.tsval, "echoes the SYN's TSval");

    assert_eq!(ack.flags, th::ACK);
    assert_eq!(
        (ack.seq, ack.ack),
        (syn.seq.wrapping_add(1), synack.seq.wrapping_add(1))
    );
    assert!(ack.payload.is_empty());
    let o = raw_options(&rec[2].bytes);
    assert_eq!(&o[..4], &[1, 1, 8, 10], "nop, nop, TS");
    assert_eq!(ack.opts.tsecr, synack.opts.tsval);
    // The window is now scaled by our shift (6): 64 KiB rounded up to whole 1460-byte
    // segments once the MSS is known (FreeBSD tcp_mss), rounded up to the scale's unit
    // (FreeBSD tcp_output), >> 6.
    assert_eq!(
        ack.win as u32,
        (65536u32.div_ceil(1460) * 1460).div_ceil(64)
    );
}

/// A crafted segment from B's side of A's connection `c`.
fn from_b(net: &SimNet, c: ConnId, seq: u32, ack: u32, flags: u16) -> Vec<u8> {
    let side = &net.a.conns.get_by_id(c).unwrap().side;
    let seg = SegOut {
        seq,
        ack,
        flags,
        win: 1000,
        opts: TcpOpts::default(),
        ..Default::default()
    };
    let mut buf = vec![0u8; wire::MAX_HEADER];
    let n = wire::build(&mut buf, side.remote, side.local, &seg, &[], 64).unwrap();
    buf.truncate(n);
    buf
}

fn a_output(net: &mut SimNet) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    net.a.transmit(|p| out.push(p.to_vec()));
    out
}

#[test]
fn rfc5961_challenge_acks_and_exact_rst() {
    let mut net = SimNet::builtin(link_10ms(), 2);
    let (c, _) = established(&mut net);
    net.run_until(net.now + SEC, |_| false);
    let (rcv_nxt, snd_nxt) = {
        let tp = net.a.tcpcb(c).unwrap();
        (tp.rcv_nxt, tp.snd_nxt)
    };
    // A RST inside the window but not at rcv_nxt: a challenge ACK, connection kept.
    let rst = from_b(&net, c, rcv_nxt.wrapping_add(100), 0, th::RST);
    net.a.input(&rst);
    let out = a_output(&mut net);
    assert_eq!(out.len(), 1);
    let ch = wire::parse(&out[0]).unwrap();
    assert_eq!(ch.flags, th::ACK);
    assert_eq!(
        (ch.seq, ch.ack),
        (snd_nxt, rcv_nxt),
        "challenge ACK: SND.NXT, RCV.NXT"
    );
    assert!(ch.payload.is_empty());
    assert_eq!(net.a.state(c), Some(TcpState::Established));

    // A SYN on the established connection: a challenge ACK too.
    let syn = from_b(&net, c, rcv_nxt.wrapping_add(5), 0, th::SYN);
    net.a.input(&syn);
    let out = a_output(&mut net);
    assert_eq!(out.len(), 1);
    assert_eq!(wire::parse(&out[0]).unwrap().flags, th::ACK);
    assert_eq!(net.a.state(c), Some(TcpState::Established));

    // Throttled: at most ack_war_cnt (5) per ack_war_timewindow (1 s); 2 were sent already.
    for i in 0..10 {
        let rst = from_b(&net, c, rcv_nxt.wrapping_add(200 + i), 0, th::RST);
        net.a.input(&rst);
    }
    assert_eq!(a_output(&mut net).len(), 3);

    // A RST outside the window: silently dropped.
    let far = from_b(&net, c, rcv_nxt.wrapping_add(10_000_000), 0, th::RST);
    net.a.input(&far);
    assert!(a_output(&mut net).is_empty());

    // A RST exactly at rcv_nxt resets the connection: ECONNRESET to the application.
    let rst = from_b(&net, c, rcv_nxt, 0, th::RST);
    net.a.input(&rst);
    assert_eq!(net.a.state(c), Some(TcpState::Closed));
    assert_eq!(net.a.recv(c, &mut [0u8; 16]), Err(Errno::ECONNRESET));
    assert_eq!(net.a.send(c, b"x"), Err(Errno::ECONNRESET));
}

#[test]
fn connect_to_closed_port_is_refused_with_exact_rst() {
    let mut net = SimNet::builtin(link_10ms(), 3);
    net.record = Some(Vec::new());
    let c = net.a.connect((ADDR_B, 81).into(), None).unwrap();
    net.run_until(2 * SEC, |n| n.a.state(c) == Some(TcpState::Closed));
    assert_eq!(net.a.recv(c, &mut [0u8; 4]), Err(Errno::ECONNREFUSED));
    let rec = net.record.take().unwrap();
    let syn = wire::parse(&rec[0].bytes).unwrap();
    let rst = wire::parse(&rec[1].bytes).unwrap();
    // RFC 9293 3.10.7.1: no ACK on the SYN, so RST|ACK with SEQ 0 and ACK = SEG.SEQ + 1.
    assert_eq!(rst.flags, th::RST | th::ACK);
    assert_eq!((rst.seq, rst.ack), (0, syn.seq.wrapping_add(1)));
    assert_eq!(net.b.stats.out_rsts, 1);
}

#[test]
fn zero_window_probes_then_recovery() {
    let mut net = SimNet::builtin(link_10ms(), 4);
    net.b.sysctl_set("net.inet.tcp.recvspace", "16384").unwrap();
    // Without window scaling, B's zero window is exactly zero (a scaled window rounds up to
    // 63 free bytes down to zero, and the peer may then place probe bytes in them).
    net.b.sysctl_set("net.inet.tcp.rfc1323", "0").unwrap();
    let (c, s) = established(&mut net);
    net.record = Some(Vec::new());
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let mut sent = net.a.send(c, &data).unwrap();
    // B reads nothing: the window closes; A probes.
    net.run_until(net.now + 40 * SEC, |n| {
        if let Ok(k) = n.a.send(c, &data[sent..]) {
            sent += k;
        }
        false
    });
    let rec = net.record.take().unwrap();
    let a_segs = segments(&rec, true);
    let zero_at = segments(&rec, false)
        .iter()
        .find(|(_, p)| p.win == 0 && p.flags & th::ACK != 0)
        .map(|(t, _)| *t)
        .expect("B advertised a zero window");
    // Segments A sent before B's zero window reached it (one-way delay 5 ms) are not probes.
    let probes: Vec<&(u64, Parsed<'_>)> = a_segs
        .iter()
        .filter(|(t, p)| *t > zero_at + 6 * MS && !p.payload.is_empty())
        .collect();
    assert!(
        probes.len() >= 4,
        "expected window probes, got {}",
        probes.len()
    );
    let una = net.a.tcpcb(c).unwrap().snd_una;
    for (_, p) in &probes {
        assert_eq!(p.payload.len(), 1, "a probe carries one byte");
    }
    // Each probe is the first unacknowledged byte: the same byte again, or the next one when
    // the receiver had room for the previous (window scaling rounds its last few free bytes
    // down to a zero on the wire).
    for w in probes.windows(2) {
        let step = w[1].1.seq.wrapping_sub(w[0].1.seq);
        assert!(step <= 1, "probe sequence jumped by {step}");
    }
    for (_, p) in &probes[probes.len() - 3..] {
        assert_eq!(
            p.seq, una,
            "once the buffer is full, the same byte every time"
        );
    }
    // Persist timing: persmin 5 s while the backed-off RTO is below it.
    let gaps: Vec<u64> = probes.windows(2).map(|w| w[1].0 - w[0].0).collect();
    // Persist timing (FreeBSD tcp_setpersist): ((srtt >> 2) + rttvar) >> 1 backed off,
    // plus the slop, clamped to [persmin 5 s, persmax 60 s]: 5 s while that is below
    // persmin (the packetdrill corpus checks the exact schedule).
    assert_eq!(&gaps[..3], &[5 * SEC; 3], "probe intervals {gaps:?}");
    assert!(
        gaps.windows(2).all(|w| w[1] >= w[0] && w[1] <= 60 * SEC),
        "probe intervals {gaps:?}"
    );
    // Now B reads: the window opens and everything arrives intact.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    assert!(net.run_until(net.now + 60 * SEC, |n| {
        if sent < data.len() {
            if let Ok(k) = n.a.send(c, &data[sent..]) {
                sent += k;
            }
        }
        while let Ok(k) = n.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
        got.len() == data.len()
    }));
    assert_eq!(got, data);
}

#[test]
fn close_handshake_time_wait_and_half_close() {
    let mut net = SimNet::builtin(link_10ms(), 5);
    let (c, s) = established(&mut net);
    // A sends, then half-closes: B reads to EOF while it can still send back.
    net.a.send(c, b"request").unwrap();
    net.a.shutdown(c, Shutdown::Write).unwrap();
    assert_eq!(net.a.state(c), Some(TcpState::FinWait1));
    let mut buf = [0u8; 64];
    let mut req = Vec::new();
    assert!(net.run_until(net.now + SEC, |n| {
        match n.b.recv(s, &mut buf) {
            Ok(0) => true,
            Ok(k) => {
                req.extend_from_slice(&buf[..k]);
                false
            }
            Err(_) => false,
        }
    }));
    assert_eq!(req, b"request");
    assert_eq!(net.b.state(s), Some(TcpState::CloseWait));
    // B's ACK of the FIN needs a one-way delay to reach A.
    assert!(net.run_until(net.now + SEC, |n| n.a.state(c) == Some(TcpState::FinWait2)));
    assert_eq!(net.a.send(c, b"more"), Err(Errno::EPIPE));
    net.b.send(s, b"response").unwrap();
    net.b.close(s);
    assert_eq!(net.b.state(s), Some(TcpState::LastAck));
    let mut resp = Vec::new();
    assert!(net.run_until(net.now + SEC, |n| {
        match n.a.recv(c, &mut buf) {
            Ok(0) => true,
            Ok(k) => {
                resp.extend_from_slice(&buf[..k]);
                false
            }
            Err(_) => false,
        }
    }));
    assert_eq!(resp, b"response");
    // A, the active closer, holds TIME_WAIT for 2*MSL (msl 30 s); B is gone once its FIN
    // is acknowledged.
    let tw_from = net.now;
    net.run_until(net.now + SEC, |_| false);
    assert_eq!(net.a.state(c), Some(TcpState::TimeWait));
    assert_eq!(net.b.state(s), None, "B freed after LAST_ACK");
    net.a.close(c);
    net.run_until(tw_from + 59 * SEC, |_| false);
    assert_eq!(net.a.state(c), Some(TcpState::TimeWait));
    net.run_until(tw_from + 61 * SEC, |_| false);
    assert_eq!(net.a.state(c), None, "freed after 2*MSL");
    assert_eq!(net.a.table.len(), 0);
}

#[test]
fn simultaneous_open() {
    let mut net = SimNet::builtin(link_10ms(), 6);
    let pa: SocketAddr = (ADDR_A, 6000).into();
    let pb: SocketAddr = (ADDR_B, 7000).into();
    let a = net.a.connect(pb, Some(pa)).unwrap();
    let b = net.b.connect(pa, Some(pb)).unwrap();
    assert!(net.run_until(5 * SEC, |n| {
        n.a.state(a) == Some(TcpState::Established) && n.b.state(b) == Some(TcpState::Established)
    }));
    net.a.send(a, b"ping").unwrap();
    let mut buf = [0u8; 8];
    let mut n_read = 0;
    assert!(net.run_until(net.now + SEC, |n| {
        if let Ok(k) = n.b.recv(b, &mut buf[n_read..]) {
            n_read += k;
        }
        n_read == 4
    }));
    assert_eq!(&buf[..4], b"ping");
}

#[test]
fn syn_options_follow_sysctls() {
    let mut net = SimNet::builtin(link_10ms(), 7);
    net.a.sysctl_set("net.inet.tcp.rfc1323", "0").unwrap();
    net.a.sysctl_set("net.inet.tcp.sack.enable", "0").unwrap();
    net.record = Some(Vec::new());
    established(&mut net);
    let rec = net.record.take().unwrap();
    let syn = wire::parse(&rec[0].bytes).unwrap();
    assert_eq!(
        syn.opts.flags,
        to::MSS,
        "only the MSS without rfc1323 and SACK"
    );
    let synack = wire::parse(&rec[1].bytes).unwrap();
    assert_eq!(synack.opts.flags, to::MSS, "B answers only what A offered");
}

#[test]
fn ecn_negotiation_marking_and_reaction() {
    let mut cfg = SimLinkConfig::bdp_queue(100_000_000, 20_000_000);
    cfg.ecn_threshold_bytes = Some(cfg.queue_limit_bytes / 5);
    cfg.seed = 8;
    let mut net = SimNet::builtin(cfg, 8);
    net.a.sysctl_set("net.inet.tcp.ecn.enable", "1").unwrap();
    for h in [&mut net.a, &mut net.b] {
        h.sysctl_set("net.inet.tcp.sendspace", "2097152").unwrap();
        h.sysctl_set("net.inet.tcp.recvspace", "2097152").unwrap();
    }
    net.record = Some(Vec::new());
    let (c, s) = established(&mut net);
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i ^ (i >> 8)) as u8).collect();
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    assert!(net.run_until(net.now + 30 * SEC, |n| {
        if let Ok(k) = n.a.send(c, &data[sent..]) {
            sent += k;
        }
        while let Ok(k) = n.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
        got.len() == data.len()
    }));
    assert_eq!(got, data);
    let rec = net.record.take().unwrap();
    let syn = wire::parse(&rec[0].bytes).unwrap();
    let synack = wire::parse(&rec[1].bytes).unwrap();
    assert_eq!(syn.flags, th::SYN | th::ECE | th::CWR, "ECN-setup SYN");
    assert_eq!(
        synack.flags,
        th::SYN | th::ACK | th::ECE,
        "ECN-setup SYN-ACK"
    );
    let a_segs = segments(&rec, true);
    let b_segs = segments(&rec, false);
    // Segments are recorded as sent (before the link marks them): every data segment is
    // ECT(0) (none was retransmitted: nothing was dropped, see below), pure ACKs are not ECT.
    use plugtcp_abi::segment::ecn;
    assert!(a_segs
        .iter()
        .filter(|(_, p)| !p.payload.is_empty())
        .all(|(_, p)| p.ecn == ecn::ECT0));
    assert!(b_segs.iter().all(|(_, p)| p.ecn == ecn::NOT_ECT));
    let marked = net.link.a_to_b.stats().ce_marked;
    assert!(marked > 0, "the link marked CE");
    assert!(
        b_segs.iter().any(|(_, p)| p.flags & th::ECE != 0),
        "B echoed ECE"
    );
    assert!(
        a_segs
            .iter()
            .any(|(_, p)| p.flags & th::CWR != 0 && !p.payload.is_empty()),
        "A sent CWR on new data"
    );
    // A reduced its window on ECN, and the queue never overflowed.
    let snap = net.a.registry.snapshot();
    let base = snap.block("base").unwrap();
    let i = base
        .counter_names
        .iter()
        .position(|n| n == "ecn_reductions")
        .unwrap();
    assert!(base.counters[i].load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(
        net.link.a_to_b.stats().dropped_queue,
        0,
        "ECN kept the queue from overflowing"
    );
}

/// Drops A's data segment that starts `offset` bytes into the stream, the first time only.
fn drop_once(net: &mut SimNet, c: ConnId, offset: u32) {
    let iss = net.a.tcpcb(c).unwrap().iss;
    let target = iss.wrapping_add(1).wrapping_add(offset);
    let mut done = false;
    net.drop_if = Some(Box::new(move |a_to_b, pkt| {
        let p = wire::parse(pkt).unwrap();
        if a_to_b && !done && p.seq == target && !p.payload.is_empty() {
            done = true;
            return true;
        }
        false
    }));
}

#[test]
fn dsack_reports_a_duplicate_first() {
    let mut net = SimNet::builtin(link_10ms(), 11);
    let (c, s) = established(&mut net);
    net.a.send(c, b"hello world").unwrap();
    let mut buf = [0u8; 32];
    assert!(net.run_until(net.now + SEC, |n| n.b.recv(s, &mut buf).is_ok()));
    // The same 11 bytes again, as a retransmission that was not needed.
    let (una, rcv) = {
        let tp = net.a.tcpcb(c).unwrap();
        (tp.snd_una, tp.rcv_nxt)
    };
    let side = &net.a.conns.get_by_id(c).unwrap().side;
    let seg = SegOut {
        seq: una.wrapping_sub(11),
        ack: rcv,
        flags: th::ACK,
        win: 1000,
        data_len: 11,
        ..Default::default()
    };
    let mut pkt = vec![0u8; wire::MAX_HEADER + 11];
    let n = wire::build(
        &mut pkt,
        side.local,
        side.remote,
        &seg,
        &[b"hello world"],
        64,
    )
    .unwrap();
    net.b.input(&pkt[..n]);
    let mut out = Vec::new();
    net.b.transmit(|p| out.push(p.to_vec()));
    let ack = wire::parse(&out[0]).unwrap();
    assert!(ack.opts.has(to::SACK));
    assert_eq!(
        ack.opts.sack_blocks()[0],
        plugtcp_abi::segment::SackBlock {
            start: una.wrapping_sub(11),
            end: una
        }
    );
}

/// One lost segment deep in slow start; returns (retransmissions, RTOs, when new data first
/// went out after the fast retransmit as a fraction of the recovery episode).
fn one_loss_recovery(do_prr: &str) -> (u64, usize, f64) {
    let mut cfg = SimLinkConfig::bdp_queue(100_000_000, 20_000_000);
    cfg.queue_limit_bytes *= 4;
    cfg.seed = 12;
    let mut net = SimNet::builtin(cfg, 12);
    for h in [&mut net.a, &mut net.b] {
        h.sysctl_set("net.inet.tcp.sendspace", "4194304").unwrap();
        h.sysctl_set("net.inet.tcp.recvspace", "4194304").unwrap();
        h.sysctl_set("net.inet.tcp.do_prr", do_prr).unwrap();
    }
    let (c, s) = established(&mut net);
    drop_once(&mut net, c, 300 * 1448);
    net.record = Some(Vec::new());
    let data = vec![0x5a; 4 << 20];
    let (mut sent, mut got) = (0, 0);
    let mut buf = vec![0u8; 1 << 20];
    assert!(net.run_until(net.now + 30 * SEC, |n| {
        if let Ok(k) = n.a.send(c, &data[sent..]) {
            sent += k;
        }
        while let Ok(k) = n.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
            got += k;
        }
        got == data.len()
    }));
    let rec = net.record.take().unwrap();
    let a = segments(&rec, true);
    let b = segments(&rec, false);
    let tp = net.a.tcpcb(c).unwrap();
    let lost = tp.iss.wrapping_add(1).wrapping_add(300 * 1448);
    // The fast retransmit is the second time the lost segment was sent.
    let (t_fr, _) = *a
        .iter()
        .filter(|(_, p)| p.seq == lost && !p.payload.is_empty())
        .nth(1)
        .expect("fast retransmit");
    // Recovery ends with the ACK covering everything sent before the fast retransmit.
    // (Offsets from the ISS: no wraparound within a 4 MiB transfer.)
    let off = |seq: u32| seq.wrapping_sub(tp.iss);
    let recover = a
        .iter()
        .filter(|(t, _)| *t < t_fr)
        .map(|(_, p)| off(p.seq) + p.payload.len() as u32)
        .max()
        .unwrap();
    let (t_end, _) = *b
        .iter()
        .find(|(t, p)| *t > t_fr && off(p.ack) >= recover)
        .expect("recovery end");
    let (t_new, _) = *a
        .iter()
        .find(|(t, p)| *t > t_fr && !p.payload.is_empty() && off(p.seq) >= recover)
        .expect("new data in recovery");
    let snap = net.a.registry.snapshot();
    let base = snap.block("base").unwrap();
    let rto = base
        .counter_names
        .iter()
        .position(|n| n == "rexmttimeo")
        .unwrap();
    (
        tp.t_sndrexmitpack,
        base.counters[rto].load(std::sync::atomic::Ordering::Relaxed),
        (t_new - t_fr) as f64 / (t_end - t_fr) as f64,
    )
}

#[test]
fn prr_paces_recovery_and_one_loss_costs_one_retransmission() {
    let (rexmits, rtos, first_new) = one_loss_recovery("1");
    assert_eq!(
        (rexmits, rtos),
        (1, 0),
        "one loss: one retransmission, no timeout"
    );
    // PRR (RFC 6937) sends new data in proportion to delivery from the first ACKs on.
    assert!(
        first_new < 0.25,
        "with PRR new data starts {first_new:.2} into recovery"
    );
    // RFC 6675 alone holds back until the pipe falls below ssthresh, about halfway.
    let (rexmits, _, first_new) = one_loss_recovery("0");
    assert_eq!(rexmits, 1);
    assert!(
        first_new > 0.35,
        "without PRR new data starts {first_new:.2} into recovery"
    );
}

fn setopt(h: &mut plugtcp_host::Host, slot: ConnId, name: i32, v: i32) -> Result<(), Errno> {
    h.setsockopt(
        slot,
        plugtcp_abi::sockopt::IPPROTO_TCP,
        name,
        &v.to_ne_bytes(),
    )
}

#[test]
fn tcp_quickack_acks_at_once() {
    use plugtcp_abi::sockopt::TCP_QUICKACK;
    for quick in [false, true] {
        let mut net = SimNet::builtin(link_10ms(), 13);
        let (c, s) = established(&mut net);
        if quick {
            setopt(&mut net.b, s, TCP_QUICKACK, 1).unwrap();
        }
        net.record = Some(Vec::new());
        net.a.send(c, b"one small segment").unwrap();
        net.run_until(net.now + SEC, |_| false);
        let rec = net.record.take().unwrap();
        let sent = segments(&rec, true)[0].0;
        let acked = segments(&rec, false)[0].0;
        // 5 ms one way (plus serialization); a delayed ACK waits delacktime (40 ms) more.
        let delay = acked - sent;
        if quick {
            assert!(delay < 6 * MS, "quick ACK after {delay} ns");
        } else {
            assert!(
                (45 * MS..46 * MS).contains(&delay),
                "delayed ACK after {delay} ns"
            );
        }
    }
}

#[test]
fn tcp_window_clamp_limits_the_advertised_window() {
    use plugtcp_abi::sockopt::TCP_WINDOW_CLAMP;
    let mut net = SimNet::builtin(link_10ms(), 14);
    let (c, s) = established(&mut net);
    assert_eq!(
        setopt(&mut net.b, s, TCP_WINDOW_CLAMP, -1),
        Err(Errno::EINVAL)
    );
    setopt(&mut net.b, s, TCP_WINDOW_CLAMP, 8192).unwrap();
    net.record = Some(Vec::new());
    let data = vec![1u8; 200_000];
    let mut sent = 0;
    let mut buf = vec![0u8; 65536];
    net.run_until(net.now + 5 * SEC, |n| {
        if let Ok(k) = n.a.send(c, &data[sent..]) {
            sent += k;
        }
        while let Ok(k) = n.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
        }
        false
    });
    let scale = net.b.tcpcb(s).unwrap().rcv_scale;
    let rec = net.record.take().unwrap();
    let wins: Vec<u32> = segments(&rec, false)
        .iter()
        .map(|(_, p)| (p.win as u32) << scale)
        .collect();
    // A window already offered is never taken back (RFC 9293): B's window shrinks toward the
    // clamp as the data it offered room for arrives, and stays within it from then on.
    let first_clamped = wins
        .iter()
        .position(|&w| w <= 8192)
        .expect("reaches the clamp");
    assert!(
        wins[..first_clamped].windows(2).all(|w| w[1] <= w[0]),
        "windows {wins:?}"
    );
    assert!(
        wins[first_clamped..].iter().all(|&w| w <= 8192),
        "windows {wins:?}"
    );
    // The sender never has more than the clamp in flight.
    assert!(segments(&rec, true)
        .iter()
        .all(|(_, p)| p.payload.len() <= 8192));
}

#[test]
fn tcp_syncnt_bounds_syn_retransmissions() {
    use plugtcp_abi::sockopt::TCP_SYNCNT;
    let mut net = SimNet::builtin(link_10ms(), 15);
    net.drop_if = Some(Box::new(|a_to_b, _| a_to_b)); // B never hears anything
    net.record = Some(Vec::new());
    let c = net.a.connect((ADDR_B, 80).into(), None).unwrap();
    assert_eq!(setopt(&mut net.a, c, TCP_SYNCNT, 0), Err(Errno::EINVAL));
    assert_eq!(setopt(&mut net.a, c, TCP_SYNCNT, 128), Err(Errno::EINVAL));
    setopt(&mut net.a, c, TCP_SYNCNT, 2).unwrap();
    assert!(net.run_until(60 * SEC, |n| n.a.state(c) == Some(TcpState::Closed)));
    assert_eq!(net.a.recv(c, &mut [0u8; 1]), Err(Errno::ETIMEDOUT));
    let rec = net.record.take().unwrap();
    let syns = segments(&rec, true);
    assert_eq!(syns.len(), 3, "the SYN and two retransmissions");
    // FreeBSD: rexmit_initial 1 s, then rexmit_initial * tcp_backoff[n] + rexmit_slop:
    // SYNs at 0, 1 and 3.2 s, given up 4.2 s later.
    assert_eq!(
        syns.iter().map(|(t, _)| *t / MS).collect::<Vec<_>>(),
        [0, 1000, 3200]
    );
    assert_eq!(net.now / MS, 7400);
}

#[test]
fn orphaned_fin_wait_2_times_out() {
    use plugtcp_abi::sockopt::TCP_LINGER2;
    // TCP_LINGER2 5 s; else FreeBSD's TP_MAXIDLE (keepcnt 8 * keepintvl 75 s = 600 s),
    // checked again a keepintvl later, so 675 s after the peer last spoke.
    for (linger2, expect_s) in [(5, 5), (0, 675)] {
        let mut net = SimNet::builtin(link_10ms(), 16);
        let (c, _s) = established(&mut net);
        if linger2 > 0 {
            setopt(&mut net.a, c, TCP_LINGER2, linger2).unwrap();
        }
        // A closes; B never does: A sits in FIN_WAIT_2 until the orphan timeout.
        net.a.close(c);
        assert!(net.run_until(net.now + SEC, |n| n.a.state(c) == Some(TcpState::FinWait2)));
        let t0 = net.now;
        assert!(net.run_until(net.now + 800 * SEC, |n| n.a.state(c).is_none()));
        let waited = (net.now - t0) as f64 / SEC as f64;
        assert!(
            (waited - expect_s as f64).abs() < 0.1,
            "freed after {waited} s, expected {expect_s}"
        );
    }
}

/// One host talking to itself (loopback): what it sends it receives.
fn loopback_run(
    h: &mut plugtcp_host::Host,
    until: u64,
    mut done: impl FnMut(&mut plugtcp_host::Host) -> bool,
) {
    let mut now = h.now();
    loop {
        while h.tx_len() != 0 {
            let mut pkts = Vec::new();
            h.transmit(|p| pkts.push(p.to_vec()));
            for p in pkts {
                h.input(&p);
            }
        }
        if done(h) {
            return;
        }
        match h.next_timeout() {
            Some(t) if t <= until => now = now.max(t),
            _ => return,
        }
        h.advance(now);
    }
}

#[test]
fn nolocaltimewait_skips_time_wait_for_local_peers() {
    for (nolocal, expect) in [("1", None), ("0", Some(TcpState::TimeWait))] {
        let mut h = plugtcp_host::Host::with_seed(Default::default(), 17);
        h.register_builtins();
        h.add_addr(ADDR_A);
        h.sysctl_set("net.inet.tcp.nolocaltimewait", nolocal)
            .unwrap();
        let lid = h.listen((ADDR_A, 80).into(), 4).unwrap();
        let c = h.connect((ADDR_A, 80).into(), None).unwrap();
        loopback_run(&mut h, SEC, |h| h.state(c) == Some(TcpState::Established));
        let s = h.accept(lid).unwrap();
        h.close(c);
        h.close(s);
        let now = h.now();
        loopback_run(&mut h, now + SEC, |_| false);
        assert_eq!(h.state(c), expect, "nolocaltimewait={nolocal}");
    }
}

/// The segment `offset` bytes into the stream is lost `times` times; returns (retransmissions
/// of it, RTOs).
fn lose_repeatedly(do_lrd: &str, times: u32) -> (usize, u64) {
    let mut cfg = SimLinkConfig::bdp_queue(100_000_000, 20_000_000);
    cfg.queue_limit_bytes *= 4;
    cfg.seed = 33;
    let mut net = SimNet::builtin(cfg, 33);
    for h in [&mut net.a, &mut net.b] {
        h.sysctl_set("net.inet.tcp.do_lrd", do_lrd).unwrap();
        // A window larger than the flight, so new data can follow the retransmission (the
        // evidence LRD needs).
        h.sysctl_set("net.inet.tcp.recvspace", "1048576").unwrap();
        h.sysctl_set("net.inet.tcp.sendspace", "1048576").unwrap();
    }
    let (c, s) = established(&mut net);
    let iss = net.a.tcpcb(c).unwrap().iss;
    let target = iss.wrapping_add(1).wrapping_add(100 * 1448);
    let mut left = times;
    net.drop_if = Some(Box::new(move |a_to_b, pkt| {
        let p = wire::parse(pkt).unwrap();
        if a_to_b && left > 0 && p.seq == target && !p.payload.is_empty() {
            left -= 1;
            return true;
        }
        false
    }));
    net.record = Some(Vec::new());
    let data = vec![0x77; 2 << 20];
    let (mut sent, mut got) = (0, 0);
    let mut buf = vec![0u8; 1 << 20];
    assert!(net.run_until(net.now + 60 * SEC, |n| {
        if let Ok(k) = n.a.send(c, &data[sent..]) {
            sent += k;
        }
        while let Ok(k) = n.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
            got += k;
        }
        got == data.len()
    }));
    let rec = net.record.take().unwrap();
    let copies = segments(&rec, true)
        .iter()
        .filter(|(_, p)| p.seq == target && !p.payload.is_empty())
        .count();
    let snap = net.a.registry.snapshot();
    let base = snap.block("base").unwrap();
    let i = base
        .counter_names
        .iter()
        .position(|n| n == "rexmttimeo")
        .unwrap();
    (
        copies - 1,
        base.counters[i].load(std::sync::atomic::Ordering::Relaxed) as u64,
    )
}

#[test]
fn lost_retransmission_detection() {
    // The segment and its fast retransmission are both lost. With do_lrd, data sent after
    // the retransmission being SACKed proves it lost, and it goes again at once.
    let (rexmits, rtos) = lose_repeatedly("1", 2);
    assert_eq!(
        (rexmits, rtos),
        (2, 0),
        "LRD: retransmitted twice, no timeout"
    );
    // Without LRD only the retransmission timer finds out.
    let (_, rtos) = lose_repeatedly("0", 2);
    assert!(rtos >= 1, "without LRD a timeout");
}

/// Moves `len` bytes A to B in writes of `write` bytes with TCP_NODELAY (so each write's
/// last segment goes at once) and the `tso` sysctl as given on both hosts; returns every
/// packet on the wire and A's offload counters.
fn bulk_trace(tso: &str, len: usize, write: usize) -> (Vec<Captured>, OffloadStats) {
    let mut net = SimNet::builtin(link_10ms(), 1);
    for h in [&mut net.a, &mut net.b] {
        h.sysctl_set("net.inet.tcp.tso", tso).unwrap();
    }
    let (c, s) = established(&mut net);
    setopt(&mut net.a, c, plugtcp_abi::sockopt::TCP_NODELAY, 1).unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 1000) as u8).collect();
    net.record = Some(Vec::new());
    let (mut sent, mut got) = (0, Vec::new());
    let mut buf = vec![0u8; 1 << 16];
    assert!(net.run_until(60 * SEC, |n| {
        while sent < len {
            match n.a.send(c, &data[sent..(sent + write).min(len)]) {
                Ok(k) => sent += k,
                Err(_) => break,
            }
        }
        while let Ok(k) = n.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
        got.len() == len
    }));
    assert!(got == data, "delivered bytes differ");
    (net.record.take().unwrap(), net.a.offload_stats())
}

/// TSO: the stack hands the host descriptors of many segments and the host cuts them into
/// MSS-sized packets, each with its own sequence number, PSH only on the last. The wire is
/// byte for byte the one without TSO (`net.inet.tcp.tso=0`).
#[test]
fn tso_packets_are_the_wire_without_tso() {
    let (with, tso) = bulk_trace("1", 300_000, 50_000);
    let (without, no_tso) = bulk_trace("0", 300_000, 50_000);
    assert!(
        tso.tso_sends > 0 && tso.tso_packets > 2 * tso.tso_sends,
        "TSO used: {tso:?}"
    );
    assert_eq!(no_tso.tso_sends, 0, "tso=0: no descriptor was segmented");
    assert_eq!(with.len(), without.len());
    for (i, (w, wo)) in with.iter().zip(&without).enumerate() {
        assert!(
            (w.time, w.a_to_b, &w.bytes) == (wo.time, wo.a_to_b, &wo.bytes),
            "packet {i} differs"
        );
    }
    // MSS 1460 less 12 bytes of timestamps.
    let data: Vec<_> = with
        .iter()
        .filter(|p| p.a_to_b)
        .map(|p| wire::parse(&p.bytes).unwrap())
        .filter(|p| !p.payload.is_empty())
        .collect();
    assert!(data.iter().all(|p| p.payload.len() <= 1448));
    assert!(data.iter().filter(|p| p.payload.len() == 1448).count() > 150);
    assert!(
        data.last().unwrap().flags & th::PUSH != 0,
        "the packet that empties the buffer"
    );
    for w in data.windows(2) {
        if w[1].seq != w[0].seq.wrapping_add(w[0].payload.len() as u32) {
            panic!("a gap or a retransmission on a lossless link");
        }
    }
}

/// RFC 5681 / FreeBSD: an ACK that only opens the window (the reader made room) is not a
/// duplicate ACK, however many come; with SACK, ACKs that report new SACK blocks are, and
/// three of them start recovery.
#[test]
fn window_updates_are_not_duplicate_acks() {
    for sack_news in [false, true] {
        let mut net = SimNet::builtin(link_10ms(), 5);
        let (c, _s) = established(&mut net);
        net.a.send(c, &[7u8; 20_000]).unwrap();
        // The data is on the link (5 ms each way); B's answers are crafted here.
        let tp = net.a.tcpcb(c).unwrap();
        let (una, ts) = (tp.snd_una, tp.ts_recent);
        assert!(tp.snd_max.wrapping_sub(una) > 4 * 1448);
        let b_seq = tp.rcv_nxt;
        for i in 0..3u32 {
            let mut opts = TcpOpts {
                flags: to::TSTAMP,
                tsval: ts,
                tsecr: 0,
                ..TcpOpts::default()
            };
            let win = if sack_news {
                1000
            } else {
                1000 + 100 * i as u16
            };
            if sack_news {
                opts.flags |= to::SACK;
                opts.nsacks = 1;
                let start = una.wrapping_add(1448);
                opts.sacks[0].start = start;
                opts.sacks[0].end = start.wrapping_add(1448 * (i + 1));
            }
            let seg = SegOut {
                seq: b_seq,
                ack: una,
                flags: th::ACK,
                win,
                opts,
                ..Default::default()
            };
            let side = &net.a.conns.get_by_id(c).unwrap().side;
            let mut buf = vec![0u8; wire::MAX_HEADER];
            let n = wire::build(&mut buf, side.remote, side.local, &seg, &[], 64).unwrap();
            net.a.input(&buf[..n]);
        }
        let tp = net.a.tcpcb(c).unwrap();
        if sack_news {
            assert_eq!(tp.t_sndrexmitpack, 1, "three SACK dupacks: fast retransmit");
        } else {
            assert_eq!(
                (tp.t_dupacks, tp.t_sndrexmitpack),
                (0, 0),
                "window updates are no dupacks"
            );
        }
    }
}

/// Both sides have data delivered but every pure ACK was lost, so both time out and rewind
/// snd_nxt. Their retransmissions are old duplicates to the peer, whose answering ACK must
/// carry snd_max (FreeBSD), not the rewound snd_nxt, or each side drops the other's ACKs as
/// left of its window until the connection times out.
#[test]
fn lost_acks_both_ways_resynchronize() {
    let mut net = SimNet::builtin(link_10ms(), 17);
    let (c, s) = established(&mut net);
    net.drop_if = Some(Box::new(|_, pkt| {
        let p = wire::parse(pkt).unwrap();
        p.payload.is_empty() && p.flags & (th::SYN | th::FIN | th::RST) == 0
    }));
    net.a.send(c, &[1u8; 4000]).unwrap();
    net.b.send(s, &[2u8; 4000]).unwrap();
    net.run_until(net.now + 150 * MS, |_| false);
    net.drop_if = None;
    let acked = |n: &mut SimNet| {
        let (a, b) = (n.a.tcpcb(c).unwrap(), n.b.tcpcb(s).unwrap());
        a.snd_una == a.snd_max && b.snd_una == b.snd_max
    };
    assert!(
        net.run_until(net.now + 10 * SEC, acked),
        "A {:?}\nB {:?}",
        net.a.tcpcb(c),
        net.b.tcpcb(s)
    );
    assert_eq!(net.a.state(c), Some(TcpState::Established));
    assert_eq!(net.b.state(s), Some(TcpState::Established));
}
