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
use plugtcp_io::pcap::Captured;
use plugtcp_io::runtime::{default_shards, Runtime, Side};
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

/// A host on whichever backend was chosen.
pub type AnyIoHost = IoHost<Box<dyn PacketIo>>;

/// One shard's backend.
type ShardIo = Box<dyn PacketIo + Send>;

/// A service's turn between network polls; returns its open connections.
type App = Box<dyn FnMut(&mut Host) -> usize + Send>;

/// The host `plugtcp serve` and `get` run: sysctls first, then the plugins.
fn configured_host(cfg: &IoConfig) -> Result<Host, String> {
    Host::configured(
        cfg.search_path.clone(),
        Entropy::Os,
        &crate::builtins::plugins(),
        &cfg.sysctls,
    )
}

/// Opens the chosen backend for `shards` shards (queues of one TUN device, sockets of one
/// UDP port), each wrapped in the fault injection and capture asked for, and returns
/// them with the host's addresses. `host` gives the sysctls the UDP backend reads.
fn backends(
    cfg: &IoConfig,
    host: &Host,
    shards: usize,
) -> Result<(Vec<ShardIo>, Vec<IpAddr>), String> {
    let (raw, addrs): (Vec<Box<dyn PacketIo + Send>>, Vec<IpAddr>) = match &cfg.io {
        IoChoice::Tun {
            name,
            addrs,
            vnet_hdr,
        } => {
            let queues = TunIo::open_queues(name, shards, *vnet_hdr)
                .map_err(|e| format!("tun {name}: {e}"))?;
            let addrs = if addrs.is_empty() {
                let dev = queues[0].name().to_string();
                ip(&["addr", "add", &format!("{AUTO_KERNEL_V4}/24"), "dev", &dev])?;
                ip(&["link", "set", &dev, "up"])?;
                vec![AUTO_PLUGTCP_V4.parse().unwrap_or_else(|_| unreachable!())]
            } else {
                addrs.clone()
            };
            let ios = queues
                .into_iter()
                .map(|q| Box::new(q) as Box<dyn PacketIo + Send>)
                .collect();
            (ios, addrs)
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
            let socks = UdpIo::bind_group(bind, *peer_port, mtu, shards)
                .map_err(|e| format!("udp {bind}: {e}"))?;
            let ios = socks
                .into_iter()
                .map(|u| Box::new(u) as Box<dyn PacketIo + Send>)
                .collect();
            (ios, vec![bind.ip()])
        }
    };
    let mut ios = Vec::with_capacity(raw.len());
    for (i, io) in raw.into_iter().enumerate() {
        // Each shard's faults draw from a seed of their own.
        let seeded = |c: &Option<SimLinkConfig>| {
            let mut c = c.clone().unwrap_or_default();
            c.seed = c.seed.wrapping_add(i as u64);
            c
        };
        let io: Box<dyn PacketIo + Send> = match (&cfg.fault_out, &cfg.fault_in) {
            (None, None) => io,
            (o, i) => Box::new(Faulty::new(io, seeded(o), seeded(i))),
        };
        let io: Box<dyn PacketIo + Send> = match &cfg.pcap {
            Some(p) => Box::new(Captured::new(io, p).map_err(|e| format!("{}: {e}", p.display()))?),
            None => io,
        };
        ios.push(io);
    }
    Ok((ios, addrs))
}

fn open(cfg: &IoConfig) -> Result<(AnyIoHost, Vec<IpAddr>), String> {
    let mut host = configured_host(cfg)?;
    let (mut ios, addrs) = backends(cfg, &host, 1)?;
    for &a in &addrs {
        host.add_addr(a);
    }
    let io: Box<dyn PacketIo> = ios.remove(0);
    Ok((IoHost::new(host, io), addrs))
}

