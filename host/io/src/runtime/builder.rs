//! Starting a host on real backends: `Runtime::builder().tun("plugtcp%d").addr(ip)
//! .shards(2).metrics(addr).control(path).build()`, with what `plugtcp serve` takes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{with_hosts, Runtime, Shared};
use crate::control::{execute_sharded, ControlServer};
use crate::driver::PacketIo;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::secrets::Entropy;
use plugtcp_host::Host;

/// Where a [`Builder`]'s host sends and receives.
enum BackendChoice {
    Tun {
        name: String,
        vnet_hdr: bool,
    },
    Udp {
        bind: SocketAddr,
        peer_port: Option<u16>,
    },
    /// One backend per shard.
    Given(Vec<Box<dyn PacketIo + Send>>),
}

/// Starts a host on a real backend with what `plugtcp serve` takes: the device, the
/// addresses, shards, sysctls, plugins, the metrics endpoint and the control socket.
#[derive(Default)]
pub struct Builder {
    backend: Option<BackendChoice>,
    shards: Option<usize>,
    addrs: Vec<IpAddr>,
    sysctls: Vec<(String, String)>,
    plugin_dirs: Vec<PathBuf>,
    statics: plugtcp_host::kld::StaticPlugins,
    seed: Option<u64>,
    metrics: Option<SocketAddr>,
    control: Option<PathBuf>,
    /// A host built by the caller, for the first shard (instead of one from the sysctls
    /// and plugins given here).
    host: Option<Host>,
}

/// The number of shards when none is given: one per core.
pub fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Builder {
    /// A TUN device (`%d` in the name picks the first free number); the kernel side of it
    /// (its address, routes) is the caller's to configure. With more than one shard it is
    /// a multi-queue device, a queue per shard.
    pub fn tun(mut self, name: &str) -> Self {
        self.backend = Some(BackendChoice::Tun {
            name: name.to_owned(),
            vnet_hdr: false,
        });
        self
    }

    /// As [`Builder::tun`], with IFF_VNET_HDR (the kernel's offloads: super-packets in).
    pub fn tun_vnet_hdr(mut self, name: &str) -> Self {
        self.backend = Some(BackendChoice::Tun {
            name: name.to_owned(),
            vnet_hdr: true,
        });
        self
    }

    /// TCP over UDP from `bind`; `peer_port` is the peers' UDP port when they all use one
    /// (else each connection names its own with TCP_REMOTE_UDP_ENCAPS_PORT, or the port a
    /// peer sent from is used). With more than one shard, a `SO_REUSEPORT` socket per shard.
    pub fn udp(mut self, bind: SocketAddr, peer_port: Option<u16>) -> Self {
        self.backend = Some(BackendChoice::Udp { bind, peer_port });
        self
    }

    /// Any backend (one shard).
    pub fn backend(mut self, io: Box<dyn PacketIo + Send>) -> Self {
        self.backend = Some(BackendChoice::Given(vec![io]));
        self
    }

    /// Any backends, one per shard (packets a backend receives for another shard's flows
    /// are handed to that shard).
    pub fn backends(mut self, ios: Vec<Box<dyn PacketIo + Send>>) -> Self {
        self.backend = Some(BackendChoice::Given(ios));
        self
    }

    /// How many shards (threads, each with its own `Host`): default one per core.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// An address of this host (connections to it are its own; the first of a family is
    /// the source of active opens).
    pub fn addr(mut self, ip: IpAddr) -> Self {
        self.addrs.push(ip);
        self
    }

    /// A sysctl, as `plugtcp serve --sysctl` takes it (`name` without `net.` is under
    /// `net.inet.tcp.`).
    pub fn sysctl(mut self, name: &str, value: &str) -> Self {
        self.sysctls.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A directory to load plugin files from (before `PLUGTCP_PLUGIN_PATH` and the
    /// executable's directory).
    pub fn plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugin_dirs.push(dir.into());
        self
    }

    /// Plugins linked into the program (the `plugtcp` crate's `builtins::plugins()`).
    pub fn plugins(mut self, statics: plugtcp_host::kld::StaticPlugins) -> Self {
        self.statics = statics;
        self
    }

    /// Seeds the host's randomness instead of drawing it from the OS: for tests only.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Serves Prometheus metrics on `addr` (port 0: a free one, see
    /// [`Runtime::metrics_addr`]), the shards' counters summed. The recorder is the
    /// process's: one runtime per process may have it.
    pub fn metrics(mut self, addr: SocketAddr) -> Self {
        self.metrics = Some(addr);
        self
    }

    /// A control socket at `path` for `plugtcp kldload|kldstat|kldunload|sysctl|sockstat|
    /// tcpsso|tcpdrop --control PATH`, covering every shard.
    pub fn control(mut self, path: impl Into<PathBuf>) -> Self {
        self.control = Some(path.into());
        self
    }

    /// The first shard's host, built by the caller (as `plugtcp serve` does, to read its
    /// sysctls before opening the backends): the sysctls, plugins and seed given to the
    /// builder are then not used; the other shards are made from it.
    pub fn host(mut self, host: Host) -> Self {
        self.host = Some(host);
        self
    }

    /// The host, on its backends, driven by threads of its own. Errors name what failed:
    /// the device, a sysctl, a plugin file, the control socket, the metrics address.
    pub fn build(self) -> io::Result<Runtime> {
        let entropy = |i: u64| self.seed.map_or(Entropy::Os, |s| Entropy::Seed(s + i));
        let mut first = match self.host {
            Some(h) => h,
            None => Host::configured(
                SearchPath::from_env(&self.plugin_dirs),
                entropy(0),
                &self.statics,
                &self.sysctls,
            )
            .map_err(io::Error::other)?,
        };
        for &ip in &self.addrs {
            first.add_addr(ip);
        }
        let given = matches!(self.backend, Some(BackendChoice::Given(_)));
        let n = self
            .shards
            .unwrap_or(if given { 1 } else { default_shards() });
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shards: at least one",
            ));
        }
        let ios: Vec<Box<dyn PacketIo + Send>> = match self.backend {
            Some(BackendChoice::Tun { name, vnet_hdr }) => {
                crate::tun::TunIo::open_queues(&name, n, vnet_hdr)
                    .map_err(|e| io::Error::new(e.kind(), format!("tun {name}: {e}")))?
                    .into_iter()
                    .map(|t| Box::new(t) as Box<dyn PacketIo + Send>)
                    .collect()
            }
            Some(BackendChoice::Udp { bind, peer_port }) => {
                crate::udp::UdpIo::bind_group(bind, peer_port, 1500, n)
                    .map_err(|e| io::Error::new(e.kind(), format!("udp {bind}: {e}")))?
                    .into_iter()
                    .map(|u| Box::new(u) as Box<dyn PacketIo + Send>)
                    .collect()
            }
            Some(BackendChoice::Given(ios)) => {
                if self.shards.is_some_and(|s| s != ios.len()) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} shards asked for, {} backends given", n, ios.len()),
                    ));
                }
                ios
            }
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no backend: call tun, udp or backend",
                ))
            }
        };
        let n = ios.len();
        let mut hosts = Vec::with_capacity(n);
        for i in 1..n {
            hosts.push(first.new_shard(entropy(i as u64), n, i));
        }
        hosts.insert(0, first);
        let server = match &self.control {
            Some(p) => Some(ControlServer::bind(p).map_err(|e| {
                io::Error::new(e.kind(), format!("control socket {}: {e}", p.display()))
            })?),
            None => None,
        };
        let metrics_addr = match self.metrics {
            Some(a) => Some(
                crate::exporter::install(a)
                    .map_err(|e| io::Error::other(format!("metrics {e}")))?
                    .0,
            ),
            None => None,
        };
        let mut rt = Runtime::sharded(hosts, ios)?;
        if server.is_some() || metrics_addr.is_some() {
            rt.control = Some(Control::spawn(rt.shared.clone(), server, metrics_addr)?);
        }
        Ok(rt)
    }
}

