//! What a lab run measured: per-flow and per-link time series, the run's summary, and the
//! summaries of a sweep point across its seeds. Written to the results directory as CSV and
//! JSON ([`super::output`]) and drawn into `report.html` ([`super::report`]).

use serde::{Deserialize, Serialize};

/// Which TCP ran the run.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// plugtcp on the simulated network (virtual time).
    Plugtcp,
    /// The Linux kernel's TCP over veth pairs shaped by tc (real time).
    Kernel,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Plugtcp => "plugtcp",
            Engine::Kernel => "kernel",
        }
    }
}

/// One sample of one flow, taken every `sample` of the run at the sender.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FlowSample {
    /// Seconds since the run started.
    pub t: f64,
    /// Index into [`RunResult::flows`].
    pub flow: usize,
    /// Application bytes the receiver read in the sample interval, as Mbit/s.
    pub goodput_mbps: f64,
    pub cwnd_bytes: u64,
    pub srtt_ms: f64,
    /// 0 when the connection is not paced.
    pub pacing_mbps: f64,
    /// Retransmitted segments so far.
    pub retransmits: u64,
    pub inflight_bytes: u64,
    /// The peer's advertised window.
    pub rwnd_bytes: u64,
}

/// One sample of one link's forward queue.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QueueSample {
    pub t: f64,
    /// Index into [`RunResult::links`].
    pub link: usize,
    pub backlog_bytes: u64,
    pub backlog_packets: u64,
    /// Drops (queue full and AQM) and CE marks so far.
    pub drops: u64,
    pub marks: u64,
    /// Mean sojourn time of the packets that left the queue in the interval (ms).
    pub delay_ms: f64,
}

/// What limited a flow most of the time it had data to send.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// Its congestion controller (what an experiment means to measure).
    Cc,
    /// The receiver's advertised window.
    ReceiveWindow,
    /// The sender's socket buffer.
    SendBuffer,
    /// The application (on/off, request/response, a finished sized flow).
    Application,
}

impl Limit {
    /// What held a flow back: the application for anything but a bulk flow, else the
    /// receive window or the send buffer when it held the flow more than half of its busy
    /// time (`rwnd_share`, `sndbuf_share`), else its CC.
    pub fn classify(bulk: bool, rwnd_share: f64, sndbuf_share: f64) -> Limit {
        if !bulk {
            Limit::Application
        } else if rwnd_share > 0.5 {
            Limit::ReceiveWindow
        } else if sndbuf_share > 0.5 {
            Limit::SendBuffer
        } else {
            Limit::Cc
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Limit::Cc => "cc",
            Limit::ReceiveWindow => "receive window",
            Limit::SendBuffer => "send buffer",
            Limit::Application => "application",
        }
    }
}

/// One flow's summary.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FlowSummary {
    /// `cubic/base#2` or the scenario's name for it.
    pub name: String,
    pub cc: String,
    pub stack: String,
    pub rtt_ms: f64,
    pub start_s: f64,
    /// Application bytes delivered to the receiver.
    pub bytes: u64,
    /// Mean goodput while it was active (start to completion or stop).
    pub goodput_mbps: f64,
    pub retransmits: u64,
    /// Flow completion time of a sized flow (None: not sized, or not complete).
    pub fct_s: Option<f64>,
    /// Every byte the receiver read is the byte the sender wrote at that offset (the
    /// streams carry a known pattern; the kernel engine compares SHA-256 digests).
    pub intact: bool,
    /// Queueing delay its packets met at the bottleneck (ms; shared by the copies of one
    /// `[[flow]]` table, whose hosts are the same).
    #[serde(default)]
    pub queue_delay_p50_ms: f64,
    #[serde(default)]
    pub queue_delay_p95_ms: f64,
    /// What limited it, and the share of its samples each limit held.
    pub limited_by: Limit,
    pub rwnd_limited: f64,
    pub sndbuf_limited: f64,
}

/// One link's summary (its forward queue).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LinkSummary {
    pub name: String,
    pub qdisc: String,
    /// Capacity offered over the run (bits) and bits delivered: utilisation is their ratio.
    pub capacity_bits: f64,
    pub delivered_bits: f64,
    pub utilisation: f64,
    /// The queue limit and the largest backlog seen (bytes).
    pub limit_bytes: u64,
    pub max_backlog_bytes: u64,
    /// Queueing delay of the packets that crossed it (ms).
    pub delay_p50_ms: f64,
    pub delay_p95_ms: f64,
    pub delay_p99_ms: f64,
    pub packets: u64,
    pub drops: u64,
    pub random_losses: u64,
    pub marks: u64,
}

/// The index of the link that used the largest share of its capacity: the run's bottleneck.
pub fn busiest_link(links: &[LinkSummary]) -> usize {
    links
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.utilisation.total_cmp(&b.1.utilisation))
        .map_or(0, |(k, _)| k)
}

