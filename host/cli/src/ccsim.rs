//! Congestion-control experiments on the simulated link: bulk flows of one CC module share a
//! bottleneck, and we measure what CC developers look at (link utilisation, Jain's fairness,
//! queueing delay, losses, CE marks). Deterministic: virtual clock, fixed seed. Used by the CC
//! tests, `plugtcp bench cc` and the table in docs/cc.md.

use plugtcp_host::conn_table::ConnId;
use plugtcp_host::registry::loader::SearchPath;
use std::net::SocketAddr;

use plugtcp_abi::TcpState;

use crate::builtins::BuiltinNet as _;
use plugtcp_io::sim::{PipeStats, SimLinkConfig};
use plugtcp_io::simnet::{SimNet, ADDR_B};

/// The eight modules FreeBSD ships, in cc_available order.
pub const FREEBSD_MODULES: [&str; 8] = [
    "newreno", "cubic", "htcp", "vegas", "dctcp", "cdg", "chd", "hd",
];

/// The rows of the rate-based table: (row name, CC module, block). The bbr block ignores
/// the CC module (its connections keep newreno).
pub const RATE_ROWS: [(&str, &str, &str); 5] = [
    ("bbr", "bbr", "base"),
    ("bbr", "bbr", "rack"),
    ("bbr block", "newreno", "bbr"),
    ("cubic", "cubic", "base"),
    ("newreno", "newreno", "base"),
];

/// One experiment.
#[derive(Clone, Debug)]
pub struct CcExperiment {
    pub cc: String,
    pub flows: usize,
    pub bandwidth_bps: u64,
    pub rtt_ns: u64,
    /// Bottleneck queue in bandwidth-delay products.
    pub queue_bdp: f64,
    /// CE-mark packets that find more than this many bytes queued (and turn ECN on in both
    /// hosts); `None`: a tail-drop queue without ECN.
    pub ecn_threshold_bytes: Option<usize>,
    /// Virtual time before measuring (slow start and convergence) and the measured span.
    pub warmup_ns: u64,
    pub measure_ns: u64,
    pub seed: u64,
    /// Sysctls set on both hosts first (`net.inet.tcp.` may be left out).
    pub sysctls: Vec<(String, String)>,
    /// The function block every flow runs on (`functions_default`; `None`: base).
    pub stack: Option<String>,
    /// Random loss of the data direction (A to B), before the bottleneck queue.
    pub loss: f64,
    /// The second flow runs this CC module and block instead (a competitor: bbr against
    /// cubic, say).
    pub competitor: Option<FlowSpec>,
    /// Where the hosts look for plugin files (a module built out of tree), as the demo does;
    /// the built-ins fill the names no file took. Empty: the built-ins alone.
    pub search_path: SearchPath,
}

/// A flow's CC module and function block.
#[derive(Clone, Debug)]
pub struct FlowSpec {
    pub cc: String,
    pub stack: String,
}

impl CcExperiment {
    /// The setting: 100 Mbit/s, 40 ms RTT, a one-BDP queue, 10 s warm-up, 30 s
    /// measured.
    pub fn standard(cc: &str, flows: usize) -> Self {
        CcExperiment {
            cc: cc.to_string(),
            flows,
            bandwidth_bps: 100_000_000,
            rtt_ns: 40_000_000,
            queue_bdp: 1.0,
            ecn_threshold_bytes: None,
            warmup_ns: 10_000_000_000,
            measure_ns: 30_000_000_000,
            seed: 7,
            sysctls: Vec::new(),
            stack: None,
            loss: 0.0,
            competitor: None,
            search_path: SearchPath::default(),
        }
    }

    /// DCTCP's setting: the same link with CE marking above K = BDP / 7 (the DCTCP paper's
    /// guideline for K > C * RTT / 7), ECN on.
    pub fn with_ecn_marking(mut self) -> Self {
        let bdp = plugtcp_io::sim::bdp_bytes(self.bandwidth_bps, self.rtt_ns);
        self.ecn_threshold_bytes = Some(bdp / 7);
        self
    }
}

/// What one experiment measured (over the measured span only).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CcResult {
    pub cc: String,
    pub flows: usize,
    /// Application bytes each flow delivered.
    pub flow_bytes: Vec<u64>,
    /// Goodput of each flow (Mbit/s).
    pub flow_mbps: Vec<f64>,
    /// Wire bytes the bottleneck delivered over its capacity.
    pub utilisation: f64,
    /// Jain's fairness index of the flows' goodputs (1.0 for one flow).
    pub jain: f64,
    /// Mean queueing delay a packet met at the bottleneck (ms), and the largest queue (bytes).
    pub mean_queue_delay_ms: f64,
    pub max_queue_bytes: usize,
    pub ecn_threshold_bytes: Option<usize>,
    pub queue_drops: u64,
    pub ce_marks: u64,
    /// Retransmitted segments of the senders (the stack's sndrexmitpack).
    pub retransmits: u64,
}

