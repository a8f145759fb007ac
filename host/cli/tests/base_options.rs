//! Socket options and timers of the base stack, on the simulated link.

use plugtcp_abi::segment::{th, SegOut, TcpOpts};
use plugtcp_abi::sockopt::SO_KEEPALIVE;
use plugtcp_abi::sockopt::{self, IPPROTO_TCP};
use plugtcp_abi::{Errno, TcpState};
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::wire::{self, Parsed};
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{Captured, SimNet, ADDR_B};

const MS: u64 = 1_000_000;
mod common;
use common::established;
use plugtcp_cli::builtins::BuiltinNet as _;

const SEC: u64 = 1_000_000_000;

fn net(seed: u64) -> SimNet {
    SimNet::builtin(
        SimLinkConfig {
            delay_ns: 5 * MS,
            bandwidth_bps: 100_000_000,
            seed,
            ..Default::default()
        },
        seed,
    )
}

fn segments(rec: &[Captured], a_to_b: bool) -> Vec<(u64, Parsed<'_>)> {
    rec.iter()
        .filter(|c| c.a_to_b == a_to_b)
        .map(|c| (c.time, wire::parse(&c.bytes).unwrap()))
        .collect()
}

/// Moves what the hosts queued onto the link (and into the recording) without advancing time.
fn flush(net: &mut SimNet) {
    let now = net.now;
    net.run_until(now, |_| false);
}

fn set(h: &mut plugtcp_host::Host, slot: ConnId, name: i32, v: i32) -> Result<(), Errno> {
    h.setsockopt(slot, IPPROTO_TCP, name, &v.to_ne_bytes())
}

/// SO_KEEPALIVE on, probing after `idle` s of silence every `intvl` s.
fn keepalive(h: &mut plugtcp_host::Host, slot: ConnId, idle: i32, intvl: i32) {
    h.setsockopt(
        slot,
        plugtcp_abi::sockopt::SOL_SOCKET,
        SO_KEEPALIVE,
        &1i32.to_ne_bytes(),
    )
    .unwrap();
    set(h, slot, sockopt::TCP_KEEPIDLE, idle).unwrap();
    set(h, slot, sockopt::TCP_KEEPINTVL, intvl).unwrap();
}

#[test]
fn nagle_holds_small_segments_and_nodelay_does_not() {
    for nodelay in [false, true] {
        let mut net = net(21);
        let (c, _s) = established(&mut net);
        if nodelay {
            set(&mut net.a, c, sockopt::TCP_NODELAY, 1).unwrap();
        }
        net.record = Some(Vec::new());
        // Three small writes back to back, with the first still unacknowledged.
        for _ in 0..3 {
            net.a.send(c, b"tiny").unwrap();
        }
        flush(&mut net);
        let rec = net.record.take().unwrap();
        let a = segments(&rec, true);
        if nodelay {
            assert_eq!(
                a.iter().map(|(_, p)| p.payload.len()).collect::<Vec<_>>(),
                [4, 4, 4]
            );
        } else {
            // Nagle: the first goes; the rest wait for its ACK, then go together.
            assert_eq!(
                a.iter().map(|(_, p)| p.payload.len()).collect::<Vec<_>>(),
                [4]
            );
            net.record = Some(Vec::new());
            net.run_until(net.now + SEC, |_| false);
            let rec = net.record.take().unwrap();
            let a = segments(&rec, true);
            assert_eq!(
                a.iter()
                    .filter(|(_, p)| !p.payload.is_empty())
                    .map(|(_, p)| p.payload.len())
                    .collect::<Vec<_>>(),
                [8]
            );
        }
    }
}

#[test]
fn cork_holds_until_a_full_segment_or_uncork() {
    // TCP_NOPUSH (FreeBSD): once a full segment can go, TSO sends the short tail with it
    // when that empties the buffer (tcp_output trims a TSO burst to whole segments only
    // when data stays behind). TCP_CORK (Linux): the tail waits, and uncorking pushes it.
    for (opt, tail_at_once) in [(sockopt::TCP_NOPUSH, false), (sockopt::TCP_CORK, true)] {
        let mut net = net(22);
        let (c, _s) = established(&mut net);
        set(&mut net.a, c, opt, 1).unwrap();
        net.record = Some(Vec::new());
        net.a.send(c, &[7u8; 1000]).unwrap();
        // Less than Linux's 200 ms cork ceiling; FreeBSD's TCP_NOPUSH has none.
        net.run_until(net.now + 150 * MS, |_| false);
        assert!(
            segments(net.record.as_ref().unwrap(), true).is_empty(),
            "corked: nothing sent"
        );
        net.a.send(c, &[7u8; 1000]).unwrap();
        flush(&mut net);
        let sent: Vec<usize> = segments(net.record.as_ref().unwrap(), true)
            .iter()
            .map(|(_, p)| p.payload.len())
            .collect();
        if !tail_at_once {
            assert_eq!(
                sent,
                [1448, 552],
                "TCP_NOPUSH: the full segment takes the tail"
            );
            continue;
        }
        assert_eq!(sent, [1448], "a full segment goes even when corked");
        set(&mut net.a, c, opt, 0).unwrap();
        flush(&mut net);
        let sent: Vec<usize> = segments(net.record.as_ref().unwrap(), true)
            .iter()
            .map(|(_, p)| p.payload.len())
            .collect();
        assert_eq!(sent, [1448, 552], "TCP_CORK off pushes the rest");
    }
}

