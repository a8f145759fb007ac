//! TCP Fast Open (RFC 7413) between two hosts on the simulated link: requests that ride in
//! the SYN reach the server exactly once, whatever the link loses (the SYN, the SYN-ACK,
//! the data after them), and the answers come back; the segments' exact form is in
//! tests/packetdrill/fastopen/.

use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_FASTOPEN};
use plugtcp_abi::TcpState;
use plugtcp_cli::builtins::BuiltinNet as _;
use plugtcp_host::usrreq::Shutdown;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};
use sha2::{Digest, Sha256};

const SEC: u64 = 1_000_000_000;

/// One request: the client connects with the request as its first data (TFO puts what fits
/// in the SYN), sends the rest, half-closes; the server reads to the end and answers with
/// the SHA-256 of what it read. Returns the answer, or None if the run timed out.
fn request(net: &mut SimNet, lid: usize, req: &[u8]) -> Option<Vec<u8>> {
    let c = net.a.open(false).unwrap();
    let mut sent = net
        .a
        .connect_with_data(c, (ADDR_B, 80).into(), None, req, true, false)
        .unwrap();
    let (mut s, mut got, mut answered, mut shut) = (None, Vec::new(), false, false);
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = net.now + 120 * SEC;
    let done = net.run_until(deadline, |n| {
        if sent < req.len() {
            if let Ok(k) = n.a.send(c, &req[sent..]) {
                sent += k;
            }
        }
        // (A shutdown in SYN_SENT would drop the connection, as FreeBSD's does.)
        let synced = !matches!(n.a.state(c), Some(TcpState::SynSent) | None);
        if sent == req.len() && !shut && synced {
            shut = n.a.shutdown(c, Shutdown::Write).is_ok();
        }
        s = s.or_else(|| n.b.accept(lid).ok());
        if let Some(s) = s {
            while let Ok(k) = n.b.recv(s, &mut buf) {
                if k == 0 {
                    if !answered {
                        answered = n.b.send(s, &Sha256::digest(&got)).is_ok();
                        n.b.close(s);
                    }
                    break;
                }
                got.extend_from_slice(&buf[..k]);
            }
        }
        while let Ok(k) = n.a.recv(c, &mut buf) {
            if k == 0 {
                return true;
            }
            answer.extend_from_slice(&buf[..k]);
        }
        false
    });
    net.a.close(c);
    done.then_some(answer)
}

#[test]
fn syn_data_reaches_the_server_exactly_once_over_a_lossy_link() {
    let mut net = SimNet::builtin(
        SimLinkConfig {
            delay_ns: 10_000_000,
            bandwidth_bps: 100_000_000,
            loss: 0.15,
            seed: 7,
            ..Default::default()
        },
        7,
    );
    for (k, v) in [
        ("net.inet.tcp.fastopen.client_enable", "1"),
        // A lost TFO SYN disables the path; here the path is always tried again.
        ("net.inet.tcp.fastopen.path_disable_time", "0"),
    ] {
        net.a.sysctl_set(k, v).unwrap();
    }
    net.b
        .sysctl_set("net.inet.tcp.fastopen.server_enable", "1")
        .unwrap();
    let lid = net.b.listen((ADDR_B, 80).into(), 64).unwrap();
    net.b
        .listener_setsockopt(lid, IPPROTO_TCP, TCP_FASTOPEN, &64i32.to_ne_bytes())
        .unwrap();
    for round in 0..40u32 {
        // Some requests fit in the SYN, some do not.
        let len = 200 + (round as usize * 397) % 4000;
        let req: Vec<u8> = (0..len)
            .map(|i| (i as u32 * 31 + round * 7 + i as u32 / 253) as u8)
            .collect();
        let answer = request(&mut net, lid, &req)
            .unwrap_or_else(|| panic!("request {round} ({len} bytes) timed out"));
        assert_eq!(
            answer,
            Sha256::digest(&req).to_vec(),
            "request {round} ({len} bytes) arrived other than exactly once"
        );
    }
    let (server, client) = (net.b.fastopen_stats(), net.a.fastopen_stats());
    eprintln!("server {server:?}\nclient {client:?}");
    // A lost TFO SYN disables the path; enabled again, it starts from a cookie request.
    assert!(server.passive_fail >= 1, "{server:?}");
    assert!(
        server.passive >= 10,
        "requests that rode in the SYN: {server:?}"
    );
    assert!(client.paths_disabled >= 1, "lost TFO SYNs seen: {client:?}");
    assert!(client.active >= server.passive, "{client:?} {server:?}");
}

