//! `plugtcp demo`: two hosts in one process over the simulated link, a bulk transfer checked
//! by SHA-256, and a one-screen summary.

use std::net::SocketAddr;
use std::time::Instant;

use plugtcp_abi::TcpState;
use sha2::{Digest, Sha256};

use crate::builtins::BuiltinNet as _;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};

/// What to run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub bytes: u64,
    pub bandwidth_bps: u64,
    pub rtt_ns: u64,
    pub loss: f64,
    /// Bottleneck queue in bandwidth-delay products.
    pub queue_bdp: f64,
    pub seed: u64,
    pub stack: Option<String>,
    pub cc: Option<String>,
    pub pcap: Option<std::path::PathBuf>,
    /// Write the sender's siftr trace (one CSV line per ACK, see `siftr.rs`) here.
    pub trace: Option<std::path::PathBuf>,
    /// Give up after this much virtual time.
    pub deadline_ns: u64,
    /// Publish the sending host's metrics into the process's recorder (the Prometheus
    /// exporter `--metrics` installs) about every this much wall time while the transfer
    /// runs, and once at its end.
    pub publish_every: Option<std::time::Duration>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            bytes: 256 << 20,
            bandwidth_bps: 1_000_000_000,
            rtt_ns: 20_000_000,
            loss: 0.001,
            queue_bdp: 1.0,
            seed: 1,
            stack: None,
            cc: None,
            pcap: None,
            trace: None,
            deadline_ns: 600_000_000_000,
            publish_every: None,
        }
    }
}

/// The summary.
#[derive(Debug, serde::Serialize)]
pub struct DemoReport {
    pub bytes: u64,
    pub sha256_sent: String,
    pub sha256_received: String,
    pub intact: bool,
    /// Virtual time from connect to the last byte read.
    pub transfer_seconds: f64,
    pub goodput_mbps: f64,
    /// Wall-clock time the simulation took.
    pub wall_seconds: f64,
    pub packets: u64,
    pub retransmitted_segments: u64,
    pub link_drops_loss: u64,
    pub link_drops_queue: u64,
    pub final_cwnd: u32,
    pub final_ssthresh: u32,
    pub final_srtt_us: u32,
    pub stack: String,
    pub cc: String,
    /// The sending host's stack counters (FreeBSD tcpstat names).
    pub sender_counters: std::collections::BTreeMap<String, u64>,
    pub bandwidth_bps: u64,
    pub rtt_ms: f64,
    pub loss: f64,
    pub seed: u64,
}

/// Deterministic payload, generated in blocks so 256 MiB never sits in memory twice.
struct Source {
    x: u64,
}