/// Jain's fairness index: (sum x)^2 / (n * sum x^2).
pub fn jain_index(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let sq: f64 = x.iter().map(|v| v * v).sum();
    if sq == 0.0 {
        return 0.0;
    }
    sum * sum / (x.len() as f64 * sq)
}

fn diff(after: &PipeStats, before: &PipeStats) -> PipeStats {
    PipeStats {
        sent: after.sent - before.sent,
        delivered: after.delivered - before.delivered,
        bytes_delivered: after.bytes_delivered - before.bytes_delivered,
        dropped_loss: after.dropped_loss - before.dropped_loss,
        dropped_queue: after.dropped_queue - before.dropped_queue,
        duplicated: after.duplicated - before.duplicated,
        corrupted: after.corrupted - before.corrupted,
        reordered: after.reordered - before.reordered,
        ce_marked: after.ce_marked - before.ce_marked,
        max_queue_bytes: after.max_queue_bytes,
        queue_wait_ns_sum: after.queue_wait_ns_sum - before.queue_wait_ns_sum,
        queue_ahead_bytes_sum: after.queue_ahead_bytes_sum - before.queue_ahead_bytes_sum,
        accepted: after.accepted - before.accepted,
    }
}

/// Bulk flows from host A to host B that always have data to send; the receiver reads and
/// counts. `pump` is the applications' turn between simulation steps.
pub struct BulkFlows {
    lid: usize,
    /// Sender connection slots on A, and their local ports (which tell receivers apart).
    pub senders: Vec<ConnId>,
    sender_ports: Vec<u16>,
    /// Receiver slot on B and the flow it belongs to.
    receivers: Vec<(ConnId, usize)>,
    /// Bytes each flow's receiver has read.
    pub bytes: Vec<u64>,
    pattern: Vec<u8>,
    rbuf: Vec<u8>,
}

impl BulkFlows {
    /// Listens on B and connects `flows` times from A.
    pub fn start(net: &mut SimNet, flows: usize) -> Result<Self, String> {
        Self::start_with(net, flows, None)
    }

    /// As [`BulkFlows::start`], the second flow with `competitor`'s CC and block.
    pub fn start_with(
        net: &mut SimNet,
        flows: usize,
        competitor: Option<&FlowSpec>,
    ) -> Result<Self, String> {
        let server: SocketAddr = (ADDR_B, 5001).into();
        let lid = net
            .b
            .listen(server, 64)
            .map_err(|e| format!("listen: {e}"))?;
        let mut senders = Vec::new();
        for i in 0..flows {
            let other = competitor.filter(|_| i == 1);
            // A block is chosen before the SYN (rack and bbr take no handoff mid-handshake):
            // the default for the moment of this connect.
            let mut default = None;
            if let Some(f) = other {
                default = Some(
                    net.a
                        .sysctl_set("net.inet.tcp.functions_default", &f.stack)
                        .map_err(|e| format!("{}: {e}", f.stack))?,
                );
            }
            let c = net
                .a
                .connect(server, None)
                .map_err(|e| format!("connect: {e}"))?;
            if let Some(f) = other {
                if let Some(d) = &default {
                    let _ = net
                        .a
                        .sysctl_set("net.inet.tcp.functions_default", &d.to_string());
                }
                net.a
                    .setsockopt(
                        c,
                        plugtcp_abi::sockopt::IPPROTO_TCP,
                        plugtcp_abi::sockopt::TCP_CONGESTION,
                        f.cc.as_bytes(),
                    )
                    .map_err(|e| format!("{}: {e}", f.cc))?;
            }
            senders.push(c);
        }
        let sender_ports = senders
            .iter()
            .map(|&s| net.a.local_addr(s).map_or(0, |a| a.port()))
            .collect();
        Ok(BulkFlows {
            lid,
            senders,
            sender_ports,
            receivers: Vec::new(),
            bytes: vec![0; flows],
            pattern: vec![0x5a; 256 * 1024],
            rbuf: vec![0; 256 * 1024],
        })
    }

    /// Fills the senders' buffers, accepts, and drains the receivers.
    pub fn pump(&mut self, n: &mut SimNet) {
        for &s in &self.senders {
            if n.a.state(s) == Some(TcpState::Established) {
                while let Ok(k) = n.a.send(s, &self.pattern) {
                    if k == 0 {
                        break;
                    }
                }
            }
        }
        while let Ok(r) = n.b.accept(self.lid) {
            let port = n.b.peer_addr(r).map_or(0, |a| a.port());
            if let Some(i) = self.sender_ports.iter().position(|&p| p == port) {
                self.receivers.push((r, i));
            }
        }
        for &(r, i) in &self.receivers {
            while let Ok(k) = n.b.recv(r, &mut self.rbuf) {
                if k == 0 {
                    break;
                }
                self.bytes[i] += k as u64;
            }
        }
    }

