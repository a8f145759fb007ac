//! A scenario's network on the virtual clock: for each `[[flow]]` table a sender host and a
//! receiver host (so each has its own sysctls), an access delay line per host making up the
//! flow's RTT, and the scenario's links in series, each with a real queue ([`ShapedLink`]:
//! a queue discipline dequeued by a serializer at the link's capacity).
//!
//! ```text
//!  S_0 --access--\                                      /--access-- R_0
//!  S_1 --access---+-- link 0 -- link 1 -- ... -- link L-1 --+--access-- R_1
//! ```
//!
//! Forward packets (senders to receivers) cross the links' shaped queues; reverse packets
//! (ACKs, requests) cross each link's reverse direction: same rate and delay, unlimited FIFO.
//! A packet's tag is its `[[flow]]` table's index, which routes it at the far end.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::Host;
use plugtcp_io::mahimahi::{self, Trace};
use plugtcp_io::qdisc::{
    CodelConfig, FqCodelConfig, PieConfig, QdiscConfig, QueueLimit, RedConfig, StepConfig,
};
use plugtcp_io::shaped::{Capacity, ShapedLink, ShapedLinkConfig};

use super::scenario::{LinkSpec, QdiscKind, Scenario};
use super::units::QueueSize;

/// The MTU every host uses; queue sizes in packets count packets of this size.
pub const MTU: u64 = 1500;

/// Sender host of `[[flow]]` table `i`.
pub fn sender_addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, (i >> 8) as u8, (i & 0xff) as u8 + 1))
}

/// Receiver host of `[[flow]]` table `i`.
pub fn receiver_addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 2, (i >> 8) as u8, (i & 0xff) as u8 + 1))
}

/// One link of the path, both directions, and what it was built from.
pub struct PathLink {
    pub name: String,
    pub qdisc: QdiscKind,
    pub forward: ShapedLink,
    pub reverse: ShapedLink,
    /// Queue limit of the forward direction (bytes).
    pub limit_bytes: u64,
    pub capacity: Capacity,
}

/// The hosts and links of one run.
pub struct LabNet {
    pub now: u64,
    /// Per `[[flow]]` table: sender and receiver.
    pub senders: Vec<Host>,
    pub receivers: Vec<Host>,
    access_fwd: Vec<ShapedLink>,
    access_rev: Vec<ShapedLink>,
    pub links: Vec<PathLink>,
    /// Packets offered to the path by the senders (the loss rate's denominator).
    pub offered: u64,
}

/// A lossless, unlimited drop-tail line that records no sojourn times: the ACK direction of
/// a link, and the access delay lines.
fn plain_line(capacity: Capacity, delay_ns: u64, seed: u64) -> ShapedLink {
    let mut line = ShapedLink::new(ShapedLinkConfig {
        capacity,
        delay_ns,
        jitter_ns: 0,
        loss: 0.0,
        qdisc: QdiscConfig::DropTail,
        limit: QueueLimit {
            packets: None,
            bytes: None,
        },
        ecn: false,
        seed,
    });
    line.set_record_sojourns(false);
    line
}

/// Seeds for the parts of a run, all derived from the run's seed.
pub(crate) fn sub_seed(seed: u64, what: u64, i: u64) -> u64 {
    let mut x =
        seed ^ what.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 29)
}

/// The capacity a link spec describes (traces resolved against the scenario file).
pub fn capacity(spec: &LinkSpec, scenario_path: &std::path::Path) -> Result<Capacity, String> {
    if let Some(b) = spec.bandwidth {
        return Ok(Capacity::Rate(b.0));
    }
    if let Some(steps) = &spec.schedule {
        return Ok(Capacity::Schedule(
            steps.iter().map(|s| (s.at.0, s.bandwidth.0)).collect(),
        ));
    }
    if let Some(g) = &spec.generated_trace {
        let text = mahimahi::generate(g.seed, g.mean.mbps(), g.period.0 / 1_000_000, g.variability);
        let t = mahimahi::parse(&text).map_err(|e| format!("generated trace: {e}"))?;
        return Ok(Capacity::Trace(Arc::new(t)));
    }
    if let Some(p) = &spec.trace {
        let full = super::scenario::resolve(scenario_path, p);
        let t: Trace = mahimahi::load(&full)?;
        return Ok(Capacity::Trace(Arc::new(t)));
    }
    Err("a link needs a capacity".into())
}

