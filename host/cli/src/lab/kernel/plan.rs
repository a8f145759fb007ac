//! What a kernel run builds, worked out before anything is touched: per link the capacity
//! steps, the queue limit and the tc words of its queue discipline; per `[[flow]]` table the
//! sysctls of its two hosts; per flow its timing and application. Pure (no side effects), so
//! it is unit-tested without root.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;

use plugtcp_io::mahimahi::Trace;

use crate::lab::scenario::{AppKind, LinkSpec, QdiscKind, Scenario, SysctlValue};
use crate::lab::units::QueueSize;

/// Every interface's MTU; queue sizes in packets count packets of this size, as the
/// simulator's do.
pub const MTU: u64 = 1500;

/// Capacity changes from traces are averaged over this long (one `tc class change` each).
pub const TRACE_BIN_NS: u64 = 100_000_000;

/// htb cannot have a rate of 0: a trace's silent stretch becomes this (bit/s).
pub const MIN_RATE_BPS: u64 = 8_000;

/// Port of flow copy `c`'s connection (bulk and on/off: the receiver listens; request/
/// response: the sender, which serves the responses, listens).
pub fn port(copy: u32) -> u16 {
    5000 + (copy % 60_000) as u16
}

/// Addresses. Each sender host hangs off router 0 on a /30 of its own in 10.64.0.0/10,
/// each receiver host off the last router in 10.128.0.0/9, and link k joins routers k and
/// k+1 on 10.0.0.4k/30. The router's end is `.1` of the /30, the host's `.2`.
pub fn sender_net(table: usize) -> u32 {
    0x0a40_0000 + 4 * table as u32
}
pub fn receiver_net(table: usize) -> u32 {
    0x0a80_0000 + 4 * table as u32
}
pub fn link_net(k: usize) -> u32 {
    0x0a00_0000 + 4 * k as u32
}
pub const SENDERS: &str = "10.64.0.0/10";
pub const RECEIVERS: &str = "10.128.0.0/9";

pub fn addr(x: u32) -> Ipv4Addr {
    Ipv4Addr::from(x)
}

/// The `[[flow]]` table a sender address belongs to.
pub fn sender_table(a: u32) -> Option<usize> {
    let off = a.checked_sub(0x0a40_0000)?;
    (off < 0x0040_0000).then_some((off / 4) as usize)
}

/// One link, as the kernel builds it.
#[derive(Clone, Debug)]
pub struct LinkPlan {
    pub name: String,
    pub qdisc: QdiscKind,
    /// Capacity over time: (ns since the start, bit/s), the first at 0.
    pub steps: Vec<(u64, u64)>,
    /// Capacity offered over the run (bits), as the simulator counts it.
    pub capacity_bits: f64,
    pub mean_bps: f64,
    /// The forward queue's limit (bytes; packets times the MTU for a limit in packets).
    pub limit_bytes: u64,
    /// The qdisc under htb's class (`tc qdisc add ... parent 1:1 handle 10: <these>`).
    pub child: Vec<String>,
    /// The kernel qdisc `child` needs (named in the error when the kernel lacks it).
    pub child_kind: &'static str,
    pub delay_ns: u64,
    pub jitter_ns: u64,
    pub loss: f64,
}

impl LinkPlan {
    /// The capacity (bit/s) at `t_ns`.
    pub fn rate_at(&self, t_ns: u64) -> u64 {
        self.steps
            .iter()
            .take_while(|s| s.0 <= t_ns)
            .last()
            .map_or(self.steps[0].1, |s| s.1)
    }
}

/// What one sysctl of the scenario becomes on a Linux host.
#[derive(Clone, Debug, PartialEq)]
pub enum HostSetting {
    /// A file under /proc/sys (path relative to it) and its value.
    Proc(String, String),
    /// One field (0: min, 1: default, 2: max) of net.ipv4.tcp_rmem / tcp_wmem.
    Rmem(usize, u64),
    Wmem(usize, u64),
    /// FreeBSD's sendbuf_auto = 0: Linux has no switch for send-buffer autotuning, so the
    /// sockets of the host get SO_SNDBUF (which turns it off) of the default size.
    FixedSndbuf,
}

