//! The namespaces, veth pairs, routes and qdiscs of a kernel run.
//!
//! ```text
//!  S_0 --veth--\                                                        /--veth-- R_0
//!  S_1 --veth---+ X_0 ==link 0== X_1 ==link 1== ... X_{L-1} ==link L-1== X_L +--veth-- R_1
//! ```
//!
//! One namespace per sender host and per receiver host (one pair per `[[flow]]` table, as
//! the simulator has, each with its own sysctls) and one per router X_k; link k is a veth
//! pair between X_k (`next`) and X_k+1 (`prev`). On X_k, forward traffic (to the receivers)
//! is routed into the TUN device `fwd` (link k's delay line, see [`super::delay`]); what
//! comes out of it is routed (policy rule `iif fwd`) out of `next`, whose root qdisc is link
//! k's queue: htb at the link's rate with the scenario's queue discipline as its only
//! class's qdisc. Reverse traffic takes X_k+1's `rev` delay line and `prev`, whose htb has the
//! same rate over a long FIFO (the simulator's reverse direction). The htb root has a size
//! table (`stab overhead -14`) so rates, limits, backlogs and counters are in IP bytes, as
//! the simulator counts them, not Ethernet frames.
//!
//! Every namespace's name starts with `plab-<pid>-<run>-`; they are deleted when the [`Lab`]
//! is dropped (errors and panics included). Namespaces left by a process that was killed
//! are removed by the next run ([`remove_stale`]).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use plugtcp_io::netns::{self, Netns};
use serde_json::Value;

use super::plan::{
    addr, link_net, receiver_net, sender_net, HostSetting, LinkPlan, Plan, RECEIVERS, SENDERS,
};

/// Where namespace names start.
pub const PREFIX: &str = "plab-";

/// The namespaces of one run, deleted on drop.
pub struct Lab {
    pub prefix: String,
    pub routers: Vec<Netns>,
    pub senders: Vec<Netns>,
    pub receivers: Vec<Netns>,
}

/// Runs `ip`/`tc` with `args`; an error names the command and carries its stderr.
pub fn cmd(prog: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `ip -n NS -batch -` with `lines`.
fn ip_batch(ns: &str, lines: &[String]) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(lines.join("\n").as_bytes());
        let _ = stdin.write_all(b"\n");
    }
    let out = child.wait_with_output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -n {ns} -batch: {} (commands: {})",
            String::from_utf8_lossy(&out.stderr).trim(),
            lines.join("; ")
        ))
    }
}

/// Runs `f` in a thread that has entered namespace `ns`.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> Result<T, String> + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            netns::enter(ns).map_err(|e| format!("entering namespace {ns}: {e}"))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(format!("a thread in namespace {ns} panicked")))
    })
}

/// Writes `/proc/sys/<path>` (the calling thread's namespace's, for net.* entries).
fn write_proc(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(format!("/proc/sys/{path}"), value)
        .map_err(|e| format!("sysctl {}={value}: {e}", path.replace('/', ".")))
}

/// Rewrites one field of a three-number sysctl (tcp_rmem, tcp_wmem).
fn write_triple(path: &str, field: usize, value: u64) -> Result<(), String> {
    let cur = std::fs::read_to_string(format!("/proc/sys/{path}"))
        .map_err(|e| format!("reading {path}: {e}"))?;
    let mut v: Vec<u64> = cur
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() != 3 {
        return Err(format!("{path}: unexpected `{}`", cur.trim()));
    }
    v[field] = value;
    // Keep min <= default <= max.
    if field == 1 {
        v[2] = v[2].max(value);
        v[0] = v[0].min(value);
    } else if field == 2 {
        v[1] = v[1].min(value);
        v[0] = v[0].min(value);
    }
    write_proc(path, &format!("{} {} {}", v[0], v[1], v[2]))
}

/// Deletes `plab-<pid>-*` namespaces whose process is gone (killed runs leave them).
pub fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}

/// The names of this process's namespaces that exist now (for tests).
pub fn own_namespaces() -> Vec<String> {
    let mine = format!("{PREFIX}{}-", std::process::id());
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&mine))
                .collect()
        })
        .unwrap_or_default()
}