/// Mean capacity (bits/s) over `[0, duration_ns)`.
pub fn mean_rate_bps(c: &Capacity, duration_ns: u64) -> f64 {
    match c {
        Capacity::Rate(r) => *r as f64,
        Capacity::Schedule(steps) => {
            let mut bits = 0.0;
            for (k, &(at, bps)) in steps.iter().enumerate() {
                let end = steps
                    .get(k + 1)
                    .map_or(duration_ns, |s| s.0)
                    .min(duration_ns);
                if end > at {
                    bits += bps as f64 * (end - at) as f64 / 1e9;
                }
            }
            bits / (duration_ns as f64 / 1e9)
        }
        Capacity::Trace(t) => {
            let n = t.opportunities_between(0, duration_ns);
            n as f64 * 1500.0 * 8.0 / (duration_ns as f64 / 1e9)
        }
    }
}

/// The queue discipline a link spec describes, sizes resolved for a BDP of `bdp` bytes.
fn qdisc_config(spec: &LinkSpec, bdp: u64, limit: u64) -> QdiscConfig {
    let qbytes = |q: &QueueSize| q.bytes(bdp, MTU) as usize;
    match spec.qdisc {
        QdiscKind::DropTail => QdiscConfig::DropTail,
        QdiscKind::Red => {
            // Unset thresholds follow tc-red's guidance from the limit (max = limit / 4,
            // min = max / 3).
            let _ = limit;
            let mut c = RedConfig::default();
            if let Some(r) = &spec.red {
                if let Some(m) = &r.min {
                    c.min_bytes = Some(qbytes(m));
                }
                if let Some(m) = &r.max {
                    c.max_bytes = Some(qbytes(m));
                }
                if let Some(p) = r.max_p {
                    c.max_p = p;
                }
                if let Some(w) = r.wq {
                    c.wq = w;
                }
                c.gentle = r.gentle;
            }
            QdiscConfig::Red(c)
        }
        QdiscKind::Codel => {
            let mut c = CodelConfig::default();
            if let Some(s) = &spec.codel {
                c.target_ns = s.target.map_or(c.target_ns, |d| d.0);
                c.interval_ns = s.interval.map_or(c.interval_ns, |d| d.0);
            }
            QdiscConfig::Codel(c)
        }
        QdiscKind::FqCodel => {
            let mut c = FqCodelConfig::default();
            if let Some(s) = &spec.fq_codel {
                c.target_ns = s.target.map_or(c.target_ns, |d| d.0);
                c.interval_ns = s.interval.map_or(c.interval_ns, |d| d.0);
                if let Some(f) = s.flows {
                    c.flows = f as usize;
                }
                if let Some(q) = s.quantum {
                    c.quantum = q as usize;
                }
            }
            QdiscConfig::FqCodel(c)
        }
        QdiscKind::Pie => {
            let mut c = PieConfig::default();
            if let Some(s) = &spec.pie {
                if let Some(t) = s.target {
                    c.target_ns = t.0;
                }
                if let Some(t) = s.tupdate {
                    c.tupdate_ns = t.0;
                }
                if let Some(a) = s.alpha {
                    c.alpha = a;
                }
                if let Some(b) = s.beta {
                    c.beta = b;
                }
            }
            QdiscConfig::Pie(c)
        }
        QdiscKind::Step => QdiscConfig::Step(StepConfig {
            threshold_bytes: spec
                .step
                .as_ref()
                .map_or(bdp as usize / 7, |s| qbytes(&s.threshold)),
        }),
    }
}

