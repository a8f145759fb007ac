//! `plugtcp bench tun`: in one run and one namespace setup, bulk transfers between the
//! kernel's TCP and plugtcp on a TUN device, both ways (kernel -> plugtcp, plugtcp ->
//! kernel), over 1 and 8 parallel connections, with and without IFF_VNET_HDR (the kernel's
//! super-packets in, plugtcp's out, checksums left to the kernel), on one shard and on all
//! of them; and the kernel's TCP to itself over a veth pair with the same connection counts,
//! the yardstick. Each figure is the transfer's bytes over the time from the first connect
//! to the last byte's arrival at the receiver (the sender waits for the receiver's FIN).
//! Needs root.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use plugtcp_abi::Errno;
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::usrreq::Shutdown;
use plugtcp_host::Host;
use plugtcp_io::netns::{self, Netns};
use plugtcp_io::runtime::{Runtime, Side};

#[derive(Debug, Clone, serde::Serialize)]
pub struct TunConfig {
    /// Bytes per transfer (split over its connections).
    pub bytes: u64,
    /// Parallel connection counts to run.
    pub connections: Vec<usize>,
    /// Shard counts to run plugtcp with.
    pub shards: Vec<usize>,
    /// Rounds of every transfer, interleaved; medians are reported.
    pub rounds: usize,
}

impl Default for TunConfig {
    fn default() -> Self {
        TunConfig {
            bytes: 256 << 20,
            connections: vec![1, 8],
            shards: vec![1, plugtcp_io::runtime::default_shards()],
            rounds: 3,
        }
    }
}

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Direction {
    #[serde(rename = "kernel->plugtcp")]
    ToPlugtcp,
    #[serde(rename = "plugtcp->kernel")]
    FromPlugtcp,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::ToPlugtcp => "kernel -> plugtcp",
            Direction::FromPlugtcp => "plugtcp -> kernel",
        })
    }
}

/// One plugtcp transfer's figure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TunRun {
    pub direction: Direction,
    pub connections: usize,
    pub vnet_hdr: bool,
    pub shards: usize,
    pub gbit_per_s: f64,
    /// Over the kernel to itself over veth with as many connections.
    pub ratio: f64,
}

/// Kernel to kernel over veth.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelRun {
    pub connections: usize,
    pub gbit_per_s: f64,
}

#[derive(Debug, serde::Serialize)]
pub struct TunReport {
    pub bytes: u64,
    pub rounds: usize,
    pub kernel: Vec<KernelRun>,
    pub plugtcp: Vec<TunRun>,
    /// The best ratio with IFF_VNET_HDR, each way.
    pub best_ratio_to_plugtcp: f64,
    pub best_ratio_from_plugtcp: f64,
}

impl TunReport {
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} bytes per transfer (medians of {} rounds)\n",
            self.bytes, self.rounds
        );
        for k in &self.kernel {
            out += &format!(
                "kernel -> kernel over veth, {} connection(s): {:.2} Gbit/s\n",
                k.connections, k.gbit_per_s
            );
        }
        for r in &self.plugtcp {
            out += &format!(
                "{}, {} connection(s), {}, {} shard(s): {:.2} Gbit/s, {:.2}x the kernel\n",
                r.direction,
                r.connections,
                if r.vnet_hdr {
                    "IFF_VNET_HDR"
                } else {
                    "plain TUN"
                },
                r.shards,
                r.gbit_per_s,
                r.ratio
            );
        }
        out += &format!(
            "best with IFF_VNET_HDR: kernel -> plugtcp {:.2}x, plugtcp -> kernel {:.2}x\n",
            self.best_ratio_to_plugtcp, self.best_ratio_from_plugtcp
        );
        out
    }
}

const TUN_KERNEL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const TUN_PLUGTCP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VETH_A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const VETH_B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const PORT: u16 = 9;

/// `bytes` split over `n` connections (the first ones take the remainder).
fn share(bytes: u64, n: usize, i: usize) -> u64 {
    bytes / n as u64 + u64::from((i as u64) < bytes % n as u64)
}

/// The kernel's side of a transfer: `n` connections from inside `ns` to `to`, each writing
/// its share of `bytes`, then waiting for the receiver's FIN.
fn kernel_senders(
    ns: &str,
    to: SocketAddr,
    bytes: u64,
    n: usize,
) -> Vec<std::thread::JoinHandle<Result<(), String>>> {
    (0..n)
        .map(|i| {
            let name = ns.to_string();
            std::thread::spawn(move || {
                netns::enter(&name).map_err(|e| e.to_string())?;
                let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(10))
                    .map_err(|e| format!("connect {to}: {e}"))?;
                let chunk = vec![0x5au8; 1 << 20];
                let mut left = share(bytes, n, i);
                while left > 0 {
                    let k = left.min(chunk.len() as u64) as usize;
                    s.write_all(&chunk[..k])
                        .map_err(|e| format!("write: {e}"))?;
                    left -= k as u64;
                }
                s.shutdown(std::net::Shutdown::Write)
                    .map_err(|e| format!("shutdown: {e}"))?;
                let mut b = [0u8; 1];
                let _ = s.read(&mut b);
                Ok(())
            })
        })
        .collect()
}