/// One run (one sweep point, one seed).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    pub scenario: String,
    /// The sweep point's label (`cc=cubic queue=1bdp`, `base`).
    pub point: String,
    pub seed: u64,
    pub engine: Engine,
    pub duration_s: f64,
    pub flows: Vec<FlowSummary>,
    pub links: Vec<LinkSummary>,
    /// The bottleneck: the link with the highest utilisation's index.
    pub bottleneck: usize,
    /// Over all flows: Jain's index of the goodputs of the flows that were active the whole
    /// time they could be (all of them for bulk flows), and loss rate (drops + random losses
    /// over packets offered to the path).
    pub jain: f64,
    pub loss_rate: f64,
    pub retransmits: u64,
    #[serde(skip)]
    pub flow_series: Vec<FlowSample>,
    #[serde(skip)]
    pub queue_series: Vec<QueueSample>,
}

impl RunResult {
    /// Utilisation of the bottleneck.
    pub fn utilisation(&self) -> f64 {
        self.links
            .get(self.bottleneck)
            .map_or(0.0, |l| l.utilisation)
    }
}

/// Mean, min and max of one metric across the seeds of a point.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Sample standard deviation (0 with one seed).
    pub stddev: f64,
}

impl Spread {
    pub fn of(xs: &[f64]) -> Spread {
        if xs.is_empty() {
            return Spread::default();
        }
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = if xs.len() > 1 {
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Spread {
            mean,
            min: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            stddev: var.sqrt(),
        }
    }
}

/// A sweep point over its seeds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PointSummary {
    pub point: String,
    pub engine: Engine,
    pub values: Vec<(String, String)>,
    pub seeds: Vec<u64>,
    pub utilisation: Spread,
    pub jain: Spread,
    pub delay_p50_ms: Spread,
    pub delay_p95_ms: Spread,
    pub delay_p99_ms: Spread,
    pub loss_rate: Spread,
    pub retransmits: Spread,
    /// Per flow (by index): goodput (Mbit/s) and, for sized flows, completion time (s).
    pub flow_goodput_mbps: Vec<Spread>,
    pub flow_fct_s: Vec<Option<Spread>>,
    /// Flows some run flagged as not limited by their CC: (flow name, what limited it).
    pub flagged: Vec<(String, String)>,
}

impl PointSummary {
    /// Summarises the runs of one point (all of one engine).
    pub fn of(runs: &[&RunResult], values: Vec<(String, String)>) -> PointSummary {
        let f = |g: &dyn Fn(&RunResult) -> f64| -> Spread {
            Spread::of(&runs.iter().map(|r| g(r)).collect::<Vec<_>>())
        };
        let bn = |r: &RunResult| r.links.get(r.bottleneck).cloned();
        let nflows = runs.first().map_or(0, |r| r.flows.len());
        let mut flagged = Vec::new();
        for r in runs {
            for fl in &r.flows {
                if fl.limited_by != Limit::Cc && fl.limited_by != Limit::Application {
                    let item = (fl.name.clone(), fl.limited_by.name().to_string());
                    if !flagged.contains(&item) {
                        flagged.push(item);
                    }
                }
            }
        }
        PointSummary {
            point: runs.first().map_or_else(String::new, |r| r.point.clone()),
            engine: runs.first().map_or(Engine::Plugtcp, |r| r.engine),
            values,
            seeds: runs.iter().map(|r| r.seed).collect(),
            utilisation: f(&|r| r.utilisation()),
            jain: f(&|r| r.jain),
            delay_p50_ms: f(&|r| bn(r).map_or(0.0, |l| l.delay_p50_ms)),
            delay_p95_ms: f(&|r| bn(r).map_or(0.0, |l| l.delay_p95_ms)),
            delay_p99_ms: f(&|r| bn(r).map_or(0.0, |l| l.delay_p99_ms)),
            loss_rate: f(&|r| r.loss_rate),
            retransmits: f(&|r| r.retransmits as f64),
            flow_goodput_mbps: (0..nflows)
                .map(|i| f(&|r| r.flows.get(i).map_or(0.0, |x| x.goodput_mbps)))
                .collect(),
            flow_fct_s: (0..nflows)
                .map(|i| {
                    let xs: Vec<f64> = runs
                        .iter()
                        .filter_map(|r| r.flows.get(i).and_then(|x| x.fct_s))
                        .collect();
                    (!xs.is_empty()).then(|| Spread::of(&xs))
                })
                .collect(),
            flagged,
        }
    }
}

/// Everything one `lab run` produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabResults {
    pub scenario: String,
    pub description: String,
    /// The scenario file's text, shown in the report, and the `--set` overrides applied to
    /// it (`flow.cc=mine`).
    pub source: String,
    #[serde(default)]
    pub overrides: Vec<String>,
    pub runs: Vec<RunResult>,
    pub points: Vec<PointSummary>,
}