/// The two hosts of one `[[flow]]` table.
#[derive(Clone, Debug, Default)]
pub struct HostPlan {
    pub settings: Vec<HostSetting>,
    /// The access delay (ns) the flow's RTT adds to the path's: forward (data) and reverse.
    pub extra_fwd_ns: u64,
    pub extra_rev_ns: u64,
}

/// One flow (one copy of a `[[flow]]` table).
#[derive(Clone, Debug)]
pub struct FlowPlan {
    pub table: usize,
    pub copy: u32,
    pub name: String,
    pub cc: String,
    pub kernel_cc: &'static str,
    pub stack: String,
    pub app: AppKind,
    pub rtt_ns: u64,
    pub start_ns: u64,
    /// min(its stop, the duration).
    pub stop_ns: u64,
    pub size: Option<u64>,
    pub on_ns: u64,
    pub off_ns: u64,
    pub request: u64,
    pub response: u64,
    pub think_ns: u64,
}

impl FlowPlan {
    /// Whether an on/off flow sends at `t_ns`.
    pub fn on_at(&self, t_ns: u64) -> bool {
        let period = self.on_ns + self.off_ns;
        period == 0 || t_ns.saturating_sub(self.start_ns) % period < self.on_ns
    }

    /// The next "on" edge after `t_ns` (on/off flows).
    pub fn next_on(&self, t_ns: u64) -> u64 {
        let period = (self.on_ns + self.off_ns).max(1);
        let into = t_ns.saturating_sub(self.start_ns) % period;
        t_ns - into + period
    }
}

/// The whole run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub scenario: String,
    pub duration_ns: u64,
    pub sample_ns: u64,
    pub seed: u64,
    pub links: Vec<LinkPlan>,
    pub hosts: Vec<HostPlan>,
    pub flows: Vec<FlowPlan>,
}

/// The kernel's name for a scenario's CC module (None: Linux has no counterpart).
pub fn kernel_cc_name(cc: &str) -> Option<&'static str> {
    Some(match cc.to_ascii_lowercase().as_str() {
        "cubic" => "cubic",
        "newreno" | "reno" => "reno",
        "bbr" => "bbr",
        "dctcp" => "dctcp",
        "vegas" => "vegas",
        "htcp" => "htcp",
        "cdg" => "cdg",
        _ => return None,
    })
}

/// Prints `msg` to stderr once per process (a sweep runs the same scenario many times).
pub fn note_once(msg: String) {
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.insert(msg.clone()) {
        eprintln!("kernel: {msg}");
    }
}

