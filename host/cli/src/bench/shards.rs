//! `plugtcp bench shards`: two plugtcp hosts talk TCP over UDP on 127.0.0.1 (no kernel TCP
//! anywhere), first with one shard each, then with two, in the same run. Two loads: bulk
//! (many connections sending as fast as they can; aggregate goodput at the receiver) and
//! handshakes (many connections opened, established and reset; completed handshakes per
//! second). The load runs inside the shards' drivers (services written against the sans-IO
//! calls), so the figures are the stacks' and the backend's, not an application's.
//!
//! The process CPU time over the wall time is reported beside each figure: with one shard
//! per host the two hosts' drivers already are two busy threads, which is what a 2-core
//! machine has; the sharding gain shows where a host is the bottleneck on its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugtcp_abi::{Errno, TcpState};
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::Host;
use plugtcp_io::runtime::{Runtime, Service, Side, TcpListener};

#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardsConfig {
    /// Measured seconds per load and configuration (after a quarter of it as warm-up).
    pub seconds: f64,
    /// Concurrent bulk connections in all (split over the shards).
    pub bulk_connections: usize,
    /// Handshakes in flight in all.
    pub handshakes_in_flight: usize,
    /// Rounds of (1 shard, 2 shards); the median of each is reported.
    pub rounds: usize,
}

impl Default for ShardsConfig {
    fn default() -> Self {
        ShardsConfig {
            seconds: 3.0,
            bulk_connections: 16,
            handshakes_in_flight: 64,
            rounds: 3,
        }
    }
}

/// One configuration's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardsFigures {
    pub shards: usize,
    pub bulk_gbit_per_s: f64,
    /// Process CPU seconds per wall second during the bulk load (both hosts).
    pub bulk_cpus: f64,
    pub handshakes_per_s: f64,
    pub handshake_cpus: f64,
    /// Shards that carried connections, per host, in the bulk load (all of them, or the
    /// steering failed).
    pub busy_shards: usize,
    /// Packets a backend received for another shard's flow (the SO_REUSEPORT program's
    /// misses), both hosts.
    pub handed_over: u64,
}

/// One shard against two, on the same hosts and loads.
#[derive(Debug, serde::Serialize)]
pub struct ShardsPairing {
    pub one: ShardsFigures,
    pub two: ShardsFigures,
    /// Two shards over one: bulk goodput.
    pub bulk_ratio: f64,
    /// Two shards over one: handshakes per second.
    pub handshake_ratio: f64,
}

#[derive(Debug, serde::Serialize)]
pub struct ShardsReport {
    pub config: ShardsConfig,
    pub cores: usize,
    /// A client host and a server host: with one shard each, already two busy threads.
    pub two_hosts: ShardsPairing,
    /// One host that is both ends of every connection (its UDP group sends to itself):
    /// one shard is one thread, two shards are two.
    pub one_host: ShardsPairing,
}

impl ShardsPairing {
    fn new(one: ShardsFigures, two: ShardsFigures) -> Self {
        ShardsPairing {
            bulk_ratio: two.bulk_gbit_per_s / one.bulk_gbit_per_s,
            handshake_ratio: two.handshakes_per_s / one.handshakes_per_s.max(1e-9),
            one,
            two,
        }
    }

    fn text(&self, what: &str) -> String {
        let row = |f: &ShardsFigures| {
            format!(
                "  {} shard(s): bulk {:.2} Gbit/s ({:.2} CPUs busy), {:.0} handshakes/s ({:.2} CPUs), {} shard(s) busy, {} packets handed over\n",
                f.shards,
                f.bulk_gbit_per_s,
                f.bulk_cpus,
                f.handshakes_per_s,
                f.handshake_cpus,
                f.busy_shards,
                f.handed_over
            )
        };
        format!(
            "{what}:\n{}{}  two shards over one: bulk {:.2}x, handshakes {:.2}x\n",
            row(&self.one),
            row(&self.two),
            self.bulk_ratio,
            self.handshake_ratio
        )
    }
}

impl ShardsReport {
    pub fn text(&self) -> String {
        format!(
            "{} cores\n{}{}",
            self.cores,
            self.two_hosts
                .text("two hosts (client and server), shards per host"),
            self.one_host
                .text("one host, both ends of every connection")
        )
    }
}