/// A client's connection to B:80, TCP_FASTOPEN set with `opt` (FreeBSD's int or struct),
/// sending `req` with sendto(2) semantics; runs until the server has read it all and
/// returns what it read.
fn psk_request(net: &mut SimNet, lid: usize, opt: &[u8], req: &[u8]) -> Vec<u8> {
    let c = net.a.open(false).unwrap();
    net.a.setsockopt(c, IPPROTO_TCP, TCP_FASTOPEN, opt).unwrap();
    let sent = net
        .a
        .connect_with_data(c, (ADDR_B, 80).into(), None, req, false, false)
        .unwrap();
    assert_eq!(sent, req.len());
    let (mut s, mut got) = (None, Vec::new());
    let mut buf = [0u8; 4096];
    let deadline = net.now + 30 * SEC;
    assert!(net.run_until(deadline, |n| {
        s = s.or_else(|| n.b.accept(lid).ok());
        if let Some(s) = s {
            while let Ok(k) = n.b.recv(s, &mut buf) {
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
            }
        }
        got.len() >= req.len()
    }));
    net.a.abort(c);
    if let Some(s) = s {
        net.b.abort(s);
    }
    got
}

/// Pre-shared-key mode end to end (tcp(4)): a FreeBSD client that gave TCP_FASTOPEN the
/// struct with the PSK sends SipHash24(psk, cookie) and gets its SYN data taken; a client
/// without the PSK gets the cookie but never has its SYN data taken.
#[test]
fn psk_mode_takes_syn_data_only_from_clients_with_the_psk() {
    let mut net = SimNet::builtin(
        SimLinkConfig {
            delay_ns: 5_000_000,
            seed: 3,
            ..Default::default()
        },
        3,
    );
    let psk: [u8; 16] = std::array::from_fn(|i| 0x40 + i as u8);
    let psk_hex: String = psk.iter().map(|b| format!("{b:02x}")).collect();
    net.a
        .sysctl_set("net.inet.tcp.fastopen.client_enable", "1")
        .unwrap();
    for (k, v) in [
        ("net.inet.tcp.fastopen.server_enable", "1"),
        ("net.inet.tcp.fastopen.psk_enable", "1"),
        ("net.inet.tcp.fastopen.setpsk", psk_hex.as_str()),
    ] {
        net.b.sysctl_set(k, v).unwrap();
    }
    assert_eq!(
        net.b
            .sysctl
            .get("net.inet.tcp.fastopen.numpsks")
            .unwrap()
            .to_string(),
        "1"
    );
    assert_eq!(
        net.b.sysctl.get("net.inet.tcp.fastopen.setpsk"),
        Err(plugtcp_abi::Errno::EINVAL),
        "write-only"
    );
    let lid = net.b.listen((ADDR_B, 80).into(), 16).unwrap();
    net.b
        .listener_setsockopt(lid, IPPROTO_TCP, TCP_FASTOPEN, &8i32.to_ne_bytes())
        .unwrap();
    let mut with_psk = 1i32.to_ne_bytes().to_vec();
    with_psk.extend_from_slice(&psk);
    let plain = 1i32.to_ne_bytes();
    let req = b"GET / HTTP/1.0\r\n\r\n";
    for (round, opt) in [&with_psk[..], &with_psk[..], &plain[..], &plain[..]]
        .into_iter()
        .enumerate()
    {
        let before = net.b.fastopen_stats();
        assert_eq!(psk_request(&mut net, lid, opt, req), req.to_vec());
        let after = net.b.fastopen_stats();
        let opened_with_data = after.passive - before.passive;
        // The first connection asks for the cookie; then only the PSK holder's SYN data
        // is taken.
        assert_eq!(
            opened_with_data,
            u64::from(round == 1),
            "round {round}: {after:?}"
        );
    }
    assert!(net
        .a
        .sysctl
        .get("net.inet.tcp.fastopen.ccache_list")
        .unwrap()
        .to_string()
        .contains(&ADDR_B.to_string()));
}
