//! `plugtcp bench conns`: many concurrent connections between two hosts: handshakes per
//! second (in a fresh process, and again once those were reset), resident memory per idle
//! established connection, and whether bulk throughput suffers with them all open.

use plugtcp_host::conn_table::ConnId;
use std::net::SocketAddr;
use std::time::Instant;

use plugtcp_abi::TcpState;

use crate::bench::bulk;
use crate::builtins::BuiltinNet as _;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};

#[derive(Debug, serde::Serialize)]
pub struct ConnsReport {
    pub connections: usize,
    /// Opening them on a host that has run a while (the same number opened and reset
    /// before): the steady state of a server.
    pub handshake_seconds: f64,
    pub handshakes_per_s: f64,
    /// Opening them in a fresh process, where every connection's memory is touched for the
    /// first time (page faults are about a quarter of that time).
    pub cold_handshake_seconds: f64,
    pub cold_handshakes_per_s: f64,
    /// Resident memory the idle connections added, per connection endpoint (each TCP
    /// connection has one on each host, both in this process).
    pub resident_bytes_per_idle_endpoint: f64,
    pub bulk_bytes: u64,
    pub bulk_gbit_per_s_without: f64,
    pub bulk_gbit_per_s_with_idle: f64,
    /// with / without.
    pub bulk_ratio: f64,
}

/// Resident set size of this process in bytes (Linux /proc/self/statm).
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Ports B listens on: each remote port gives A its own ephemeral port range (55,536 ports).
const SERVER_PORTS: u16 = 4;
/// Connections opened at a time (each batch completes before the next: the SYN cache
/// holds 15,360 entries).
const BATCH: usize = 8192;

/// Opens `n` connections from A to B's listeners, a batch at a time; returns both sides'
/// slots and the seconds it took.
fn open_all(
    net: &mut SimNet,
    lids: &[usize],
    n: usize,
) -> Result<(Vec<ConnId>, Vec<ConnId>, f64), String> {
    let mut a_slots = Vec::with_capacity(n);
    let mut b_slots = Vec::with_capacity(n);
    let t0 = Instant::now();
    let mut opened = 0;
    while opened < n {
        let batch = BATCH.min(n - opened);
        for i in 0..batch {
            let port = 5001 + ((opened + i) % SERVER_PORTS as usize) as u16;
            let c = net
                .a
                .connect((ADDR_B, port).into(), None)
                .map_err(|e| format!("connect #{}: {e}", opened + i))?;
            a_slots.push(c);
        }
        let deadline = net.now + 60_000_000_000;
        let want = b_slots.len() + batch;
        let ok = net.run_until(deadline, |net| {
            for &l in lids {
                while let Ok(s) = net.b.accept(l) {
                    b_slots.push(s);
                }
            }
            // B accepts a connection only after A's final ACK, so A's side is established
            // (checked once for all, after the clock stops).
            b_slots.len() >= want
        });
        if !ok {
            return Err(format!(
                "only {} of {} connections established",
                b_slots.len(),
                opened + batch
            ));
        }
        opened += batch;
    }
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(c) = a_slots
        .iter()
        .find(|&&c| net.a.state(c) != Some(TcpState::Established))
    {
        return Err(format!("connection {c} is not established"));
    }
    Ok((a_slots, b_slots, seconds))
}

pub fn run(n: usize, bulk_bytes: u64) -> Result<ConnsReport, String> {
    // The bulk baseline runs on a network of its own, kept alive beside the one with the
    // idle connections; the two are measured alternately (medians of three) so that warm-up
    // and machine noise hit both.
    let mut fresh = SimNet::builtin(SimLinkConfig::default(), 2);
    let mut net = SimNet::builtin(SimLinkConfig::default(), 3);
    // Sized up front, as a server sets its socket limits.
    net.a.reserve(n);
    net.b.reserve(n);
    let mut lids = Vec::new();
    for p in 0..SERVER_PORTS {
        let addr: SocketAddr = (ADDR_B, 5001 + p).into();
        lids.push(net.b.listen(addr, n).map_err(|e| format!("listen: {e}"))?);
    }
    let rss0 = rss_bytes().unwrap_or(0);
    // Cold: a fresh process, every connection's memory touched for the first time.
    let (a_slots, b_slots, cold_seconds) = open_all(&mut net, &lids, n)?;
    // Let delayed ACKs and the like settle: idle means no timers and empty buffers.
    let settle = net.now + 1_000_000_000;
    net.run_until(settle, |_| false);
    let rss1 = rss_bytes().unwrap_or(0);
    let per_endpoint = rss1.saturating_sub(rss0) as f64 / (2 * n) as f64;
    // Warm: all reset, then the same again (a server that has run a while).
    for &c in &a_slots {
        net.a.abort(c);
    }
    net.run_until(net.now + 1_000_000_000, |_| false);
    for &s in &b_slots {
        net.b.close(s);
    }
    let (_, _, handshake_seconds) = open_all(&mut net, &lids, n)?;

    let (mut with_s, mut without_s) = (Vec::new(), Vec::new());
    for round in 0..3u16 {
        without_s.push(bulk::transfer(&mut fresh, 6000 + round, bulk_bytes)?.gbit_per_s);
        with_s.push(bulk::transfer(&mut net, 6000 + round, bulk_bytes)?.gbit_per_s);
    }
    let (with, without) = (super::median(with_s), super::median(without_s));
    Ok(ConnsReport {
        connections: n,
        handshake_seconds,
        handshakes_per_s: n as f64 / handshake_seconds,
        cold_handshake_seconds: cold_seconds,
        cold_handshakes_per_s: n as f64 / cold_seconds,
        resident_bytes_per_idle_endpoint: per_endpoint,
        bulk_bytes,
        bulk_gbit_per_s_without: without,
        bulk_gbit_per_s_with_idle: with,
        bulk_ratio: with / without,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark runs end to end at a small scale: both rounds establish every
    /// connection, and the bulk transfers beside them deliver intact bytes.
    #[test]
    fn small_run_completes() {
        let r = run(3000, 1 << 20).unwrap();
        assert_eq!(r.connections, 3000);
        assert!(r.handshakes_per_s > 0.0 && r.cold_handshakes_per_s > 0.0);
        assert!(r.bulk_ratio.is_finite() && r.bulk_ratio > 0.0);
    }
}
