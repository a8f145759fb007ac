//! Host-wide queue accounting and limits (tcp(4)): `reass.cursegments` and
//! `sack.globalholes` sum what every connection holds, `reass.maxsegments` bounds the
//! out-of-order segments of all connections together (the data past it is dropped, its ACK
//! still taken), and the counts go back to zero when the holes are filled.

use plugtcp_abi::segment::{th, SegOut};
use plugtcp_cli::builtins::{plugins, BuiltinNet as _};
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::secrets::Entropy;
use plugtcp_host::sysctl::SysctlTree;
use plugtcp_host::{wire, Host};
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};

const SEC: u64 = 1_000_000_000;

fn count(h: &Host, name: &str) -> i64 {
    match h.sysctl.get(name).unwrap() {
        plugtcp_host::sysctl::SysctlValue::Int(v) => v,
        v => panic!("{name}: {v}"),
    }
}

/// A segment from A's connection `a` to B: `len` bytes at sequence `seq`.
fn inject(net: &mut SimNet, a: ConnId, seq: u32, len: usize) {
    let atp = net.a.tcpcb(a).unwrap().clone();
    let seg = SegOut {
        seq,
        ack: atp.rcv_nxt,
        flags: th::ACK,
        win: 65535,
        data_len: len as u32,
        ..Default::default()
    };
    let payload = vec![0x33u8; len];
    let mut buf = vec![0u8; 2048];
    let (src, dst) = (net.a.local_addr(a).unwrap(), net.a.peer_addr(a).unwrap());
    let n = wire::build(&mut buf, src, dst, &seg, &[&payload], 64).unwrap();
    net.b.input(&buf[..n]);
}

#[test]
fn reassembly_segments_are_counted_and_bounded_host_wide() {
    let mut net = SimNet::builtin(
        SimLinkConfig {
            delay_ns: 1_000_000,
            seed: 4,
            ..Default::default()
        },
        4,
    );
    // B with reass.maxsegments 5 (a loader tunable, as in FreeBSD).
    let tree =
        SysctlTree::with_loader_tunables(&[("net.inet.tcp.reass.maxsegments", "5")]).unwrap();
    let (mut b, _) =
        Host::with_sysctl(SearchPath::default(), Entropy::Seed(9), tree).autoload(&plugins());
    b.add_addr(ADDR_B);
    net.b = b;
    let l = net.b.listen((ADDR_B, 80).into(), 8).unwrap();
    let conns: Vec<ConnId> = (0..2)
        .map(|_| net.a.connect((ADDR_B, 80).into(), None).unwrap())
        .collect();
    let mut accepted = Vec::new();
    assert!(net.run_until(5 * SEC, |n| {
        while let Ok(id) = n.b.accept(l) {
            accepted.push(id);
        }
        accepted.len() == 2
    }));
    let port = |net: &SimNet, a: ConnId| net.a.local_addr(a).unwrap().port();
    let peer = |net: &SimNet, b: ConnId| net.b.peer_addr(b).unwrap().port();
    let pairs: Vec<(ConnId, ConnId)> = conns
        .iter()
        .map(|&a| {
            let b = *accepted
                .iter()
                .find(|&&b| peer(&net, b) == port(&net, a))
                .unwrap();
            (a, b)
        })
        .collect();
    // Three separate out-of-order segments on each: 3 + 2 held, the sixth refused.
    let bases: Vec<u32> = pairs
        .iter()
        .map(|&(_, b)| net.b.tcpcb(b).unwrap().rcv_nxt)
        .collect();
    for (&(a, _), &base) in pairs.iter().zip(&bases) {
        for k in 0..3 {
            inject(&mut net, a, base + 1000 + k * 2000, 1000);
        }
    }
    assert_eq!(count(&net.b, "net.inet.tcp.reass.cursegments"), 5);
    let held: u32 = pairs
        .iter()
        .map(|&(_, b)| net.b.tcpcb(b).unwrap().t_segqlen)
        .sum();
    assert_eq!(held, 5, "each connection's t_segqlen");
    // Filling the holes delivers what was held and the count comes down.
    for (&(a, _), &base) in pairs.iter().zip(&bases) {
        for k in 0..3 {
            inject(&mut net, a, base + k * 2000, 1000);
        }
    }
    let delivered: Vec<u32> = pairs
        .iter()
        .zip(&bases)
        .map(|(&(_, b), &base)| net.b.tcpcb(b).unwrap().rcv_nxt.wrapping_sub(base))
        .collect();
    // The second connection's third segment was refused: 5000 of its 6000 bytes are in.
    assert_eq!(delivered, vec![6000, 5000]);
    assert_eq!(count(&net.b, "net.inet.tcp.reass.cursegments"), 0);
    assert_eq!(count(&net.b, "net.inet.tcp.sack.globalholes"), 0);
    for &(a, _) in &pairs {
        net.a.abort(a);
    }
}

/// Runs a 200 KiB transfer A -> B whose 3rd and 7th segments are lost once each, with A's
/// `sack.globalmaxholes` at `max`; returns the most SACK holes A's connection and A's
/// `sack.globalholes` showed, and whether all the data arrived.
fn holes_with_limit(max: &str) -> (u32, i64, bool) {
    let mut net = SimNet::builtin(
        SimLinkConfig {
            delay_ns: 5_000_000,
            bandwidth_bps: 100_000_000,
            seed: 6,
            ..Default::default()
        },
        6,
    );
    net.a
        .sysctl_set("net.inet.tcp.sack.globalmaxholes", max)
        .unwrap();
    let l = net.b.listen((ADDR_B, 80).into(), 8).unwrap();
    let c = net.a.connect((ADDR_B, 80).into(), None).unwrap();
    let mut s = None;
    assert!(net.run_until(5 * SEC, |n| {
        s = s.or_else(|| n.b.accept(l).ok());
        s.is_some()
    }));
    let s = s.unwrap();
    // The 3rd and 7th data packets A sends (both first transmissions) are lost.
    let mut seen = 0;
    net.drop_if = Some(Box::new(move |a_to_b, p| {
        if !a_to_b || !wire::parse(p).is_ok_and(|p| !p.payload.is_empty()) {
            return false;
        }
        seen += 1;
        seen == 3 || seen == 7
    }));
    let data = vec![7u8; 200 << 10];
    let (mut sent, mut got) = (0, 0);
    let (mut max_holes, mut max_global) = (0, 0);
    let mut buf = vec![0u8; 65536];
    let done = net.run_until(net.now + 30 * SEC, |n| {
        if sent < data.len() {
            if let Ok(k) = n.a.send(c, &data[sent..]) {
                sent += k;
            }
        }
        while let Ok(k) = n.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
            got += k;
        }
        max_holes = max_holes.max(n.a.tcpcb(c).map_or(0, |t| t.snd_numholes));
        max_global = max_global.max(count(&n.a, "net.inet.tcp.sack.globalholes"));
        got == data.len()
    });
    (max_holes, max_global, done)
}

/// `sack.globalmaxholes`: with two segments lost in one window the sender's scoreboard
/// holds two holes; at a host-wide limit of one it makes no second (what the second SACK
/// block reports is treated as not SACKed, which is safe), and the data still arrives.
#[test]
fn sack_holes_are_bounded_host_wide() {
    let (holes, global, done) = holes_with_limit("65536");
    assert!(done);
    assert_eq!((holes, global), (2, 2), "two holes without a limit");
    let (holes, global, done) = holes_with_limit("1");
    assert!(done, "the transfer completes at the limit");
    assert!(
        holes <= 1 && global <= 1,
        "holes {holes}, globalholes {global}"
    );
}