impl LabNet {
    /// Builds the network of `s` for the run with `seed`. Hosts load plugin files from
    /// `search_path` (then the built-ins) and are seeded (the simulator is deterministic).
    pub fn build(
        s: &Scenario,
        scenario_path: &std::path::Path,
        seed: u64,
        search_path: &SearchPath,
    ) -> Result<LabNet, String> {
        let statics = crate::builtins::plugins();
        let bdp_rtt = s.bdp_rtt_ns();
        let path_delay = s.path_delay_ns();
        let mut links = Vec::new();
        for (k, spec) in s.links.iter().enumerate() {
            let cap = capacity(spec, scenario_path).map_err(|e| format!("link[{k}]: {e}"))?;
            let rate = mean_rate_bps(&cap, s.duration.0.max(1));
            let bdp = (rate * bdp_rtt as f64 / 8e9) as u64;
            // A queue holds at least two packets, or no packet of full size would pass.
            let limit = spec.queue.bytes(bdp, MTU).max(2 * MTU);
            let limit_packets = match spec.queue {
                QueueSize::Packets(n) => Some(n.max(2) as usize),
                _ => None,
            };
            let forward = ShapedLink::new(ShapedLinkConfig {
                capacity: cap.clone(),
                delay_ns: spec.delay.0,
                jitter_ns: spec.jitter.0,
                loss: spec.loss,
                qdisc: qdisc_config(spec, bdp, limit),
                limit: QueueLimit {
                    packets: limit_packets,
                    bytes: if limit_packets.is_some() {
                        None
                    } else {
                        Some(limit as usize)
                    },
                },
                ecn: spec.ecn,
                seed: sub_seed(seed, 1, k as u64),
            });
            let reverse = plain_line(cap.clone(), spec.delay.0, sub_seed(seed, 2, k as u64));
            links.push(PathLink {
                name: if spec.name.is_empty() {
                    format!("link{k}")
                } else {
                    spec.name.clone()
                },
                qdisc: spec.qdisc,
                forward,
                reverse,
                limit_bytes: limit_packets.map_or(limit, |n| n as u64 * MTU),
                capacity: cap,
            });
        }
        let ecn = s.links.iter().any(|l| l.ecn);
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        let mut access_fwd = Vec::new();
        let mut access_rev = Vec::new();
        for (i, f) in s.flows.iter().enumerate() {
            let extra = s.flow_rtt_ns(f).saturating_sub(2 * path_delay);
            let delay_line = |d: u64, what: u64| {
                plain_line(Capacity::Rate(0), d, sub_seed(seed, what, i as u64))
            };
            access_fwd.push(delay_line(extra / 2, 3));
            access_rev.push(delay_line(extra - extra / 2, 4));
            for (role, addr) in [(0u64, sender_addr(i)), (1, receiver_addr(i))] {
                // A plugin file that fails to load is reported once by the driver; the run
                // fails only if a flow needs what it would have provided.
                let (mut h, _) =
                    Host::with_seed(search_path.clone(), sub_seed(seed, 5 + role, i as u64))
                        .autoload(&statics);
                h.add_addr(addr);
                let set = |h: &mut Host, k: &str, v: &str| -> Result<(), String> {
                    let full = if k.starts_with("net.") || k.starts_with("kern.") {
                        k.to_string()
                    } else {
                        format!("net.inet.tcp.{k}")
                    };
                    h.sysctl_set(&full, v)
                        .map(|_| ())
                        .map_err(|e| format!("flow[{i}]: sysctl {full}={v}: {e}"))
                };
                if ecn {
                    set(&mut h, "ecn.enable", "1")?;
                }
                if role == 0 {
                    if let Err(e) = h.sysctl_set("net.inet.tcp.cc.algorithm", &f.cc) {
                        return Err(format!(
                            "flow[{i}]: {}",
                            crate::ccsim::unknown_module(&h, &f.cc, e, search_path)
                        ));
                    }
                }
                set(&mut h, "functions_default", &f.stack)?;
                for (k, v) in &s.sysctls {
                    set(&mut h, k, &v.to_string())?;
                }
                for (k, v) in &f.sysctls {
                    set(&mut h, k, &v.to_string())?;
                }
                if role == 0 {
                    senders.push(h);
                } else {
                    receivers.push(h);
                }
            }
        }
        Ok(LabNet {
            now: 0,
            senders,
            receivers,
            access_fwd,
            access_rev,
            links,
            offered: 0,
        })
    }