impl Source {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let b = self.x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

pub fn run(opts: &DemoOptions, search_path: SearchPath) -> Result<DemoReport, String> {
    let mut cfg = SimLinkConfig::bdp_queue(opts.bandwidth_bps, opts.rtt_ns);
    cfg.queue_limit_bytes = ((cfg.queue_limit_bytes as f64) * opts.queue_bdp) as usize;
    cfg.loss = opts.loss;
    cfg.seed = opts.seed;
    let mut net = SimNet::with_plugins(cfg, opts.seed, search_path);
    if let Some(p) = &opts.pcap {
        net.capture(p)
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    for h in [&mut net.a, &mut net.b] {
        if let Some(s) = &opts.stack {
            h.sysctl_set("net.inet.tcp.functions_default", s)
                .map_err(|e| format!("stack {s}: {e}"))?;
        }
        if let Some(c) = &opts.cc {
            h.sysctl_set("net.inet.tcp.cc.algorithm", c)
                .map_err(|e| format!("cc {c}: {e}"))?;
        }
        // Let auto-sizing grow the buffers as far as the path needs (twice its
        // bandwidth-delay product), past FreeBSD's 2 MiB default ceiling on fast paths.
        let bdp = (opts.bandwidth_bps as u128 * opts.rtt_ns as u128 / 8 / 1_000_000_000) as u64;
        let max = (2 * bdp).clamp(2 << 20, 256 << 20).to_string();
        h.sysctl_set("net.inet.tcp.recvbuf_max", &max)
            .map_err(|e| e.to_string())?;
        h.sysctl_set("net.inet.tcp.sendbuf_max", &max)
            .map_err(|e| e.to_string())?;
    }
    let server: SocketAddr = (ADDR_B, 5001).into();
    let lid = net
        .b
        .listen(server, 16)
        .map_err(|e| format!("listen: {e}"))?;
    let c = net
        .a
        .connect(server, None)
        .map_err(|e| format!("connect: {e}"))?;
    if let Some(p) = &opts.trace {
        // Set before the SYN-ACK arrives: the trace starts with the handshake's ACK.
        let path = p
            .to_str()
            .ok_or_else(|| format!("{}: not UTF-8", p.display()))?;
        net.a
            .setsockopt(
                c,
                plugtcp_abi::sockopt::IPPROTO_TCP,
                plugtcp_abi::sockopt::TCP_SIFTR,
                path.as_bytes(),
            )
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let stack = net
        .a
        .conns
        .get_by_id(c)
        .and_then(|c| c.stack().map(|s| s.name.clone()))
        .unwrap_or_default();
    let cc = net
        .a
        .conns
        .get_by_id(c)
        .and_then(|c| c.cc().map(|m| m.name.clone()))
        .unwrap_or_default();

    let wall = Instant::now();
    let mut src = Source { x: opts.seed | 1 };
    let mut chunk = vec![0u8; 256 * 1024];
    let (mut chunk_pos, mut chunk_len) = (0usize, 0usize);
    let mut sent = 0u64;
    let mut tx_hash = Sha256::new();
    let mut rx_hash = Sha256::new();
    let mut got = 0u64;
    let mut accepted = None;
    let mut closed = false;
    let mut eof = false;
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut last = (0u32, 0u32, 0u32);
    let mut published = Instant::now();
    let mut steps = 0u32;
    let done = net.run_until(opts.deadline_ns, |n| {
        // Live watching: a clock read every 1024 steps, a publish about once a period.
        steps = steps.wrapping_add(1);
        if let Some(every) = opts.publish_every {
            if steps.is_multiple_of(1024) && published.elapsed() >= every {
                n.a.publish_metrics();
                published = Instant::now();
            }
        }
        if n.a.state(c) == Some(TcpState::Established) {
            while sent < opts.bytes {
                if chunk_pos == chunk_len {
                    chunk_len = chunk.len().min((opts.bytes - sent) as usize);
                    src.fill(&mut chunk[..chunk_len]);
                    tx_hash.update(&chunk[..chunk_len]);
                    chunk_pos = 0;
                }
                match n.a.send(c, &chunk[chunk_pos..chunk_len]) {
                    Ok(k) => {
                        chunk_pos += k;
                        sent += k as u64;
                    }
                    Err(_) => break,
                }
            }
            if sent == opts.bytes && !closed {
                if let Some(tp) = n.a.tcpcb(c) {
                    last = (tp.snd_cwnd, tp.snd_ssthresh, tp.t_srtt);
                }
                n.a.close(c);
                closed = true;
            }
        }
        if accepted.is_none() {
            accepted = n.b.accept(lid).ok();
        }
        if let Some(s) = accepted {
            loop {
                match n.b.recv(s, &mut rbuf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(k) => {
                        rx_hash.update(&rbuf[..k]);
                        got += k as u64;
                    }
                    Err(_) => break,
                }
            }
        }
        eof
    });
    if opts.publish_every.is_some() {
        net.a.publish_metrics();
    }
    let transfer_seconds = net.now as f64 / 1e9;
    net.finish_capture().map_err(|e| e.to_string())?;
    if !done {
        return Err(format!(
            "transfer stalled at {got} of {} bytes after {transfer_seconds:.1} s of simulated time",
            opts.bytes
        ));
    }
    let tx = format!("{:x}", tx_hash.finalize());
    let rx = format!("{:x}", rx_hash.finalize());
    let rexmit = n_rexmit(&net);
    let sender_counters = counters(&net.a);
    let report = DemoReport {
        bytes: got,
        intact: tx == rx && got == opts.bytes,
        sha256_sent: tx,
        sha256_received: rx,
        transfer_seconds,
        goodput_mbps: got as f64 * 8.0 / transfer_seconds / 1e6,
        wall_seconds: wall.elapsed().as_secs_f64(),
        packets: net.packets,
        retransmitted_segments: rexmit,
        link_drops_loss: net.link.a_to_b.stats().dropped_loss
            + net.link.b_to_a.stats().dropped_loss,
        link_drops_queue: net.link.a_to_b.stats().dropped_queue
            + net.link.b_to_a.stats().dropped_queue,
        final_cwnd: last.0,
        final_ssthresh: last.1,
        final_srtt_us: last.2,
        stack,
        cc,
        sender_counters,
        bandwidth_bps: opts.bandwidth_bps,
        rtt_ms: opts.rtt_ns as f64 / 1e6,
        loss: opts.loss,
        seed: opts.seed,
    };
    if let Some(p) = &opts.trace {
        // The receiver has every byte; the sender's trace goes on to the ACK of the last
        // one and of its FIN (after the summary's numbers were taken).
        net.run_until(net.now + 10_000_000_000, |n| {
            n.a.tcpcb(c).is_none_or(|tp| tp.snd_una == tp.snd_max)
        });
        // A connection already freed wrote its trace out then.
        if net.a.conns.is_live(c) {
            net.a
                .siftr_flush(c)
                .map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    Ok(report)
}

/// Every function block counter of a host, by name.
fn counters(h: &plugtcp_host::Host) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for b in h.registry.snapshot().blocks.iter() {
        for (i, n) in b.counter_names.iter().enumerate() {
            *m.entry(n.clone()).or_default() +=
                b.counters[i].load(std::sync::atomic::Ordering::Relaxed) as u64;
        }
    }
    m
}

/// Retransmitted segments, from the stacks' counters of both hosts.
fn n_rexmit(net: &SimNet) -> u64 {
    net.a.block_counter("sndrexmitpack") + net.b.block_counter("sndrexmitpack")
}

impl DemoReport {
    /// The one-screen summary.
    pub fn render(&self) -> String {
        format!(
            "plugtcp demo: {} MiB from A to B over a simulated {} Mbit/s, {:.0} ms RTT link, {}% loss (seed {})\n\
             stack {} / cc {}\n\
             transfer      {:.2} s simulated ({:.2} s wall), {} packets\n\
             goodput       {:.1} Mbit/s\n\
             retransmitted {} segments (link dropped {} to loss, {} at the queue)\n\
             final cwnd    {} bytes, ssthresh {}, srtt {:.2} ms\n\
             sha256        {}\n\
             verdict       {}\n",
            self.bytes >> 20,
            self.bandwidth_bps / 1_000_000,
            self.rtt_ms,
            self.loss * 100.0,
            self.seed,
            self.stack,
            self.cc,
            self.transfer_seconds,
            self.wall_seconds,
            self.packets,
            self.goodput_mbps,
            self.retransmitted_segments,
            self.link_drops_loss,
            self.link_drops_queue,
            self.final_cwnd,
            if self.final_ssthresh >= plugtcp_abi::tcpcb::TCP_INITIAL_SSTHRESH { "unset".to_string() } else { self.final_ssthresh.to_string() },
            self.final_srtt_us as f64 / 1000.0,
            self.sha256_received,
            if self.intact { "OK: every byte delivered intact" } else { "FAILED: digests differ" },
        )
    }
}
