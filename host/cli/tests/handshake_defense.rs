//! The passive-open path against a hostile peer: secrets drawn from the OS, SYN cookies
//! believed only while the SYN cache overflows, the third segment of the handshake checked,
//! the backlog counting half-open connections, timestamps kept across a cookie, the MSS
//! floor and the IPv6 default MSS, and the SYN cache's own counters in the metrics.

use std::net::{IpAddr, SocketAddr};

use plugtcp_abi::segment::{th, to, SegOut, TcpOpts};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::TcpState;
use plugtcp_cli::builtins::BuiltinHost as _;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::secrets::Entropy;
use plugtcp_host::wire;
use plugtcp_host::Host;

const SEC: u64 = 1_000_000_000;
const SERVER: &str = "10.0.0.2:80";

/// A segment the host sent, owned.
#[derive(Debug, Clone)]
struct Out {
    seq: u32,
    ack: u32,
    flags: u16,
    opts: TcpOpts,
    payload: Vec<u8>,
}

/// One host driven by hand: the test plays every peer.
struct Bench {
    host: Host,
    lid: usize,
    now: u64,
}

impl Bench {
    fn new(host: Host, backlog: usize) -> Self {
        let mut host = host;
        host.register_builtins();
        let server: SocketAddr = SERVER.parse().unwrap();
        host.add_addr(server.ip());
        host.add_addr("fd00::2".parse().unwrap());
        let lid = host.listen(server, backlog).unwrap();
        Bench { host, lid, now: 0 }
    }

    fn seeded(seed: u64, backlog: usize) -> Self {
        Self::new(Host::with_seed(SearchPath::default(), seed), backlog)
    }

    /// Injects a segment from `from` to `to` and returns what the host answered.
    fn send_to(&mut self, from: SocketAddr, to: SocketAddr, seg: &SegOut, data: &[u8]) -> Vec<Out> {
        let mut pkt = vec![0u8; wire::MAX_HEADER + data.len()];
        let seg = SegOut {
            data_len: data.len() as u32,
            ..*seg
        };
        let n = wire::build(&mut pkt, from, to, &seg, &[data], 64).unwrap();
        self.host.input(&pkt[..n]);
        self.drain()
    }

    fn send(&mut self, from: SocketAddr, seg: &SegOut, data: &[u8]) -> Vec<Out> {
        self.send_to(from, SERVER.parse().unwrap(), seg, data)
    }

    fn drain(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        self.host.transmit(|p| {
            let p = wire::parse(p).expect("the host sends valid packets");
            out.push(Out {
                seq: p.seq,
                ack: p.ack,
                flags: p.flags,
                opts: p.opts,
                payload: p.payload.to_vec(),
            });
        });
        out
    }

    fn advance(&mut self, to: u64) -> Vec<Out> {
        self.now = to;
        self.host.advance(to);
        self.drain()
    }

    /// SYN from `from` with MSS, wscale, SACK and (optionally) a timestamp; the SYN-ACK.
    fn syn(&mut self, from: SocketAddr, isn: u32, tsval: Option<u32>) -> Out {
        let mut o = TcpOpts {
            flags: to::MSS | to::WSCALE | to::SACKPERM,
            mss: 1460,
            wscale: 7,
            ..Default::default()
        };
        if let Some(v) = tsval {
            o.flags |= to::TSTAMP;
            o.tsval = v;
        }
        let seg = SegOut {
            seq: isn,
            flags: th::SYN,
            win: 65535,
            opts: o,
            ..Default::default()
        };
        let mut out = self.send(from, &seg, &[]);
        assert_eq!(out.len(), 1, "one SYN-ACK for {from}");
        let sa = out.remove(0);
        assert_eq!(sa.flags, th::SYN | th::ACK);
        sa
    }

    fn ack(
        &mut self,
        from: SocketAddr,
        seq: u32,
        ack: u32,
        tsecr: Option<u32>,
        data: &[u8],
    ) -> Vec<Out> {
        let mut o = TcpOpts::default();
        if let Some(e) = tsecr {
            o.flags |= to::TSTAMP;
            o.tsval = 1000;
            o.tsecr = e;
        }
        let seg = SegOut {
            seq,
            ack,
            flags: th::ACK | if data.is_empty() { 0 } else { th::PUSH },
            win: 1000,
            opts: o,
            ..Default::default()
        };
        self.send(from, &seg, data)
    }

    fn conns(&self) -> usize {
        self.host.conns.iter().flatten().count()
    }
}

fn client(i: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4((0xc633_6400 + i).into()), 40000)
}

