//! The host's receive path: SYN cookies, listen-queue overflow, drop_synfin, insecure_rst,
//! and malformed packets counted and dropped.

use plugtcp_abi::segment::{th, SegOut};
use plugtcp_abi::{Errno, TcpState};
use plugtcp_cli::builtins::BuiltinNet as _;
use plugtcp_host::wire::{self, DropReason};
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_A, ADDR_B};

const MS: u64 = 1_000_000;
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

#[test]
fn syncookies_only_handshake() {
    let mut net = net(41);
    net.b
        .sysctl_set("net.inet.tcp.syncookies_only", "1")
        .unwrap();
    let lid = net.b.listen((ADDR_B, 80).into(), 8).unwrap();
    let c = net.a.connect((ADDR_B, 80).into(), None).unwrap();
    let mut s = None;
    assert!(net.run_until(2 * SEC, |n| {
        s = s.or_else(|| n.b.accept(lid).ok());
        s.is_some() && n.a.state(c) == Some(TcpState::Established)
    }));
    assert_eq!(
        (net.b.stats.syncookies_sent, net.b.stats.syncookies_recvd),
        (1, 1)
    );
    assert_eq!(net.b.syncache.len(), 0, "no state kept");
    // Data flows both ways over the cookie-made connection.
    let s = s.unwrap();
    net.a.send(c, b"ping").unwrap();
    let mut buf = [0u8; 8];
    assert!(net.run_until(net.now + SEC, |n| n.b.recv(s, &mut buf).is_ok()));
    assert_eq!(&buf[..4], b"ping");
}

#[test]
fn listen_queue_overflow_is_counted_and_reset() {
    let mut net = net(42);
    // FreeBSD's sonewconn takes up to one and a half times the backlog: two for 1.
    let _lid = net.b.listen((ADDR_B, 80).into(), 1).unwrap();
    let first = net.a.connect((ADDR_B, 80).into(), None).unwrap();
    let second = net.a.connect((ADDR_B, 80).into(), None).unwrap();
    let third = net.a.connect((ADDR_B, 80).into(), None).unwrap();
    net.run_until(2 * SEC, |_| false);
    assert_eq!(net.a.state(first), Some(TcpState::Established));
    assert_eq!(net.a.state(second), Some(TcpState::Established));
    assert_eq!(net.b.stats.listen_overflows, 1);
    // The third handshake's ACK found the queue full: reset (syncache.rst_on_sock_fail).
    assert_eq!(net.a.recv(third, &mut [0u8; 1]), Err(Errno::ECONNRESET));
}

fn raw(src: (std::net::IpAddr, u16), dst: (std::net::IpAddr, u16), seg: &SegOut) -> Vec<u8> {
    let mut pkt = vec![0u8; wire::MAX_HEADER];
    let n = wire::build(&mut pkt, src.into(), dst.into(), seg, &[], 64).unwrap();
    pkt.truncate(n);
    pkt
}

#[test]
fn drop_synfin() {
    let mut net = net(43);
    net.b.listen((ADDR_B, 80).into(), 8).unwrap();
    let synfin = raw(
        (ADDR_A, 4000),
        (ADDR_B, 80),
        &SegOut {
            seq: 7,
            flags: th::SYN | th::FIN,
            win: 1000,
            ..Default::default()
        },
    );
    // FreeBSD's default (drop_synfin=0): treated as a SYN.
    net.b.input(&synfin);
    assert_eq!(net.b.tx_len(), 1, "answered with a SYN-ACK");
    net.b.transmit(|_| {});
    net.b
        .syncache
        .remove(&plugtcp_host::socket::table::ConnKey::new(
            (ADDR_B, 80).into(),
            (ADDR_A, 4000).into(),
        ));
    net.b.sysctl_set("net.inet.tcp.drop_synfin", "1").unwrap();
    net.b.input(&synfin);
    assert!(net.b.tx_len() == 0, "dropped with drop_synfin=1");
}

#[test]
fn insecure_rst_accepts_any_in_window_rst() {
    for insecure in ["0", "1"] {
        let mut net = net(44);
        net.a
            .sysctl_set("net.inet.tcp.insecure_rst", insecure)
            .unwrap();
        let lid = net.b.listen((ADDR_B, 80).into(), 8).unwrap();
        let c = net.a.connect((ADDR_B, 80).into(), None).unwrap();
        net.run_until(SEC, |_| false);
        let _ = net.b.accept(lid);
        let (local, remote) = (net.a.local_addr(c).unwrap(), net.a.peer_addr(c).unwrap());
        let rcv_nxt = net.a.tcpcb(c).unwrap().rcv_nxt;
        let rst = raw(
            (remote.ip(), remote.port()),
            (local.ip(), local.port()),
            &SegOut {
                seq: rcv_nxt.wrapping_add(50),
                flags: th::RST,
                ..Default::default()
            },
        );
        net.a.input(&rst);
        let reset = net.a.state(c) == Some(TcpState::Closed);
        assert_eq!(reset, insecure == "1", "insecure_rst={insecure}");
    }
}