    /// Moves what the hosts queued into their access lines.
    fn flush_tx(&mut self) {
        let now = self.now;
        let mut offered = 0;
        for (i, h) in self.senders.iter_mut().enumerate() {
            let line = &mut self.access_fwd[i];
            h.transmit(|pkt| {
                offered += 1;
                line.send(now, pkt, i as u32)
            });
        }
        self.offered += offered;
        for (i, h) in self.receivers.iter_mut().enumerate() {
            let line = &mut self.access_rev[i];
            h.transmit(|pkt| line.send(now, pkt, i as u32));
        }
    }

    /// When the next thing happens: a link event or a host timer.
    pub fn next_event(&self) -> Option<u64> {
        let links = self
            .links
            .iter()
            .flat_map(|l| [l.forward.next_event(), l.reverse.next_event()]);
        let access = self
            .access_fwd
            .iter()
            .chain(&self.access_rev)
            .map(|l| l.next_event());
        let hosts = self
            .senders
            .iter()
            .chain(&self.receivers)
            .map(|h| h.next_timeout());
        links.chain(access).chain(hosts).flatten().min()
    }

    /// Flushes what the hosts sent, then moves the clock to the next event (never past
    /// `deadline`) and delivers what is due. False when the clock stopped at `deadline`.
    pub fn step_until(&mut self, deadline: u64) -> bool {
        self.flush_tx();
        let t = match self.next_event() {
            Some(t) if t <= deadline => t,
            _ => {
                self.now = self.now.max(deadline);
                for h in self.senders.iter_mut().chain(self.receivers.iter_mut()) {
                    h.advance(self.now);
                }
                return false;
            }
        };
        self.now = self.now.max(t);
        let now = self.now;
        for h in self.senders.iter_mut().chain(self.receivers.iter_mut()) {
            h.set_now(now);
            h.batch_begin();
        }
        // Forward: access lines, then the links in path order (a packet may cross several
        // hops in one instant when they add no delay), then the receivers.
        let nlinks = self.links.len();
        {
            let (links, receivers) = (&mut self.links, &mut self.receivers);
            for line in &mut self.access_fwd {
                let first = &mut links[0].forward;
                line.poll(now, |pkt, tag| first.send(now, pkt, tag));
            }
            for k in 0..nlinks {
                let (head, tail) = links.split_at_mut(k + 1);
                let this = &mut head[k].forward;
                match tail.first_mut() {
                    Some(next) => this.poll(now, |pkt, tag| next.forward.send(now, pkt, tag)),
                    None => this.poll(now, |pkt, tag| {
                        if let Some(h) = receivers.get_mut(tag as usize) {
                            h.input(pkt);
                        }
                    }),
                }
            }
        }
        // Reverse: access lines, then the links backwards, then the senders.
        {
            let (links, senders) = (&mut self.links, &mut self.senders);
            for line in &mut self.access_rev {
                let last = &mut links[nlinks - 1].reverse;
                line.poll(now, |pkt, tag| last.send(now, pkt, tag));
            }
            for k in (0..nlinks).rev() {
                let (head, tail) = links.split_at_mut(k);
                let this = &mut tail[0].reverse;
                match head.last_mut() {
                    Some(prev) => this.poll(now, |pkt, tag| prev.reverse.send(now, pkt, tag)),
                    None => this.poll(now, |pkt, tag| {
                        if let Some(h) = senders.get_mut(tag as usize) {
                            h.input(pkt);
                        }
                    }),
                }
            }
        }
        for h in self.senders.iter_mut().chain(self.receivers.iter_mut()) {
            h.batch_end();
            h.advance(now);
        }
        self.flush_tx();
        true
    }
}
