//! `plugtcp bench stack-switch`: what one TCP_FUNCTION_BLK switch on an established
//! connection with 1 MiB in flight costs, and whether the bytes survive it.
//!
//! A bulk transfer runs from host A to host B over the simulated link (1 Gbit/s, 20 ms RTT,
//! a one-BDP queue: more than 1 MiB fits in flight). Once 1 MiB or more is unacknowledged,
//! the sender's connection is switched back and forth between two blocks, a few virtual
//! milliseconds apart, each switch timed on the wall clock (the make-before-break path:
//! registry lookup, handoff_ok, timers stopped, the new stack's init in switch mode, the
//! old one's fini). The transfer then runs to its end, and the receiver's digest of the
//! stream must match the sender's.

use std::time::Instant;

use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_FUNCTION_BLK};
use plugtcp_abi::stack::TcpFunctionBlockRef;
use plugtcp_abi::TcpState;

use crate::builtins::BuiltinNet as _;
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::registry::{Origin, PluginInfo};
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};

/// What to run.
#[derive(Clone, Debug)]
pub struct StackSwitchConfig {
    /// The two blocks to alternate between (the connection starts on the first).
    pub blocks: [String; 2],
    /// Timed switches (each one a sample).
    pub switches: usize,
    /// Bytes of the transfer.
    pub bytes: u64,
    /// Least unacknowledged data at each switch.
    pub in_flight: u64,
    pub seed: u64,
}

