//! `plugtcp serve` and `plugtcp get`: a host on a real backend (`tun` or `udp`, optionally
//! with fault injection and a pcap capture) running a service, or one HTTP download.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_CONGESTION, TCP_FUNCTION_BLK};

use crate::services::{Forward, GetOutcome, Http, HttpGet, Simple, SimpleServer};
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::secrets::Entropy;
use plugtcp_host::Host;
use plugtcp_io::driver::{Faulty, IoHost, PacketIo};
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::tun::TunIo;
use plugtcp_io::udp::UdpIo;

/// The kernel's and plugtcp's addresses on a device `serve --io tun` sets up itself:
/// RFC 2544's benchmarking range, which no real network uses.
pub const AUTO_KERNEL_V4: &str = "198.18.0.1";
pub const AUTO_PLUGTCP_V4: &str = "198.18.0.2";

/// Which backend, and how.
#[derive(Clone, Debug)]
pub enum IoChoice {
    /// A TUN device; with no addresses given, `serve` configures the kernel side itself.
    Tun {
        name: String,
        addrs: Vec<IpAddr>,
        /// IFF_VNET_HDR: take the kernel's checksum and TSO offloads.
        vnet_hdr: bool,
    },
    /// TCP over UDP from `bind` (also the host's address), to `peer_port` for connections
    /// this host opens.
    Udp {
        bind: SocketAddr,
        peer_port: Option<u16>,
    },
}

/// What every command on a real backend shares.
#[derive(Clone, Debug)]
pub struct IoConfig {
    pub io: IoChoice,
    pub pcap: Option<PathBuf>,
    /// Fault injection on what this host sends and on what it receives.
    pub fault_out: Option<SimLinkConfig>,
    pub fault_in: Option<SimLinkConfig>,
    pub search_path: SearchPath,
    /// Sysctls set before anything starts (`--sysctl NAME=VALUE`).
    pub sysctls: Vec<(String, String)>,
}

/// Parses a fault specification: `loss=0.01,delay=2ms,jitter=1ms,reorder=0.01,
/// duplicate=0.001,corrupt=0.001,rate=100m,seed=7` (any subset).
pub fn parse_faults(spec: &str) -> Result<SimLinkConfig, String> {
    let mut c = SimLinkConfig::default();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected KEY=VALUE"))?;
        let prob = || -> Result<f64, String> {
            let p: f64 = v.parse().map_err(|_| format!("{k}: not a number: {v:?}"))?;
            if (0.0..=1.0).contains(&p) {
                Ok(p)
            } else {
                Err(format!("{k}: a probability is in 0..=1, got {v}"))
            }
        };
        let time = || -> Result<u64, String> {
            let (n, unit) = match v.strip_suffix("ms") {
                Some(n) => (n, 1_000_000.0),
                None => match v.strip_suffix("us") {
                    Some(n) => (n, 1_000.0),
                    None => (v.strip_suffix('s').unwrap_or(v), 1e9),
                },
            };
            let x: f64 = n.parse().map_err(|_| format!("{k}: not a time: {v:?}"))?;
            Ok((x * unit) as u64)
        };
        match k {
            "loss" => c.loss = prob()?,
            "duplicate" => c.duplicate = prob()?,
            "corrupt" => c.corrupt = prob()?,
            "reorder" => {
                c.reorder = prob()?;
                if c.reorder_max_ns == 0 {
                    c.reorder_min_ns = 500_000;
                    c.reorder_max_ns = 2_000_000;
                }
            }
            "delay" => c.delay_ns = time()?,
            "jitter" => c.jitter_ns = time()?,
            "rate" => c.bandwidth_bps = crate::bench::parse_rate(v)?,
            "seed" => {
                c.seed = v
                    .parse()
                    .map_err(|_| format!("seed: not a number: {v:?}"))?
            }
            _ => return Err(format!("unknown fault {k:?}")),
        }
    }
    Ok(c)
}

