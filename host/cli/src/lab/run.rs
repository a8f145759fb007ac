//! One lab run on the simulated network: the flows' applications, the samples every
//! `sample` of virtual time, and the run's summary. Deterministic for a seed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;

use plugtcp_abi::sockopt::{IPPROTO_TCP, SOL_SOCKET, SO_SNDBUF, TCP_INFO};
use plugtcp_abi::stack::tcpi_off;
use plugtcp_abi::TcpState;
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::usrreq::Shutdown;
use plugtcp_host::Host;

use super::net::{mean_rate_bps, receiver_addr, sender_addr, sub_seed, LabNet};
use super::results::{
    busiest_link, Engine, FlowSample, FlowSummary, Limit, LinkSummary, QueueSample, RunResult,
};
use super::scenario::{AppKind, FlowSpec, SweepPoint};

/// Port the receivers listen on (bulk and on/off data flows from sender to receiver).
const DATA_PORT: u16 = 5001;
/// Port the senders listen on for request/response (the client is the receiver host, so
/// the responses, the bulk of the bytes, cross the path forward).
const RR_PORT: u16 = 5002;

/// Unsent bytes an on/off flow keeps queued while on (what it writes ahead of the window).
const ON_OFF_UNSENT: usize = 64 * 1024;

/// Every stream carries this pattern from offset 0: byte `o` is `pattern()[o % len]`. Its
/// length is no multiple of any segment size, so data delivered at the wrong offset shows.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        (0..(1 << 20) + 7)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    })
}

/// One direction of a stream: what was written or read so far, checked against the pattern.
#[derive(Default, Clone, Copy)]
struct Stream {
    bytes: u64,
    /// The reader saw a byte that is not the pattern's at its offset.
    corrupt: bool,
}

impl Stream {
    /// Writes up to `limit` more bytes (None: no limit) to `c` on `h`.
    fn write(&mut self, h: &mut Host, c: ConnId, limit: Option<u64>) {
        let p = pattern();
        loop {
            let room = h.send_space(c);
            if room == 0 {
                return;
            }
            let want = limit.map_or(u64::MAX, |l| l.saturating_sub(self.bytes));
            if want == 0 {
                return;
            }
            let off = (self.bytes % p.len() as u64) as usize;
            let n = (p.len() - off)
                .min(room)
                .min(want.min(usize::MAX as u64) as usize);
            match h.send(c, &p[off..off + n]) {
                Ok(0) | Err(_) => return,
                Ok(k) => self.bytes += k as u64,
            }
        }
    }

    /// Reads what `c` has, checking every byte. Returns bytes read.
    fn read(&mut self, h: &mut Host, c: ConnId, buf: &mut [u8]) -> u64 {
        let p = pattern();
        let mut total = 0;
        while let Ok(k) = h.recv(c, buf) {
            if k == 0 {
                break;
            }
            let mut done = 0;
            while done < k {
                let off = ((self.bytes + done as u64) % p.len() as u64) as usize;
                let n = (p.len() - off).min(k - done);
                if buf[done..done + n] != p[off..off + n] {
                    self.corrupt = true;
                }
                done += n;
            }
            self.bytes += k as u64;
            total += k as u64;
        }
        total
    }
}

/// Request/response state of the client.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RrPhase {
    Requesting,
    Waiting,
    Thinking(u64),
}

/// One flow of the run.
struct Flow {
    spec: usize,
    name: String,
    cc: String,
    stack: String,
    app: AppKind,
    rtt_ns: u64,
    start: u64,
    stop: u64,
    size: Option<u64>,
    on: u64,
    off: u64,
    request: u64,
    response: u64,
    think: u64,
    /// The connection that sends the measured data (on the sender host) and the one that
    /// receives it (on the receiver host).
    tx: Option<ConnId>,
    rx: Option<ConnId>,
    /// The connecting side's local port (matches the accepted connection).
    client_port: u16,
    started: bool,
    closed: bool,
    data: Stream,
    received: Stream,
    /// Request/response: the requests (receiver host to sender host).
    req_tx: Stream,
    req_rx: Stream,
    rr: RrPhase,
    /// Bytes of responses the client still waits for / requests the server still reads.
    rr_expect: u64,
    exchanges: u64,
    done_at: Option<u64>,
    /// Samples taken while it had data to send, and how many were window-limited.
    busy_samples: u64,
    rwnd_samples: u64,
    sndbuf_samples: u64,
    last_received: u64,
}

