//! `plugtcp bench echo`: request/response latency. N kernel clients (tokio's
//! `TcpStream`, TCP_NODELAY), each with one connection, do round trips of a small request
//! against a tokio echo server, one request outstanding per connection, all connections at
//! once. In one run and one namespace setup: the server on plugtcp over a TUN device
//! (`Runtime`, kernel <-> plugtcp), then on tokio's own kernel sockets across a veth pair
//! (kernel <-> kernel). The clients are the same code in the same namespace both times.
//! Needs root.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::builtins::BuiltinHost as _;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::Host;
use plugtcp_io::netns::{self, Netns};
use plugtcp_io::runtime::{Runtime, Side};
use plugtcp_io::tun::TunIo;

/// What `bench echo` runs.
#[derive(Clone, Debug)]
pub struct EchoConfig {
    /// Concurrent clients (one connection each).
    pub clients: usize,
    /// Measured round trips per client.
    pub round_trips: u64,
    /// Round trips per client before the measured ones (not counted).
    pub warmup: u64,
    /// Bytes per request (the answer is the same bytes).
    pub size: usize,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            clients: 8,
            round_trips: 5000,
            warmup: 200,
            size: 64,
        }
    }
}

/// One server's figures: every measured round trip of every client.
#[derive(Debug, serde::Serialize)]
pub struct EchoStats {
    pub round_trips: u64,
    /// Wall time of the measured round trips, all clients at once.
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
    /// Round trips completed per second, all clients together.
    pub round_trips_per_s: f64,
}

#[derive(Debug, serde::Serialize)]
pub struct EchoReport {
    pub clients: usize,
    pub round_trips_per_client: u64,
    pub request_bytes: usize,
    /// Kernel clients, the echo server on plugtcp over TUN.
    pub plugtcp: EchoStats,
    /// Kernel clients, the echo server on the kernel across a veth pair.
    pub kernel: EchoStats,
    /// plugtcp over kernel: latencies (above 1: plugtcp slower) and round trips per second
    /// (below 1: plugtcp slower).
    pub p50_ratio: f64,
    pub p99_ratio: f64,
    pub mean_ratio: f64,
    pub round_trips_per_s_ratio: f64,
}

impl EchoReport {
    /// The report as a small table.
    pub fn text(&self) -> String {
        let row = |name: &str, s: &EchoStats| {
            format!(
                "{name:<34} {:>9.1} {:>9.1} {:>9.1} {:>14.0}\n",
                s.p50_us, s.p99_us, s.mean_us, s.round_trips_per_s
            )
        };
        format!(
            "{} clients x {} round trips of {} bytes (TCP_NODELAY), kernel clients\n\
             {:<34} {:>9} {:>9} {:>9} {:>14}\n{}{}{:<34} {:>9.2} {:>9.2} {:>9.2} {:>14.2}\n",
            self.clients,
            self.round_trips_per_client,
            self.request_bytes,
            "echo server",
            "p50 us",
            "p99 us",
            "mean us",
            "round trips/s",
            row("plugtcp over TUN", &self.plugtcp),
            row("kernel over veth", &self.kernel),
            "ratio plugtcp/kernel",
            self.p50_ratio,
            self.p99_ratio,
            self.mean_ratio,
            self.round_trips_per_s_ratio,
        )
    }
}

const TUN_DEV: &str = "pecho0";
const TUN_KERNEL: &str = "198.18.0.1";
const TUN_PLUGTCP: &str = "198.18.0.2";
const VETH_A: &str = "198.18.1.1";
const VETH_B: &str = "198.18.1.2";
const PORT: u16 = 7;
/// Bound on each phase (connecting, warming up, measuring): a stalled connection fails the
/// run instead of hanging it.
const PHASE_LIMIT: Duration = Duration::from_secs(300);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a literal address")
}

/// Echoes until the peer closes, then closes.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = s.shutdown().await;
}

/// `n` round trips of `size` bytes on `s`, each answer checked; their times (ns) appended to
/// `lat`.
async fn round_trips(
    s: &mut tokio::net::TcpStream,
    size: usize,
    n: u64,
    seed: u64,
    lat: &mut Vec<u32>,
) -> Result<(), String> {
    let mut req = crate::bench::pattern(size, seed);
    let mut resp = vec![0u8; size];
    for i in 0..n {
        // Each request differs from the last, so a stale answer does not match.
        let tag = i.to_le_bytes();
        let k = size.min(tag.len());
        req[..k].copy_from_slice(&tag[..k]);
        let t = Instant::now();
        s.write_all(&req).await.map_err(|e| format!("send: {e}"))?;
        s.read_exact(&mut resp)
            .await
            .map_err(|e| format!("receive: {e}"))?;
        let ns = t.elapsed().as_nanos();
        if resp != req {
            return Err(format!(
                "round trip {i}: the answer differs from the request"
            ));
        }
        lat.push(ns.min(u32::MAX as u128) as u32);
    }
    Ok(())
}