/// Linux's TCP_CORK holds a partial segment 200 ms at most, and TCP_NODELAY set while
/// corked pushes it at once (tcp(7)); the cork stays on for what follows.
#[test]
fn linux_cork_has_a_200ms_ceiling_and_yields_to_nodelay() {
    let mut net = net(34);
    let (c, _s) = established(&mut net);
    set(&mut net.a, c, sockopt::TCP_CORK, 1).unwrap();
    net.record = Some(Vec::new());
    let t0 = net.now;
    net.a.send(c, &[1u8; 100]).unwrap();
    assert!(
        net.run_until(t0 + SEC, |n| !segments(n.record.as_ref().unwrap(), true)
            .is_empty())
    );
    let sent = segments(net.record.as_ref().unwrap(), true);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.payload.len(), 100);
    assert_eq!((sent[0].0 - t0) / MS, 200, "the ceiling");
    // Still corked: the next partial segment waits again ...
    net.run_until(net.now + 50 * MS, |_| false);
    net.record = Some(Vec::new());
    net.a.send(c, &[2u8; 100]).unwrap();
    net.run_until(net.now + 100 * MS, |_| false);
    assert!(segments(net.record.as_ref().unwrap(), true).is_empty());
    // ... until TCP_NODELAY is set.
    set(&mut net.a, c, sockopt::TCP_NODELAY, 1).unwrap();
    flush(&mut net);
    let sent = segments(net.record.as_ref().unwrap(), true);
    assert_eq!(sent.len(), 1, "TCP_NODELAY pushes the corked data");
    assert_eq!(sent[0].1.payload.len(), 100);
}

/// TCP_QUICKACK (tcp(7)): "not permanent": it sends a pending delayed ACK and acknowledges
/// every segment until the connection turns interactive (we send data soon after
/// receiving), when delayed ACKs come back.
#[test]
fn quickack_is_one_shot() {
    let mut net = net(35);
    let (c, s) = established(&mut net);
    // Long enough for a segment and an immediate answer (a 5 ms link, and A's Nagle
    // waiting for the previous ACK), shorter than the 40 ms delayed ACK.
    let hop = |n: &mut SimNet| {
        let t = n.now + 20 * MS;
        n.run_until(t, |_| false);
    };
    // B receives: with delayed ACKs on, one small segment is not ACKed at once.
    net.record = Some(Vec::new());
    net.a.send(c, b"ping").unwrap();
    hop(&mut net);
    let acks = |n: &SimNet| segments(n.record.as_ref().unwrap(), false).len();
    assert_eq!(acks(&net), 0, "the ACK is delayed");
    set(&mut net.b, s, sockopt::TCP_QUICKACK, 1).unwrap();
    flush(&mut net);
    assert_eq!(acks(&net), 1, "TCP_QUICKACK sends the delayed ACK now");
    assert_eq!(
        net.b.getsockopt_int(s, IPPROTO_TCP, sockopt::TCP_QUICKACK),
        Ok(1)
    );
    // In quick-ACK mode every segment is ACKed at once.
    net.record = Some(Vec::new());
    net.a.send(c, b"ping").unwrap();
    hop(&mut net);
    assert_eq!(acks(&net), 1);
    // B answers right away: interactive, so the mode ends and ACKs are delayed again.
    let mut buf = [0u8; 16];
    net.b.recv(s, &mut buf).unwrap();
    net.b.send(s, b"pong").unwrap();
    hop(&mut net);
    assert_eq!(
        net.b.getsockopt_int(s, IPPROTO_TCP, sockopt::TCP_QUICKACK),
        Ok(0)
    );
    net.run_until(net.now + SEC, |_| false);
    net.record = Some(Vec::new());
    net.a.send(c, b"ping").unwrap();
    hop(&mut net);
    assert_eq!(acks(&net), 0, "delayed again");
}

#[test]
fn tcp_maxseg_limits_segment_size() {
    let mut net = net(23);
    let (c, _s) = established(&mut net);
    assert_eq!(
        set(&mut net.a, c, sockopt::TCP_MAXSEG, 100),
        Err(Errno::EINVAL),
        "below minmss 216"
    );
    set(&mut net.a, c, sockopt::TCP_MAXSEG, 512).unwrap();
    let mut buf = [0u8; 4];
    let mut opt = plugtcp_abi::sockopt::SockOpt {
        level: IPPROTO_TCP,
        name: sockopt::TCP_MAXSEG,
        dir: plugtcp_abi::sockopt::SockOptDir::Get,
        val: (&mut buf[..]).into(),
        len: 0,
    };
    net.a.with_conn(c, |c, w| c.ctloutput(w, &mut opt)).unwrap();
    assert_eq!(i32::from_ne_bytes(buf), 512);
    net.record = Some(Vec::new());
    net.a.send(c, &[1u8; 5000]).unwrap();
    net.run_until(net.now + SEC, |_| false);
    let sizes: Vec<usize> = segments(net.record.as_ref().unwrap(), true)
        .iter()
        .map(|(_, p)| p.payload.len())
        .filter(|&l| l > 0)
        .collect();
    // 512 less the 12 bytes of timestamps every segment carries.
    assert!(
        sizes.iter().all(|&l| l <= 500) && sizes.contains(&500),
        "{sizes:?}"
    );
}

