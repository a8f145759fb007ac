//! TCP_INFO in FreeBSD's `struct tcp_info` layout, TCP_STATS, and the control socket's
//! `tcpdrop` and `sockstat` on a running host.

mod common;

use plugtcp_host::conn_table::ConnId;
use std::process::Stdio;
use std::time::{Duration, Instant};

use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_INFO, TCP_STATS};
use plugtcp_abi::TcpState;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::SimNet;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

fn lossy_net(seed: u64, stack: &str) -> SimNet {
    let mut net = SimNet::builtin(
        SimLinkConfig {
            delay_ns: 10 * MS,
            bandwidth_bps: 100_000_000,
            loss: 0.01,
            seed,
            ..Default::default()
        },
        seed,
    );
    for h in [&mut net.a, &mut net.b] {
        h.sysctl_set("net.inet.tcp.functions_default", stack)
            .unwrap();
    }
    net
}

/// A sends `len` bytes to B, which reads them all and checks them; the connection stays
/// open. Returns (A's connection, B's).
fn transfer(net: &mut SimNet, len: usize) -> (ConnId, ConnId) {
    let data = common::payload(len, 3);
    let (c, s) = common::established(net);
    assert!(
        common::pump(net, c, s, &data, 0, 120 * SEC) == data,
        "bytes differ"
    );
    assert!(net.run_until(net.now + 10 * SEC, |n| n.a.unacked(c) == 0));
    (c, s)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

fn tcp_info_bytes(h: &mut plugtcp_host::Host, slot: ConnId) -> Vec<u8> {
    let mut b = vec![0xAAu8; 512];
    let n = h.getsockopt(slot, IPPROTO_TCP, TCP_INFO, &mut b).unwrap();
    assert_eq!(n, 240, "sizeof(struct tcp_info) on FreeBSD");
    b.truncate(n);
    b
}

/// The bytes of getsockopt(TCP_INFO), decoded at the offsets of FreeBSD 14's netinet/tcp.h,
/// are the connection's control-block and estimator values after a lossy transfer.
#[test]
fn tcp_info_bytes_in_freebsd_layout() {
    let mut net = lossy_net(41, "base");
    let (c, s) = transfer(&mut net, 4 << 20);
    // Idle for a second: nothing arrives, so tcpi_last_data_recv grows by that much.
    let idle_from = net.now;
    net.run_until(net.now + SEC, |_| false);
    let b = tcp_info_bytes(&mut net.a, c);
    let typed = net.a.tcp_info(c).unwrap();
    let tp = net.a.tcpcb(c).unwrap().clone();

    assert_eq!(b[0], TcpState::Established as u8, "tcpi_state");
    assert_eq!(b[5], 0x07, "tcpi_options: TIMESTAMPS|SACK|WSCALE");
    assert!(tp.snd_scale > 0 && tp.rcv_scale > 0);
    // tcpi_snd_wscale:4, tcpi_rcv_wscale:4 share byte 6 (little-endian bitfields).
    assert_eq!(b[6] & 0x0f, tp.snd_scale, "tcpi_snd_wscale");
    assert_eq!(b[6] >> 4, tp.rcv_scale, "tcpi_rcv_wscale");
    assert_eq!(u32_at(&b, 8), tp.t_rxtcur, "tcpi_rto");
    assert_eq!(u32_at(&b, 16), 1460, "tcpi_snd_mss");
    assert_eq!(u32_at(&b, 20), 1460, "tcpi_rcv_mss");
    let idle_us = u32_at(&b, 52);
    assert_eq!(
        idle_us as u64,
        (net.now - tp.t_rcvtime) / 1000,
        "tcpi_last_data_recv"
    );
    assert!(idle_us as u64 >= (net.now - idle_from) / 1000);
    assert_eq!(u32_at(&b, 68), tp.t_srtt, "tcpi_rtt");
    assert!(tp.t_srtt >= 20_000, "srtt {} us on a 20 ms path", tp.t_srtt);
    assert_eq!(u32_at(&b, 72), tp.t_rttvar, "tcpi_rttvar");
    assert_eq!(u32_at(&b, 76), tp.snd_ssthresh, "tcpi_snd_ssthresh");
    assert!(tp.snd_ssthresh < u32::MAX, "a loss set ssthresh");
    assert_eq!(u32_at(&b, 80), tp.snd_cwnd, "tcpi_snd_cwnd");
    assert_eq!(u32_at(&b, 96), typed.tcpi_rcv_space, "tcpi_rcv_space");
    assert_eq!(u32_at(&b, 100), tp.snd_wnd, "tcpi_snd_wnd");
    assert_eq!(u32_at(&b, 104), 0, "tcpi_snd_bwnd (unused)");
    assert_eq!(u32_at(&b, 108), tp.snd_nxt, "tcpi_snd_nxt");
    assert_eq!(u32_at(&b, 112), tp.rcv_nxt, "tcpi_rcv_nxt");
    assert_eq!(u32_at(&b, 116), 0, "tcpi_toe_tid");
    assert_eq!(
        u32_at(&b, 120) as u64,
        tp.t_sndrexmitpack,
        "tcpi_snd_rexmitpack"
    );
    assert!(tp.t_sndrexmitpack > 0, "1% loss retransmits");
    assert_eq!(u32_at(&b, 124), 0, "A received data in order only");
    assert_eq!(u32_at(&b, 128) as u64, tp.t_sndzerowin, "tcpi_snd_zerowin");
    assert_eq!(u32_at(&b, 164), 0, "tcpi_total_tlp: base sends no probes");
    assert_eq!(u64_at(&b, 168), 0, "tcpi_total_tlp_bytes");
    assert_eq!(u32_at(&b, 176), tp.snd_una, "tcpi_snd_una");
    assert_eq!(u32_at(&b, 180), tp.snd_max, "tcpi_snd_max");
    assert_eq!(
        u32_at(&b, 184),
        0,
        "tcpi_rcv_numsacks: nothing out of order at A"
    );
    assert_eq!(u32_at(&b, 188), tp.rcv_adv, "tcpi_rcv_adv");
    assert_eq!(u32_at(&b, 192), tp.t_dupacks, "tcpi_dupacks");
    assert_eq!(
        tp.snd_una,
        tp.iss.wrapping_add(1 + (4 << 20)),
        "all acknowledged"
    );
    // What FreeBSD leaves unfilled (__tcpi_*, the ECN byte counters, the padding) is zero.
    for (from, to) in [
        (1, 5),
        (7, 8),
        (12, 16),
        (24, 52),
        (56, 68),
        (84, 96),
        (140, 164),
    ] {
        assert!(b[from..to].iter().all(|&x| x == 0), "bytes {from}..{to}");
    }
    assert!(b[196..240].iter().all(|&x| x == 0), "__tcpi_pad");

    // The receiver saw the holes: out-of-order segments counted.
    let rb = tcp_info_bytes(&mut net.b, s);
    let rtp = net.b.tcpcb(s).unwrap();
    assert_eq!(u32_at(&rb, 124) as u64, rtp.t_rcvoopack, "tcpi_rcv_ooopack");
    assert!(rtp.t_rcvoopack > 0);
    assert_eq!(u32_at(&rb, 112), rtp.rcv_nxt);

    // A short buffer gets the head of the structure, as FreeBSD's sooptcopyout cuts it.
    let mut short = [0u8; 9];
    assert_eq!(
        net.a.getsockopt(c, IPPROTO_TCP, TCP_INFO, &mut short),
        Ok(9)
    );
    assert_eq!(short[..], b[..9]);
}

/// TCP_STATS: plugtcp's fixed struct; every counter equals the host-wide counter of the
/// stack (one connection per host, so the stack's totals are this connection's).
#[test]
fn tcp_stats_equal_the_stack_counters() {
    for stack in ["base", "rack"] {
        let mut net = lossy_net(43, stack);
        let (c, s) = transfer(&mut net, 8 << 20);
        let field = |h: &mut plugtcp_host::Host, slot| {
            let mut b = [0u8; 256];
            let n = h.getsockopt(slot, IPPROTO_TCP, TCP_STATS, &mut b).unwrap();
            assert_eq!(n, 160);
            assert_eq!(u32_at(&b, 0), 1, "tcps_version");
            assert_eq!(u32_at(&b, 4), 160, "tcps_len");
            (0..19).map(|i| u64_at(&b, 8 + 8 * i)).collect::<Vec<u64>>()
        };
        let counter = |h: &plugtcp_host::Host, name: &str| {
            let snap = h.registry.snapshot();
            let blk = snap.block(stack).unwrap();
            let i = blk.counter_names.iter().position(|n| n == name).unwrap();
            blk.counters[i].load(std::sync::atomic::Ordering::Relaxed) as u64
        };
        let a = field(&mut net.a, c);
        let tp = net.a.tcpcb(c).unwrap().clone();
        // Field order: snd_bytes, rcv_bytes, snd_segs, rcv_segs, snd_rexmitpack,
        // snd_rexmitbytes, rexmttimeo, rcv_dupack, sack_recovery_episode, tlp_probes,
        // tlp_bytes, lost_rexmit, dsack_pack, dsack_bytes, rcv_ooopack, snd_zerowin,
        // ecn_reductions, persisttimeo, keepprobe.
        assert_eq!(a[0], 8 << 20, "{stack}: new bytes sent");
        assert_eq!(a[2], tp.t_snd_segs);
        assert_eq!(a[3], tp.t_rcv_segs);
        assert_eq!(a[4], counter(&net.a, "sndrexmitpack"), "{stack}");
        assert_eq!(a[5], tp.t_rexmit_bytes);
        assert_eq!(a[6], counter(&net.a, "rexmttimeo"), "{stack}");
        assert_eq!(a[7], counter(&net.a, "rcvdupack"), "{stack}");
        assert_eq!(a[8], counter(&net.a, "sack_recovery_episode"), "{stack}");
        assert_eq!(a[9], counter(&net.a, "tlp_probes"), "{stack}");
        assert_eq!(a[11], counter(&net.a, "lost_rexmit"), "{stack}");
        assert_eq!(a[16], counter(&net.a, "ecn_reductions"), "{stack}");
        assert_eq!(a[17], counter(&net.a, "persisttimeo"), "{stack}");
        assert_eq!(a[18], counter(&net.a, "keepprobe"), "{stack}");
        assert!(a[4] > 0 && a[5] > 0 && a[8] > 0, "{stack}: {a:?}");
        let info = net.a.tcp_info(c).unwrap();
        assert_eq!(
            info.tcpi_total_tlp as u64, a[9],
            "TCP_INFO and TCP_STATS agree"
        );
        assert_eq!(info.tcpi_total_tlp_bytes, a[10]);
        if stack == "rack" {
            // Whether a tail loss probe fires in this run depends on where the losses
            // fall; the probes themselves are checked in tests/packetdrill/rack-tlp.
            assert_eq!(a[9] > 0, a[10] > 0, "probes and probe bytes: {a:?}");
        } else {
            assert!(a[7] > 0, "base counts duplicate ACKs: {a:?}");
            assert_eq!(a[9], 0);
        }
        let b = field(&mut net.b, s);
        assert_eq!(b[1], 8 << 20, "{stack}: bytes received");
        assert_eq!(b[14], counter(&net.b, "rcvoopack"), "{stack}");
        assert!(b[14] > 0);
    }
}

use common::{ctl, ok};
use plugtcp_cli::builtins::BuiltinNet as _;

/// `plugtcp tcpdrop` through the control socket of a running `serve --io udp` resets a live
/// download (the client fails with ECONNRESET); dropping it again is one line of ESRCH.
/// `sockstat` shows the connection's TCP state as `ss -ti` does.
#[test]
fn tcpdrop_resets_a_live_download() {
    let dir = std::env::temp_dir().join(format!("plugtcp-tcpdrop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("control.sock");
    std::fs::write(dir.join("f.bin"), common::payload(64 << 20, 9)).unwrap();
    let port = 20000 + (std::process::id() % 20000) as u16 + 11;
    // 20 Mbit/s out of the server: 64 MiB would take half a minute.
    let mut server = common::spawn_udp_http_server(
        &dir,
        port,
        Some(&sock),
        &["--fault-out", "rate=20m,delay=5ms"],
    );
    let out = dir.join("out.bin");
    let mut get = common::udp_get_command("f.bin", port, &out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let row = common::live_download(&sock, 256 << 10);
    let remote = row["remote"].as_str().unwrap().to_string();
    for k in [
        "rto_us",
        "rttvar_us",
        "srtt_us",
        "mss",
        "snd_wnd",
        "rcv_wnd",
        "retransmits",
    ] {
        assert!(row[k].is_u64(), "{k} in {row}");
    }
    assert_eq!(row["mss"], 1460 - 8, "udp_tunneling_overhead taken off");
    assert!(row["rto_us"].as_u64() >= Some(200_000), "{row}");
    let text = ok(&ctl(&sock, &["sockstat"]));
    let at = text.lines().position(|l| l.contains(&remote)).unwrap();
    let detail = text.lines().nth(at + 1).unwrap();
    for k in [
        "rto:",
        "rtt:",
        "mss:",
        "cwnd:",
        "retrans:",
        "snd_wnd:",
        "rcv_wnd:",
        "bytes_sent:",
    ] {
        assert!(
            detail.starts_with('\t') && detail.contains(k),
            "{k}: {detail}"
        );
    }

    let dropped = ok(&ctl(&sock, &["tcpdrop", "127.0.0.1:8080", &remote]));
    assert_eq!(dropped, format!("127.0.0.1:8080 {remote}: dropped\n"));
    let status = get.wait().unwrap();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut get.stderr.take().unwrap(), &mut stderr);
    assert!(!status.success(), "the download was cut short");
    assert!(
        stderr.to_lowercase().contains("reset"),
        "client error: {stderr}"
    );
    let got = std::fs::metadata(&out).map_or(0, |m| m.len());
    assert!(got < 64 << 20, "{got} bytes arrived");
    // The server's HTTP service got ECONNABORTED and closed the socket: it is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&ok(&ctl(&sock, &["sockstat", "--json"]))).unwrap();
        if !rows.iter().any(|r| r["remote"] == remote.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dropped connection still there: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let again = ctl(&sock, &["tcpdrop", "127.0.0.1:8080", &remote]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("tcpdrop") && err.contains("ESRCH"), "{err}");
    assert!(again.stdout.is_empty());

    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}