async fn phase<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(PHASE_LIMIT, f)
        .await
        .map_err(|_| format!("no progress in {} s", PHASE_LIMIT.as_secs()))?
}

/// The clients: from inside `ns`, `cfg.clients` connections to `to`, warmed up, then all
/// measured at once.
fn clients(ns: &Netns, to: SocketAddr, cfg: &EchoConfig) -> Result<EchoStats, String> {
    let name = ns.name().to_string();
    let EchoConfig {
        clients,
        round_trips: measured_rounds,
        warmup,
        size,
    } = cfg.clone();
    let run = std::thread::spawn(move || -> Result<EchoStats, String> {
        netns::enter(&name).map_err(|e| e.to_string())?;
        let exec = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        exec.block_on(async move {
            let mut conns = phase(async {
                let mut v = Vec::new();
                for _ in 0..clients {
                    let s = tokio::net::TcpStream::connect(to)
                        .await
                        .map_err(|e| format!("connect {to}: {e}"))?;
                    s.set_nodelay(true).map_err(|e| e.to_string())?;
                    v.push(s);
                }
                Ok(v)
            })
            .await?;
            let mut all = Vec::new();
            let mut seconds = 0.0;
            for (rounds, measured) in [(warmup, false), (measured_rounds, true)] {
                let t0 = Instant::now();
                let tasks: Vec<_> = conns
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut s)| {
                        tokio::spawn(async move {
                            let mut lat = Vec::with_capacity(rounds as usize);
                            round_trips(&mut s, size, rounds, i as u64 + 1, &mut lat)
                                .await
                                .map(|()| (s, lat))
                        })
                    })
                    .collect();
                let done = phase(async {
                    let mut v = Vec::new();
                    for t in tasks {
                        v.push(t.await.map_err(|e| format!("client: {e}"))??);
                    }
                    Ok(v)
                })
                .await?;
                if measured {
                    seconds = t0.elapsed().as_secs_f64();
                }
                conns = Vec::new();
                for (s, lat) in done {
                    conns.push(s);
                    if measured {
                        all.extend(lat);
                    }
                }
            }
            drop(conns);
            Ok(stats(all, seconds))
        })
    });
    run.join().map_err(|_| "the clients panicked".to_string())?
}

/// p50, p99 (nearest rank), mean and max of `lat` (ns), and the rate over `seconds`.
fn stats(mut lat: Vec<u32>, seconds: f64) -> EchoStats {
    lat.sort_unstable();
    let n = lat.len().max(1);
    let rank = |p: f64| lat.get(((p * n as f64).ceil() as usize).clamp(1, n) - 1);
    let us = |v: Option<&u32>| v.map_or(0.0, |&ns| ns as f64 / 1e3);
    EchoStats {
        round_trips: lat.len() as u64,
        seconds,
        p50_us: us(rank(0.50)),
        p99_us: us(rank(0.99)),
        mean_us: lat.iter().map(|&v| v as f64).sum::<f64>() / n as f64 / 1e3,
        max_us: us(lat.last()),
        round_trips_per_s: lat.len() as f64 / seconds.max(1e-9),
    }
}