fn is_rst(o: &Out) -> bool {
    o.flags & th::RST != 0
}

/// What a SYN-ACK's ISS is for a fixed SYN: equal for two hosts with the same secrets.
fn synack_iss(host: Host) -> u32 {
    let mut b = Bench::new(host, 8);
    b.syn(client(1), 5000, None).seq
}

#[test]
fn real_hosts_draw_secrets_from_the_os_and_only_seeded_ones_repeat() {
    let os: Vec<u32> = (0..3)
        .map(|_| synack_iss(Host::empty(SearchPath::default())))
        .collect();
    assert!(
        os[0] != os[1] && os[1] != os[2] && os[0] != os[2],
        "{os:x?}"
    );
    let (a, b) = (
        synack_iss(Host::with_seed(SearchPath::default(), 1)),
        synack_iss(Host::with_seed(SearchPath::default(), 1)),
    );
    assert_eq!(a, b, "the simulator's seeded hosts repeat");
    // `plugtcp serve` builds its host like this.
    let (h, errors) = Host::with_plugins(SearchPath::default());
    assert!(errors.is_empty());
    assert_ne!(synack_iss(h), a);
    // Ephemeral ports too.
    let port = |mut h: Host| {
        h.add_addr("10.0.0.1".parse().unwrap());
        h.register_builtins();
        let c = h.connect(SERVER.parse().unwrap(), None).unwrap();
        h.local_addr(c).unwrap().port()
    };
    let ports: Vec<u16> = (0..4)
        .map(|_| port(Host::with_entropy(SearchPath::default(), Entropy::Os)))
        .collect();
    assert!(ports.windows(2).any(|w| w[0] != w[1]), "{ports:?}");
}

#[test]
fn isn_follows_rfc6528_and_reseeds_when_asked() {
    // Without cookies the ISS is the RFC 6528 ISN: a 4 us clock plus a keyed hash.
    let mut b = Bench::seeded(5, 8);
    b.host.sysctl_set("net.inet.tcp.syncookies", "0").unwrap();
    let first = b.syn(client(1), 100, None).seq;
    b.host
        .syncache
        .remove(&plugtcp_host::socket::table::ConnKey::new(
            SERVER.parse().unwrap(),
            client(1),
        ));
    b.advance(SEC);
    let later = b.syn(client(1), 100, None).seq;
    assert_eq!(
        later.wrapping_sub(first),
        250_000,
        "the clock moves 4 us per unit"
    );
    // isn_reseed_interval=1: a new key once a second, so the hash part changes.
    b.host
        .sysctl_set("net.inet.tcp.isn_reseed_interval", "1")
        .unwrap();
    b.host
        .syncache
        .remove(&plugtcp_host::socket::table::ConnKey::new(
            SERVER.parse().unwrap(),
            client(1),
        ));
    b.advance(3 * SEC);
    let reseeded = b.syn(client(1), 100, None).seq;
    assert_ne!(reseeded.wrapping_sub(later), 500_000);
}

#[test]
fn a_forged_cookie_opens_nothing() {
    // The attacker knows the old constant seed: the cookie a seed-1 host would issue.
    let mut oracle = Bench::seeded(1, 8);
    let cookie = oracle.syn(client(7), 999, None).seq;
    let mut real = Bench::new(Host::empty(SearchPath::default()), 8);
    let out = real.ack(
        client(7),
        1000,
        cookie.wrapping_add(1),
        None,
        b"GET / HTTP/1.0\r\n\r\n",
    );
    assert!(out.iter().any(is_rst), "{out:?}");
    assert_eq!(real.conns(), 0);
    assert_eq!(real.host.accept(real.lid), Err(plugtcp_abi::Errno::EAGAIN));
    // Even the right cookie (a host whose secrets the attacker knows) is refused while the
    // SYN cache is not overflowing: every real handshake has its entry.
    let mut same = Bench::seeded(1, 8);
    let out = same.ack(client(7), 1000, cookie.wrapping_add(1), None, b"x");
    assert!(out.iter().any(is_rst), "{out:?}");
    assert_eq!((same.conns(), same.host.stats.syncookies_recvd), (0, 0));
}