    /// Runs the simulation with the flows pumping until virtual time `until`.
    pub fn run_until(&mut self, net: &mut SimNet, until: u64) {
        net.run_until(until, |n| {
            self.pump(n);
            false
        });
    }
}

/// Two hosts over the experiment's link, both using `exp.cc`, with buffers that never limit a
/// flow.
pub fn simnet(exp: &CcExperiment) -> Result<SimNet, String> {
    let mut cfg = SimLinkConfig::bdp_queue(exp.bandwidth_bps, exp.rtt_ns);
    cfg.queue_limit_bytes = (cfg.queue_limit_bytes as f64 * exp.queue_bdp) as usize;
    cfg.ecn_threshold_bytes = exp.ecn_threshold_bytes;
    cfg.seed = exp.seed;
    let mut net = SimNet::with_plugins(cfg.clone(), exp.seed, exp.search_path.clone());
    if exp.loss > 0.0 {
        let mut data = cfg;
        data.loss = exp.loss;
        net.link.a_to_b.set_config(data);
    }
    let bdp = plugtcp_io::sim::bdp_bytes(exp.bandwidth_bps, exp.rtt_ns);
    // Windows never hold a flow back: buffers start at twice what the path and its queue
    // hold (FreeBSD's auto-sizing would stop near 4/3 of the BDP, below what cwnd reaches
    // over a deep queue, and the experiment would measure the receive window).
    let path_bytes = (bdp as f64 * (1.0 + exp.queue_bdp)) as usize;
    let bufmax = (2 * path_bytes).max(2 << 20).to_string();
    for h in [&mut net.a, &mut net.b] {
        let set = |h: &mut plugtcp_host::Host, k: &str, v: &str| {
            h.sysctl_set(k, v)
                .map(|_| ())
                .map_err(|e| format!("{k}={v}: {e}"))
        };
        if let Err(e) = h.sysctl_set("net.inet.tcp.cc.algorithm", &exp.cc) {
            return Err(unknown_module(h, &exp.cc, e, &exp.search_path));
        }
        if let Some(stack) = &exp.stack {
            set(h, "net.inet.tcp.functions_default", stack)?;
        }
        set(h, "net.inet.tcp.recvbuf_max", &bufmax)?;
        set(h, "net.inet.tcp.sendbuf_max", &bufmax)?;
        set(h, "net.inet.tcp.recvspace", &bufmax)?;
        set(h, "net.inet.tcp.sendspace", &bufmax)?;
        if exp.ecn_threshold_bytes.is_some() {
            set(h, "net.inet.tcp.ecn.enable", "1")?;
        }
        for (k, v) in &exp.sysctls {
            let full = if k.starts_with("net.") {
                k.clone()
            } else {
                format!("net.inet.tcp.{k}")
            };
            set(h, &full, v)?;
        }
    }
    Ok(net)
}

/// Runs one experiment: `flows` bulk transfers from A to B started together, every connection
/// (both ends) on `exp.cc`.
pub fn run(exp: &CcExperiment) -> Result<CcResult, String> {
    let mut net = simnet(exp)?;
    let mut flows = BulkFlows::start_with(&mut net, exp.flows, exp.competitor.as_ref())?;
    flows.run_until(&mut net, exp.warmup_ns);
    let before = net.link.a_to_b.stats().clone();
    let rexmit_before = rexmits(&net);
    let bytes_before = flows.bytes.clone();
    // The largest queue is taken over the measured span only.
    net.link.a_to_b.reset_max_queue();
    flows.run_until(&mut net, exp.warmup_ns + exp.measure_ns);
    let d = diff(net.link.a_to_b.stats(), &before);
    let flow_bytes: Vec<u64> = flows
        .bytes
        .iter()
        .zip(&bytes_before)
        .map(|(a, b)| a - b)
        .collect();
    let secs = exp.measure_ns as f64 / 1e9;
    let flow_mbps: Vec<f64> = flow_bytes
        .iter()
        .map(|&b| b as f64 * 8.0 / secs / 1e6)
        .collect();
    Ok(CcResult {
        cc: exp.cc.clone(),
        flows: exp.flows,
        utilisation: d.bytes_delivered as f64 * 8.0 / (exp.bandwidth_bps as f64 * secs),
        jain: jain_index(&flow_mbps),
        flow_bytes,
        flow_mbps,
        mean_queue_delay_ms: d.mean_queue_wait_ns() as f64 / 1e6,
        max_queue_bytes: d.max_queue_bytes,
        ecn_threshold_bytes: exp.ecn_threshold_bytes,
        queue_drops: d.dropped_queue,
        ce_marks: d.ce_marked,
        retransmits: rexmits(&net) - rexmit_before,
    })
}