impl Flow {
    fn new(spec_index: usize, copy: u32, f: &FlowSpec, rtt_ns: u64, duration: u64) -> Self {
        let start = f.start.0 + f.stagger.0 * copy as u64;
        Flow {
            spec: spec_index,
            name: f.label(copy),
            cc: f.cc.clone(),
            stack: f.stack.clone(),
            app: f.app,
            rtt_ns,
            start,
            stop: f.stop.map_or(duration, |s| s.0).min(duration),
            size: f.size.map(|s| s.0),
            on: f.on.map_or(0, |d| d.0),
            off: f.off.map_or(0, |d| d.0),
            request: f.request.map_or(0, |s| s.0),
            response: f.response.map_or(0, |s| s.0),
            think: f.think.map_or(0, |d| d.0),
            tx: None,
            rx: None,
            client_port: 0,
            started: false,
            closed: false,
            data: Stream::default(),
            received: Stream::default(),
            req_tx: Stream::default(),
            req_rx: Stream::default(),
            rr: RrPhase::Requesting,
            rr_expect: 0,
            exchanges: 0,
            done_at: None,
            busy_samples: 0,
            rwnd_samples: 0,
            sndbuf_samples: 0,
            last_received: 0,
        }
    }

    /// Whether an on/off flow is in an "on" period at `now`.
    fn on_at(&self, now: u64) -> bool {
        let period = self.on + self.off;
        period == 0 || (now.saturating_sub(self.start)) % period < self.on
    }

    /// The next instant its application acts by the clock (a start, a stop, an on/off edge,
    /// the end of a think time).
    fn next_wakeup(&self, now: u64) -> Option<u64> {
        if !self.started {
            return Some(self.start);
        }
        if self.closed {
            return None;
        }
        let mut t = self.stop;
        if self.app == AppKind::OnOff {
            let period = self.on + self.off;
            let into = (now - self.start) % period;
            let edge = if into < self.on {
                now - into + self.on
            } else {
                now - into + period
            };
            t = t.min(edge);
        }
        if let RrPhase::Thinking(until) = self.rr {
            t = t.min(until);
        }
        (t > now).then_some(t)
    }

    fn active_ns(&self) -> u64 {
        self.done_at.unwrap_or(self.stop).saturating_sub(self.start)
    }
}

/// A log-linear histogram of delays (ns): 64 steps per power of two (1.6 % resolution),
/// fixed memory however many packets cross a link.
pub struct DelayHistogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for DelayHistogram {
    fn default() -> Self {
        DelayHistogram {
            counts: vec![0; 64 * 64],
            total: 0,
        }
    }
}

impl DelayHistogram {
    fn bucket(ns: u64) -> usize {
        if ns < 64 {
            return ns as usize;
        }
        let exp = 63 - ns.leading_zeros() as usize; // >= 6
        let mantissa = ((ns >> (exp - 6)) & 63) as usize;
        (exp - 5) * 64 + mantissa
    }
    fn value(bucket: usize) -> u64 {
        if bucket < 64 {
            return bucket as u64;
        }
        let exp = bucket / 64 + 5;
        let mantissa = (bucket % 64) as u64;
        // The bucket's midpoint.
        ((64 + mantissa) << (exp - 6)) + (1u64 << (exp - 6)) / 2
    }
    pub fn record(&mut self, ns: u64) {
        let b = Self::bucket(ns).min(self.counts.len() - 1);
        self.counts[b] += 1;
        self.total += 1;
    }
    /// The `q` quantile (0..=1), ns; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(b);
            }
        }
        0
    }
}

/// What a run is given besides the scenario.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub search_path: SearchPath,
    /// Publish each sample as Prometheus gauges (`lab run --metrics`).
    pub metrics: bool,
}

