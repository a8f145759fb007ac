//! `plugtcp lab run --kernel`: the same scenario with the Linux kernel's own TCP, in real
//! time, over veth pairs between network namespaces, the bottleneck queues built with tc,
//! producing the [`RunResult`] the simulator produces so the two are compared side by side.
//!
//! - [`plan`]: what to build, from the scenario (queue limits as the simulator sizes them,
//!   tc words of each queue discipline, sysctls mapped to Linux's).
//! - [`topo`]: namespaces (one per host and per router), veths, routes and qdiscs: htb at
//!   the link's rate with the scenario's AQM under it.
//! - [`delay`]: propagation delay, jitter and random loss: userspace delay lines on TUN
//!   devices (no netem needed; its module comment says why).
//! - [`traffic`]: the applications on kernel sockets (TCP_CONGESTION per socket), SHA-256 of
//!   every stream, TCP_INFO.
//!
//! This module runs them: every `sample` it reads each sender's TCP_INFO and each queue's
//! `tc -s -j qdisc` counters, changes capacities at their times (schedules, and traces as
//! 100 ms average rates), and summarises the run as the simulator does.
//!
//! Differences from the simulator worth knowing: time is real (a 30 s scenario takes 30 s);
//! the kernel does not report per-packet sojourn times, so queueing delay is estimated from
//! each sample's backlog as `backlog * 8 / rate`; what limited a flow comes from the
//! kernel's own busy / rwnd-limited / sndbuf-limited times (TCP_INFO); `stack` is ignored
//! (the kernel has its own), and sysctls without a Linux equivalent are skipped with a note.

pub mod delay;
pub mod plan;
pub mod topo;
pub mod traffic;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use plugtcp_io::netns;

use super::results::{
    busiest_link, Engine, FlowSample, FlowSummary, Limit, LinkSummary, QueueSample, RunResult,
};
use super::scenario::{AppKind, SweepPoint};
use delay::{LineSpec, LineStats};
use plan::{addr, receiver_net, sender_net, HostSetting, Plan};
use topo::{Lab, QdiscStats};
use traffic::{EndCtx, EndOut, FlowShared, Gate, TcpInfo};

pub use plan::kernel_cc_name;
pub use topo::own_namespaces;