#[test]
fn rto_backoff_exact_and_user_timeout() {
    let mut net = net(24);
    let (c, _s) = established(&mut net);
    set(&mut net.a, c, sockopt::TCP_USER_TIMEOUT, 20_000).unwrap();
    // From now on B hears nothing.
    net.drop_if = Some(Box::new(|a_to_b, _| a_to_b));
    net.record = Some(Vec::new());
    let t0 = net.now;
    net.a.send(c, b"lost").unwrap();
    assert!(net.run_until(net.now + 120 * SEC, |n| n.a.state(c)
        == Some(TcpState::Closed)));
    assert_eq!(net.a.recv(c, &mut [0u8; 4]), Err(Errno::ETIMEDOUT));
    let rec = net.record.take().unwrap();
    // The retransmissions (the RST that ends it aside).
    let times: Vec<u64> = segments(&rec, true)
        .iter()
        .filter(|(_, p)| p.flags & th::RST == 0)
        .map(|(t, _)| (t - t0) / MS)
        .collect();
    // FreeBSD: REXMTVAL = max(rexmit_min 30 ms, srtt + 4 * rttvar) (about 33 ms: the
    // timestamp RTT of a 10 ms path is 11 ms in ticks), times tcp_backoff[n], plus
    // rexmit_slop 200 ms; TCP_USER_TIMEOUT (20 s of silence) ends it.
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for w in gaps.windows(2) {
        assert!(
            (w[1] - 200).abs_diff(2 * (w[0] - 200)) <= 1,
            "exponential backoff: {gaps:?}"
        );
    }
    assert!((225..=240).contains(&gaps[0]), "first RTO {gaps:?}");
    let gone = (net.now - t0) / SEC;
    assert!((20..=30).contains(&gone), "user timeout after {gone} s");
}

/// TCP_USER_TIMEOUT counts from the oldest unacknowledged transmission: a peer that keeps
/// talking but never acknowledges our data does not keep the connection alive.
#[test]
fn user_timeout_counts_from_the_oldest_unacked_transmission() {
    let mut net = net(36);
    let (c, s) = established(&mut net);
    set(&mut net.a, c, sockopt::TCP_USER_TIMEOUT, 5_000).unwrap();
    // A's data never reaches B; B's data does, every 300 ms.
    net.drop_if = Some(Box::new(|a_to_b, p| {
        a_to_b && wire::parse(p).is_ok_and(|p| !p.payload.is_empty())
    }));
    let t0 = net.now;
    net.a.send(c, b"never acknowledged").unwrap();
    let mut next = t0;
    let dead = net.run_until(t0 + 30 * SEC, |n| {
        if n.now >= next {
            let _ = n.b.send(s, b"chatter");
            next = n.now + 300 * MS;
        }
        n.a.state(c) == Some(TcpState::Closed)
    });
    assert!(dead, "still alive after 30 s");
    let after = (net.now - t0) / MS;
    assert!((5_000..7_000).contains(&after), "dropped after {after} ms");
    assert_eq!(net.a.send(c, b"x"), Err(Errno::ETIMEDOUT));
}

/// TCP_USER_TIMEOUT also bounds zero-window probing (tcp(7)): data that waits that long for
/// a window that never opens ends the connection.
#[test]
fn user_timeout_bounds_zero_window_probing() {
    let mut net = net(37);
    let (c, _s) = established(&mut net);
    set(&mut net.a, c, sockopt::TCP_USER_TIMEOUT, 3_000).unwrap();
    // B never reads: its window closes, and it answers A's probes with a zero window.
    let data = vec![5u8; 2 << 20];
    let mut off = 0;
    let t0 = net.now;
    let mut closed_at = None;
    let dead = net.run_until(t0 + 120 * SEC, |n| {
        if off < data.len() {
            off += n.a.send(c, &data[off..]).unwrap_or(0);
        }
        if closed_at.is_none() && n.a.tcpcb(c).is_some_and(|tp| tp.snd_wnd == 0) {
            closed_at = Some(n.now);
        }
        n.a.state(c) == Some(TcpState::Closed)
    });
    assert!(dead, "zero-window probing went on past the user timeout");
    assert!(net.b.tcp_info(_s).is_ok(), "B is alive and answering");
    let after = (net.now - closed_at.expect("the window closed")) / MS;
    // Checked when a probe is due: the first comes persmin (5 s) after the window closed.
    assert!(
        (3_000..=5_000).contains(&after),
        "dropped {after} ms after the window closed"
    );
    assert_eq!(net.a.send(c, b"x"), Err(Errno::ETIMEDOUT));
}