fn conn_state(h: &Host, c: Option<ConnId>) -> Option<TcpState> {
    c.and_then(|c| h.state(c))
}

/// Runs `point` with `seed` on the simulated network.
pub fn run_sim(
    scenario_path: &Path,
    point: &SweepPoint,
    seed: u64,
    opts: &RunOptions,
) -> Result<RunResult, String> {
    let s = &point.scenario;
    let mut net = LabNet::build(s, scenario_path, seed, &opts.search_path)?;
    let duration = s.duration.0;
    let mut flows: Vec<Flow> = s
        .expanded_flows()
        .into_iter()
        .enumerate()
        .map(|(k, (i, c, f))| {
            let mut flow = Flow::new(i, c, f, s.flow_rtt_ns(f), duration);
            // What a seed varies on a link without loss or jitter: repetitions start each
            // flow up to `start_spread` (default: one RTT of the flow) later.
            let spread = s
                .start_spread
                .map_or_else(|| if s.repetitions > 1 { flow.rtt_ns } else { 0 }, |d| d.0);
            if spread > 0 {
                flow.start = (flow.start + sub_seed(seed, 9, k as u64) % spread)
                    .min(duration.saturating_sub(1));
            }
            flow
        })
        .collect();
    // Listeners: data on each receiver host, request/response on each sender host.
    let mut data_listen = Vec::new();
    let mut rr_listen = Vec::new();
    for i in 0..s.flows.len() {
        let backlog = s.flows[i].count as usize + 4;
        data_listen.push(
            net.receivers[i]
                .listen((receiver_addr(i), DATA_PORT).into(), backlog)
                .map_err(|e| format!("listen: {e}"))?,
        );
        rr_listen.push(
            net.senders[i]
                .listen((sender_addr(i), RR_PORT).into(), backlog)
                .map_err(|e| format!("listen: {e}"))?,
        );
    }
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut flow_series = Vec::new();
    let mut queue_series = Vec::new();
    let nlinks = net.links.len();
    let mut hist: Vec<DelayHistogram> = (0..nlinks).map(|_| DelayHistogram::default()).collect();
    // Per link and `[[flow]]` table: whose packets waited how long.
    let mut table_hist: Vec<Vec<DelayHistogram>> = (0..nlinks)
        .map(|_| {
            (0..s.flows.len())
                .map(|_| DelayHistogram::default())
                .collect()
        })
        .collect();
    let mut sojourns = Vec::new();
    let mut interval_delay = vec![(0u64, 0u64); nlinks];
    let mut max_backlog = vec![0u64; nlinks];
    let sample = s.sample.0;
    let mut next_sample = sample;

    loop {
        let wake = flows
            .iter()
            .filter_map(|f| f.next_wakeup(net.now))
            .min()
            .unwrap_or(u64::MAX);
        let deadline = next_sample.min(wake).min(duration);
        pump(&mut net, &mut flows, &data_listen, &rr_listen, &mut rbuf);
        while net.step_until(deadline) {
            pump(&mut net, &mut flows, &data_listen, &rr_listen, &mut rbuf);
            // Sojourn times and backlog peaks as packets leave, bounded memory.
            for (k, l) in net.links.iter_mut().enumerate() {
                sojourns.clear();
                l.forward.take_sojourns(&mut sojourns);
                for &(tag, ns) in &sojourns {
                    hist[k].record(ns);
                    if let Some(h) = table_hist[k].get_mut(tag as usize) {
                        h.record(ns);
                    }
                    interval_delay[k].0 += ns;
                    interval_delay[k].1 += 1;
                }
                max_backlog[k] = max_backlog[k].max(l.forward.backlog_bytes() as u64);
            }
        }
        pump(&mut net, &mut flows, &data_listen, &rr_listen, &mut rbuf);
        if net.now >= next_sample {
            let t = net.now as f64 / 1e9;
            for (k, f) in flows.iter_mut().enumerate() {
                // A flow is drawn from its start until it closed.
                if !f.started || (f.closed && net.now > f.stop) {
                    f.last_received = f.received.bytes;
                    continue;
                }
                let x = sample_flow(&mut net, f, k, t, sample);
                if opts.metrics {
                    publish_flow(Engine::Plugtcp, &point.label, seed, &f.name, &x);
                }
                flow_series.push(x);
            }
            for (k, l) in net.links.iter().enumerate() {
                let st = l.forward.stats();
                let (sum, n) = std::mem::take(&mut interval_delay[k]);
                queue_series.push(QueueSample {
                    t,
                    link: k,
                    backlog_bytes: l.forward.backlog_bytes() as u64,
                    backlog_packets: l.forward.backlog_packets() as u64,
                    drops: st.qdisc.dropped_overlimit + st.qdisc.dropped_aqm,
                    marks: st.qdisc.ce_marked,
                    delay_ms: if n == 0 {
                        0.0
                    } else {
                        sum as f64 / n as f64 / 1e6
                    },
                });
            }
            if opts.metrics {
                let at = queue_series.len() - nlinks;
                for q in &queue_series[at..] {
                    publish_queue(
                        Engine::Plugtcp,
                        &point.label,
                        seed,
                        &net.links[q.link].name,
                        q,
                    );
                }
                publish_time(Engine::Plugtcp, &point.label, seed, t);
            }
            next_sample += sample;
        }
        if net.now >= duration {
            break;
        }
    }

    let secs = duration as f64 / 1e9;
    let mut links = Vec::new();
    for (k, l) in net.links.iter().enumerate() {
        let st = l.forward.stats();
        let capacity_bits = mean_rate_bps(&l.capacity, duration) * secs;
        let delivered_bits = st.bytes_delivered as f64 * 8.0;
        links.push(LinkSummary {
            name: l.name.clone(),
            qdisc: l.qdisc.name().to_string(),
            capacity_bits,
            delivered_bits,
            utilisation: if capacity_bits > 0.0 {
                delivered_bits / capacity_bits
            } else {
                0.0
            },
            limit_bytes: l.limit_bytes,
            max_backlog_bytes: max_backlog[k].max(st.max_backlog_bytes as u64),
            delay_p50_ms: hist[k].quantile(0.50) as f64 / 1e6,
            delay_p95_ms: hist[k].quantile(0.95) as f64 / 1e6,
            delay_p99_ms: hist[k].quantile(0.99) as f64 / 1e6,
            packets: st.delivered,
            drops: st.qdisc.dropped_overlimit + st.qdisc.dropped_aqm,
            random_losses: st.dropped_loss,
            marks: st.qdisc.ce_marked,
        });
    }
    let bottleneck = busiest_link(&links);
    let flows_out: Vec<FlowSummary> = flows
        .iter()
        .map(|f| {
            let h = &mut net.senders[f.spec];
            let retransmits =
                f.tx.and_then(|c| h.tcp_info(c).ok())
                    .map_or(0, |i| i.tcpi_snd_rexmitpack as u64);
            let active = f.active_ns().max(1) as f64 / 1e9;
            let busy = f.busy_samples.max(1) as f64;
            let (rwnd_share, sndbuf_share) =
                (f.rwnd_samples as f64 / busy, f.sndbuf_samples as f64 / busy);
            let limited_by = Limit::classify(f.app == AppKind::Bulk, rwnd_share, sndbuf_share);
            FlowSummary {
                name: f.name.clone(),
                cc: f.cc.clone(),
                stack: f.stack.clone(),
                rtt_ms: f.rtt_ns as f64 / 1e6,
                start_s: f.start as f64 / 1e9,
                bytes: f.received.bytes,
                goodput_mbps: f.received.bytes as f64 * 8.0 / active / 1e6,
                retransmits,
                fct_s: f.size.and(f.done_at).map(|d| (d - f.start) as f64 / 1e9),
                intact: !f.received.corrupt
                    && !f.req_rx.corrupt
                    && f.received.bytes <= f.data.bytes,
                queue_delay_p50_ms: table_hist[bottleneck][f.spec].quantile(0.5) as f64 / 1e6,
                queue_delay_p95_ms: table_hist[bottleneck][f.spec].quantile(0.95) as f64 / 1e6,
                limited_by,
                rwnd_limited: rwnd_share,
                sndbuf_limited: sndbuf_share,
            }
        })
        .collect();
    let offered: u64 = net.offered;
    let dropped: u64 = links.iter().map(|l| l.drops + l.random_losses).sum();
    let goodputs: Vec<f64> = flows_out.iter().map(|f| f.goodput_mbps).collect();
    Ok(RunResult {
        scenario: s.name.clone(),
        point: point.label.clone(),
        seed,
        engine: Engine::Plugtcp,
        duration_s: secs,
        retransmits: flows_out.iter().map(|f| f.retransmits).sum(),
        flows: flows_out,
        links,
        bottleneck,
        jain: crate::ccsim::jain_index(&goodputs),
        loss_rate: if offered == 0 {
            0.0
        } else {
            dropped as f64 / offered as f64
        },
        flow_series,
        queue_series,
    })
}