impl Lab {
    /// Makes the namespaces, with their sysctls, interfaces and addresses: everything but
    /// the delay lines' routes and the qdiscs ([`Lab::route`], [`Lab::shape`]).
    pub fn build(plan: &Plan) -> Result<Lab, String> {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "{PREFIX}{}-{}-",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            prefix: prefix.clone(),
            routers: Vec::new(),
            senders: Vec::new(),
            receivers: Vec::new(),
        };
        let mk = |n: String| Netns::create(&n).map_err(|e| e.to_string());
        for k in 0..=plan.links.len() {
            lab.routers.push(mk(format!("{prefix}x{k}"))?);
        }
        for t in 0..plan.hosts.len() {
            lab.senders.push(mk(format!("{prefix}s{t}"))?);
            lab.receivers.push(mk(format!("{prefix}r{t}"))?);
        }
        // No IPv6 (its neighbour discovery would cross the queues); routers forward.
        let base = |router: bool| {
            move || {
                for f in ["all", "default"] {
                    write_proc(&format!("net/ipv6/conf/{f}/disable_ipv6"), "1")?;
                    write_proc(&format!("net/ipv4/conf/{f}/rp_filter"), "0")?;
                }
                if router {
                    write_proc("net/ipv4/ip_forward", "1")?;
                }
                Ok(())
            }
        };
        for r in &lab.routers {
            in_ns(r.name(), base(true))?;
        }
        for (t, h) in plan.hosts.iter().enumerate() {
            for ns in [&lab.senders[t], &lab.receivers[t]] {
                in_ns(ns.name(), || {
                    base(false)()?;
                    for s in &h.settings {
                        match s {
                            HostSetting::Proc(p, v) => {
                                write_proc(p, v).map_err(|e| format!("flow[{t}]: {e}"))?
                            }
                            HostSetting::Rmem(i, v) => write_triple("net/ipv4/tcp_rmem", *i, *v)?,
                            HostSetting::Wmem(i, v) => write_triple("net/ipv4/tcp_wmem", *i, *v)?,
                            HostSetting::FixedSndbuf => {}
                        }
                    }
                    Ok(())
                })?;
            }
        }
        let nl = plan.links.len();
        // Veth pairs: link k, then each host's access.
        for k in 0..nl {
            let (a, b) = (lab.routers[k].name(), lab.routers[k + 1].name());
            cmd(
                "ip",
                &[
                    "-n", a, "link", "add", "name", "next", "type", "veth", "peer", "name", "prev",
                    "netns", b,
                ],
            )?;
        }
        for t in 0..plan.hosts.len() {
            let (x0, xl) = (lab.routers[0].name(), lab.routers[nl].name());
            let (s, r) = (lab.senders[t].name(), lab.receivers[t].name());
            let (sd, rd) = (format!("s{t}"), format!("r{t}"));
            cmd(
                "ip",
                &[
                    "-n", x0, "link", "add", "name", &sd, "type", "veth", "peer", "name", "up",
                    "netns", s,
                ],
            )?;
            cmd(
                "ip",
                &[
                    "-n", xl, "link", "add", "name", &rd, "type", "veth", "peer", "name", "up",
                    "netns", r,
                ],
            )?;
        }
        // Addresses and links up. On the hosts, gso_max_segs 1: TCP builds one-segment
        // packets, as a host without TSO/GSO does (ethtool may be missing; the delay lines
        // would cut super-packets anyway).
        let up = |dev: &str| {
            vec![
                format!("link set dev {dev} mtu 1500"),
                format!("link set dev {dev} up"),
            ]
        };
        for (k, x) in lab.routers.iter().enumerate() {
            let mut lines = vec!["link set dev lo up".to_string()];
            if k < nl {
                lines.push(format!("addr add {}/30 dev next", addr(link_net(k) + 1)));
                lines.extend(up("next"));
            }
            if k > 0 {
                lines.push(format!(
                    "addr add {}/30 dev prev",
                    addr(link_net(k - 1) + 2)
                ));
                lines.extend(up("prev"));
            }
            for t in 0..plan.hosts.len() {
                if k == 0 {
                    lines.push(format!("addr add {}/30 dev s{t}", addr(sender_net(t) + 1)));
                    lines.extend(up(&format!("s{t}")));
                }
                if k == nl {
                    lines.push(format!(
                        "addr add {}/30 dev r{t}",
                        addr(receiver_net(t) + 1)
                    ));
                    lines.extend(up(&format!("r{t}")));
                }
            }
            ip_batch(x.name(), &lines)?;
        }
        for t in 0..plan.hosts.len() {
            for (ns, net) in [
                (&lab.senders[t], sender_net(t)),
                (&lab.receivers[t], receiver_net(t)),
            ] {
                let mut lines = vec!["link set dev lo up".to_string()];
                lines.push(format!("addr add {}/30 dev up", addr(net + 2)));
                lines.push("link set dev up gso_max_segs 1".into());
                lines.extend(up("up"));
                lines.push(format!("route add default via {} dev up", addr(net + 1)));
                ip_batch(ns.name(), &lines)?;
            }
        }
        Ok(lab)
    }

    /// Routes through the delay lines, once their TUN devices exist: on X_k, forward traffic
    /// into `fwd` and out of it to X_k+1; reverse traffic into `rev` and out of it to X_k-1.
    pub fn route(&self, nlinks: usize) -> Result<(), String> {
        for (k, x) in self.routers.iter().enumerate() {
            let mut lines = Vec::new();
            // Deep enough for a window's burst at line rate while the line's thread sleeps.
            if k < nlinks {
                lines.push("link set dev fwd txqueuelen 20000 up".to_string());
                lines.push(format!("route add {RECEIVERS} dev fwd"));
                lines.push("rule add iif fwd lookup 100 pref 100".into());
                lines.push(format!(
                    "route add {RECEIVERS} via {} dev next table 100",
                    addr(link_net(k) + 2)
                ));
            }
            if k > 0 {
                lines.push("link set dev rev txqueuelen 20000 up".to_string());
                lines.push(format!("route add {SENDERS} dev rev"));
                lines.push("rule add iif rev lookup 101 pref 101".into());
                lines.push(format!(
                    "route add {SENDERS} via {} dev prev table 101",
                    addr(link_net(k - 1) + 1)
                ));
            }
            if !lines.is_empty() {
                ip_batch(x.name(), &lines)?;
            }
        }
        Ok(())
    }

    /// The qdiscs: link k's queue on X_k's `next`, its reverse FIFO on X_k+1's `prev`.
    pub fn shape(&self, links: &[LinkPlan]) -> Result<(), String> {
        for (k, l) in links.iter().enumerate() {
            let rate = l.steps[0].1;
            htb(self.routers[k].name(), "next", rate, &l.child, l.child_kind)
                .map_err(|e| format!("link[{k}]: {e}"))?;
            let fifo: Vec<String> = ["pfifo", "limit", "100000"].map(String::from).to_vec();
            htb(self.routers[k + 1].name(), "prev", rate, &fifo, "pfifo")
                .map_err(|e| format!("link[{k}] (reverse): {e}"))?;
        }
        Ok(())
    }

    /// The namespace and device of link k's forward queue.
    pub fn queue_of(&self, k: usize) -> (&str, &str) {
        (self.routers[k].name(), "next")
    }
}