impl Default for StackSwitchConfig {
    fn default() -> Self {
        StackSwitchConfig {
            blocks: ["base".into(), "rack".into()],
            switches: 21,
            bytes: 64 << 20,
            in_flight: 1 << 20,
            seed: 7,
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct StackSwitchReport {
    pub blocks: [String; 2],
    /// Median cost of one switch (µs), with the extremes and every sample.
    pub us_per_switch: f64,
    pub min_us: f64,
    pub max_us: f64,
    pub samples_us: Vec<f64>,
    /// Least and most unacknowledged bytes at a switch.
    pub min_in_flight: u64,
    pub max_in_flight: u64,
    /// The transfer after the switches completed and the receiver's digest (FNV-1a 64 of
    /// the stream) matched the sender's.
    pub bytes: u64,
    pub bytes_received: u64,
    pub digest_sent: String,
    pub digest_received: String,
    pub intact: bool,
    /// Virtual time of the whole transfer (ms).
    pub transfer_ms: f64,
    pub link: String,
}

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// FNV-1a 64, fed in pieces.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ x as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// One bulk transfer from A to B, pumped between simulation steps.
struct Transfer {
    lid: usize,
    c: ConnId,
    s: Option<ConnId>,
    total: u64,
    sent: u64,
    received: u64,
    pat: Vec<u8>,
    tx: Fnv,
    rx: Fnv,
    rbuf: Vec<u8>,
}

impl Transfer {
    fn pump(&mut self, n: &mut SimNet) {
        if n.a.state(self.c) == Some(TcpState::Established) {
            while self.sent < self.total {
                let off = (self.sent % self.pat.len() as u64) as usize;
                let len = (self.pat.len() - off).min((self.total - self.sent) as usize);
                match n.a.send(self.c, &self.pat[off..off + len]) {
                    Ok(k) if k > 0 => {
                        self.tx.update(&self.pat[off..off + k]);
                        self.sent += k as u64;
                    }
                    _ => break,
                }
            }
        }
        if self.s.is_none() {
            self.s = n.b.accept(self.lid).ok();
        }
        if let Some(s) = self.s {
            while let Ok(k) = n.b.recv(s, &mut self.rbuf) {
                if k == 0 {
                    break;
                }
                self.rx.update(&self.rbuf[..k]);
                self.received += k as u64;
            }
        }
    }

    fn run_until(
        &mut self,
        net: &mut SimNet,
        until: u64,
        mut done: impl FnMut(&Self, &SimNet) -> bool,
    ) -> bool {
        net.run_until(until, |n| {
            self.pump(n);
            done(self, n)
        })
    }
}

fn in_flight(net: &SimNet, c: ConnId) -> u64 {
    net.a
        .tcpcb(c)
        .map_or(0, |tp| tp.snd_max.wrapping_sub(tp.snd_una) as u64)
}

/// Runs the benchmark on two hosts with the built-in blocks, those found on `search_path`,
/// and `extra` (registered on the sender; tests use it for blocks not built in).
pub fn run(
    cfg: &StackSwitchConfig,
    search_path: &SearchPath,
    extra: &[TcpFunctionBlockRef],
) -> Result<StackSwitchReport, String> {
    let (bw, rtt) = (1_000_000_000, 20 * MS);
    let mut net = SimNet::with_plugins(
        SimLinkConfig::bdp_queue(bw, rtt),
        cfg.seed,
        search_path.clone(),
    );
    for b in extra {
        net.a
            .registry
            .register_block(
                *b,
                PluginInfo {
                    origin: Origin::Builtin,
                    version: "bench".into(),
                },
            )
            .map_err(|e| format!("registering {}: {e}", b.name()))?;
    }
    {
        let snap = net.a.registry.snapshot();
        for name in &cfg.blocks {
            if snap.block(name).is_err() {
                let have: Vec<&str> = snap.blocks.iter().map(|b| b.name.as_str()).collect();
                return Err(format!(
                    "no function block `{name}` is registered (registered: {}); pass \
                     --blocks A,B with two of them (a block can be loaded from the plugin \
                     directory)",
                    have.join(", ")
                ));
            }
        }
        if snap.block(&cfg.blocks[0]).ok().map(|b| b.id)
            == snap.block(&cfg.blocks[1]).ok().map(|b| b.id)
        {
            return Err(format!(
                "`{}` and `{}` are the same block: switching would be a no-op",
                cfg.blocks[0], cfg.blocks[1]
            ));
        }
    }
    let buf = (8u64 << 20).to_string();
    for h in [&mut net.a, &mut net.b] {
        for k in ["sendspace", "recvspace", "sendbuf_max", "recvbuf_max"] {
            h.sysctl_set(&format!("net.inet.tcp.{k}"), &buf)
                .map_err(|e| format!("net.inet.tcp.{k}: {e}"))?;
        }
    }
    let server = (ADDR_B, 5001).into();
    let lid = net
        .b
        .listen(server, 8)
        .map_err(|e| format!("listen: {e}"))?;
    let c = net
        .a
        .socket(server, None)
        .map_err(|e| format!("socket: {e}"))?;
    let name = |i: usize| cfg.blocks[i % 2].as_bytes();
    net.a
        .setsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, name(0))
        .map_err(|e| format!("TCP_FUNCTION_BLK {}: {e}", cfg.blocks[0]))?;
    net.a
        .start_connect(c)
        .map_err(|e| format!("connect: {e}"))?;
    let mut t = Transfer {
        lid,
        c,
        s: None,
        total: cfg.bytes,
        sent: 0,
        received: 0,
        pat: super::pattern((1 << 20) + 4099, cfg.seed),
        tx: Fnv::new(),
        rx: Fnv::new(),
        rbuf: vec![0; 256 * 1024],
    };
    let want = cfg.in_flight;
    let deadline = 60 * SEC;
    if !t.run_until(&mut net, deadline, |_, n| in_flight(n, c) >= want) {
        return Err(format!(
            "never had {want} bytes in flight on `{}` (transfer at {} of {} bytes)",
            cfg.blocks[0],
            t.received,
            t.bytes_total()
        ));
    }
    let mut samples_us = Vec::new();
    let (mut min_if, mut max_if) = (u64::MAX, 0);
    for i in 1..=cfg.switches {
        let fl = in_flight(&net, c);
        min_if = min_if.min(fl);
        max_if = max_if.max(fl);
        let start = Instant::now();
        let r = net.a.setsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, name(i));
        let took = start.elapsed();
        r.map_err(|e| format!("switch {i} to `{}`: {e}", cfg.blocks[i % 2]))?;
        samples_us.push(took.as_nanos() as f64 / 1e3);
        // A few virtual milliseconds on the new block, then wait for the window to refill.
        let now = net.now;
        t.run_until(&mut net, now + 3 * MS, |_, _| false);
        let now = net.now;
        if !t.run_until(&mut net, now + 10 * SEC, |_, n| in_flight(n, c) >= want) {
            return Err(format!(
                "in flight fell below {want} bytes after switch {i} (to `{}`) and stayed there",
                cfg.blocks[i % 2]
            ));
        }
    }
    let now = net.now;
    let total = cfg.bytes;
    t.run_until(&mut net, now + deadline, |t, _| t.received >= total);
    let intact = t.received == total && t.rx.0 == t.tx.0;
    let mut sorted = samples_us.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    Ok(StackSwitchReport {
        blocks: cfg.blocks.clone(),
        us_per_switch: super::median(samples_us.clone()),
        min_us: sorted.first().copied().unwrap_or(0.0),
        max_us: sorted.last().copied().unwrap_or(0.0),
        samples_us,
        min_in_flight: if min_if == u64::MAX { 0 } else { min_if },
        max_in_flight: max_if,
        bytes: total,
        bytes_received: t.received,
        digest_sent: format!("{:016x}", t.tx.0),
        digest_received: format!("{:016x}", t.rx.0),
        intact,
        transfer_ms: net.now as f64 / 1e6,
        link: format!(
            "simulated {} Mbit/s, {} ms RTT, 1 BDP queue",
            bw / 1_000_000,
            rtt / MS
        ),
    })
}

impl Transfer {
    fn bytes_total(&self) -> u64 {
        self.total
    }
}