/// What `serve` runs.
#[derive(Clone, Debug)]
pub enum Service {
    Simple(Simple),
    Http {
        root: PathBuf,
    },
    /// Accepts on plugtcp and connects to this kernel socket address; with `None`
    /// (transparent mode), to the destination each connection was addressed to.
    Forward {
        to: Option<SocketAddr>,
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
    /// Threads, each with its own host (default: one per core; one with `--pcap`).
    pub shards: Option<usize>,
    /// Accept connections to any address and port routed into the device (`--transparent`).
    pub transparent: bool,
}

/// A service's state for one listener of one shard.
fn app(service: &Service, listener: usize) -> App {
    match service {
        Service::Simple(kind) => {
            let mut s = SimpleServer::new(*kind, listener);
            Box::new(move |host| {
                s.poll(host);
                s.connections()
            })
        }
        Service::Http { root } => {
            let mut s = Http::new(root.clone(), listener);
            Box::new(move |host| {
                s.poll(host);
                s.connections()
            })
        }
        Service::Forward { to } => {
            let mut s = Forward::new(listener, *to);
            Box::new(move |host| {
                s.poll(host);
                s.connections()
            })
        }
    }
}

/// Runs a service until SIGINT or SIGTERM, then closes its connections cleanly. The first
/// line printed is `ADDRESS:PORT` (the first of the host's addresses).
pub fn serve(cfg: &ServeConfig) -> Result<(), String> {
    catch_signals();
    let shards = match (cfg.shards, &cfg.io.pcap) {
        (Some(n), Some(_)) if n > 1 => {
            return Err("--pcap writes one capture: it needs --shards 1".into())
        }
        (Some(0), _) => return Err("--shards: at least one".into()),
        (Some(n), _) => n,
        (None, Some(_)) => 1,
        (None, None) => default_shards(),
    };
    let host = configured_host(&cfg.io)?;
    let (ios, addrs) = backends(&cfg.io, &host, shards)?;
    let mut b = Runtime::builder().host(host).backends(ios).shards(shards);
    for &a in &addrs {
        b = b.addr(a);
    }
    if let Some(p) = &cfg.control {
        b = b.control(p);
    }
    if let Some(a) = cfg.metrics {
        b = b.metrics(a);
    }
    let rt = b.build().map_err(|e| e.to_string())?;
    if let Some(a) = rt.metrics_addr() {
        rt.with_hosts(plugtcp_io::exporter::publish_sharded);
        eprintln!("plugtcp: metrics at http://{a}/metrics");
    }
    let mut listeners = Vec::new();
    if cfg.transparent {
        for v6 in [false, true] {
            listeners.push(
                rt.listen_transparent(Side::A, v6, 128)
                    .map_err(|e| format!("transparent listener: {e}"))?,
            );
        }
    } else {
        for &a in &addrs {
            listeners.push(
                rt.listen(Side::A, SocketAddr::new(a, cfg.port), 128)
                    .map_err(|e| format!("listen {a}:{}: {e}", cfg.port))?,
            );
        }
    }
    for l in &listeners {
        if let Some(s) = &cfg.stack {
            l.setsockopt(IPPROTO_TCP, TCP_FUNCTION_BLK, s.as_bytes())
                .map_err(|e| format!("--stack {s}: {e}"))?;
        }
        if let Some(c) = &cfg.cc {
            l.setsockopt(IPPROTO_TCP, TCP_CONGESTION, c.as_bytes())
                .map_err(|e| format!("--cc {c}: {e}"))?;
        }
    }
    println!("{}", SocketAddr::new(addrs[0], cfg.port));
    let _ = io::stdout().flush();
    for shard in 0..rt.shards() {
        let mut apps: Vec<App> = listeners
            .iter()
            .filter_map(|l| l.id_in_shard(shard))
            .map(|lid| app(&cfg.service, lid))
            .collect();
        rt.set_service(
            shard,
            Box::new(move |host| {
                for a in &mut apps {
                    a(host);
                }
            }),
        );
    }
    while !STOP.load(Ordering::Relaxed) {
        if rt.is_down() {
            return Err("the network is down".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Close cleanly: no new connections, FINs out, a short wait for the handshakes.
    rt.clear_services();
    drop(listeners);
    rt.with_hosts(|hosts| {
        for h in hosts.iter_mut() {
            let ids: Vec<ConnId> = h.conns.ids().collect();
            for id in ids {
                h.close(id);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline
        && !rt.with_hosts(|hosts| hosts.iter().all(|h| h.conns.iter().all(Option::is_none)))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
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
    match outcome {
        Some(GetOutcome::Done(200, n)) => Ok(n),
        Some(GetOutcome::Done(code, _)) => Err(format!("{url}: HTTP status {code}")),
        Some(GetOutcome::Failed(why)) => Err(format!("{url}: {why}")),
        None => Err(format!("{url}: timed out")),
    }
}