const SERVER_PORT: u16 = 9100;
const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The process's user plus system CPU time.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass; RUSAGE_SELF is always valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A host of `shards` shards over UDP on loopback, bound to `bind` (0: any port), sending
/// to UDP port `peer` (`None`: to where each flow's packets come from).
fn udp_host(shards: usize, bind: u16, peer: Option<u16>, seed: u64) -> Result<Runtime, String> {
    Runtime::builder()
        .udp((LOCALHOST, bind).into(), peer)
        .addr(LOCALHOST.into())
        .plugins(crate::builtins::plugins())
        .shards(shards)
        .seed(seed)
        // Buffers a loopback path can fill.
        .sysctl("net.inet.tcp.sendspace", "1048576")
        .sysctl("net.inet.tcp.recvspace", "1048576")
        .build()
        .map_err(|e| format!("udp backend: {e}"))
}

fn free_udp_port() -> Result<u16, String> {
    std::net::UdpSocket::bind((LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("udp port: {e}"))
}

/// The hosts of a configuration: two (client, server), or one that is both ends (its UDP
/// group sends to itself), so that one shard is one thread in all.
enum Hosts {
    Two(Runtime, Runtime),
    One(Runtime),
}

impl Hosts {
    fn new(shards: usize, looped: bool, seed: u64) -> Result<Self, String> {
        let port = free_udp_port()?;
        Ok(if looped {
            Hosts::One(udp_host(shards, port, Some(port), seed)?)
        } else {
            let server = udp_host(shards, port, None, seed)?;
            Hosts::Two(udp_host(shards, 0, Some(port), seed + 1)?, server)
        })
    }

    fn client(&self) -> &Runtime {
        match self {
            Hosts::Two(c, _) | Hosts::One(c) => c,
        }
    }

    fn server(&self) -> &Runtime {
        match self {
            Hosts::Two(_, s) | Hosts::One(s) => s,
        }
    }

    fn handed_over(&self) -> u64 {
        match self {
            Hosts::Two(c, s) => c.handed_over() + s.handed_over(),
            Hosts::One(h) => h.handed_over(),
        }
    }
}

/// Waits out the warm-up, then returns the counter's growth per second over `secs` and
/// the CPUs busy meanwhile.
fn measure(counter: &AtomicU64, secs: f64) -> (f64, f64) {
    std::thread::sleep(Duration::from_secs_f64(secs / 4.0));
    let (c0, t0, n0) = (cpu_time(), Instant::now(), counter.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (c1, n1) = (cpu_time(), counter.load(Ordering::Relaxed));
    let wall = t0.elapsed().as_secs_f64();
    ((n1 - n0) as f64 / wall, (c1 - c0).as_secs_f64() / wall)
}

/// The server's side of both loads in one shard: accept everything from the shard's
/// listener `lid`; count and discard what arrives; reset what ends (so that no TIME_WAIT
/// piles up).
fn server_service(lid: usize, bytes: Arc<AtomicU64>) -> Service {
    let mut conns: Vec<ConnId> = Vec::new();
    Box::new(move |h: &mut Host| {
        while let Ok(c) = h.accept(lid) {
            conns.push(c);
        }
        conns.retain(|&c| {
            let mut eof = false;
            loop {
                match h.recv_with(c, |run| run.len()) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(Errno::EAGAIN) => break,
                    Err(_) => {
                        eof = true;
                        break;
                    }
                }
            }
            if eof {
                h.abort(c);
            }
            !eof
        });
    })
}

/// Bulk senders in one shard: `n` connections, each keeping its send buffer full.
fn bulk_service(to: SocketAddr, n: usize, chunk: Arc<[u8]>, busy: Arc<AtomicU64>) -> Service {
    let mut conns: Vec<ConnId> = Vec::new();
    Box::new(move |h: &mut Host| {
        if conns.is_empty() {
            conns = (0..n).filter_map(|_| h.connect(to, None).ok()).collect();
            if !conns.is_empty() {
                busy.fetch_add(1, Ordering::Relaxed);
            }
        }
        for &c in &conns {
            while matches!(h.send(c, &chunk), Ok(k) if k > 0) {}
        }
    })
}

/// Handshake openers in one shard: `n` connects in flight; each one established is
/// counted and reset, and replaced by a new one.
fn handshake_service(to: SocketAddr, n: usize, done: Arc<AtomicU64>) -> Service {
    let mut conns: Vec<ConnId> = Vec::new();
    Box::new(move |h: &mut Host| {
        conns.retain(|&c| match h.state(c) {
            Some(TcpState::SynSent) => true,
            Some(TcpState::Established) => {
                done.fetch_add(1, Ordering::Relaxed);
                h.abort(c);
                false
            }
            _ => {
                h.abort(c);
                false
            }
        });
        while conns.len() < n {
            match h.connect(to, None) {
                Ok(c) => conns.push(c),
                Err(_) => break,
            }
        }
    })
}

/// Runs the server's service and a client service in every shard (both in one shard's
/// driver when one host is both ends).
fn install(
    hosts: &Hosts,
    listener: &TcpListener,
    bytes: &Arc<AtomicU64>,
    mut client: impl FnMut() -> Service,
) {
    for shard in 0..hosts.server().shards() {
        let Some(lid) = listener.id_in_shard(shard) else {
            continue;
        };
        let (mut srv, mut cli) = (server_service(lid, bytes.clone()), client());
        match hosts {
            Hosts::Two(c, s) => {
                s.set_service(shard, srv);
                c.set_service(shard, cli);
            }
            Hosts::One(h) => h.set_service(
                shard,
                Box::new(move |host: &mut Host| {
                    srv(host);
                    cli(host);
                }),
            ),
        }
    }
}

fn one_config(
    cfg: &ShardsConfig,
    shards: usize,
    looped: bool,
    seed: u64,
) -> Result<ShardsFigures, String> {
    let to: SocketAddr = (LOCALHOST, SERVER_PORT).into();
    let listen = |hosts: &Hosts| {
        hosts
            .server()
            .listen(Side::A, to, 4096)
            .map_err(|e| format!("listen: {e}"))
    };
    // Bulk.
    let hosts = Hosts::new(shards, looped, seed)?;
    let listener = listen(&hosts)?;
    let (bytes, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let chunk: Arc<[u8]> = super::pattern(64 << 10, 0x5eed).into();
    let per_shard = cfg.bulk_connections.div_ceil(shards);
    install(&hosts, &listener, &bytes, || {
        bulk_service(to, per_shard, chunk.clone(), busy.clone())
    });
    let (bulk_rate, bulk_cpus) = measure(&bytes, cfg.seconds);
    hosts.client().clear_services();
    hosts.server().clear_services();
    let mut handed_over = hosts.handed_over();
    if bytes.load(Ordering::Relaxed) == 0 {
        return Err(format!("{shards} shard(s): no byte arrived"));
    }
    drop((listener, hosts));
    // Handshakes, on fresh hosts (nothing left of the bulk load).
    let hosts = Hosts::new(shards, looped, seed + 2)?;
    let listener = listen(&hosts)?;
    let done = Arc::new(AtomicU64::new(0));
    let per_shard = cfg.handshakes_in_flight.div_ceil(shards);
    install(&hosts, &listener, &Arc::new(AtomicU64::new(0)), || {
        handshake_service(to, per_shard, done.clone())
    });
    let (hs_rate, hs_cpus) = measure(&done, cfg.seconds);
    hosts.client().clear_services();
    hosts.server().clear_services();
    handed_over += hosts.handed_over();
    Ok(ShardsFigures {
        shards,
        bulk_gbit_per_s: bulk_rate * 8.0 / 1e9,
        bulk_cpus,
        handshakes_per_s: hs_rate,
        handshake_cpus: hs_cpus,
        busy_shards: busy.load(Ordering::Relaxed) as usize,
        handed_over,
    })
}

fn median_figures(mut v: Vec<ShardsFigures>) -> ShardsFigures {
    let pick = |v: &mut Vec<ShardsFigures>, f: fn(&ShardsFigures) -> f64| {
        v.sort_by(|a, b| f(a).total_cmp(&f(b)));
        v[v.len() / 2].clone()
    };
    let bulk = pick(&mut v, |f| f.bulk_gbit_per_s);
    let hs = pick(&mut v, |f| f.handshakes_per_s);
    ShardsFigures {
        handshakes_per_s: hs.handshakes_per_s,
        handshake_cpus: hs.handshake_cpus,
        busy_shards: v.iter().map(|f| f.busy_shards).min().unwrap_or(0),
        handed_over: v.iter().map(|f| f.handed_over).sum(),
        ..bulk
    }
}

pub fn run(cfg: &ShardsConfig) -> Result<ShardsReport, String> {
    if cfg.rounds == 0 || cfg.seconds.is_nan() || cfg.seconds <= 0.0 || cfg.bulk_connections == 0 {
        return Err("rounds, seconds and connections must be positive".into());
    }
    let mut figures: [Vec<ShardsFigures>; 4] = Default::default();
    for r in 0..cfg.rounds as u64 {
        // Interleaved, so that drift in the machine's load falls on all alike.
        for (i, (looped, shards)) in [(false, 1), (false, 2), (true, 1), (true, 2)]
            .into_iter()
            .enumerate()
        {
            figures[i].push(one_config(
                cfg,
                shards,
                looped,
                100 * (i as u64 + 1) + r * 10,
            )?);
        }
    }
    let [a, b, c, d] = figures.map(median_figures);
    Ok(ShardsReport {
        config: cfg.clone(),
        cores: plugtcp_io::runtime::default_shards(),
        two_hosts: ShardsPairing::new(a, b),
        one_host: ShardsPairing::new(c, d),
    })
}