/// The thread that answers the control socket and publishes the metrics: it locks the
/// shards only when a request comes and once per publishing interval.
pub(super) struct Control {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub(super) metrics_addr: Option<SocketAddr>,
}

impl Control {
    fn spawn(
        shared: Arc<Shared>,
        mut server: Option<ControlServer>,
        metrics_addr: Option<SocketAddr>,
    ) -> io::Result<Control> {
        let stop = Arc::new(AtomicBool::new(false));
        let quit = stop.clone();
        let publish = metrics_addr.is_some();
        let thread = std::thread::Builder::new()
            .name("plugtcp-control".into())
            .spawn(move || {
                let mut published: Option<Instant> = None;
                while !quit.load(Ordering::Acquire) && !shared.stopped() {
                    match &mut server {
                        Some(c) => {
                            let mut pfd = libc::pollfd {
                                fd: c.as_raw_fd(),
                                events: libc::POLLIN,
                                revents: 0,
                            };
                            // SAFETY: one valid pollfd.
                            unsafe { libc::poll(&mut pfd, 1, 100) };
                            c.poll_with(|cmd| with_hosts(&shared, |hs| execute_sharded(hs, cmd)));
                        }
                        None => std::thread::sleep(Duration::from_millis(100)),
                    }
                    let due = published
                        .is_none_or(|t| t.elapsed() >= plugtcp_host::metrics::PUBLISH_INTERVAL);
                    if publish && due {
                        with_hosts(&shared, crate::exporter::publish_sharded);
                        published = Some(Instant::now());
                    }
                }
            })?;
        Ok(Control {
            stop,
            thread: Some(thread),
            metrics_addr,
        })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