#[test]
fn a_reset_connection_is_not_revived_as_a_cookie() {
    let mut b = Bench::seeded(3, 8);
    let sa = b.syn(client(1), 1000, None);
    b.ack(client(1), 1001, sa.seq.wrapping_add(1), None, &[]);
    let s = b.host.accept(b.lid).unwrap();
    assert_eq!(b.host.state(s), Some(TcpState::Established));
    // RST at exactly rcv_nxt.
    let rst = SegOut {
        seq: 1001,
        flags: th::RST,
        ..Default::default()
    };
    b.send(client(1), &rst, &[]);
    assert_eq!(b.host.state(s), Some(TcpState::Closed));
    b.host.close(s);
    // Data whose ACK matches the old ISS: RFC 9293 wants a RST, not a new connection.
    let out = b.ack(client(1), 1001, sa.seq.wrapping_add(1), None, b"hello");
    assert!(out.iter().any(is_rst), "{out:?}");
    assert_eq!(b.conns(), 0);
    assert_eq!(b.host.accept(b.lid), Err(plugtcp_abi::Errno::EAGAIN));
}

#[test]
fn cookies_work_while_the_cache_overflows() {
    // One bucket of one entry: the second SYN evicts the first, whose ACK then completes
    // from its cookie, timestamps included (RFC 7323 3.2: both SYNs carried them).
    let tree = plugtcp_host::sysctl::SysctlTree::with_loader_tunables(&[
        ("net.inet.tcp.syncache.hashsize", "1"),
        ("net.inet.tcp.syncache.bucketlimit", "1"),
    ])
    .unwrap();
    let host = Host::with_sysctl(SearchPath::default(), Entropy::Seed(9), tree);
    let mut b = Bench::new(host, 8);
    let sa1 = b.syn(client(1), 1000, Some(555));
    assert!(sa1.opts.has(to::TSTAMP));
    b.syn(client(2), 2000, Some(777));
    assert_eq!(b.host.syncache.len(), 1);
    assert_eq!(b.host.stats.listen_overflows, 1);
    let out = b.ack(
        client(1),
        1001,
        sa1.seq.wrapping_add(1),
        Some(sa1.opts.tsval),
        &[],
    );
    assert!(!out.iter().any(is_rst), "{out:?}");
    assert_eq!(b.host.stats.syncookies_recvd, 1);
    let s = b.host.accept(b.lid).unwrap();
    let tp = b.host.tcpcb(s).unwrap();
    assert_eq!(tp.t_state, TcpState::Established);
    assert!(tp.t_flags & tf::RCVD_TSTMP != 0 && tp.t_flags & tf::SACK_PERMIT != 0);
    assert_eq!(tp.snd_scale, 7);
    // Its segments carry timestamps on the clock the SYN-ACK started.
    b.host.send(s, b"reply").unwrap();
    let out = b.drain();
    let data = out
        .iter()
        .find(|o| !o.payload.is_empty())
        .expect("data sent");
    assert!(data.opts.has(to::TSTAMP));
    assert_eq!(data.opts.tsecr, 1000);
    assert!(data.opts.tsval.wrapping_sub(sa1.opts.tsval) < 1000);
    // The overflow ages out: 15 s later a cookie is no longer believed.
    let sa3 = b.syn(client(3), 3000, None);
    b.syn(client(4), 4000, None);
    b.advance(31 * SEC);
    let out = b.ack(client(3), 3001, sa3.seq.wrapping_add(1), None, &[]);
    assert!(out.iter().any(is_rst), "{out:?}");
}

#[test]
fn stateless_synack_offers_timestamps_when_the_cache_is_full() {
    let tree = plugtcp_host::sysctl::SysctlTree::with_loader_tunables(&[(
        "net.inet.tcp.syncache.cachelimit",
        "1",
    )])
    .unwrap();
    let host = Host::with_sysctl(SearchPath::default(), Entropy::Seed(10), tree);
    let mut b = Bench::new(host, 8);
    b.syn(client(1), 1000, Some(1));
    let sa = b.syn(client(2), 2000, Some(2));
    assert_eq!(b.host.syncache.len(), 1, "the second is stateless");
    assert!(sa.opts.has(to::TSTAMP) && sa.opts.tsecr == 2);
    b.ack(
        client(2),
        2001,
        sa.seq.wrapping_add(1),
        Some(sa.opts.tsval),
        &[],
    );
    let s = b.host.accept(b.lid).unwrap();
    assert!(b.host.tcpcb(s).unwrap().t_flags & tf::RCVD_TSTMP != 0);
}