/// The kernel's receiving side: a listener on `at` inside `ns` takes `n` connections and
/// reads each to its end. Returns once listening; the handle gives the bytes received.
fn kernel_receivers(
    ns: &str,
    at: SocketAddr,
    n: usize,
) -> Result<std::thread::JoinHandle<Result<u64, String>>, String> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let name = ns.to_string();
    let h = std::thread::spawn(move || -> Result<u64, String> {
        let l = match netns::enter(&name)
            .map_err(|e| e.to_string())
            .and_then(|()| TcpListener::bind(at).map_err(|e| format!("bind {at}: {e}")))
        {
            Ok(l) => {
                let _ = ready_tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e.clone()));
                return Err(e);
            }
        };
        let readers: Vec<_> = (0..n)
            .map(|_| {
                let (mut s, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
                Ok(std::thread::spawn(move || {
                    let (mut buf, mut got) = (vec![0u8; 1 << 20], 0u64);
                    while let Ok(k) = s.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        got += k as u64;
                    }
                    got
                }))
            })
            .collect::<Result<_, String>>()?;
        Ok(readers.into_iter().map(|r| r.join().unwrap_or(0)).sum())
    });
    ready_rx
        .recv()
        .map_err(|_| "receiver thread died".to_string())??;
    Ok(h)
}

/// plugtcp's receiving side in one shard: accept, count and discard, close at the end.
fn receive_service(lid: usize, got: Arc<AtomicU64>) -> plugtcp_io::runtime::Service {
    let mut conns: Vec<ConnId> = Vec::new();
    Box::new(move |h: &mut Host| {
        while let Ok(c) = h.accept(lid) {
            conns.push(c);
        }
        conns.retain(|&c| loop {
            match h.recv_with(c, |run| run.len()) {
                Ok(0) => {
                    h.close(c);
                    break false;
                }
                Ok(k) => {
                    got.fetch_add(k as u64, Ordering::Relaxed);
                }
                Err(Errno::EAGAIN) => break true,
                Err(_) => {
                    h.close(c);
                    break false;
                }
            }
        });
    })
}

/// plugtcp's sending side in one shard: connects `quotas.len()` connections to `to`, each
/// sending its quota and then its FIN.
fn send_service(to: SocketAddr, quotas: Vec<u64>) -> plugtcp_io::runtime::Service {
    let chunk: Arc<[u8]> = super::pattern(64 << 10, 0x7e57).into();
    let mut conns: Vec<(ConnId, u64)> = Vec::new();
    let mut started = false;
    Box::new(move |h: &mut Host| {
        if !started {
            started = true;
            conns = quotas
                .iter()
                .filter_map(|&q| h.connect(to, None).ok().map(|c| (c, q)))
                .collect();
        }
        conns.retain_mut(|(c, left)| {
            while *left > 0 {
                let k = (*left).min(chunk.len() as u64) as usize;
                match h.send(*c, &chunk[..k]) {
                    Ok(n) if n > 0 => *left -= n as u64,
                    Ok(_) | Err(Errno::EAGAIN) | Err(Errno::ENOTCONN) => return true,
                    Err(_) => return false,
                }
            }
            let _ = h.shutdown(*c, Shutdown::Write);
            h.close(*c);
            false
        });
    })
}

