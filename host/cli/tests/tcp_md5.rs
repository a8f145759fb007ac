//! TCP-MD5 (RFC 2385) between two hosts on the simulated link: signed handshake and data
//! with every segment's digest right for the key; a wrong key or no signature is dropped
//! and counted, never answered; a listener with TCP_MD5SIG takes an unsigned handshake
//! only from a peer it has no key for.

use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_MD5SIG};
use plugtcp_abi::TcpState;
use plugtcp_cli::builtins::BuiltinNet as _;
use plugtcp_host::wire;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_A, ADDR_B};
use sha2::{Digest, Sha256};

const SEC: u64 = 1_000_000_000;

fn sim(seed: u64) -> SimNet {
    let mut n = SimNet::builtin(
        SimLinkConfig {
            delay_ns: 2_000_000,
            bandwidth_bps: 100_000_000,
            seed,
            ..Default::default()
        },
        seed,
    );
    n.record = Some(Vec::new());
    n
}

const ON: [u8; 4] = 1i32.to_ne_bytes();

/// A listener on B:179 with TCP_MD5SIG, and a client on A that signs; the keys given.
/// Returns the client's connection (started) and the listener.
fn signed_pair(
    net: &mut SimNet,
    a_key: Option<&[u8]>,
    b_key: Option<&[u8]>,
    client_signs: bool,
) -> (plugtcp_host::conn_table::ConnId, usize) {
    if let Some(k) = b_key {
        net.b.md5_key_set(ADDR_A, None, k).unwrap();
    }
    if let Some(k) = a_key {
        net.a.md5_key_set(ADDR_B, None, k).unwrap();
    }
    let lid = net.b.listen((ADDR_B, 179).into(), 8).unwrap();
    net.b
        .listener_setsockopt(lid, IPPROTO_TCP, TCP_MD5SIG, &ON)
        .unwrap();
    let c = net.a.socket((ADDR_B, 179).into(), None).unwrap();
    if client_signs {
        net.a.setsockopt(c, IPPROTO_TCP, TCP_MD5SIG, &ON).unwrap();
    }
    net.a.start_connect(c).unwrap();
    (c, lid)
}