/// The echo server on plugtcp over a TUN device in `ns` (the kernel side at TUN_KERNEL),
/// measured with the kernel clients there.
fn plugtcp_case(ns: &Netns, cfg: &EchoConfig) -> Result<EchoStats, String> {
    let name = ns.name().to_string();
    // The device belongs to the namespace of the thread that opens it; its descriptor works
    // from any thread.
    let tun = std::thread::spawn(move || -> Result<TunIo, String> {
        netns::enter(&name).map_err(|e| e.to_string())?;
        TunIo::open_with(TUN_DEV, false).map_err(|e| format!("tun {TUN_DEV}: {e}"))
    })
    .join()
    .map_err(|_| "the TUN thread panicked")??;
    ns.ok(&[
        "ip",
        "addr",
        "add",
        &format!("{TUN_KERNEL}/24"),
        "dev",
        TUN_DEV,
    ])
    .and_then(|()| ns.ok(&["ip", "link", "set", TUN_DEV, "up"]))
    .map_err(|e| e.to_string())?;
    let mut host = Host::with_seed(SearchPath::default(), 5);
    host.register_builtins();
    host.add_addr(ip(TUN_PLUGTCP));
    let rt = Runtime::on(host, Box::new(tun)).map_err(|e| e.to_string())?;
    let listener = rt
        .listen(Side::A, SocketAddr::new(ip(TUN_PLUGTCP), PORT), 1024)
        .map_err(|e| format!("listen: {e}"))?;
    let n = cfg.clients;
    let server = std::thread::spawn(move || -> Result<(), String> {
        // Every client connects before the first round trip: accept them all, then echo.
        let mut conns = Vec::new();
        for _ in 0..n {
            let s = listener.accept().map_err(|e| format!("accept: {e}"))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            conns.push(s.into_async());
        }
        let exec = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| e.to_string())?;
        exec.block_on(async move {
            let tasks: Vec<_> = conns.into_iter().map(|s| tokio::spawn(echo(s))).collect();
            for t in tasks {
                let _ = t.await;
            }
        });
        Ok(())
    });
    let measured = clients(ns, SocketAddr::new(ip(TUN_PLUGTCP), PORT), cfg);
    // Ends the driver: a server still blocked (a client that never came) gets ENETDOWN.
    drop(rt);
    let served = server.join().map_err(|_| "the plugtcp server panicked")?;
    let measured = measured?;
    served?;
    Ok(measured)
}

/// The echo server on the kernel in `b`, measured with the kernel clients in `a` across the
/// veth pair.
fn kernel_case(a: &Netns, b: &Netns, cfg: &EchoConfig) -> Result<EchoStats, String> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let name = b.name().to_string();
    let n = cfg.clients;
    let server = std::thread::spawn(move || -> Result<(), String> {
        let exec = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| e.to_string())?;
        let up = netns::enter(&name)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                exec.block_on(tokio::net::TcpListener::bind((ip(VETH_B), PORT)))
                    .map_err(|e| format!("bind: {e}"))
            });
        let listener = match up {
            Ok(l) => {
                let _ = ready_tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e.clone()));
                return Err(e);
            }
        };
        exec.block_on(async move {
            let mut tasks = Vec::new();
            for _ in 0..n {
                let (s, _) = listener
                    .accept()
                    .await
                    .map_err(|e| format!("accept: {e}"))?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                tasks.push(tokio::spawn(echo(s)));
            }
            for t in tasks {
                let _ = t.await;
            }
            Ok(())
        })
    });
    ready_rx
        .recv()
        .map_err(|_| "the kernel server thread died".to_string())??;
    // On an error the server may wait for a client that never came: leave it (the
    // namespace goes, and the thread with the process).
    let measured = clients(a, SocketAddr::new(ip(VETH_B), PORT), cfg)?;
    server.join().map_err(|_| "the kernel server panicked")??;
    Ok(measured)
}

pub fn run(cfg: &EchoConfig) -> Result<EchoReport, String> {
    if cfg.clients == 0 || cfg.round_trips == 0 || cfg.size == 0 {
        return Err("--clients, --round-trips and --size must be at least 1".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "needs root: it makes two network namespaces, a veth pair and a TUN device (run it with sudo)"
                .into(),
        );
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err("no /dev/net/tun: the plugtcp side needs a TUN device".into());
    }
    let pid = std::process::id();
    let mk = |tag: &str| {
        Netns::create(&format!("plugtcp-echo-{tag}-{pid}"))
            .map_err(|e| format!("{e} (bench echo needs root and iproute2)"))
    };
    let (a, b) = (mk("a")?, mk("b")?);
    super::veth_pair(&a, &b, ["pev0", "pev1"], [VETH_A, VETH_B])?;
    let plugtcp = plugtcp_case(&a, cfg).map_err(|e| format!("plugtcp over TUN: {e}"))?;
    let kernel = kernel_case(&a, &b, cfg).map_err(|e| format!("kernel over veth: {e}"))?;
    let ratio = |p: f64, k: f64| if k > 0.0 { p / k } else { 0.0 };
    Ok(EchoReport {
        clients: cfg.clients,
        round_trips_per_client: cfg.round_trips,
        request_bytes: cfg.size,
        p50_ratio: ratio(plugtcp.p50_us, kernel.p50_us),
        p99_ratio: ratio(plugtcp.p99_us, kernel.p99_us),
        mean_ratio: ratio(plugtcp.mean_us, kernel.mean_us),
        round_trips_per_s_ratio: ratio(plugtcp.round_trips_per_s, kernel.round_trips_per_s),
        plugtcp,
        kernel,
    })
}