/// One plugtcp transfer on a fresh TUN device `dev` in `ns`: seconds it took.
fn plugtcp_run(
    ns: &Netns,
    dev: &str,
    dir: Direction,
    conns: usize,
    vnet_hdr: bool,
    shards: usize,
    bytes: u64,
) -> Result<f64, String> {
    // The device is made in the namespace of the thread that opens it.
    let (name, devname) = (ns.name().to_string(), dev.to_string());
    let rt = std::thread::spawn(move || -> Result<Runtime, String> {
        netns::enter(&name).map_err(|e| e.to_string())?;
        let b = Runtime::builder();
        let b = if vnet_hdr {
            b.tun_vnet_hdr(&devname)
        } else {
            b.tun(&devname)
        };
        b.addr(TUN_PLUGTCP.into())
            .plugins(crate::builtins::plugins())
            .shards(shards)
            .build()
            .map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "runtime thread panicked")??;
    ns.ok(&["ip", "addr", "add", &format!("{TUN_KERNEL}/24"), "dev", dev])
        .and_then(|()| ns.ok(&["ip", "link", "set", dev, "up"]))
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let got = match dir {
        Direction::ToPlugtcp => {
            let got = Arc::new(AtomicU64::new(0));
            let l = rt
                .listen(Side::A, (TUN_PLUGTCP, PORT).into(), 64)
                .map_err(|e| format!("listen: {e}"))?;
            for s in 0..rt.shards() {
                if let Some(lid) = l.id_in_shard(s) {
                    rt.set_service(s, receive_service(lid, got.clone()));
                }
            }
            for h in kernel_senders(ns.name(), (TUN_PLUGTCP, PORT).into(), bytes, conns) {
                h.join().map_err(|_| "sender panicked")??;
            }
            rt.clear_services();
            got.load(Ordering::Relaxed)
        }
        Direction::FromPlugtcp => {
            let at: SocketAddr = (TUN_KERNEL, PORT).into();
            let rx = kernel_receivers(ns.name(), at, conns)?;
            // Connection i opens on shard i mod shards.
            for s in 0..rt.shards() {
                let quotas: Vec<u64> = (0..conns)
                    .filter(|i| i % rt.shards() == s)
                    .map(|i| share(bytes, conns, i))
                    .collect();
                if !quotas.is_empty() {
                    rt.set_service(s, send_service(at, quotas));
                }
            }
            let got = rx.join().map_err(|_| "receiver panicked")??;
            rt.clear_services();
            got
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    drop(rt);
    if got != bytes {
        return Err(format!(
            "{dir}, {conns} connection(s): {got} of {bytes} bytes arrived"
        ));
    }
    Ok(secs)
}

/// The kernel in `a` sends `bytes` to the kernel in `b` over the veth pair.
fn kernel_run(a: &Netns, b: &Netns, conns: usize, bytes: u64) -> Result<f64, String> {
    let at: SocketAddr = (VETH_B, PORT).into();
    let rx = kernel_receivers(b.name(), at, conns)?;
    let t0 = Instant::now();
    for h in kernel_senders(a.name(), at, bytes, conns) {
        h.join().map_err(|_| "sender panicked")??;
    }
    let got = rx.join().map_err(|_| "receiver panicked")??;
    let secs = t0.elapsed().as_secs_f64();
    if got != bytes {
        return Err(format!("kernel received {got} of {bytes} bytes"));
    }
    Ok(secs)
}

/// A plugtcp transfer: direction, IFF_VNET_HDR, shards.
type Variant = (Direction, bool, usize);

pub fn run(cfg: &TunConfig) -> Result<TunReport, String> {
    if cfg.bytes == 0 || cfg.rounds == 0 || cfg.connections.contains(&0) || cfg.shards.contains(&0)
    {
        return Err("bytes, rounds, connections and shards must be positive".into());
    }
    let pid = std::process::id();
    let mk = |tag: &str| {
        Netns::create(&format!("plugtcp-bench-{tag}-{pid}"))
            .map_err(|e| format!("{e} (bench tun needs root and iproute2)"))
    };
    let (a, b) = (mk("a")?, mk("b")?);
    super::veth_pair(
        &a,
        &b,
        ["pbv0", "pbv1"],
        [&VETH_A.to_string(), &VETH_B.to_string()],
    )?;
    let mut shards = cfg.shards.clone();
    shards.dedup();
    // Every transfer: None is the kernel over veth, Some the plugtcp variant.
    let mut runs: Vec<(usize, Option<Variant>)> = Vec::new();
    for &conns in &cfg.connections {
        runs.push((conns, None));
        for dir in [Direction::ToPlugtcp, Direction::FromPlugtcp] {
            for vnet_hdr in [false, true] {
                for &n in &shards {
                    runs.push((conns, Some((dir, vnet_hdr, n))));
                }
            }
        }
    }
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    let mut dev = 0;
    // Rounds interleave the transfers, so that the machine's drift falls on all alike.
    for _ in 0..cfg.rounds {
        for (i, &(conns, variant)) in runs.iter().enumerate() {
            let t = match variant {
                None => kernel_run(&a, &b, conns, cfg.bytes)?,
                Some((dir, vnet_hdr, n)) => {
                    // A fresh name each run: the kernel unregisters a closed TUN device
                    // asynchronously, so reusing a name at once can meet EBUSY.
                    dev += 1;
                    let name = format!("pbt{dev}");
                    plugtcp_run(&a, &name, dir, conns, vnet_hdr, n, cfg.bytes)?
                }
            };
            secs[i].push(t);
        }
    }
    let gbit = |t: f64| cfg.bytes as f64 * 8.0 / t / 1e9;
    let mut kernel = Vec::new();
    let mut plugtcp = Vec::new();
    let mut kernel_gbit = 0.0;
    for ((conns, variant), t) in runs.into_iter().zip(secs) {
        let g = gbit(super::median(t));
        match variant {
            None => {
                kernel_gbit = g;
                kernel.push(KernelRun {
                    connections: conns,
                    gbit_per_s: g,
                });
            }
            Some((direction, vnet_hdr, shards)) => plugtcp.push(TunRun {
                direction,
                connections: conns,
                vnet_hdr,
                shards,
                gbit_per_s: g,
                ratio: g / kernel_gbit,
            }),
        }
    }
    let best = |d: Direction| {
        plugtcp
            .iter()
            .filter(|r| r.direction == d && r.vnet_hdr)
            .map(|r| r.ratio)
            .fold(0.0, f64::max)
    };
    Ok(TunReport {
        bytes: cfg.bytes,
        rounds: cfg.rounds,
        best_ratio_to_plugtcp: best(Direction::ToPlugtcp),
        best_ratio_from_plugtcp: best(Direction::FromPlugtcp),
        kernel,
        plugtcp,
    })
}