/// Set by SIGINT and SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Runs `ip ARGS`, for configuring the kernel side of a TUN device.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e} (is iproute2 installed?)", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Builds the host and its backend. Returns them and the host's addresses.
/// A host on whichever backend was chosen.
pub type AnyIoHost = IoHost<Box<dyn PacketIo>>;

/// A service's turn between network polls; returns its open connections.
type App = Box<dyn FnMut(&mut Host) -> usize>;

fn open(cfg: &IoConfig) -> Result<(AnyIoHost, Vec<IpAddr>), String> {
    let mut host = Host::configured(
        cfg.search_path.clone(),
        Entropy::Os,
        &crate::builtins::plugins(),
        &cfg.sysctls,
    )?;
    let (io, addrs): (Box<dyn PacketIo>, Vec<IpAddr>) = match &cfg.io {
        IoChoice::Tun {
            name,
            addrs,
            vnet_hdr,
        } => {
            let tun = TunIo::open_with(name, *vnet_hdr).map_err(|e| format!("tun {name}: {e}"))?;
            let addrs = if addrs.is_empty() {
                let dev = tun.name().to_string();
                ip(&["addr", "add", &format!("{AUTO_KERNEL_V4}/24"), "dev", &dev])?;
                ip(&["link", "set", &dev, "up"])?;
                vec![AUTO_PLUGTCP_V4.parse().unwrap_or_else(|_| unreachable!())]
            } else {
                addrs.clone()
            };
            (Box::new(tun), addrs)
        }
        IoChoice::Udp { bind, peer_port } => {
            // FreeBSD: the local port is net.inet.tcp.udp_tunneling_port unless given, and
            // the MSS shrinks by udp_tunneling_overhead (the UDP header, or more).
            let t = host.sysctl.snapshot();
            let mut bind = *bind;
            if bind.port() == 0 {
                bind.set_port(t.udp_tunneling_port as u16);
            }
            let mtu = 1500 - t.udp_tunneling_overhead as u32;
            let udp = UdpIo::bind(bind, *peer_port, mtu).map_err(|e| format!("udp {bind}: {e}"))?;
            (Box::new(udp), vec![bind.ip()])
        }
    };
    let io: Box<dyn PacketIo> = match (&cfg.fault_out, &cfg.fault_in) {
        (None, None) => io,
        (o, i) => Box::new(Faulty::new(
            io,
            o.clone().unwrap_or_default(),
            i.clone().unwrap_or_default(),
        )),
    };
    for &a in &addrs {
        host.add_addr(a);
    }
    let mut h = IoHost::new(host, io);
    if let Some(p) = &cfg.pcap {
        h.capture(p).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok((h, addrs))
}

/// What `serve` runs.
#[derive(Clone, Debug)]
pub enum Service {
    Simple(Simple),
    Http {
        root: PathBuf,
    },
    /// Accepts on plugtcp and connects to this kernel socket address.
    Forward {
        to: SocketAddr,
    },
}

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub io: IoConfig,
    pub service: Service,
    pub port: u16,
    pub stack: Option<String>,
    pub cc: Option<String>,
    /// Where to listen for control commands (kldload, sysctl, tcpsso, ...).
    pub control: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (`--metrics [ADDR]`).
    pub metrics: Option<SocketAddr>,
}