/// One sample of flow `k` at time `t` (s).
fn sample_flow(net: &mut LabNet, f: &mut Flow, k: usize, t: f64, sample_ns: u64) -> FlowSample {
    let goodput =
        (f.received.bytes - f.last_received) as f64 * 8.0 / (sample_ns as f64 / 1e9) / 1e6;
    f.last_received = f.received.bytes;
    let h = &mut net.senders[f.spec];
    let mut out = FlowSample {
        t,
        flow: k,
        goodput_mbps: goodput,
        cwnd_bytes: 0,
        srtt_ms: 0.0,
        pacing_mbps: 0.0,
        retransmits: 0,
        inflight_bytes: 0,
        rwnd_bytes: 0,
    };
    let Some(c) = f.tx else {
        return out;
    };
    if h.state(c) != Some(TcpState::Established) {
        return out;
    }
    if let Ok(i) = h.tcp_info(c) {
        out.cwnd_bytes = i.tcpi_snd_cwnd as u64;
        out.srtt_ms = i.tcpi_rtt as f64 / 1e3;
        out.retransmits = i.tcpi_snd_rexmitpack as u64;
        out.inflight_bytes = i.tcpi_flight as u64;
        out.rwnd_bytes = i.tcpi_snd_wnd as u64;
        let mss = i.tcpi_snd_mss.max(1) as u64;
        // Data waiting to be sent: the application is not what holds it.
        let busy = f.app == AppKind::Bulk
            && !f.closed
            && f.done_at.is_none()
            && h.send_space(c) < mss as usize;
        if busy {
            f.busy_samples += 1;
            let window_full = out.inflight_bytes + 2 * mss >= out.rwnd_bytes;
            if out.rwnd_bytes < out.cwnd_bytes && window_full {
                f.rwnd_samples += 1;
            } else {
                let mut b = [0u8; 4];
                let sndbuf = h
                    .getsockopt(c, SOL_SOCKET, SO_SNDBUF, &mut b)
                    .map_or(0, |_| i32::from_ne_bytes(b) as u64);
                // Everything the buffer holds is in flight and the window would take more.
                if sndbuf < out.cwnd_bytes && out.inflight_bytes + 2 * mss >= sndbuf {
                    f.sndbuf_samples += 1;
                }
            }
        }
    }
    let mut info = [0u8; 256];
    if let Ok(n) = h.getsockopt(c, IPPROTO_TCP, TCP_INFO, &mut info) {
        if n >= tcpi_off::PACING_RATE + 8 {
            let mut r = [0u8; 8];
            r.copy_from_slice(&info[tcpi_off::PACING_RATE..tcpi_off::PACING_RATE + 8]);
            out.pacing_mbps = u64::from_ne_bytes(r) as f64 * 8.0 / 1e6;
        }
    }
    out
}