/// Maps one scenario sysctl (plugtcp's FreeBSD names, `net.inet.tcp.` optional) to what
/// Linux has. Linux names (`net.ipv4.*`, `net.core.*`) are written as they are. Err: the
/// value does not fit; Ok(empty): no Linux equivalent (the caller says so).
pub fn map_sysctl(key: &str, v: &SysctlValue) -> Result<Vec<HostSetting>, String> {
    let text = v.to_string();
    let num = || -> Result<u64, String> {
        match v {
            SysctlValue::Int(i) if *i >= 0 => Ok(*i as u64),
            SysctlValue::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("sysctl {key}: `{s}` is not a number")),
            SysctlValue::Int(i) => Err(format!("sysctl {key}: {i} is negative")),
        }
    };
    let proc = |p: &str, val: String| HostSetting::Proc(p.to_string(), val);
    if key.starts_with("net.ipv4.") || key.starts_with("net.core.") {
        return Ok(vec![proc(&key.replace('.', "/"), text)]);
    }
    let short = key.strip_prefix("net.inet.tcp.").unwrap_or(key);
    Ok(match short {
        // Both: 0 off, 1 ask for and accept ECN, 2 accept only.
        "ecn.enable" => vec![proc("net/ipv4/tcp_ecn", num()?.to_string())],
        "sack.enable" => vec![proc("net/ipv4/tcp_sack", num()?.min(1).to_string())],
        // RFC 1323 is window scaling and timestamps; Linux switches them separately.
        "rfc1323" => {
            let on = num()?.min(1).to_string();
            vec![
                proc("net/ipv4/tcp_window_scaling", on.clone()),
                proc("net/ipv4/tcp_timestamps", on),
            ]
        }
        // FreeBSD's initial buffer sizes, autotuned up to *buf_max: Linux's tcp_rmem and
        // tcp_wmem (min, default, max) do the same.
        "recvspace" => vec![HostSetting::Rmem(1, num()?)],
        "sendspace" => vec![HostSetting::Wmem(1, num()?)],
        "recvbuf_max" => vec![HostSetting::Rmem(2, num()?)],
        "sendbuf_max" => vec![HostSetting::Wmem(2, num()?)],
        "recvbuf_auto" => vec![proc(
            "net/ipv4/tcp_moderate_rcvbuf",
            num()?.min(1).to_string(),
        )],
        "sendbuf_auto" => {
            if num()? == 0 {
                vec![HostSetting::FixedSndbuf]
            } else {
                vec![]
            }
        }
        "syncookies" => vec![proc("net/ipv4/tcp_syncookies", num()?.min(2).to_string())],
        "path_mtu_discovery" => vec![proc(
            "net/ipv4/ip_no_pmtu_disc",
            u64::from(num()? == 0).to_string(),
        )],
        _ => vec![],
    })
}

/// Capacity steps of a link and the bits it offers over `duration_ns` (the simulator's
/// capacity, so both engines offer the same; a trace as 100 ms average rates).
fn capacity(
    spec: &LinkSpec,
    scenario_path: &Path,
    duration_ns: u64,
) -> Result<(Vec<(u64, u64)>, f64), String> {
    use plugtcp_io::shaped::Capacity;
    let cap = crate::lab::net::capacity(spec, scenario_path)?;
    let bits = crate::lab::net::mean_rate_bps(&cap, duration_ns) * duration_ns as f64 / 1e9;
    Ok(match &cap {
        Capacity::Rate(r) => (vec![(0, *r)], bits),
        Capacity::Schedule(steps) => (steps.clone(), bits),
        Capacity::Trace(t) => trace_steps(t, duration_ns),
    })
}

/// A trace as capacity steps: the mean rate of each [`TRACE_BIN_NS`] (the queue is a real
/// qdisc dequeued by htb, which cannot follow single delivery opportunities). Equal
/// neighbours merge. The capacity is the trace's own: 1500 bytes per opportunity.
pub fn trace_steps(t: &Trace, duration_ns: u64) -> (Vec<(u64, u64)>, f64) {
    let mut steps: Vec<(u64, u64)> = Vec::new();
    let mut at = 0;
    while at < duration_ns {
        let end = (at + TRACE_BIN_NS).min(duration_ns);
        let n = t.opportunities_between(at, end);
        let bps = ((n as f64 * MTU as f64 * 8.0) / ((end - at) as f64 / 1e9)).round() as u64;
        let bps = bps.max(MIN_RATE_BPS);
        if steps.last().is_none_or(|s| s.1 != bps) {
            steps.push((at, bps));
        }
        at = end;
    }
    if steps.is_empty() {
        steps.push((0, MIN_RATE_BPS));
    }
    let bits = t.opportunities_between(0, duration_ns) as f64 * MTU as f64 * 8.0;
    (steps, bits)
}

fn us(ns: u64) -> String {
    format!("{}us", (ns / 1000).max(1))
}