#[test]
fn third_segment_with_a_wrong_sequence_number_is_refused() {
    let mut b = Bench::seeded(4, 128);
    for i in 0..200 {
        let sa = b.syn(client(i), 1000, None);
        // The right ACK, a sequence number outside the window the SYN-ACK offered.
        let out = b.ack(client(i), 900_000, sa.seq.wrapping_add(1), None, &[]);
        assert!(out.iter().any(is_rst), "{out:?}");
    }
    assert_eq!(b.conns(), 0);
    assert_eq!(b.host.stats.passive_opens, 0);
    assert_eq!(b.host.syncache.len(), 0, "FreeBSD forgets such a handshake");
    // A wrong ACK draws a RST, and FreeBSD's syncache_expand has taken the entry out:
    // the right ACK after it finds no handshake.
    let sa = b.syn(client(500), 1000, None);
    let out = b.ack(client(500), 1001, sa.seq.wrapping_add(2), None, &[]);
    assert!(out
        .iter()
        .any(|o| is_rst(o) && o.seq == sa.seq.wrapping_add(2)));
    let out = b.ack(client(500), 1001, sa.seq.wrapping_add(1), None, &[]);
    assert!(out.iter().any(is_rst), "{out:?}");
    assert!(b.host.accept(b.lid).is_err());
}

#[test]
fn connections_not_yet_accepted_count_against_the_backlog() {
    let mut b = Bench::seeded(6, 2);
    // TCP_DEFER_ACCEPT holds established connections back from the queue: they still
    // count, as half-open ones do.
    b.host
        .listener_setsockopt(
            b.lid,
            plugtcp_abi::sockopt::IPPROTO_TCP,
            plugtcp_abi::sockopt::TCP_DEFER_ACCEPT,
            &30i32.to_ne_bytes(),
        )
        .unwrap();
    // FreeBSD's sonewconn refuses only once more than one and a half times the backlog
    // wait (sol_qlen > 3 * sol_qlimit / 2): four for 2.
    let mut synacks = Vec::new();
    for i in 0..4 {
        let sa = b.syn(client(i), 1000, None);
        let out = b.ack(client(i), 1001, sa.seq.wrapping_add(1), None, &[]);
        assert!(!out.iter().any(is_rst));
        synacks.push(sa);
    }
    assert_eq!(b.host.accept(b.lid), Err(plugtcp_abi::Errno::EAGAIN));
    let sa = b.syn(client(9), 1000, None);
    let out = b.ack(client(9), 1001, sa.seq.wrapping_add(1), None, &[]);
    assert!(
        out.iter().any(is_rst),
        "the fifth overflows the backlog of 2"
    );
    assert_eq!(b.host.stats.listen_overflows, 1);
    assert_eq!(b.host.stats.passive_opens, 4);
    // Data makes one acceptable; it still counts, now in the queue.
    b.ack(
        client(0),
        1001,
        synacks[0].seq.wrapping_add(1),
        None,
        b"GET",
    );
    let s = b.host.accept(b.lid).unwrap();
    assert_eq!(b.host.readable(s), 3);
    // Accepted, it no longer counts: room for one more.
    let sa = b.syn(client(10), 1000, None);
    let out = b.ack(client(10), 1001, sa.seq.wrapping_add(1), None, &[]);
    assert!(!out.iter().any(is_rst));
}