/// Whether `--kernel` can run here: root, iproute2's `ip` and `tc`, TUN devices. The error
/// says what is missing.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "--kernel needs root (it makes network namespaces, veth pairs and qdiscs)".into(),
        );
    }
    for tool in ["ip", "tc"] {
        match Command::new(tool).arg("-V").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(format!(
                    "--kernel needs iproute2's `{tool}`: `{tool} -V` failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => return Err(format!("--kernel needs iproute2's `{tool}`: {e}")),
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err("--kernel needs /dev/net/tun (the links' delay lines are TUN devices)".into());
    }
    Ok(())
}

/// Checks that the kernel has `name` (loading tcp_<name> where modules can be loaded).
fn check_cc(table: usize, name: &str) -> Result<(), String> {
    let path = "/proc/sys/net/ipv4/tcp_available_congestion_control";
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    let has = |list: &str| list.split_whitespace().any(|c| c == name);
    if has(&read()) {
        return Ok(());
    }
    let _ = Command::new("modprobe")
        .args(["-q", &format!("tcp_{name}")])
        .stderr(std::process::Stdio::null())
        .status();
    let list = read();
    if has(&list) {
        return Ok(());
    }
    Err(format!(
        "flow[{table}]: the kernel has no `{name}` congestion control (module tcp_{name}, \
         CONFIG_TCP_CONG_{}; it has: {})",
        name.to_ascii_uppercase(),
        list.trim()
    ))
}

/// Runs sweep point `point` (of the scenario file at `scenario_path`) with seed `seed` on the
/// kernel. Takes the scenario's duration in real time, plus a second or so of setup.
pub fn run_kernel(
    scenario_path: &Path,
    point: &SweepPoint,
    seed: u64,
) -> Result<RunResult, String> {
    run_kernel_with(scenario_path, point, seed, false)
}

/// As [`run_kernel`]; with `metrics`, every sample is also published as the lab's gauges
/// (`lab run --kernel --metrics`: a kernel run is real time, so it is watched as it runs).
pub fn run_kernel_with(
    scenario_path: &Path,
    point: &SweepPoint,
    seed: u64,
    metrics: bool,
) -> Result<RunResult, String> {
    available()?;
    let s = &point.scenario;
    let name = if s.name.is_empty() {
        scenario_path.file_stem().map_or_else(
            || "scenario".to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    } else {
        s.name.clone()
    };
    let plan = Plan::new(s, scenario_path, seed, &name)?;
    let mut checked = Vec::new();
    for f in &plan.flows {
        if !checked.contains(&f.kernel_cc) {
            check_cc(f.table, f.kernel_cc)?;
            checked.push(f.kernel_cc);
        }
    }
    topo::remove_stale();
    let lab = Lab::build(&plan)?;
    let publish = metrics.then_some((point.label.as_str(), seed));
    let m = execute(&plan, &lab, publish);
    drop(lab);
    let m = m?;
    Ok(summarise(&plan, point, m))
}

/// Sets the flag when dropped: every thread of the run stops, on every way out.
struct Over<'a>(&'a AtomicBool);

impl Drop for Over<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Per flow, what was measured.
struct FlowMeasure {
    /// Bytes read by the end of the run.
    received: u64,
    /// (seconds since t0, bytes read) at every sample and just after the end.
    received_at: Vec<(f64, u64)>,
    done_at_ns: Option<u64>,
    info: Option<TcpInfo>,
    intact: bool,
    /// Samples with data in flight, and those the receive window limited (the fallback
    /// when TCP_INFO has no rwnd-limited time).
    busy_samples: u64,
    rwnd_samples: u64,
}

/// Per link, the counters over the run and what the samples saw.
struct LinkMeasure {
    /// Counters over the run (bytes and packets interpolated to its exact end).
    stats: QdiscStats,
    /// (seconds since t0, bytes, packets sent) at every sample and just after the end.
    sent_at: Vec<(f64, u64, u64)>,
    random_losses: u64,
    max_backlog: u64,
    delays_ms: Vec<f64>,
}

struct Measured {
    flows: Vec<FlowMeasure>,
    links: Vec<LinkMeasure>,
    flow_series: Vec<FlowSample>,
    queue_series: Vec<QueueSample>,
}

fn diff(a: &QdiscStats, b: &QdiscStats) -> QdiscStats {
    QdiscStats {
        bytes: a.bytes.saturating_sub(b.bytes),
        packets: a.packets.saturating_sub(b.packets),
        backlog_bytes: a.backlog_bytes,
        backlog_packets: a.backlog_packets,
        drops: a.drops.saturating_sub(b.drops),
        marks: a.marks.saturating_sub(b.marks),
    }
}

/// The delay lines of the plan: per link, forward on X_k and reverse on X_k+1; the flows'
/// access delays ride on link 0's.
fn line_specs(plan: &Plan, lab: &Lab) -> Vec<LineSpec> {
    let mut v = Vec::new();
    for (k, l) in plan.links.iter().enumerate() {
        let (fwd, rev): (Vec<u64>, Vec<u64>) = if k == 0 {
            plan.hosts
                .iter()
                .map(|h| (h.extra_fwd_ns, h.extra_rev_ns))
                .unzip()
        } else {
            (vec![], vec![])
        };
        v.push(LineSpec {
            ns: lab.routers[k].name().to_string(),
            dev: "fwd".into(),
            delay_ns: l.delay_ns,
            jitter_ns: l.jitter_ns,
            loss: l.loss,
            per_table_ns: fwd,
            by_dst: false,
            seed: plan.seed ^ (0x1000 + k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        });
        v.push(LineSpec {
            ns: lab.routers[k + 1].name().to_string(),
            dev: "rev".into(),
            delay_ns: l.delay_ns,
            jitter_ns: 0,
            loss: 0.0,
            per_table_ns: rev,
            by_dst: true,
            seed: plan.seed ^ (0x2000 + k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        });
    }
    v
}

/// Packets a TUN device dropped because its line fell behind (should be none).
fn tun_drops(ns: &str, dev: &str) -> u64 {
    topo::cmd("ip", &["-n", ns, "-s", "-j", "link", "show", "dev", dev])
        .ok()
        .and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok())
        .and_then(|v| {
            v.get(0)?
                .get("stats64")?
                .get("tx")?
                .get("dropped")?
                .as_u64()
        })
        .unwrap_or(0)
}

/// Builds the rest (delay lines, routes, qdiscs), runs the flows for the duration and
/// samples them.
/// `publish`: the run's sweep point and seed, when its samples are to be published.
fn execute(plan: &Plan, lab: &Lab, publish: Option<(&str, u64)>) -> Result<Measured, String> {
    let over = AtomicBool::new(false);
    let gate = Gate::default();
    let specs = line_specs(plan, lab);
    let line_stats: Vec<LineStats> = specs.iter().map(|_| LineStats::default()).collect();
    let shared: Vec<FlowShared> = plan.flows.iter().map(|_| FlowShared::default()).collect();
    std::thread::scope(|sc| {
        let _over = Over(&over);
        // The delay lines: one thread opens each TUN device in its namespace, then runs all.
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        {
            let (specs, line_stats, over) = (specs.clone(), &line_stats, &over);
            sc.spawn(move || {
                let mut lines = Vec::new();
                for s in specs {
                    let fd = netns::enter(&s.ns)
                        .and_then(|_| delay::open_tun(&s.dev))
                        .map_err(|e| format!("TUN device {} in {}: {e}", s.dev, s.ns));
                    match fd {
                        Ok(fd) => lines.push((s, fd)),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                let _ = tx.send(Ok(()));
                delay::run(lines, line_stats, over);
            });
        }
        rx.recv_timeout(Duration::from_secs(20))
            .map_err(|_| "the delay lines did not start".to_string())??;
        lab.route(plan.links.len())?;
        lab.shape(&plan.links)?;

        // Both ends of every flow, each in its host's namespace.
        let (rtx, rrx) = mpsc::channel::<Result<(), String>>();
        let mut ends = Vec::new();
        for (j, f) in plan.flows.iter().enumerate() {
            let host = &plan.hosts[f.table];
            let fixed_sndbuf = host.settings.contains(&HostSetting::FixedSndbuf).then(|| {
                host.settings
                    .iter()
                    .rev()
                    .find_map(|s| match s {
                        HostSetting::Wmem(1, v) => Some(*v),
                        _ => None,
                    })
                    .unwrap_or(16_384)
            });
            let s_addr = addr(sender_net(f.table) + 2);
            let r_addr = addr(receiver_net(f.table) + 2);
            for sender_side in [true, false] {
                let ns = if sender_side {
                    lab.senders[f.table].name()
                } else {
                    lab.receivers[f.table].name()
                }
                .to_string();
                let ctx = EndCtx {
                    flow: f,
                    index: j,
                    seed: plan.seed,
                    shared: &shared[j],
                    gate: &gate,
                    over: &over,
                    local: if sender_side { s_addr } else { r_addr },
                    peer: if sender_side { r_addr } else { s_addr },
                    fixed_sndbuf,
                };
                let rtx = rtx.clone();
                ends.push((
                    j,
                    sc.spawn(move || -> Result<EndOut, String> {
                        let rr = ctx.flow.app == AppKind::RequestResponse;
                        let prep = netns::enter(&ns)
                            .map_err(|e| format!("entering {ns}: {e}"))
                            .and_then(|_| {
                                // The listening end: the receiver, or for request/response
                                // the sender (which answers with the flow's CC).
                                if sender_side == rr {
                                    let cc = sender_side.then_some(ctx.flow.kernel_cc);
                                    traffic::listen(&ctx, cc).map(Some)
                                } else {
                                    Ok(None)
                                }
                            });
                        let _ = rtx.send(prep.as_ref().map(|_| ()).map_err(Clone::clone));
                        let listener = prep?;
                        if sender_side {
                            traffic::sender_end(&ctx, listener)
                        } else {
                            traffic::receiver_end(&ctx, listener)
                        }
                    }),
                ));
            }
        }
        drop(rtx);
        for _ in 0..ends.len() {
            rrx.recv_timeout(Duration::from_secs(20))
                .map_err(|_| "the flows' ends did not get ready".to_string())?
                .map_err(|e| format!("flow setup: {e}"))?;
        }

        let m = sample_run(plan, lab, &gate, &shared, &line_stats, &over, publish);
        over.store(true, Ordering::Relaxed);
        let mut m = m?;
        for k in 0..plan.links.len() {
            for (ns, dev) in [
                (lab.routers[k].name(), "fwd"),
                (lab.routers[k + 1].name(), "rev"),
            ] {
                let d = tun_drops(ns, dev);
                if d > 0 {
                    plan::note_once(format!(
                        "link[{k}]: the delay line `{dev}` dropped {d} packets (this process \
                         fell behind; results are off)"
                    ));
                }
            }
        }
        // Join the ends; check the streams.
        let mut outs: Vec<(Option<EndOut>, Option<EndOut>)> =
            plan.flows.iter().map(|_| (None, None)).collect();
        for (j, h) in ends {
            let name = &plan.flows[j].name;
            let out = h
                .join()
                .map_err(|_| format!("flow {name}: a thread panicked"))?
                .map_err(|e| format!("flow {name}: {e}"))?;
            match out {
                o @ EndOut::Sender(..) => outs[j].0 = Some(o),
                o @ EndOut::Receiver(..) => outs[j].1 = Some(o),
            }
        }
        for (j, o) in outs.into_iter().enumerate() {
            m.flows[j].intact = match o {
                (Some(EndOut::Sender(data, req_read)), Some(EndOut::Receiver(read, req_sent))) => {
                    traffic::intact(&data, &read)
                        && req_sent.is_none_or(|rs| traffic::intact(&rs, &req_read))
                }
                _ => false,
            };
        }
        Ok(m)
    })
}

/// Nearest-rank percentile of sorted `xs`.
fn percentile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let i = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1;
    xs[i]
}

/// Opens the gate and, until the end of the run, samples every `sample` and applies the
/// capacity steps at their times (publishing each sample with `publish`).
fn sample_run(
    plan: &Plan,
    lab: &Lab,
    gate: &Gate,
    shared: &[FlowShared],
    line_stats: &[LineStats],
    over: &AtomicBool,
    publish: Option<(&str, u64)>,
) -> Result<Measured, String> {
    let nl = plan.links.len();
    let info_of = |j: usize| -> Option<TcpInfo> {
        let g = shared[j].info.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().and_then(|fd| traffic::tcp_info(fd.as_raw_fd()))
    };
    let queue = |k: usize| {
        let (ns, dev) = lab.queue_of(k);
        topo::qdisc_stats(ns, dev).map_err(|e| format!("link[{k}]: {e}"))
    };
    let base: Vec<QdiscStats> = (0..nl).map(queue).collect::<Result<_, _>>()?;
    let mut m = Measured {
        flows: plan
            .flows
            .iter()
            .map(|_| FlowMeasure {
                received: 0,
                received_at: vec![(0.0, 0)],
                done_at_ns: None,
                info: None,
                intact: false,
                busy_samples: 0,
                rwnd_samples: 0,
            })
            .collect(),
        links: (0..nl)
            .map(|_| LinkMeasure {
                stats: QdiscStats::default(),
                sent_at: vec![(0.0, 0, 0)],
                random_losses: 0,
                max_backlog: 0,
                delays_ms: Vec::new(),
            })
            .collect(),
        flow_series: Vec::new(),
        queue_series: Vec::new(),
    };
    let t0 = Instant::now() + Duration::from_millis(20);
    gate.open(t0);
    let dur = plan.duration_ns;
    let mut next_sample = plan.sample_ns;
    let mut step_at: Vec<usize> = vec![1; nl];
    let mut last_received = vec![0u64; plan.flows.len()];
    let mut last_t = 0.0f64;
    loop {
        let next_step = plan
            .links
            .iter()
            .zip(&step_at)
            .filter_map(|(l, &i)| l.steps.get(i).map(|s| s.0))
            .filter(|&t| t < dur)
            .min();
        let next = next_step.unwrap_or(u64::MAX).min(next_sample).min(dur);
        let until = t0 + Duration::from_nanos(next);
        while Instant::now() < until {
            if over.load(Ordering::Relaxed) {
                return Err("the run was stopped".into());
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        if next_step == Some(next) {
            for (k, l) in plan.links.iter().enumerate() {
                while let Some(&(at, bps)) = l.steps.get(step_at[k]) {
                    if at > next {
                        break;
                    }
                    topo::set_rate(lab.routers[k].name(), "next", bps)
                        .and_then(|_| topo::set_rate(lab.routers[k + 1].name(), "prev", bps))
                        .map_err(|e| format!("link[{k}]: {e}"))?;
                    step_at[k] += 1;
                }
            }
        }
        if next == next_sample && next_sample <= dur {
            let t = Instant::now().saturating_duration_since(t0).as_secs_f64();
            let dt = (t - last_t).max(1e-6);
            for (j, f) in plan.flows.iter().enumerate() {
                let got = shared[j].received.load(Ordering::Relaxed);
                let mut s = FlowSample {
                    t,
                    flow: j,
                    goodput_mbps: (got - last_received[j]) as f64 * 8.0 / dt / 1e6,
                    cwnd_bytes: 0,
                    srtt_ms: 0.0,
                    pacing_mbps: 0.0,
                    retransmits: 0,
                    inflight_bytes: 0,
                    rwnd_bytes: 0,
                };
                last_received[j] = got;
                m.flows[j].received_at.push((t, got));
                if let Some(i) = info_of(j) {
                    let mss = i.snd_mss.max(1) as u64;
                    s.cwnd_bytes = i.snd_cwnd as u64 * mss;
                    s.srtt_ms = i.rtt_us as f64 / 1e3;
                    // Linux paces by itself only for CCs that ask (BBR); the senders have no
                    // fq qdisc. Otherwise its pacing rate is computed but not applied.
                    if f.kernel_cc == "bbr" {
                        s.pacing_mbps = i.pacing_rate.unwrap_or(0) as f64 * 8.0 / 1e6;
                    }
                    s.retransmits = i.total_retrans as u64;
                    s.inflight_bytes = i.inflight_bytes();
                    s.rwnd_bytes = i.snd_wnd.unwrap_or(0) as u64;
                    let fm = &mut m.flows[j];
                    if s.inflight_bytes > 0 {
                        fm.busy_samples += 1;
                        if i.snd_wnd
                            .is_some_and(|w| s.inflight_bytes + 2 * mss >= w as u64)
                        {
                            fm.rwnd_samples += 1;
                        }
                    }
                }
                if let Some((point, seed)) = publish {
                    crate::lab::run::publish_flow(Engine::Kernel, point, seed, &f.name, &s);
                }
                m.flow_series.push(s);
            }
            for (k, b) in base.iter().enumerate() {
                let q = diff(&queue(k)?, b);
                let rate = plan.links[k].rate_at(next).max(1);
                // The kernel reports no sojourn times: the backlog's drain time at the
                // current rate stands for the queueing delay.
                let delay_ms = q.backlog_bytes as f64 * 8.0 / rate as f64 * 1e3;
                let lm = &mut m.links[k];
                lm.max_backlog = lm.max_backlog.max(q.backlog_bytes);
                lm.delays_ms.push(delay_ms);
                lm.sent_at.push((t, q.bytes, q.packets));
                let sample = QueueSample {
                    t,
                    link: k,
                    backlog_bytes: q.backlog_bytes,
                    backlog_packets: q.backlog_packets,
                    drops: q.drops,
                    marks: q.marks,
                    delay_ms,
                };
                if let Some((point, seed)) = publish {
                    let link = &plan.links[k].name;
                    crate::lab::run::publish_queue(Engine::Kernel, point, seed, link, &sample);
                }
                m.queue_series.push(sample);
            }
            if let Some((point, seed)) = publish {
                crate::lab::run::publish_time(Engine::Kernel, point, seed, t);
            }
            last_t = t;
            next_sample += plan.sample_ns;
        }
        if next >= dur {
            break;
        }
    }
    // The end of the run: final counters, before the ends stop. They are read a little
    // after the end (the sleep's and the samples' lateness), so bytes and packets are
    // interpolated back to the end itself: utilisation is over exactly the duration.
    let end_s = dur as f64 / 1e9;
    for (j, fm) in m.flows.iter_mut().enumerate() {
        let t = Instant::now().saturating_duration_since(t0).as_secs_f64();
        let got = shared[j].received.load(Ordering::Relaxed);
        fm.received_at.push((t, got));
        let pts: Vec<(f64, u64)> = fm.received_at.clone();
        fm.received = value_at(&pts, end_s);
        let d = shared[j].done_at_ns.load(Ordering::Relaxed);
        // Done after the end counts as not done, as in the simulator.
        fm.done_at_ns = (d <= dur).then_some(d);
        fm.info = info_of(j);
    }
    for (k, b) in base.iter().enumerate() {
        let t = Instant::now().saturating_duration_since(t0).as_secs_f64();
        let mut q = diff(&queue(k)?, b);
        let lm = &mut m.links[k];
        lm.max_backlog = lm.max_backlog.max(q.backlog_bytes);
        lm.sent_at.push((t, q.bytes, q.packets));
        let bytes: Vec<(f64, u64)> = lm.sent_at.iter().map(|x| (x.0, x.1)).collect();
        let packets: Vec<(f64, u64)> = lm.sent_at.iter().map(|x| (x.0, x.2)).collect();
        q.bytes = value_at(&bytes, end_s);
        q.packets = value_at(&packets, end_s);
        lm.stats = q;
        lm.random_losses = line_stats[2 * k].losses.load(Ordering::Relaxed);
    }
    Ok(m)
}

/// A counter at time `t` (s), linearly interpolated between the readings around it
/// (`points` in time order).
fn value_at(points: &[(f64, u64)], t: f64) -> u64 {
    match points.iter().position(|p| p.0 >= t) {
        None => points.last().map_or(0, |p| p.1),
        Some(0) => points[0].1,
        Some(i) => {
            let ((t0, v0), (t1, v1)) = (points[i - 1], points[i]);
            if t1 <= t0 || v1 <= v0 {
                return v0;
            }
            v0 + ((v1 - v0) as f64 * (t - t0) / (t1 - t0)).round() as u64
        }
    }
}

/// The run's summary, as the simulator makes it.
fn summarise(plan: &Plan, point: &SweepPoint, m: Measured) -> RunResult {
    let secs = plan.duration_ns as f64 / 1e9;
    let mut links = Vec::new();
    for (l, lm) in plan.links.iter().zip(&m.links) {
        let mut d = lm.delays_ms.clone();
        d.sort_by(f64::total_cmp);
        let delivered_bits = lm.stats.bytes as f64 * 8.0;
        links.push(LinkSummary {
            name: l.name.clone(),
            qdisc: l.qdisc.name().to_string(),
            capacity_bits: l.capacity_bits,
            delivered_bits,
            utilisation: if l.capacity_bits > 0.0 {
                delivered_bits / l.capacity_bits
            } else {
                0.0
            },
            limit_bytes: l.limit_bytes,
            max_backlog_bytes: lm.max_backlog,
            delay_p50_ms: percentile(&d, 0.50),
            delay_p95_ms: percentile(&d, 0.95),
            delay_p99_ms: percentile(&d, 0.99),
            packets: lm.stats.packets,
            drops: lm.stats.drops,
            random_losses: lm.random_losses,
            marks: lm.stats.marks,
        });
    }
    let bottleneck = busiest_link(&links);
    let flows: Vec<FlowSummary> = plan
        .flows
        .iter()
        .zip(&m.flows)
        .map(|(f, fm)| {
            let end = fm
                .done_at_ns
                .filter(|_| f.size.is_some())
                .unwrap_or(f.stop_ns);
            let active = end.saturating_sub(f.start_ns).max(1) as f64 / 1e9;
            // The bottleneck's queueing delay (estimated from its backlog) at the samples
            // taken while the flow was active: what every packet met in a FIFO; for
            // fq_codel the aggregate, not this flow's own queue.
            let (from, to) = (f.start_ns as f64 / 1e9, end as f64 / 1e9);
            let mut qd: Vec<f64> = m
                .queue_series
                .iter()
                .filter(|q| q.link == bottleneck && q.t >= from && q.t <= to)
                .map(|q| q.delay_ms)
                .collect();
            qd.sort_by(f64::total_cmp);
            // Shares of the busy time the kernel counted as limited by the receive window
            // or the send buffer; without them, the share of samples at the window.
            let (rwnd, sndbuf) = match fm.info {
                Some(TcpInfo {
                    busy_us: Some(b),
                    rwnd_limited_us: Some(r),
                    sndbuf_limited_us: Some(s),
                    ..
                }) if b > 0 => (r as f64 / b as f64, s as f64 / b as f64),
                _ => (fm.rwnd_samples as f64 / fm.busy_samples.max(1) as f64, 0.0),
            };
            let limited_by = Limit::classify(f.app == AppKind::Bulk, rwnd, sndbuf);
            FlowSummary {
                name: f.name.clone(),
                cc: f.cc.clone(),
                stack: f.stack.clone(),
                rtt_ms: f.rtt_ns as f64 / 1e6,
                start_s: f.start_ns as f64 / 1e9,
                bytes: fm.received,
                goodput_mbps: fm.received as f64 * 8.0 / active / 1e6,
                retransmits: fm.info.map_or(0, |i| i.total_retrans as u64),
                fct_s: f
                    .size
                    .and(fm.done_at_ns)
                    .map(|d| d.saturating_sub(f.start_ns) as f64 / 1e9),
                intact: fm.intact,
                queue_delay_p50_ms: percentile(&qd, 0.50),
                queue_delay_p95_ms: percentile(&qd, 0.95),
                limited_by,
                rwnd_limited: rwnd,
                sndbuf_limited: sndbuf,
            }
        })
        .collect();
    let offered: u64 = m
        .flows
        .iter()
        .map(|f| f.info.and_then(|i| i.segs_out).unwrap_or(0) as u64)
        .sum();
    let dropped: u64 = links.iter().map(|l| l.drops + l.random_losses).sum();
    let goodputs: Vec<f64> = flows.iter().map(|f| f.goodput_mbps).collect();
    RunResult {
        scenario: plan.scenario.clone(),
        point: point.label.clone(),
        seed: plan.seed,
        engine: Engine::Kernel,
        duration_s: secs,
        retransmits: flows.iter().map(|f| f.retransmits).sum(),
        flows,
        links,
        bottleneck,
        jain: crate::ccsim::jain_index(&goodputs),
        loss_rate: if offered == 0 {
            0.0
        } else {
            dropped as f64 / offered as f64
        },
        flow_series: m.flow_series,
        queue_series: m.queue_series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_interpolated_to_the_end() {
        let pts = [(0.0, 0), (2.9, 290), (3.1, 310)];
        assert_eq!(value_at(&pts, 3.0), 300);
        assert_eq!(value_at(&pts, 2.9), 290);
        assert_eq!(value_at(&pts, 5.0), 310);
        assert_eq!(value_at(&[(0.0, 0), (1.0, 10), (1.0, 12)], 1.0), 10);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&xs, 0.5), 50.0);
        assert_eq!(percentile(&xs, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[3.0], 0.95), 3.0);
    }

    #[test]
    fn missing_cc_names_the_flow_and_module() {
        let e = check_cc(1, "nosuchcc").unwrap_err();
        assert!(
            e.starts_with(
                "flow[1]: the kernel has no `nosuchcc` congestion control (module tcp_nosuchcc"
            ),
            "{e}"
        );
    }
}