/// Retransmitted segments sent by host A's stacks.
fn rexmits(net: &SimNet) -> u64 {
    net.a.block_counter("sndrexmitpack")
}

impl CcResult {
    /// One row of the table in docs/cc.md.
    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {:.1}% | {:.3} | {:.2} | {} | {} | {} | {} |",
            self.cc,
            self.flows,
            self.utilisation * 100.0,
            self.jain,
            self.mean_queue_delay_ms,
            self.max_queue_bytes,
            self.queue_drops,
            self.ce_marks,
            self.retransmits,
        )
    }

    pub const HEADER: &'static str = "| cc | flows | utilisation | Jain | mean queue delay (ms) | max queue (B) | queue drops | CE marks | retransmits |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |";
}

/// The rate-based CC scenarios of `plugtcp bench cc` (100 Mbit/s, 40 ms RTT), for one CC
/// module on one block: what BBR is for, next to what loss-based CC does there.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RateRow {
    /// The row's name: the module, or "bbr block" for the block with its own model.
    pub name: String,
    pub cc: String,
    pub stack: String,
    /// Utilisation with 1 % random loss (one BDP of queue).
    pub util_loss1: f64,
    /// Utilisation with a 0.1-BDP queue.
    pub util_shallow: f64,
    /// Mean queueing delay with a 4-BDP queue (ms).
    pub delay_deep_ms: f64,
    /// Jain's index of two flows of this CC (one BDP).
    pub jain_pair: f64,
    /// Jain's index of this CC against cubic on base (one BDP), and their goodputs (Mbit/s).
    pub jain_vs_cubic: f64,
    pub mbps_vs_cubic: (f64, f64),
}

impl RateRow {
    pub const HEADER: &'static str = "| cc | block | util. 1% loss | util. 0.1-BDP queue | mean queue delay 4-BDP (ms) | Jain 2 flows | Jain vs cubic (Mbit/s) |\n| --- | --- | --- | --- | --- | --- | --- |";

    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {:.1}% | {:.1}% | {:.2} | {:.3} | {:.3} ({:.1} / {:.1}) |",
            self.name,
            self.stack,
            self.util_loss1 * 100.0,
            self.util_shallow * 100.0,
            self.delay_deep_ms,
            self.jain_pair,
            self.jain_vs_cubic,
            self.mbps_vs_cubic.0,
            self.mbps_vs_cubic.1,
        )
    }
}

/// Runs the five scenarios for `cc` on `stack` (`base` for the modules), `base` and `seed`
/// as given for every experiment (warm-up, measured span, seed, sysctls).
pub fn rate_row(name: &str, cc: &str, stack: &str, base: &CcExperiment) -> Result<RateRow, String> {
    let exp = |flows: usize| CcExperiment {
        cc: cc.to_string(),
        flows,
        stack: Some(stack.to_string()),
        ..base.clone()
    };
    let loss1 = run(&CcExperiment {
        loss: 0.01,
        ..exp(1)
    })?;
    let shallow = run(&CcExperiment {
        queue_bdp: 0.1,
        ..exp(1)
    })?;
    let deep = run(&CcExperiment {
        queue_bdp: 4.0,
        ..exp(1)
    })?;
    let pair = run(&exp(2))?;
    let mixed = run(&CcExperiment {
        competitor: Some(FlowSpec {
            cc: "cubic".into(),
            stack: "base".into(),
        }),
        ..exp(2)
    })?;
    Ok(RateRow {
        name: name.to_string(),
        cc: cc.to_string(),
        stack: stack.to_string(),
        util_loss1: loss1.utilisation,
        util_shallow: shallow.utilisation,
        delay_deep_ms: deep.mean_queue_delay_ms,
        jain_pair: pair.jain,
        jain_vs_cubic: mixed.jain,
        mbps_vs_cubic: (mixed.flow_mbps[0], mixed.flow_mbps[1]),
    })
}

/// `cc.algorithm=name` refused: the error says which modules there are and where files were
/// looked for (a module built out of tree is found with `--plugin-dir`).
pub(crate) fn unknown_module(
    h: &plugtcp_host::Host,
    name: &str,
    e: plugtcp_abi::Errno,
    search_path: &SearchPath,
) -> String {
    let have: Vec<String> = h
        .registry
        .snapshot()
        .ccs
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let looked = if search_path.dirs.is_empty() {
        "no plugin directory".to_string()
    } else {
        search_path
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "no CC module `{name}` ({e}): looked for libplugtcp_cc_{name}.so in {looked} \
         (--plugin-dir, PLUGTCP_PLUGIN_PATH, the executable's directory); modules: {}",
        have.join(", ")
    )
}