/// The qdisc under htb for a link's spec (tc words) and the kernel qdisc it needs.
/// `limit` is the queue in bytes, `limit_packets` set when the scenario gave packets.
fn child_qdisc(
    spec: &LinkSpec,
    bdp: u64,
    limit: u64,
    limit_packets: Option<u64>,
    rate_bps: u64,
) -> (Vec<String>, &'static str) {
    let qbytes = |q: &QueueSize| q.bytes(bdp, MTU);
    // AQMs with a packet limit: the byte limit in full-size packets.
    let pkts = limit_packets
        .unwrap_or_else(|| (limit / MTU).max(2))
        .to_string();
    let ecn = |on: bool| if on { "ecn" } else { "noecn" }.to_string();
    let w = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    match spec.qdisc {
        QdiscKind::DropTail => match limit_packets {
            Some(n) => (w(&["pfifo", "limit", &n.to_string()]), "pfifo"),
            None => (w(&["bfifo", "limit", &limit.to_string()]), "bfifo"),
        },
        QdiscKind::Red => {
            // The simulator's defaults: max a quarter of the limit, min a third of max.
            let r = spec.red.clone().unwrap_or_default();
            let max = r.max.as_ref().map_or(limit / 4, qbytes).max(2);
            let min = r.min.as_ref().map_or(max / 3, qbytes).min(max - 1).max(1);
            let avpkt = 1000u64;
            // tc derives the EWMA weight from `burst`; its recommended burst, or about 1/wq.
            let burst = match r.wq {
                Some(wq) if wq > 0.0 => ((1.0 / wq).round() as u64).max(min / avpkt + 1),
                _ => ((2 * min + max) / (3 * avpkt)).max(min / avpkt + 1),
            };
            let mut v = w(&[
                "red",
                "limit",
                &limit.max(max + 1).to_string(),
                "min",
                &min.to_string(),
                "max",
                &max.to_string(),
                "avpkt",
                &avpkt.to_string(),
                "burst",
                &burst.to_string(),
                "probability",
                &r.max_p.unwrap_or(0.02).to_string(),
                "bandwidth",
                &format!("{rate_bps}bit"),
            ]);
            if spec.ecn {
                v.push("ecn".into());
            }
            (v, "red")
        }
        QdiscKind::Codel => {
            let c = spec.codel.clone().unwrap_or_default();
            let mut v = w(&["codel", "limit", &pkts]);
            v.extend(w(&[
                "target",
                &us(c.target.map_or(5_000_000, |d| d.0)),
                "interval",
                &us(c.interval.map_or(100_000_000, |d| d.0)),
            ]));
            v.push(ecn(spec.ecn));
            (v, "codel")
        }
        QdiscKind::FqCodel => {
            let c = spec.fq_codel.clone().unwrap_or_default();
            let mut v = w(&["fq_codel", "limit", &pkts]);
            v.extend(w(&[
                "flows",
                &c.flows.unwrap_or(1024).max(1).to_string(),
                "quantum",
                &c.quantum.unwrap_or(1514).to_string(),
                "target",
                &us(c.target.map_or(5_000_000, |d| d.0)),
                "interval",
                &us(c.interval.map_or(100_000_000, |d| d.0)),
            ]));
            v.push(ecn(spec.ecn));
            (v, "fq_codel")
        }
        QdiscKind::Pie => {
            let c = spec.pie.clone().unwrap_or_default();
            // tc's alpha and beta are in units of 1/16 (alpha 2 = 0.125, beta 20 = 1.25).
            let mut v = w(&["pie", "limit", &pkts]);
            v.extend(w(&[
                "target",
                &us(c.target.map_or(15_000_000, |d| d.0)),
                "tupdate",
                &us(c.tupdate.map_or(15_000_000, |d| d.0)),
                "alpha",
                &((c.alpha.unwrap_or(0.125) * 16.0).round() as u64).to_string(),
                "beta",
                &((c.beta.unwrap_or(1.25) * 16.0).round() as u64).to_string(),
            ]));
            v.push(ecn(spec.ecn));
            (v, "pie")
        }
        QdiscKind::Step => {
            // DCTCP's step marking as RED: min = K, max just above, probability 1, and the
            // smallest burst tc accepts so the average follows the queue closely.
            let k = spec
                .step
                .as_ref()
                .map_or(bdp / 7, |s| qbytes(&s.threshold))
                .max(1);
            let v = w(&[
                "red",
                "limit",
                &limit.max(k + MTU + 1).to_string(),
                "min",
                &k.to_string(),
                "max",
                &(k + 1).to_string(),
                "avpkt",
                &MTU.to_string(),
                "burst",
                &(k / MTU + 1).to_string(),
                "probability",
                "1.0",
                "bandwidth",
                &format!("{rate_bps}bit"),
                "ecn",
            ]);
            (v, "red")
        }
    }
}