#[test]
fn peer_mss_is_floored_at_minmss_and_ipv6_defaults_to_v6mssdflt() {
    let mut b = Bench::seeded(8, 8);
    // A SYN offering MSS 1.
    let seg = SegOut {
        seq: 1,
        flags: th::SYN,
        win: 65535,
        opts: TcpOpts {
            flags: to::MSS,
            mss: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let sa = b.send(client(1), &seg, &[]).remove(0);
    b.ack(client(1), 2, sa.seq.wrapping_add(1), None, &[]);
    let s = b.host.accept(b.lid).unwrap();
    assert_eq!(b.host.tcpcb(s).unwrap().t_maxseg, 216, "minmss");
    // IPv6 without an MSS option: v6mssdflt (1220), not 536.
    let v6: SocketAddr = "[fd00::9]:5000".parse().unwrap();
    let l6 = b.host.listen("[fd00::2]:80".parse().unwrap(), 8).unwrap();
    let seg = SegOut {
        seq: 1,
        flags: th::SYN,
        win: 65535,
        ..Default::default()
    };
    let to6: SocketAddr = "[fd00::2]:80".parse().unwrap();
    let sa = b.send_to(v6, to6, &seg, &[]).remove(0);
    let ack = SegOut {
        seq: 2,
        ack: sa.seq.wrapping_add(1),
        flags: th::ACK,
        win: 1000,
        ..Default::default()
    };
    b.send_to(v6, to6, &ack, &[]);
    let s6 = b.host.accept(l6).unwrap();
    assert_eq!(b.host.tcpcb(s6).unwrap().t_maxseg, 1220);
}

#[test]
fn out_of_window_segments_draw_few_acks() {
    let mut b = Bench::seeded(11, 8);
    let sa = b.syn(client(1), 1000, None);
    b.ack(client(1), 1001, sa.seq.wrapping_add(1), None, &[]);
    let s = b.host.accept(b.lid).unwrap();
    assert_eq!(b.host.state(s), Some(TcpState::Established));
    let mut acks = 0;
    for i in 0..5000u32 {
        // Far beyond the window.
        let out = b.ack(
            client(1),
            1001 + 10_000_000 + i,
            sa.seq.wrapping_add(1),
            None,
            &[],
        );
        acks += out.len();
    }
    // ack_war_cnt (5) per ack_war_timewindow (1 s): the clock did not move.
    assert_eq!(acks, 5);
    b.advance(2 * SEC);
    let out = b.ack(
        client(1),
        1001 + 20_000_000,
        sa.seq.wrapping_add(1),
        None,
        &[],
    );
    assert_eq!(out.len(), 1, "a new window, a new budget");
}

#[test]
fn a_syn_in_three_ipv4_fragments_is_answered() {
    let mut b = Bench::seeded(12, 8);
    let seg = SegOut {
        seq: 77,
        flags: th::SYN,
        win: 65535,
        opts: TcpOpts {
            flags: to::MSS | to::SACKPERM | to::WSCALE | to::TSTAMP,
            mss: 1460,
            wscale: 7,
            tsval: 9,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut pkt = vec![0u8; wire::MAX_HEADER];
    let n = wire::build(&mut pkt, client(1), SERVER.parse().unwrap(), &seg, &[], 64).unwrap();
    pkt.truncate(n);
    let frags = fragment_v4(&pkt, &[16, 16]);
    assert_eq!(frags.len(), 3);
    let mut out = Vec::new();
    for f in frags.iter().rev() {
        b.host.input(f);
        out.extend(b.drain());
    }
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].flags, th::SYN | th::ACK);
    assert_eq!(out[0].ack, 78);
}

#[test]
fn an_ipv6_atomic_fragment_is_answered() {
    let mut b = Bench::seeded(13, 8);
    let l6 = b.host.listen("[fd00::2]:443".parse().unwrap(), 8);
    assert!(l6.is_ok());
    let seg = SegOut {
        seq: 5,
        flags: th::SYN,
        win: 65535,
        ..Default::default()
    };
    let mut pkt = vec![0u8; wire::MAX_HEADER];
    let from: SocketAddr = "[fd00::9]:5000".parse().unwrap();
    let n = wire::build(
        &mut pkt,
        from,
        "[fd00::2]:443".parse().unwrap(),
        &seg,
        &[],
        64,
    )
    .unwrap();
    pkt.truncate(n);
    // Insert a fragment header (offset 0, M clear, id 0x1234) after the base header.
    let mut atomic = pkt[..40].to_vec();
    atomic[6] = 44;
    let plen = u16::from_be_bytes([pkt[4], pkt[5]]) + 8;
    atomic[4..6].copy_from_slice(&plen.to_be_bytes());
    atomic.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0x12, 0x34]);
    atomic.extend_from_slice(&pkt[40..]);
    b.host.input(&atomic);
    let out = b.drain();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].flags, out[0].ack), (th::SYN | th::ACK, 6));
}

/// Splits an IPv4 packet's payload into fragments of the given sizes (the rest last).
fn fragment_v4(pkt: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    let hlen = usize::from(pkt[0] & 0xf) * 4;
    let body = &pkt[hlen..];
    let mut cuts = Vec::new();
    let mut off = 0;
    for &s in sizes {
        cuts.push((off, s));
        off += s;
    }
    cuts.push((off, body.len() - off));
    cuts.iter()
        .enumerate()
        .map(|(i, &(o, n))| {
            let mut f = pkt[..hlen].to_vec();
            let more = i + 1 < cuts.len();
            f[2..4].copy_from_slice(&((hlen + n) as u16).to_be_bytes());
            f[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
            let fl = (o / 8) as u16 | if more { 0x2000 } else { 0 };
            f[6..8].copy_from_slice(&fl.to_be_bytes());
            f[10] = 0;
            f[11] = 0;
            let sum = wire::ip_header_checksum(&f);
            f[10..12].copy_from_slice(&sum);
            f.extend_from_slice(&body[o..o + n]);
            f
        })
        .collect()
}
