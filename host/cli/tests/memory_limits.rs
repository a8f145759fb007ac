//! Memory under load (issue 14): a host with `kern.ipc.maxmbufmem` = 16 MiB gets 300
//! connections whose peers send and never have their data read, and a flood of
//! out-of-order segments on every one of them, while one established transfer goes on.
//! Socket-buffer storage never passes the limit (refusals are counted, the peers send
//! again), the process's RSS stays within the limit's reach, and once the application
//! reads and closes half of the idle connections the transfer completes, its SHA-256
//! intact. Its own test binary: RSS is the whole process's.

use plugtcp_abi::segment::{th, SegOut};
use plugtcp_cli::builtins::BuiltinNet as _;
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::wire;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};
use sha2::{Digest, Sha256};

const SEC: u64 = 1_000_000_000;
const BUDGET: u64 = 16 << 20;
const IDLE: usize = 300;

/// The process's resident set, bytes (Linux /proc/self/status).
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Out-of-order segments for the connection `a -> b` (B's side `bid`): 1460-byte
/// segments spread over B's window beyond a one-segment hole at rcv_nxt.
fn ooo_flood(net: &mut SimNet, a: ConnId, bid: ConnId) {
    let (Some(atp), Some(btp)) = (net.a.tcpcb(a).cloned(), net.b.tcpcb(bid).cloned()) else {
        return;
    };
    let (src, dst) = (net.a.local_addr(a).unwrap(), net.a.peer_addr(a).unwrap());
    let window = btp.rcv_adv.wrapping_sub(btp.rcv_nxt).max(65535);
    let payload = [0x5au8; 1460];
    let mut buf = vec![0u8; 2048];
    for k in 1..(window / 1460) {
        let seg = SegOut {
            seq: btp.rcv_nxt.wrapping_add(k * 1460),
            ack: atp.rcv_nxt,
            flags: th::ACK,
            win: 65535,
            data_len: 1460,
            ..Default::default()
        };
        let n = wire::build(&mut buf, src, dst, &seg, &[&payload], 64).unwrap();
        net.b.input(&buf[..n]);
    }
}

#[test]
fn buffer_memory_stays_under_maxmbufmem_while_a_transfer_completes() {
    let mut net = SimNet::builtin(
        SimLinkConfig {
            delay_ns: 2_000_000,
            bandwidth_bps: 1_000_000_000,
            seed: 5,
            ..Default::default()
        },
        5,
    );
    net.b
        .sysctl_set("kern.ipc.maxmbufmem", &BUDGET.to_string())
        .unwrap();
    let idle_l = net.b.listen((ADDR_B, 80).into(), 1024).unwrap();
    let bulk_l = net.b.listen((ADDR_B, 81).into(), 4).unwrap();
    let idle_a: Vec<ConnId> = (0..IDLE)
        .map(|_| net.a.connect((ADDR_B, 80).into(), None).unwrap())
        .collect();
    let bulk_a = net.a.connect((ADDR_B, 81).into(), None).unwrap();
    let mut idle_b = Vec::new();
    let mut bulk_b = None;
    assert!(net.run_until(10 * SEC, |n| {
        while let Ok(id) = n.b.accept(idle_l) {
            idle_b.push(id);
        }
        bulk_b = bulk_b.or_else(|| n.b.accept(bulk_l).ok());
        idle_b.len() == IDLE && bulk_b.is_some()
    }));
    let bulk_b = bulk_b.unwrap();
    // Pair each idle connection with B's side by the client's port.
    let port_of = |net: &SimNet, id: ConnId| net.b.peer_addr(id).unwrap().port();
    let mut pairs: Vec<(ConnId, ConnId)> = idle_a
        .iter()
        .map(|&a| {
            let p = net.a.local_addr(a).unwrap().port();
            let b = *idle_b.iter().find(|&&b| port_of(&net, b) == p).unwrap();
            (a, b)
        })
        .collect();
    let baseline = rss();

    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i * 13 + i / 4099) as u8).collect();
    let junk = vec![0xa5u8; 256 << 10];
    let (mut sent, mut got) = (0, Sha256::new());
    let mut received = 0usize;
    let mut buf = vec![0u8; 65536];
    let mut max_rss = baseline;
    let mut max_bytes = 0;
    let mut flooded = false;
    let mut freed = false;
    let deadline = net.now + 600 * SEC;
    let done = net.run_until(deadline, |n| {
        // Every idle client keeps sending; nobody reads on B (until half are freed).
        for &(a, _) in &pairs {
            let _ = n.a.send(a, &junk);
        }
        if sent < data.len() {
            if let Ok(k) = n.a.send(bulk_a, &data[sent..]) {
                sent += k;
            }
        }
        while let Ok(k) = n.b.recv(bulk_b, &mut buf) {
            if k == 0 {
                break;
            }
            got.update(&buf[..k]);
            received += k;
        }
        let (bytes, refused) = n.b.buffer_memory();
        max_bytes = max_bytes.max(bytes);
        max_rss = max_rss.max(rss());
        if !flooded && n.now > SEC / 5 {
            flooded = true;
            for &(a, b) in &pairs {
                ooo_flood(n, a, b);
            }
        }
        // Under pressure for a while: the application reads and closes half of them.
        if flooded && !freed && refused > 0 && n.now > 5 * SEC {
            freed = true;
            for &(a, b) in pairs.iter().take(IDLE / 2) {
                while matches!(n.b.recv(b, &mut buf), Ok(k) if k > 0) {}
                n.b.abort(b);
                n.a.abort(a);
            }
            pairs.drain(..IDLE / 2);
        }
        received == data.len()
    });
    let (bytes, refused) = net.b.buffer_memory();
    eprintln!(
        "buffer storage max {} KiB of {} KiB, refused {refused} chunks; RSS {} -> max {} KiB; \
         bulk {} of {} bytes",
        max_bytes / 1024,
        BUDGET / 1024,
        baseline / 1024,
        max_rss / 1024,
        received,
        data.len()
    );
    assert!(refused > 0, "the load reached the limit");
    assert!(
        max_bytes <= BUDGET && bytes <= BUDGET,
        "storage {max_bytes} > {BUDGET}"
    );
    assert!(
        done,
        "the transfer completed ({received} of {} bytes)",
        data.len()
    );
    assert_eq!(got.finalize().to_vec(), Sha256::digest(&data).to_vec());
    // Beside the limited storage: 300 connections' state, A's unlimited buffers for the
    // same data, the link's queues. Without the limit B alone would hold 300 windows of
    // up to 2 MiB each.
    let grown = max_rss.saturating_sub(baseline);
    assert!(grown < BUDGET + (96 << 20), "RSS grew {} KiB", grown / 1024);
}
