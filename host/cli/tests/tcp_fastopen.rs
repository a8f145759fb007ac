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