#[test]
fn malformed_packets_are_counted_and_dropped() {
    let mut net = net(45);
    let lid = net.b.listen((ADDR_B, 80).into(), 8).unwrap();
    let mut good = raw(
        (ADDR_A, 4000),
        (ADDR_B, 80),
        &SegOut {
            seq: 7,
            flags: th::SYN,
            win: 1000,
            ..Default::default()
        },
    );
    // A flipped bit in the TCP header: bad checksum, counted, no answer, no state.
    good[25] ^= 0x40;
    net.b.input(&good);
    assert_eq!(net.b.stats.in_errs[DropReason::BadTcpChecksum as usize], 1);
    // Garbage and truncation.
    net.b.input(&[0x45, 0, 0]);
    net.b.input(b"not an ip packet at all, just bytes");
    let errs: u64 = net.b.stats.in_errs.iter().sum();
    assert_eq!(errs, 3);
    assert!(net.b.tx_len() == 0);
    assert_eq!(net.b.syncache.len(), 0);
    assert_eq!(net.b.accept(lid), Err(Errno::EAGAIN));
}

/// blackhole(4) spares segments from the host's own addresses unless `blackhole_local` is
/// set: a connect from one of them to a closed port is refused at once (the RST comes)
/// with blackhole=2, and times out in silence once blackhole_local=1 too. log_in_vain=1
/// logs the SYN to the closed port, once per attempt, naming both ends.
#[test]
fn blackhole_local_and_log_in_vain() {
    let mut net = net(43);
    // A's address is one of B's own: what B receives from it is "local".
    net.b.add_addr(ADDR_A);
    for (name, v) in [("blackhole", "2"), ("log_in_vain", "1")] {
        net.b
            .sysctl_set(&format!("net.inet.tcp.{name}"), v)
            .unwrap();
    }
    let refused = net.a.connect((ADDR_B, 81).into(), None).unwrap();
    let closed = |s: Option<TcpState>| matches!(s, None | Some(TcpState::Closed));
    net.run_until(net.now + SEC, |n| closed(n.a.state(refused)));
    assert!(
        closed(net.a.state(refused)),
        "the RST came: refused at once"
    );
    assert_eq!(net.b.stats.blackholed, 0);
    let log = net.b.take_log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0].contains(&format!("[{ADDR_A}]:"))
            && log[0].contains(&format!("to [{ADDR_B}]:81"))
            && log[0].contains("Connection attempt to closed port"),
        "{log:?}"
    );
    net.b
        .sysctl_set("net.inet.tcp.blackhole_local", "1")
        .unwrap();
    let silent = net.a.connect((ADDR_B, 81).into(), None).unwrap();
    net.run_until(net.now + 2 * SEC, |_| false);
    assert_eq!(
        net.a.state(silent),
        Some(TcpState::SynSent),
        "no RST: still trying"
    );
    assert!(
        net.b.stats.blackholed >= 2,
        "the SYN and its retransmission"
    );
    assert!(net.b.take_log().len() >= 2, "each SYN logged");
}

/// pcbcount is one count for all shards of a host: connections in either shard add to it,
/// and a shard that goes takes its own out.
#[test]
fn pcbcount_sums_the_shards() {
    use plugtcp_cli::builtins::BuiltinHost as _;
    use plugtcp_host::secrets::Entropy;
    let mut first = plugtcp_host::Host::with_seed(Default::default(), 3);
    first.register_builtins();
    first.add_addr(ADDR_A);
    let mut second = first.new_shard(Entropy::Seed(4), 2, 1);
    first.set_shard(2, 0);
    let pcbs = |h: &plugtcp_host::Host| h.sysctl.get("net.inet.tcp.pcbcount").unwrap().to_string();
    assert_eq!(pcbs(&first), "0");
    first.connect((ADDR_B, 80).into(), None).unwrap();
    second.connect((ADDR_B, 80).into(), None).unwrap();
    second.connect((ADDR_B, 81).into(), None).unwrap();
    first.listen((ADDR_A, 80).into(), 4).unwrap();
    assert_eq!(pcbs(&first), "4");
    assert_eq!(pcbs(&second), "4");
    drop(second);
    assert_eq!(pcbs(&first), "2");
}

/// `path_mtu_discovery` (tcp(4)): on (FreeBSD's default), IPv4 segments carry DF; off, they
/// do not, and each has its own IP ID (RFC 6864), the header checksum still right.
#[test]
fn path_mtu_discovery_off_clears_df() {
    let mut net = net(44);
    net.a
        .sysctl_set("net.inet.tcp.path_mtu_discovery", "0")
        .unwrap();
    net.record = Some(Vec::new());
    let lid = net.b.listen((ADDR_B, 80).into(), 8).unwrap();
    let c = net.a.connect((ADDR_B, 80).into(), None).unwrap();
    let mut s = None;
    assert!(net.run_until(2 * SEC, |n| {
        s = s.or_else(|| n.b.accept(lid).ok());
        s.is_some() && n.a.state(c) == Some(TcpState::Established)
    }));
    net.a.send(c, &[7u8; 20_000]).unwrap();
    net.run_until(net.now + 2 * SEC, |_| false);
    let record = net.record.take().unwrap();
    let (from_a, from_b): (Vec<_>, Vec<_>) = record.iter().partition(|p| p.a_to_b);
    assert!(from_a.len() > 10);
    let mut ids = std::collections::HashSet::new();
    for p in &from_a {
        assert_eq!(p.bytes[6] & 0x40, 0, "A: no DF");
        assert!(wire::ip_header_sum_ok(&p.bytes[..20]));
        assert!(ids.insert(u16::from_be_bytes([p.bytes[4], p.bytes[5]])));
    }
    for p in &from_b {
        assert_eq!(p.bytes[6] & 0x40, 0x40, "B keeps DF");
    }
}