/// Runs a service until SIGINT or SIGTERM, then closes its connections cleanly. The first
/// line printed is `ADDRESS:PORT` (the first of the host's addresses).
pub fn serve(cfg: &ServeConfig) -> Result<(), String> {
    catch_signals();
    let (mut h, addrs) = open(&cfg.io)?;
    let mut listeners = Vec::new();
    for &a in &addrs {
        let l = h
            .host
            .listen(SocketAddr::new(a, cfg.port), 128)
            .map_err(|e| format!("listen {a}:{}: {e}", cfg.port))?;
        if let Some(s) = &cfg.stack {
            h.host
                .listener_setsockopt(l, IPPROTO_TCP, TCP_FUNCTION_BLK, s.as_bytes())
                .map_err(|e| format!("--stack {s}: {e}"))?;
        }
        if let Some(c) = &cfg.cc {
            h.host
                .listener_setsockopt(l, IPPROTO_TCP, TCP_CONGESTION, c.as_bytes())
                .map_err(|e| format!("--cc {c}: {e}"))?;
        }
        listeners.push(l);
    }
    let mut control = match &cfg.control {
        Some(p) => Some(
            crate::control::ControlServer::bind(p)
                .map_err(|e| format!("control socket {}: {e}", p.display()))?,
        ),
        None => None,
    };
    // Published from this loop every PUBLISH_INTERVAL, never per packet (see metrics.rs).
    let mut published = match cfg.metrics {
        Some(a) => {
            let (a, _) = crate::exporter::install(a).map_err(|e| format!("--metrics {e}"))?;
            eprintln!("plugtcp: metrics at http://{a}/metrics");
            h.host.publish_metrics();
            Some(Instant::now())
        }
        None => None,
    };
    println!("{}", SocketAddr::new(addrs[0], cfg.port));
    let _ = io::stdout().flush();
    let mut apps: Vec<App> = Vec::new();
    for &l in &listeners {
        apps.push(match &cfg.service {
            Service::Simple(kind) => {
                let mut s = SimpleServer::new(*kind, l);
                Box::new(move |host| {
                    s.poll(host);
                    s.connections()
                })
            }
            Service::Http { root } => {
                let mut s = Http::new(root.clone(), l);
                Box::new(move |host| {
                    s.poll(host);
                    s.connections()
                })
            }
            Service::Forward { to } => {
                let mut s = Forward::new(l, *to);
                Box::new(move |host| {
                    s.poll(host);
                    s.connections()
                })
            }
        });
    }
    while !STOP.load(Ordering::Relaxed) {
        h.poll(Duration::from_millis(5))
            .map_err(|e| e.to_string())?;
        for a in &mut apps {
            a(&mut h.host);
        }
        if let Some(c) = control.as_mut() {
            c.poll(&mut h.host);
        }
        if let Some(t) = published.as_mut() {
            if t.elapsed() >= plugtcp_host::metrics::PUBLISH_INTERVAL {
                h.host.publish_metrics();
                *t = Instant::now();
            }
        }
    }
    // Close cleanly: no new connections, FINs out, a short wait for the handshakes.
    for &l in &listeners {
        h.host.close_listener(l);
    }
    let slots: Vec<ConnId> = h.host.conns.ids().collect();
    for s in slots {
        h.host.close(s);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let _ = h.run_until(deadline, |host| host.conns.iter().all(Option::is_none));
    h.finish_capture().map_err(|e| e.to_string())
}

/// `plugtcp get`: one HTTP/1.1 download over plugtcp, the body to `out`.
pub fn get(cfg: &IoConfig, url: &str, out: &mut dyn Write) -> Result<u64, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let server: SocketAddr = authority
        .parse()
        .or_else(|_| format!("{authority}:80").parse())
        .or_else(|_| {
            authority
                .trim_matches(['[', ']'])
                .parse::<IpAddr>()
                .map(|a| SocketAddr::new(a, 80))
        })
        .map_err(|_| format!("{url}: the host must be an IP address (no DNS here)"))?;
    let (mut h, _) = open(cfg)?;
    let mut dl = HttpGet::start(&mut h.host, server, authority, path, out)
        .map_err(|e| format!("connect {server}: {e}"))?;
    let mut outcome = None;
    let deadline = Instant::now() + Duration::from_secs(3600);
    h.run_until(deadline, |host| {
        outcome = dl.poll(host);
        outcome.is_some()
    })
    .map_err(|e| e.to_string())?;
    // Let the last ACK and our FIN go out.
    let _ = h.run_until(Instant::now() + Duration::from_millis(200), |_| false);
    h.finish_capture().map_err(|e| e.to_string())?;
    match outcome {
        Some(GetOutcome::Done(200, n)) => Ok(n),
        Some(GetOutcome::Done(code, _)) => Err(format!("{url}: HTTP status {code}")),
        Some(GetOutcome::Failed(why)) => Err(format!("{url}: {why}")),
        None => Err(format!("{url}: timed out")),
    }
}