/// A flow's sample as gauges labelled by engine, sweep point, seed and flow.
pub(crate) fn publish_flow(engine: Engine, point: &str, seed: u64, flow: &str, x: &FlowSample) {
    let labels = [
        ("engine", engine.name().to_string()),
        ("point", point.to_string()),
        ("seed", seed.to_string()),
        ("flow", flow.to_string()),
    ];
    metrics::gauge!("plugtcp_lab_flow_goodput_mbps", &labels).set(x.goodput_mbps);
    metrics::gauge!("plugtcp_lab_flow_cwnd_bytes", &labels).set(x.cwnd_bytes as f64);
    metrics::gauge!("plugtcp_lab_flow_srtt_ms", &labels).set(x.srtt_ms);
    metrics::gauge!("plugtcp_lab_flow_pacing_mbps", &labels).set(x.pacing_mbps);
    metrics::gauge!("plugtcp_lab_flow_inflight_bytes", &labels).set(x.inflight_bytes as f64);
    metrics::gauge!("plugtcp_lab_flow_retransmits", &labels).set(x.retransmits as f64);
}

/// How far a run is (s of its own time: virtual for the simulator, real for the kernel).
pub(crate) fn publish_time(engine: Engine, point: &str, seed: u64, t: f64) {
    metrics::gauge!(
        "plugtcp_lab_run_time_seconds",
        "engine" => engine.name(),
        "point" => point.to_string(),
        "seed" => seed.to_string()
    )
    .set(t);
}