#[test]
fn signed_transfer_carries_a_right_digest_on_every_segment() {
    let mut net = sim(1);
    let key = b"bgp-peering-secret";
    let (c, lid) = signed_pair(&mut net, Some(key), Some(key), true);
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + 3) as u8).collect();
    let (mut s, mut sent, mut got) = (None, 0, Vec::new());
    let mut buf = vec![0u8; 65536];
    assert!(net.run_until(60 * SEC, |n| {
        s = s.or_else(|| n.b.accept(lid).ok());
        if n.a.state(c) == Some(TcpState::Established) && sent < data.len() {
            if let Ok(k) = n.a.send(c, &data[sent..]) {
                sent += k;
            }
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
    let s = s.unwrap();
    let mut on = [0u8; 4];
    net.b
        .getsockopt(s, IPPROTO_TCP, TCP_MD5SIG, &mut on)
        .unwrap();
    assert_eq!(on, ON, "the accepted connection signs");
    let record = net.record.take().unwrap();
    assert!(record.len() > 700);
    for p in &record {
        let (src, dst, tcp) = wire::tcp_segment(&p.bytes).unwrap();
        assert_eq!(
            wire::md5_signature_ok(src, dst, tcp, key),
            Some(true),
            "every segment, SYN and SYN-ACK included, is signed right"
        );
        // The packet still fits the link's MTU with the option.
        assert!(p.bytes.len() <= 1500);
    }
    assert_eq!(net.b.md5_stats().rcv_badsig, 0);
    assert!(net.b.md5_stats().rcv_goodsig > 300);
    assert_eq!(net.a.md5_stats().err_nosigopt, 0);
}

#[test]
fn wrong_key_and_missing_signature_are_dropped_and_counted() {
    // Wrong key: the listener drops the SYNs, answers nothing; the client keeps trying.
    let mut net = sim(2);
    let (c, _) = signed_pair(&mut net, Some(b"one key"), Some(b"another key"), true);
    net.run_until(5 * SEC, |_| false);
    assert_eq!(net.a.state(c), Some(TcpState::SynSent));
    assert!(net.b.md5_stats().rcv_badsig >= 2, "{:?}", net.b.md5_stats());
    assert_eq!(net.b.stats.out_rsts, 0, "no RST answers a bad signature");
    let from_b = net
        .record
        .take()
        .unwrap()
        .iter()
        .filter(|p| !p.a_to_b)
        .count();
    assert_eq!(from_b, 0, "B sent nothing");

    // No signature from a peer B has a key for: dropped too.
    let mut net = sim(3);
    let (c, _) = signed_pair(&mut net, None, Some(b"secret"), false);
    net.run_until(5 * SEC, |_| false);
    assert_eq!(net.a.state(c), Some(TcpState::SynSent));
    assert!(
        net.b.md5_stats().err_nosigopt >= 2,
        "{:?}",
        net.b.md5_stats()
    );
}

#[test]
fn listener_without_a_key_for_the_peer_takes_an_unsigned_handshake() {
    // tcp(4): "a non-signed segment will be accepted if an SADB entry does not exist
    // between hosts"; that connection is not protected.
    let mut net = sim(4);
    let (c, lid) = signed_pair(&mut net, None, None, false);
    let mut s = None;
    assert!(net.run_until(5 * SEC, |n| {
        s = s.or_else(|| n.b.accept(lid).ok());
        s.is_some() && n.a.state(c) == Some(TcpState::Established)
    }));
    let mut on = [0u8; 4];
    net.b
        .getsockopt(s.unwrap(), IPPROTO_TCP, TCP_MD5SIG, &mut on)
        .unwrap();
    assert_eq!(on, [0; 4], "not protected");
    for p in net.record.take().unwrap() {
        let (_, _, tcp) = wire::tcp_segment(&p.bytes).unwrap();
        assert!(wire::signature_offset(tcp).is_none());
    }
}

#[test]
fn linux_struct_sets_and_deletes_keys() {
    use plugtcp_host::tcpmd5::TCP_MD5SIG_LEN;
    let mut net = sim(5);
    let c = net.a.socket((ADDR_B, 179).into(), None).unwrap();
    let mut v = vec![0u8; TCP_MD5SIG_LEN];
    v[0..2].copy_from_slice(&2u16.to_ne_bytes()); // AF_INET
    let std::net::IpAddr::V4(b) = ADDR_B else {
        unreachable!()
    };
    v[4..8].copy_from_slice(&b.octets());
    v[130..132].copy_from_slice(&6u16.to_ne_bytes());
    v[136..142].copy_from_slice(b"secret");
    net.a.setsockopt(c, IPPROTO_TCP, TCP_MD5SIG, &v).unwrap();
    assert_eq!(net.a.md5_key_list(), vec![(ADDR_B, 32)]);
    assert_eq!(&*net.a.md5_key_for(ADDR_B).unwrap(), b"secret");
    // An empty key deletes; twice is ENOENT; a key over 80 bytes is EINVAL.
    v[130..132].copy_from_slice(&0u16.to_ne_bytes());
    net.a.setsockopt(c, IPPROTO_TCP, TCP_MD5SIG, &v).unwrap();
    assert!(net.a.md5_key_list().is_empty());
    assert_eq!(
        net.a.setsockopt(c, IPPROTO_TCP, TCP_MD5SIG, &v),
        Err(plugtcp_abi::Errno::ENOENT)
    );
    v[130..132].copy_from_slice(&81u16.to_ne_bytes());
    assert_eq!(
        net.a.setsockopt(c, IPPROTO_TCP, TCP_MD5SIG, &v),
        Err(plugtcp_abi::Errno::EINVAL)
    );
    // Signing with no key for the peer: nothing goes out (tcp(4)); connect says ENOENT.
    net.a.setsockopt(c, IPPROTO_TCP, TCP_MD5SIG, &ON).unwrap();
    assert_eq!(net.a.start_connect(c), Err(plugtcp_abi::Errno::ENOENT));
    let _ = ADDR_A;
}