impl Plan {
    /// Works out the run of `s` (read from `scenario_path`, which traces are relative to).
    pub fn new(s: &Scenario, scenario_path: &Path, seed: u64, name: &str) -> Result<Plan, String> {
        let duration_ns = s.duration.0;
        let bdp_rtt = s.bdp_rtt_ns();
        let path_delay = s.path_delay_ns();
        let mut links = Vec::new();
        for (k, spec) in s.links.iter().enumerate() {
            let (steps, capacity_bits) = capacity(spec, scenario_path, duration_ns)
                .map_err(|e| format!("link[{k}]: {e}"))?;
            let secs = duration_ns.max(1) as f64 / 1e9;
            let mean_bps = capacity_bits / secs;
            // As the simulator: the BDP at the mean rate, at least two full packets.
            let bdp = (mean_bps * bdp_rtt as f64 / 8e9) as u64;
            let limit = spec.queue.bytes(bdp, MTU).max(2 * MTU);
            let limit_packets = match spec.queue {
                QueueSize::Packets(n) => Some(n.max(2)),
                _ => None,
            };
            let (child, child_kind) =
                child_qdisc(spec, bdp, limit, limit_packets, mean_bps.round() as u64);
            links.push(LinkPlan {
                name: if spec.name.is_empty() {
                    format!("link{k}")
                } else {
                    spec.name.clone()
                },
                qdisc: spec.qdisc,
                steps,
                capacity_bits,
                mean_bps,
                limit_bytes: limit_packets.map_or(limit, |n| n * MTU),
                child,
                child_kind,
                delay_ns: spec.delay.0,
                jitter_ns: spec.jitter.0,
                loss: spec.loss,
            });
        }
        let ecn = s.links.iter().any(|l| l.ecn);
        let mut hosts = Vec::new();
        for (i, f) in s.flows.iter().enumerate() {
            let mut settings = Vec::new();
            if ecn {
                settings.push(HostSetting::Proc("net/ipv4/tcp_ecn".into(), "1".into()));
            }
            for (k, v) in s.sysctls.iter().chain(&f.sysctls) {
                let short = k.strip_prefix("net.inet.tcp.").unwrap_or(k);
                if short == "cc.algorithm" || short == "functions_default" {
                    // The flow's cc and stack say these.
                    continue;
                }
                let mapped = map_sysctl(k, v).map_err(|e| format!("flow[{i}]: {e}"))?;
                if mapped.is_empty() {
                    note_once(format!("sysctl {k} has no Linux equivalent, not set"));
                }
                settings.extend(mapped);
            }
            if f.stack != "base" {
                note_once(format!(
                    "stack `{}` is plugtcp's; the kernel runs its own TCP stack",
                    f.stack
                ));
            }
            let extra = s.flow_rtt_ns(f).saturating_sub(2 * path_delay);
            hosts.push(HostPlan {
                settings,
                extra_fwd_ns: extra / 2,
                extra_rev_ns: extra - extra / 2,
            });
        }
        let mut flows = Vec::new();
        for (table, copy, f) in s.expanded_flows() {
            let kernel_cc = kernel_cc_name(&f.cc).ok_or_else(|| {
                format!(
                    "flow[{table}]: `{}` has no counterpart in the Linux kernel (it has cubic, \
                     reno (newreno), bbr, dctcp, vegas, htcp, cdg)",
                    f.cc
                )
            })?;
            flows.push(FlowPlan {
                table,
                copy,
                name: f.label(copy),
                cc: f.cc.clone(),
                kernel_cc,
                stack: f.stack.clone(),
                app: f.app,
                rtt_ns: s.flow_rtt_ns(f),
                start_ns: f.start.0 + f.stagger.0 * copy as u64,
                stop_ns: f.stop.map_or(duration_ns, |d| d.0).min(duration_ns),
                size: f.size.map(|x| x.0),
                on_ns: f.on.map_or(0, |d| d.0),
                off_ns: f.off.map_or(0, |d| d.0),
                request: f.request.map_or(0, |x| x.0),
                response: f.response.map_or(0, |x| x.0),
                think_ns: f.think.map_or(0, |d| d.0),
            });
        }
        Ok(Plan {
            scenario: name.to_string(),
            duration_ns,
            sample_ns: s.sample.0,
            seed,
            links,
            hosts,
            flows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::scenario;

    fn plan(text: &str) -> Plan {
        let f = scenario::parse(Path::new("/tmp/t.toml"), text).unwrap();
        Plan::new(&f.points[0].scenario, &f.path, 1, "t").unwrap()
    }

    #[test]
    fn queue_limits_follow_the_simulator() {
        let p = plan(
            "duration = \"2s\"\n[[link]]\nbandwidth = \"20Mbit\"\ndelay = \"10ms\"\nqueue = \"1bdp\"\n\
             [[flow]]\ncc = \"cubic\"\nrtt = \"40ms\"\n",
        );
        let l = &p.links[0];
        // 20 Mbit/s * 40 ms = 100 kB.
        assert_eq!(l.limit_bytes, 100_000);
        assert_eq!(l.child, ["bfifo", "limit", "100000"]);
        assert_eq!(l.capacity_bits, 40e6);
        assert_eq!(p.hosts[0].extra_fwd_ns, 10_000_000);
        assert_eq!(p.hosts[0].extra_rev_ns, 10_000_000);
        assert_eq!(p.flows[0].kernel_cc, "cubic");

        let p = plan(
            "duration = \"2s\"\n[[link]]\nbandwidth = \"20Mbit\"\nqueue = \"1p\"\n\
             [[flow]]\ncc = \"newreno\"\ncount = 2\nstagger = \"1s\"\n",
        );
        assert_eq!(p.links[0].child, ["pfifo", "limit", "2"]);
        assert_eq!(p.links[0].limit_bytes, 3000);
        assert_eq!(p.flows.len(), 2);
        assert_eq!(p.flows[1].start_ns, 1_000_000_000);
        assert_eq!(p.flows[1].kernel_cc, "reno");
    }

    #[test]
    fn aqms_become_tc_words() {
        let p = plan(
            "duration = \"2s\"\n[[link]]\nbandwidth = \"10Mbit\"\ndelay = \"20ms\"\nqueue = \"100p\"\n\
             qdisc = \"fq_codel\"\necn = true\nfq_codel = { target = \"2ms\" }\n[[flow]]\n",
        );
        assert_eq!(
            p.links[0].child.join(" "),
            "fq_codel limit 100 flows 1024 quantum 1514 target 2000us interval 100000us ecn"
        );
        assert_eq!(p.links[0].child_kind, "fq_codel");
        assert!(p.hosts[0]
            .settings
            .contains(&HostSetting::Proc("net/ipv4/tcp_ecn".into(), "1".into())));
        let p = plan(
            "duration = \"2s\"\n[[link]]\nbandwidth = \"10Mbit\"\nqdisc = \"step\"\n\
             step = { threshold = \"30KB\" }\n[[flow]]\ncc = \"dctcp\"\n",
        );
        let c = p.links[0].child.join(" ");
        assert!(
            c.starts_with("red limit ") && c.contains(" min 30000 max 30001 "),
            "{c}"
        );
        assert!(
            c.ends_with(" probability 1.0 bandwidth 10000000bit ecn"),
            "{c}"
        );
    }

    #[test]
    fn sysctls_map_to_linux_or_to_nothing() {
        let m = |k: &str, v: i64| map_sysctl(k, &SysctlValue::Int(v)).unwrap();
        assert_eq!(
            m("ecn.enable", 1),
            [HostSetting::Proc("net/ipv4/tcp_ecn".into(), "1".into())]
        );
        assert_eq!(
            m("net.inet.tcp.recvspace", 65536),
            [HostSetting::Rmem(1, 65536)]
        );
        assert_eq!(m("rfc1323", 0).len(), 2);
        assert_eq!(m("sendbuf_auto", 0), [HostSetting::FixedSndbuf]);
        assert!(m("cc.abe", 1).is_empty());
        assert_eq!(
            m("net.ipv4.tcp_no_metrics_save", 1),
            [HostSetting::Proc(
                "net/ipv4/tcp_no_metrics_save".into(),
                "1".into()
            )]
        );
        assert!(map_sysctl("recvspace", &SysctlValue::Str("lots".into())).is_err());
    }

    #[test]
    fn cc_names_and_missing_ones() {
        assert_eq!(kernel_cc_name("newreno"), Some("reno"));
        assert_eq!(kernel_cc_name("CUBIC"), Some("cubic"));
        assert_eq!(kernel_cc_name("chd"), None);
        let f = scenario::parse(
            Path::new("/tmp/t.toml"),
            "duration = \"2s\"\n[[link]]\nbandwidth = \"10Mbit\"\n[[flow]]\n[[flow]]\ncc = \"hd\"\n",
        )
        .unwrap();
        let e = Plan::new(&f.points[0].scenario, &f.path, 1, "t").unwrap_err();
        assert!(e.starts_with("flow[1]: `hd` has no counterpart"), "{e}");
    }

    #[test]
    fn traces_become_100ms_steps() {
        // 10 opportunities per 100 ms for 200 ms, then 20: 1.2 and 2.4 Mbit/s.
        let mut text = String::new();
        for ms in 0..400u64 {
            let n = if ms < 200 { ms % 10 == 0 } else { ms % 5 == 0 };
            if n {
                text.push_str(&format!("{ms}\n"));
            }
        }
        text.push_str("400\n");
        let t = plugtcp_io::mahimahi::parse(&text).unwrap();
        let (steps, bits) = trace_steps(&t, 400_000_000);
        assert_eq!(steps, [(0, 1_200_000), (200_000_000, 2_400_000)]);
        assert_eq!(bits, 60.0 * 12_000.0);
        let l = LinkPlan {
            name: String::new(),
            qdisc: QdiscKind::DropTail,
            steps,
            capacity_bits: bits,
            mean_bps: 0.0,
            limit_bytes: 0,
            child: vec![],
            child_kind: "bfifo",
            delay_ns: 0,
            jitter_ns: 0,
            loss: 0.0,
        };
        assert_eq!(l.rate_at(250_000_000), 2_400_000);
        assert_eq!(l.rate_at(0), 1_200_000);
    }

    #[test]
    fn addresses_map_back_to_tables() {
        assert_eq!(addr(sender_net(3) + 2).to_string(), "10.64.0.14");
        assert_eq!(sender_table(sender_net(300) + 2), Some(300));
        assert_eq!(sender_table(receiver_net(1) + 2), None);
        assert_eq!(addr(link_net(1) + 1).to_string(), "10.0.0.5");
    }
}