/// A link's queue sample as gauges.
pub(crate) fn publish_queue(engine: Engine, point: &str, seed: u64, link: &str, q: &QueueSample) {
    let labels = [
        ("engine", engine.name().to_string()),
        ("point", point.to_string()),
        ("seed", seed.to_string()),
        ("link", link.to_string()),
    ];
    metrics::gauge!("plugtcp_lab_queue_backlog_bytes", &labels).set(q.backlog_bytes as f64);
    metrics::gauge!("plugtcp_lab_queue_delay_ms", &labels).set(q.delay_ms);
    metrics::gauge!("plugtcp_lab_queue_drops", &labels).set(q.drops as f64);
    metrics::gauge!("plugtcp_lab_queue_marks", &labels).set(q.marks as f64);
}

/// The applications' turn: start flows that are due, write, read, accept, close.
fn pump(
    net: &mut LabNet,
    flows: &mut [Flow],
    data_listen: &[usize],
    rr_listen: &[usize],
    rbuf: &mut [u8],
) {
    let now = net.now;
    for i in 0..data_listen.len() {
        accept_all(&mut net.receivers[i], data_listen[i], flows, i, false);
        accept_all(&mut net.senders[i], rr_listen[i], flows, i, true);
    }
    for f in flows.iter_mut() {
        let i = f.spec;
        if !f.started {
            if now < f.start {
                continue;
            }
            f.started = true;
            let r = if f.app == AppKind::RequestResponse {
                let server: SocketAddr = (sender_addr(i), RR_PORT).into();
                net.receivers[i].connect(server, None).map(|c| {
                    f.rx = Some(c);
                    net.receivers[i].local_addr(c).map_or(0, |a| a.port())
                })
            } else {
                let server: SocketAddr = (receiver_addr(i), DATA_PORT).into();
                net.senders[i].connect(server, None).map(|c| {
                    f.tx = Some(c);
                    net.senders[i].local_addr(c).map_or(0, |a| a.port())
                })
            };
            match r {
                Ok(p) => f.client_port = p,
                Err(_) => {
                    f.closed = true;
                    continue;
                }
            }
        }
        if f.closed {
            // Drain what is still arriving.
            if let Some(c) = f.rx {
                if f.app != AppKind::RequestResponse {
                    f.received.read(&mut net.receivers[i], c, rbuf);
                }
            }
            continue;
        }
        if now > f.stop {
            close(net, f);
            continue;
        }
        match f.app {
            AppKind::Bulk | AppKind::OnOff => {
                let sending = f.app == AppKind::Bulk || f.on_at(now);
                if let Some(c) = f.tx {
                    let h = &mut net.senders[i];
                    if sending && h.state(c) == Some(TcpState::Established) {
                        let mut limit = f.size;
                        if f.app == AppKind::OnOff {
                            // An on/off source keeps little unsent data queued, so that
                            // its "off" is silence on the wire, not a send buffer draining.
                            let flight = h
                                .tcpcb(c)
                                .map_or(0, |tp| tp.snd_max.wrapping_sub(tp.snd_una) as usize);
                            let unsent = h.unacked(c).saturating_sub(flight);
                            let room = ON_OFF_UNSENT.saturating_sub(unsent) as u64;
                            let cap = f.data.bytes + room;
                            limit = Some(limit.map_or(cap, |l| l.min(cap)));
                        }
                        f.data.write(h, c, limit);
                        if f.size.is_some_and(|sz| f.data.bytes >= sz) {
                            let _ = h.shutdown(c, Shutdown::Write);
                        }
                    }
                }
                if let Some(c) = f.rx {
                    f.received.read(&mut net.receivers[i], c, rbuf);
                    if f.size.is_some_and(|sz| f.received.bytes >= sz) && f.done_at.is_none() {
                        f.done_at = Some(now);
                    }
                }
            }
            AppKind::RequestResponse => rr_turn(net, f, rbuf, now),
        }
    }
}