/// The config option of a qdisc, for the error when the kernel lacks it.
fn config_option(kind: &str) -> String {
    match kind {
        "pfifo" | "bfifo" => "CONFIG_NET_SCH_FIFO".into(),
        k => format!("CONFIG_NET_SCH_{}", k.to_ascii_uppercase()),
    }
}

/// Turns tc's "unknown qdisc" into an error naming the missing qdisc (after trying to load
/// its module, where modules can be loaded).
fn qdisc_error(kind: &str, e: String) -> String {
    if e.contains("qdisc kind is unknown") || e.contains("Unknown qdisc") {
        format!(
            "the kernel has no `{kind}` qdisc ({}, module sch_{kind}): --kernel cannot build \
             this link's queue ({e})",
            config_option(kind)
        )
    } else {
        e
    }
}

/// htb at `rate_bps` on `dev` in `ns`, with `child` as its class's qdisc.
fn htb(ns: &str, dev: &str, rate_bps: u64, child: &[String], kind: &str) -> Result<(), String> {
    // Try loading modules first: harmless where they are built in or cannot be loaded.
    for m in ["sch_htb".to_string(), format!("sch_{kind}")] {
        let _ = Command::new("modprobe")
            .arg("-q")
            .arg(&m)
            .stderr(Stdio::null())
            .status();
    }
    cmd(
        "tc",
        &[
            "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "stab", "overhead",
            "-14", "htb", "default", "1",
        ],
    )
    .map_err(|e| qdisc_error("htb", e))?;
    class(ns, dev, "add", rate_bps)?;
    let mut args: Vec<&str> = vec![
        "-n", ns, "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:",
    ];
    args.extend(child.iter().map(|s| s.as_str()));
    cmd("tc", &args).map_err(|e| qdisc_error(kind, e))?;
    Ok(())
}