/// With TCP_USER_TIMEOUT, keepalive gives up once a probe is out and the peer has been
/// silent that long, whatever keepcnt says (tcp(7)).
#[test]
fn user_timeout_overrides_keepalive_count() {
    let mut net = net(38);
    let (c, _s) = established(&mut net);
    keepalive(&mut net.a, c, 10, 2);
    set(&mut net.a, c, sockopt::TCP_USER_TIMEOUT, 5_000).unwrap();
    net.drop_if = Some(Box::new(|a_to_b, _| a_to_b));
    let t0 = net.now;
    assert!(net.run_until(t0 + 60 * SEC, |n| n.a.state(c) == Some(TcpState::Closed)));
    // First probe after 10 s idle; at the next interval (12 s) the peer has been silent
    // longer than 5 s: dropped, not after keepcnt (8) probes (26 s).
    let after = (net.now - t0) / SEC;
    assert_eq!(after, 12, "dropped after {after} s");
}

#[test]
fn keepalive_probes_then_drops_a_dead_peer() {
    let mut net = net(25);
    let (c, s) = established(&mut net);
    keepalive(&mut net.a, c, 10, 2);
    set(&mut net.a, c, sockopt::TCP_KEEPCNT, 3).unwrap();
    // 0 means the system default (FreeBSD), a negative value is refused.
    assert_eq!(set(&mut net.a, c, sockopt::TCP_KEEPCNT, 0), Ok(()));
    assert_eq!(
        net.a.getsockopt_int(c, IPPROTO_TCP, sockopt::TCP_KEEPCNT),
        Ok(8),
        "keepcnt's default"
    );
    set(&mut net.a, c, sockopt::TCP_KEEPCNT, 3).unwrap();
    assert_eq!(
        set(&mut net.a, c, sockopt::TCP_KEEPIDLE, -1),
        Err(Errno::EINVAL)
    );
    // Any segment arms the keepalive timer; the peer answers probes while it lives.
    net.a.send(c, b"x").unwrap();
    net.record = Some(Vec::new());
    net.run_until(net.now + 25 * SEC, |_| false);
    let rec = net.record.take().unwrap();
    let probes: Vec<(u64, Parsed<'_>)> = segments(&rec, true)
        .into_iter()
        .filter(|(_, p)| p.payload.is_empty() && p.flags == th::ACK)
        .collect();
    assert!(probes.len() >= 2, "probes while the peer answers");
    let una = net.a.tcpcb(c).unwrap().snd_una;
    assert!(
        probes.iter().all(|(_, p)| p.seq == una.wrapping_sub(1)),
        "a probe is SND.UNA - 1"
    );
    assert_eq!(
        net.a.state(c),
        Some(TcpState::Established),
        "answered probes keep it alive"
    );
    // Now the peer goes silent: three unanswered probes 2 s apart, then ETIMEDOUT.
    net.drop_if = Some(Box::new(|a_to_b, _| a_to_b));
    assert!(net.run_until(net.now + 30 * SEC, |n| n.a.state(c)
        == Some(TcpState::Closed)));
    assert_eq!(net.a.recv(c, &mut [0u8; 1]), Err(Errno::ETIMEDOUT));
    let _ = s;
}

#[test]
fn paws_drops_an_old_timestamp() {
    let mut net = net(26);
    let (c, s) = established(&mut net);
    net.a.send(c, b"fresh").unwrap();
    net.run_until(net.now + SEC, |_| false);
    let (ts_recent, rcv_nxt, snd_nxt) = {
        let tp = net.b.tcpcb(s).unwrap();
        (tp.ts_recent, tp.rcv_nxt, tp.snd_nxt)
    };
    // A segment in the window whose TSval is older than TS.Recent: dropped (and ACKed).
    let side = &net.b.conns.get_by_id(s).unwrap().side;
    let mut opts = TcpOpts {
        flags: plugtcp_abi::segment::to::TSTAMP,
        ..Default::default()
    };
    opts.tsval = ts_recent.wrapping_sub(1000);
    let seg = SegOut {
        seq: rcv_nxt,
        ack: snd_nxt,
        flags: th::ACK,
        win: 1000,
        opts,
        data_len: 3,
        ..Default::default()
    };
    let mut pkt = vec![0u8; wire::MAX_HEADER + 3];
    let n = wire::build(&mut pkt, side.remote, side.local, &seg, &[b"old"], 64).unwrap();
    net.b.input(&pkt[..n]);
    assert_eq!(
        net.b.readable(s),
        5,
        "the old segment's bytes were not taken"
    );
    let snap = net.b.registry.snapshot();
    let base = snap.block("base").unwrap();
    let i = base
        .counter_names
        .iter()
        .position(|n| n == "pawsdrop")
        .unwrap();
    assert_eq!(
        base.counters[i].load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn tcp_info_and_queue_sizes() {
    let mut net = net(27);
    let (c, s) = established(&mut net);
    // Two full segments, so B acknowledges at once (a delayed ACK would add 40 ms to the
    // RTT sample, as it does on any TCP).
    net.a.send(c, &[3u8; 2896]).unwrap();
    assert_eq!(net.a.unacked(c), 2896, "SIOCOUTQ before the ACK");
    net.run_until(net.now + SEC, |_| false);
    assert_eq!(net.a.unacked(c), 0);
    assert_eq!(net.b.readable(s), 2896, "SIOCINQ");
    let info = net.a.tcp_info(c).unwrap();
    assert_eq!(info.tcpi_state, TcpState::Established as u8);
    assert_eq!(info.tcpi_snd_mss, 1460);
    assert_eq!(
        info.tcpi_options & 0x07,
        0x07,
        "timestamps, SACK, window scaling"
    );
    // FreeBSD measures it from the echoed timestamp in whole ticks plus one.
    assert!(
        (10_000..=12_000).contains(&info.tcpi_rtt),
        "rtt {} us",
        info.tcpi_rtt
    );
    assert_eq!(info.tcpi_snd_bytes, 2896);
    assert_eq!(net.b.tcp_info(s).unwrap().tcpi_rcv_bytes, 2896);
}

#[test]
fn accepted_connections_inherit_listener_options() {
    use plugtcp_abi::tcpcb::{tf, tf2};
    let mut net = net(28);
    let lid = net.b.listen((ADDR_B, 80).into(), 8).unwrap();
    let l = |n: &mut SimNet, level, name, v: i32| {
        n.b.listener_setsockopt(lid, level, name, &v.to_ne_bytes())
    };
    l(&mut net, plugtcp_abi::sockopt::SOL_SOCKET, SO_KEEPALIVE, 1).unwrap();
    l(&mut net, IPPROTO_TCP, sockopt::TCP_KEEPIDLE, 10).unwrap();
    l(&mut net, IPPROTO_TCP, sockopt::TCP_NODELAY, 1).unwrap();
    assert_eq!(
        l(&mut net, IPPROTO_TCP, sockopt::TCP_KEEPCNT, -1),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        net.b
            .listener_setsockopt(lid, IPPROTO_TCP, sockopt::TCP_FUNCTION_BLK, b"nosuch"),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        net.b
            .listener_setsockopt(lid, IPPROTO_TCP, sockopt::TCP_CONGESTION, b"nosuch"),
        Err(Errno::ESRCH)
    );
    let c = net.a.connect((ADDR_B, 80).into(), None).unwrap();
    let mut s = None;
    assert!(net.run_until(2 * SEC, |n| {
        s = s.or_else(|| n.b.accept(lid).ok());
        s.is_some()
    }));
    let tp = net.b.tcpcb(s.unwrap()).unwrap();
    assert!(tp.t_flags2 & tf2::KEEPALIVE != 0 && tp.t_flags & tf::NODELAY != 0);
    assert_eq!(tp.t_keepidle, 10_000);
    let _ = c;
}

/// Every option a connection inherits can be set on a listener (Linux and FreeBSD pass
/// them through accept): the SYN-ACK honours TCP_NOOPT, TCP_MAXSEG and SO_RCVBUF, and the
/// connection gets the socket-level ones and the options its stack keeps.
#[test]
fn listeners_pass_on_every_inherited_option() {
    use plugtcp_abi::sockopt::SOL_SOCKET;
    use plugtcp_abi::sockopt::{SO_LINGER, SO_RCVBUF, SO_SNDBUF};
    let mut net = net(31);
    net.record = Some(Vec::new());
    let lid = net.b.listen((ADDR_B, 80).into(), 8).unwrap();
    let set_l =
        |n: &mut SimNet, level, name, v: &[u8]| n.b.listener_setsockopt(lid, level, name, v);
    let i = |v: i32| v.to_ne_bytes();
    set_l(&mut net, IPPROTO_TCP, sockopt::TCP_MAXSEG, &i(1000)).unwrap();
    set_l(&mut net, IPPROTO_TCP, sockopt::TCP_USER_TIMEOUT, &i(7000)).unwrap();
    set_l(&mut net, IPPROTO_TCP, sockopt::TCP_WINDOW_CLAMP, &i(20000)).unwrap();
    set_l(&mut net, IPPROTO_TCP, sockopt::TCP_LINGER2, &i(9)).unwrap();
    set_l(&mut net, SOL_SOCKET, SO_RCVBUF, &i(30000)).unwrap();
    set_l(&mut net, SOL_SOCKET, SO_SNDBUF, &i(40000)).unwrap();
    let linger = [i(1), i(3)].concat();
    set_l(&mut net, SOL_SOCKET, SO_LINGER, &linger).unwrap();
    assert_eq!(
        set_l(&mut net, IPPROTO_TCP, sockopt::TCP_SYNCNT, &i(0)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        set_l(&mut net, IPPROTO_TCP, sockopt::TCP_MAXSEG, &i(10)),
        Err(Errno::EINVAL)
    );
    net.a.connect((ADDR_B, 80).into(), None).unwrap();
    let mut s = None;
    assert!(net.run_until(2 * SEC, |n| {
        s = s.or_else(|| n.b.accept(lid).ok());
        s.is_some()
    }));
    let s = s.unwrap();
    let synack = net.record.as_ref().unwrap()[1].bytes.clone();
    let p = plugtcp_host::wire::parse(&synack).unwrap();
    assert_eq!(p.flags, th::SYN | th::ACK);
    assert_eq!((p.opts.mss, p.win), (1000, 30000));
    let g = |n: &mut SimNet, level, name| n.b.getsockopt_int(s, level, name);
    assert_eq!(g(&mut net, IPPROTO_TCP, sockopt::TCP_MAXSEG), Ok(1000));
    assert_eq!(
        g(&mut net, IPPROTO_TCP, sockopt::TCP_USER_TIMEOUT),
        Ok(7000)
    );
    assert_eq!(
        g(&mut net, IPPROTO_TCP, sockopt::TCP_WINDOW_CLAMP),
        Ok(20000)
    );
    assert_eq!(g(&mut net, IPPROTO_TCP, sockopt::TCP_LINGER2), Ok(9));
    assert_eq!(g(&mut net, SOL_SOCKET, SO_RCVBUF), Ok(30000));
    assert_eq!(g(&mut net, SOL_SOCKET, SO_SNDBUF), Ok(40000));
    let mut b = [0u8; 8];
    net.b.getsockopt(s, SOL_SOCKET, SO_LINGER, &mut b).unwrap();
    let want = [SO_LINGER.to_ne_bytes(), 3i32.to_ne_bytes()].concat();
    assert_eq!(&b[..], &want[..], "l_onoff reads back as the SO_LINGER bit");

    // TCP_NOOPT on the listener: the SYN-ACK carries no option at all, and nothing is
    // agreed.
    let mut net = self::net(32);
    net.record = Some(Vec::new());
    let lid = net.b.listen((ADDR_B, 81).into(), 8).unwrap();
    net.b
        .listener_setsockopt(lid, IPPROTO_TCP, sockopt::TCP_NOOPT, &i(1))
        .unwrap();
    net.a.connect((ADDR_B, 81).into(), None).unwrap();
    let mut s = None;
    assert!(net.run_until(2 * SEC, |n| {
        s = s.or_else(|| n.b.accept(lid).ok());
        s.is_some()
    }));
    let synack = net.record.as_ref().unwrap()[1].bytes.clone();
    let p = plugtcp_host::wire::parse(&synack).unwrap();
    assert_eq!(p.opts.flags, 0, "{:?}", p.opts);
    let tp = net.b.tcpcb(s.unwrap()).unwrap();
    use plugtcp_abi::tcpcb::tf;
    assert_eq!(
        tp.t_flags & (tf::RCVD_TSTMP | tf::RCVD_SCALE | tf::SACK_PERMIT),
        0
    );
}

#[test]
fn tcp_defer_accept_waits_for_data_or_the_deadline() {
    let mut net = net(29);
    let lid = net.b.listen((ADDR_B, 80).into(), 8).unwrap();
    net.b
        .listener_setsockopt(
            lid,
            IPPROTO_TCP,
            sockopt::TCP_DEFER_ACCEPT,
            &3i32.to_ne_bytes(),
        )
        .unwrap();
    let talker = net.a.connect((ADDR_B, 80).into(), None).unwrap();
    let silent = net.a.connect((ADDR_B, 80).into(), None).unwrap();
    net.run_until(net.now + SEC, |_| false);
    assert_eq!(
        net.a.state(talker),
        Some(TcpState::Established),
        "the handshake itself is not held back"
    );
    assert_eq!(
        net.b.accept(lid),
        Err(Errno::EAGAIN),
        "no data yet: nothing to accept"
    );
    net.a.send(talker, b"GET /").unwrap();
    let mut first = None;
    assert!(net.run_until(net.now + SEC, |n| {
        first = first.or_else(|| n.b.accept(lid).ok());
        first.is_some()
    }));
    assert_eq!(net.b.readable(first.unwrap()), 5, "accepted with its data");
    // The silent one becomes acceptable when the deferral (3 s from its handshake) runs out.
    let t0 = net.now;
    let mut second = None;
    assert!(net.run_until(net.now + 5 * SEC, |n| {
        second = second.or_else(|| n.b.accept(lid).ok());
        second.is_some()
    }));
    assert!(
        net.now - t0 < 3 * SEC && net.now >= 3 * SEC,
        "accepted at {} ms",
        net.now / MS
    );
    let _ = silent;
}

#[test]
fn so_linger_zero_resets() {
    let mut net = net(30);
    let (c, s) = established(&mut net);
    let linger = |on: i32, secs: i32| {
        let mut v = on.to_ne_bytes().to_vec();
        v.extend_from_slice(&secs.to_ne_bytes());
        v
    };
    assert_eq!(
        net.a.setsockopt(
            c,
            plugtcp_abi::sockopt::SOL_SOCKET,
            plugtcp_abi::sockopt::SO_LINGER,
            &[0u8; 4]
        ),
        Err(Errno::EINVAL)
    );
    net.a
        .setsockopt(
            c,
            plugtcp_abi::sockopt::SOL_SOCKET,
            plugtcp_abi::sockopt::SO_LINGER,
            &linger(1, 0),
        )
        .unwrap();
    net.record = Some(Vec::new());
    net.a.close(c);
    net.run_until(net.now + SEC, |_| false);
    let rec = net.record.take().unwrap();
    let a = segments(&rec, true);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].1.flags, th::RST | th::ACK, "abortive close");
    assert_eq!(net.a.state(c), None, "freed at once");
    assert_eq!(net.b.recv(s, &mut [0u8; 1]), Err(Errno::ECONNRESET));
    let _ = (SegOut::default(), TcpOpts::default());
}

/// Seconds (simulated) to move `len` bytes over 100 Mbit/s, 40 ms RTT with the default
/// buffer sizes; and the buffer sizes at the end.
fn autosize_run(auto: &str, len: usize) -> (f64, usize, usize) {
    let mut cfg = SimLinkConfig::bdp_queue(100_000_000, 40_000_000);
    cfg.seed = 31;
    let mut net = SimNet::builtin(cfg, 31);
    for h in [&mut net.a, &mut net.b] {
        h.sysctl_set("net.inet.tcp.recvbuf_auto", auto).unwrap();
        h.sysctl_set("net.inet.tcp.sendbuf_auto", auto).unwrap();
    }
    let (c, s) = established(&mut net);
    let data = vec![9u8; len];
    let (mut sent, mut got) = (0, 0);
    let mut buf = vec![0u8; 1 << 20];
    let t0 = net.now;
    assert!(net.run_until(net.now + 600 * SEC, |n| {
        if let Ok(k) = n.a.send(c, &data[sent..]) {
            sent += k;
        }
        while let Ok(k) = n.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
            got += k;
        }
        got == len
    }));
    use plugtcp_abi::sockopt::{SOL_SOCKET, SO_RCVBUF, SO_SNDBUF};
    let snd = net.a.getsockopt_int(c, SOL_SOCKET, SO_SNDBUF).unwrap() as usize;
    let rcv = net.b.getsockopt_int(s, SOL_SOCKET, SO_RCVBUF).unwrap() as usize;
    ((net.now - t0) as f64 / SEC as f64, snd, rcv)
}

#[test]
fn buffers_grow_to_fill_the_path() {
    let (fixed, snd0, rcv0) = autosize_run("0", 16 << 20);
    // sendspace and recvspace, rounded up to whole 1460-byte segments once the MSS was
    // known (FreeBSD tcp_mss), and not grown further.
    assert_eq!(
        (snd0, rcv0),
        (23 * 1460, 45 * 1460),
        "sendspace and recvspace, rounded to the MSS"
    );
    let (auto, snd, rcv) = autosize_run("1", 16 << 20);
    assert!(
        snd > 32768 && rcv > 65536,
        "grew: send {snd}, receive {rcv}"
    );
    assert!(
        snd <= 2 << 20 && rcv <= 2 << 20,
        "within sendbuf_max and recvbuf_max"
    );
    // 64 KiB per 40 ms RTT is about 13 Mbit/s; the path carries 100.
    assert!(
        fixed / auto > 4.0,
        "auto-sized {auto:.2} s against fixed {fixed:.2} s"
    );
}

#[test]
fn urgent_data_out_of_band_and_inline() {
    use plugtcp_abi::sockopt::SO_OOBINLINE;
    for inline in [false, true] {
        let mut net = net(32);
        let (c, s) = established(&mut net);
        set(&mut net.a, c, sockopt::TCP_NODELAY, 1).unwrap();
        if inline {
            net.b
                .setsockopt(
                    s,
                    plugtcp_abi::sockopt::SOL_SOCKET,
                    SO_OOBINLINE,
                    &1i32.to_ne_bytes(),
                )
                .unwrap();
        }
        net.record = Some(Vec::new());
        net.a.send(c, b"abc").unwrap();
        net.a.send_oob(c, b"!").unwrap();
        net.a.send(c, b"def").unwrap();
        net.run_until(net.now + SEC, |_| false);
        // On the wire: URG with the pointer just past the urgent byte (BSD, RFC 6093).
        let rec = net.record.take().unwrap();
        let urg = segments(&rec, true)
            .into_iter()
            .find(|(_, p)| p.flags & th::URG != 0)
            .expect("URG sent")
            .1;
        let iss = net.a.tcpcb(c).unwrap().iss;
        assert_eq!(
            urg.seq.wrapping_add(urg.urp as u32),
            iss.wrapping_add(1 + 4),
            "points past '!'"
        );
        let mut buf = [0u8; 16];
        if inline {
            assert_eq!(
                net.b.recv(s, &mut buf).unwrap(),
                3,
                "a read stops at the mark"
            );
            assert_eq!(&buf[..3], b"abc");
        } else {
            // A zero-copy read stops there too.
            let mut seen = Vec::new();
            let n = net.b.recv_with(s, |run| {
                seen.extend_from_slice(run);
                run.len()
            });
            assert_eq!(
                (n, &seen[..]),
                (Ok(3), &b"abc"[..]),
                "a read stops at the mark"
            );
        }
        assert!(net.b.at_mark(s), "SIOCATMARK");
        if inline {
            assert_eq!(
                net.b.recv_oob(s),
                Err(Errno::EINVAL),
                "inline: no separate byte"
            );
            let n = net.b.recv(s, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"!def");
        } else {
            assert_eq!(net.b.recv_oob(s), Ok(b'!'));
            assert_eq!(net.b.recv_oob(s), Err(Errno::EINVAL), "taken");
            let n = net.b.recv(s, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"def", "the urgent byte is out of the stream");
        }
        assert!(!net.b.at_mark(s));
    }
}

/// getsockopt answers what setsockopt set, the sysctl defaults where nothing was set, the
/// stack's and CC's names, and the errnos for an unknown option, a short buffer and a bad
/// descriptor.
#[test]
fn getsockopt_reads_back_options() {
    use plugtcp_abi::sockopt::{self, SOL_SOCKET};
    use plugtcp_abi::sockopt::{SO_KEEPALIVE, SO_LINGER, SO_RCVBUF};
    let mut net = net(31);
    let (c, _s) = established(&mut net);
    let h = &mut net.a;
    let get = |h: &mut plugtcp_host::Host, level, name| h.getsockopt_int(c, level, name);
    assert_eq!(get(h, IPPROTO_TCP, sockopt::TCP_NODELAY), Ok(0));
    set(h, c, sockopt::TCP_NODELAY, 1).unwrap();
    // FreeBSD reads the flag back as its t_flags bit, TF_NODELAY (4).
    assert_eq!(get(h, IPPROTO_TCP, sockopt::TCP_NODELAY), Ok(4));
    set(h, c, sockopt::TCP_KEEPIDLE, 30).unwrap();
    assert_eq!(get(h, IPPROTO_TCP, sockopt::TCP_KEEPIDLE), Ok(30));
    // Not set: FreeBSD's keepintvl default, 75 s.
    assert_eq!(get(h, IPPROTO_TCP, sockopt::TCP_KEEPINTVL), Ok(75));
    assert_eq!(
        get(h, IPPROTO_TCP, sockopt::TCP_REMOTE_UDP_ENCAPS_PORT),
        Ok(0)
    );
    h.setsockopt(c, SOL_SOCKET, SO_RCVBUF, &100_000i32.to_ne_bytes())
        .unwrap();
    assert_eq!(get(h, SOL_SOCKET, SO_RCVBUF), Ok(100_000));
    h.setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &1i32.to_ne_bytes())
        .unwrap();
    assert_eq!(get(h, SOL_SOCKET, SO_KEEPALIVE), Ok(1));
    let linger = [1i32.to_ne_bytes(), 5i32.to_ne_bytes()].concat();
    h.setsockopt(c, SOL_SOCKET, SO_LINGER, &linger).unwrap();
    let mut b = [0u8; 8];
    assert_eq!(h.getsockopt(c, SOL_SOCKET, SO_LINGER, &mut b), Ok(8));
    // FreeBSD's l_onoff reads back as the SO_LINGER bit (0x80).
    let want = [(SO_LINGER).to_ne_bytes(), 5i32.to_ne_bytes()].concat();
    assert_eq!(&b[..], &want[..]);
    let mut name = [0u8; 32];
    let n = h
        .getsockopt(c, IPPROTO_TCP, sockopt::TCP_CONGESTION, &mut name)
        .unwrap();
    assert_eq!(&name[..n], b"newreno\0", "tcp(4)'s default, with its NUL");
    // struct tcp_function_set: the name, NUL-padded to 32 bytes, and the PCB count.
    let mut fs = [0u8; 36];
    assert_eq!(
        h.getsockopt(c, IPPROTO_TCP, sockopt::TCP_FUNCTION_BLK, &mut fs),
        Ok(36)
    );
    assert_eq!(&fs[..5], b"base\0");
    assert_eq!(
        h.getsockopt(c, IPPROTO_TCP, sockopt::TCP_CONGESTION, &mut [0u8; 3]),
        Err(Errno::EINVAL),
        "short buffer"
    );
    assert_eq!(get(h, IPPROTO_TCP, 0x7777), Err(Errno::ENOPROTOOPT));
    // A handle outlives its connection harmlessly: closed, it names nothing, even once a
    // new connection has its slot.
    let stale = h.open(false).unwrap();
    h.close(stale);
    let reuse = h.open(false).unwrap();
    assert_eq!(reuse.slot(), stale.slot());
    assert_eq!(
        h.getsockopt_int(stale, IPPROTO_TCP, sockopt::TCP_NODELAY),
        Err(Errno::EBADF)
    );
    assert_eq!(h.state(stale), None);
    assert_eq!(h.send(stale, b"x"), Err(Errno::EBADF));
    assert!(h
        .getsockopt_int(reuse, IPPROTO_TCP, sockopt::TCP_NODELAY)
        .is_ok());
}