/// Request/response: the client (receiver host, `rx`) asks, the server (sender host, `tx`)
/// answers; the response is the measured stream.
fn rr_turn(net: &mut LabNet, f: &mut Flow, rbuf: &mut [u8], now: u64) {
    let i = f.spec;
    let (Some(client), server) = (f.rx, f.tx) else {
        return;
    };
    if conn_state(&net.receivers[i], Some(client)) != Some(TcpState::Established) {
        return;
    }
    // Server: read requests, answer each whole request with a response.
    if let Some(s) = server {
        let before = f.req_rx.bytes;
        f.req_rx.read(&mut net.senders[i], s, rbuf);
        let requests_done = f.req_rx.bytes / f.request;
        let answered_before = before / f.request;
        let owed = (requests_done - answered_before) * f.response;
        f.rr_expect += owed;
        let target = f.data.bytes + f.rr_expect;
        if f.rr_expect > 0 {
            let was = f.data.bytes;
            f.data.write(&mut net.senders[i], s, Some(target));
            f.rr_expect -= f.data.bytes - was;
        }
    }
    // Client.
    f.received.read(&mut net.receivers[i], client, rbuf);
    match f.rr {
        RrPhase::Requesting => {
            let goal = (f.exchanges + 1) * f.request;
            f.req_tx.write(&mut net.receivers[i], client, Some(goal));
            if f.req_tx.bytes >= goal {
                f.rr = RrPhase::Waiting;
            }
        }
        RrPhase::Waiting => {
            if f.received.bytes >= (f.exchanges + 1) * f.response {
                f.exchanges += 1;
                f.rr = RrPhase::Thinking(now + f.think);
            }
        }
        RrPhase::Thinking(until) => {
            if now >= until {
                f.rr = RrPhase::Requesting;
                let goal = (f.exchanges + 1) * f.request;
                f.req_tx.write(&mut net.receivers[i], client, Some(goal));
                if f.req_tx.bytes >= goal {
                    f.rr = RrPhase::Waiting;
                }
            }
        }
    }
}

/// Accepts every waiting connection of `[[flow]]` table `i` on `h`'s listener `lid` and
/// hands each to the flow whose client port it comes from.
fn accept_all(h: &mut Host, lid: usize, flows: &mut [Flow], i: usize, rr: bool) {
    while let Ok(c) = h.accept(lid) {
        let port = h.peer_addr(c).map_or(0, |a| a.port());
        let owner = flows.iter_mut().find(|f| {
            f.spec == i && f.client_port == port && (f.app == AppKind::RequestResponse) == rr
        });
        match owner {
            Some(f) if rr => f.tx = Some(c),
            Some(f) => f.rx = Some(c),
            None => h.close(c),
        }
    }
}

fn close(net: &mut LabNet, f: &mut Flow) {
    let i = f.spec;
    f.closed = true;
    if let Some(c) = f.tx {
        let _ = net.senders[i].shutdown(c, Shutdown::Write);
    }
    if f.app == AppKind::RequestResponse {
        if let Some(c) = f.rx {
            let _ = net.receivers[i].shutdown(c, Shutdown::Write);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = DelayHistogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 / 50_000_000.0 - 1.0).abs() < 0.02, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 / 99_000_000.0 - 1.0).abs() < 0.02, "{p99}");
        assert_eq!(DelayHistogram::default().quantile(0.5), 0);
    }
}