/// Changes the rate of the htb class on `dev` in `ns` (capacity schedules and traces).
pub fn set_rate(ns: &str, dev: &str, rate_bps: u64) -> Result<(), String> {
    class(ns, dev, "change", rate_bps)
}

/// Adds or changes htb's class 1:1 on `dev`. Its bucket: two full packets, or half a
/// millisecond at the rate where that is more (timer slack at high rates); a full bucket
/// lets that much through above the rate, once.
fn class(ns: &str, dev: &str, verb: &str, rate_bps: u64) -> Result<(), String> {
    let rate = format!("{rate_bps}bit");
    let burst = format!("{}b", (rate_bps / 8 / 2000).max(2 * 1500));
    cmd(
        "tc",
        &[
            "-n", ns, "class", verb, "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate",
            &rate, "ceil", &rate, "burst", &burst, "cburst", &burst, "quantum", "1514",
        ],
    )
    .map(|_| ())
}

/// A queue's counters, from `tc -s -j qdisc show`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QdiscStats {
    /// Sent through the root (htb): bytes and packets.
    pub bytes: u64,
    pub packets: u64,
    /// The AQM's (htb's class qdisc's) backlog, drops and CE marks.
    pub backlog_bytes: u64,
    pub backlog_packets: u64,
    pub drops: u64,
    pub marks: u64,
}

/// Reads the stats of `dev`'s qdiscs in `ns`.
pub fn qdisc_stats(ns: &str, dev: &str) -> Result<QdiscStats, String> {
    let out = cmd("tc", &["-n", ns, "-s", "-j", "qdisc", "show", "dev", dev])?;
    parse_qdisc_stats(&out)
}

/// Parses `tc -s -j qdisc show` of an htb root with one child (handle 10:).
pub fn parse_qdisc_stats(json: &str) -> Result<QdiscStats, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("tc -j output: {e}"))?;
    let arr = v.as_array().ok_or("tc -j output is not an array")?;
    let num = |q: &Value, k: &str| -> u64 {
        q.get(k)
            .or_else(|| q.get("xstats").and_then(|x| x.get(k)))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let mut s = QdiscStats::default();
    let root = arr
        .iter()
        .find(|q| q.get("root").and_then(Value::as_bool) == Some(true));
    let child = arr
        .iter()
        .find(|q| q.get("handle").and_then(Value::as_str) == Some("10:"));
    if let Some(r) = root {
        s.bytes = num(r, "bytes");
        s.packets = num(r, "packets");
    }
    if let Some(c) = child.or(root) {
        s.backlog_bytes = num(c, "backlog");
        s.backlog_packets = num(c, "qlen");
        s.drops = num(c, "drops");
        // red: marked; codel, fq_codel, pie: ecn_mark; fq_codel's ce_threshold: ce_mark.
        s.marks = num(c, "marked") + num(c, "ecn_mark") + num(c, "ce_mark");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qdisc_json_is_read() {
        let j = r#"[{"kind":"htb","handle":"1:","root":true,"refcnt":3,"options":{"r2q":10},
            "bytes":123000,"packets":82,"drops":0,"overlimits":5,"requeues":0,"backlog":4500,"qlen":3},
            {"kind":"fq_codel","handle":"10:","parent":"1:1","options":{},"bytes":120000,
            "packets":80,"drops":7,"overlimits":0,"requeues":0,"maxpacket":1514,
            "drop_overlimit":0,"new_flow_count":2,"ecn_mark":11,"new_flows_len":0,
            "old_flows_len":1,"backlog":4500,"qlen":3}]"#;
        let s = parse_qdisc_stats(j).unwrap();
        assert_eq!(
            s,
            QdiscStats {
                bytes: 123000,
                packets: 82,
                backlog_bytes: 4500,
                backlog_packets: 3,
                drops: 7,
                marks: 11,
            }
        );
        assert!(parse_qdisc_stats("nope").is_err());
    }

    #[test]
    fn missing_qdiscs_are_named() {
        let e = qdisc_error(
            "fq_codel",
            "tc ...: Error: Specified qdisc kind is unknown.".into(),
        );
        assert!(
            e.starts_with("the kernel has no `fq_codel` qdisc (CONFIG_NET_SCH_FQ_CODEL"),
            "{e}"
        );
        assert_eq!(qdisc_error("red", "other".into()), "other");
    }
}
