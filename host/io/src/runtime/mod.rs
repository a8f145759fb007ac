//! The application API: background threads drive the network (step the sans-IO hosts,
//! move packets and time) while application threads use [`TcpListener`] and [`TcpStream`]
//! with blocking `std::io::Read`/`Write` or, through [`AsyncTcpStream`], tokio's
//! `AsyncRead`/`AsyncWrite`, getting the errno tcp(4) names as `std::io::Error`.
//!
//! Two kinds of network: the simulated one ([`SimRuntime`], a [`SimNet`]: virtual time runs
//! as fast as the driver steps, and stops while nothing is happening until an application
//! call wakes it), and a host on real backends ([`Runtime::builder`], [`Runtime::on`],
//! [`Runtime::sharded`]: TUN devices, TCP over UDP; the wall clock). A real host may be
//! split into shards, one thread and one `Host` each with its part of the socket table,
//! timers and buffers, so that no lock is shared per packet: flows reach their shard by
//! the backend's steering (a TUN queue per shard, a `SO_REUSEPORT` UDP socket per shard)
//! and, where the backend steered wrongly, by handing the packet to its owner
//! ([`plugtcp_host::steer`]). Listeners exist in every shard and `accept` takes from all.
//!
//! - [`builder`]: starting a host on a backend, with sysctls, plugins, metrics, control
//! - [`socket`]: the blocking listener and stream; [`async_io`]: the tokio ones
//! - [`drive`]: the driver threads

mod async_io;
mod builder;
mod drive;
mod socket;

pub use async_io::{AsyncTcpStream, OwnedReadHalf, OwnedWriteHalf};
pub use builder::{default_shards, Builder};
pub use socket::{TcpListener, TcpStream};

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::driver::PacketIo;
use crate::simnet::SimNet;
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::Host;

/// Which host of the simulated network (a real runtime has one host: `A`).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum Side {
    A,
    B,
}

/// What a task waits on: a connection or a listener of one host of a shard.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
enum WaitKey {
    Conn(Side, ConnId),
    Listener(Side, usize),
}

/// What a shard's driver runs: the simulated network, or one host on a real backend (whose
/// backend the driver thread owns).
enum Net {
    Sim(Box<SimNet>),
    Real(Box<Host>),
}

/// Work a shard's driver does on its host after every step, under the shard's lock: the
/// built-in services of `plugtcp serve`, written against the sans-IO calls.
pub type Service = Box<dyn FnMut(&mut Host) + Send>;

/// A packet another shard received for one of this shard's flows, and the UDP port it
/// came from (TCP over UDP).
type Steered = (Vec<u8>, Option<u16>);

/// One shard: its host, the tasks waiting on it, and how to wake its driver.
struct Shard {
    net: Mutex<Net>,
    /// Tasks waiting, by what they wait on. After each step the driver wakes only the
    /// tasks of the connections and listeners the host reports ready (`Host::take_ready`).
    /// A task registers while it holds the shard's lock, so no step falls between its
    /// failed attempt and its registration.
    wakers: Mutex<HashMap<WaitKey, Vec<std::task::Waker>>>,
    /// Signalled after every driver step (blocked threads re-check) and after every
    /// application call (the simulator's driver has work).
    changed: Condvar,
    /// Wakes a real backend's driver out of its poll (an eventfd); `None` for the simulator,
    /// whose driver waits on `changed`.
    kick: Option<OwnedFd>,
    /// Packets for this shard that another shard's queue received.
    inbox: Mutex<Vec<Steered>>,
    /// Packets this shard's backend received for another shard's flows (the backend's
    /// steering missed).
    handed_over: std::sync::atomic::AtomicU64,
    service: Mutex<Option<Service>>,
}

struct Shared {
    shards: Vec<Shard>,
    stop: AtomicBool,
    /// Bumped (and signalled) whenever a listener of any shard has a connection to accept:
    /// a blocking accept over all shards waits on it.
    accepts: (Mutex<u64>, Condvar),
    /// Round-robin choice of the shard for the next active open.
    next_connect: AtomicUsize,
}

/// A network driven by background threads: the application side of plugtcp.
pub struct Runtime {
    shared: Arc<Shared>,
    drivers: Vec<JoinHandle<()>>,
    /// The control socket and metrics thread, if the builder asked for either.
    control: Option<builder::Control>,
}

/// A simulated network driven by a background thread ([`Runtime`] with `with` for setup).
pub struct SimRuntime(Runtime);

impl std::ops::Deref for SimRuntime {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        &self.0
    }
}

fn host(net: &mut Net, side: Side) -> &mut Host {
    match (net, side) {
        (Net::Sim(n), Side::A) => &mut n.a,
        (Net::Sim(n), Side::B) => &mut n.b,
        (Net::Real(h), _) => h,
    }
}

fn lock(s: &Shard) -> MutexGuard<'_, Net> {
    // A panic on another thread while holding the lock leaves the network as it was after its
    // last complete step; carrying on is better than poisoning every stream.
    s.net.lock().unwrap_or_else(|e| e.into_inner())
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd has no memory preconditions; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor eventfd just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Shard {
    fn new(net: Net, kick: Option<OwnedFd>) -> Shard {
        Shard {
            net: Mutex::new(net),
            wakers: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            kick,
            inbox: Mutex::new(Vec::new()),
            handed_over: Default::default(),
            service: Mutex::new(None),
        }
    }

    /// An application call (or another shard) may have given the driver work: wake it.
    fn notify(&self) {
        self.changed.notify_all();
        if let Some(k) = &self.kick {
            let one = 1u64.to_ne_bytes();
            // SAFETY: an 8-byte write from a live buffer to our eventfd. A full counter
            // (EAGAIN) already wakes the driver.
            let _ = unsafe { libc::write(k.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
    }

    /// Registers the task of `cx` as waiting on `key`. Call with the shard's lock held.
    fn park(&self, key: WaitKey, cx: &std::task::Context<'_>) {
        let mut w = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        let list = w.entry(key).or_default();
        if !list.iter().any(|x| x.will_wake(cx.waker())) {
            list.push(cx.waker().clone());
        }
    }

    /// Wakes the tasks waiting on what the shard's hosts report ready. Called with the
    /// shard's lock held; `ready` is scratch space kept across steps. True if a listener
    /// has a connection to accept.
    fn wake_ready(&self, net: &mut Net, ready: &mut (Vec<ConnId>, Vec<usize>)) -> bool {
        let mut w = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        let sides: &[Side] = match net {
            Net::Sim(_) => &[Side::A, Side::B],
            Net::Real(_) => &[Side::A],
        };
        let mut accept = false;
        for &side in sides {
            host(net, side).take_ready(&mut ready.0, &mut ready.1);
            accept |= !ready.1.is_empty();
            if w.is_empty() {
                ready.0.clear();
                ready.1.clear();
                continue;
            }
            let keys = ready.0.drain(..).map(|c| WaitKey::Conn(side, c));
            let keys = keys.chain(ready.1.drain(..).map(|l| WaitKey::Listener(side, l)));
            for k in keys {
                if let Some(list) = w.remove(&k) {
                    list.into_iter().for_each(std::task::Waker::wake);
                }
            }
        }
        accept
    }

    /// Wakes every task (the network is gone).
    fn wake_all(&self) {
        let mut w = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        w.drain()
            .flat_map(|(_, l)| l)
            .for_each(std::task::Waker::wake);
        self.changed.notify_all();
    }
}

impl Shared {
    fn new(shards: Vec<Shard>) -> Arc<Shared> {
        Arc::new(Shared {
            shards,
            stop: AtomicBool::new(false),
            accepts: (Mutex::new(0), Condvar::new()),
            next_connect: AtomicUsize::new(0),
        })
    }

    /// The drivers have ended (the runtime dropped, or a backend failed).
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// A listener somewhere has a connection (or the network stopped): wake blocked accepts.
    fn ring_accepts(&self) {
        let mut g = self.accepts.0.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.wrapping_add(1);
        self.accepts.1.notify_all();
    }

    /// Stops every driver, and wakes whoever waits.
    fn shut_down(&self) {
        self.stop.store(true, Ordering::Release);
        for s in &self.shards {
            s.notify();
            s.wake_all();
        }
        self.ring_accepts();
    }
}

impl SimRuntime {
    pub fn new(mut net: SimNet) -> Self {
        net.a.track_readiness(true);
        net.b.track_readiness(true);
        let shared = Shared::new(vec![Shard::new(Net::Sim(Box::new(net)), None)]);
        let s = shared.clone();
        let drivers = std::thread::Builder::new()
            .name("plugtcp-driver".into())
            .spawn(move || drive::drive_sim(&s))
            .into_iter()
            .collect();
        SimRuntime(Runtime {
            shared,
            drivers,
            control: None,
        })
    }

    /// Runs `f` on the network (for setup and inspection).
    pub fn with<R>(&self, f: impl FnOnce(&mut SimNet) -> R) -> R {
        let shard = &self.shared.shards[0];
        let mut net = lock(shard);
        let Net::Sim(n) = &mut *net else {
            unreachable!("a SimRuntime drives a SimNet")
        };
        let r = f(n);
        drop(net);
        shard.notify();
        r
    }
}

impl Runtime {
    /// A builder for a host on real backends.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Runs `host` on the real backend `io` (a TUN device, TCP over UDP) with the wall
    /// clock, as one shard: its MTU becomes the backend's. The host is `Side::A`.
    pub fn on(host: Host, io: Box<dyn PacketIo + Send>) -> io::Result<Self> {
        Self::sharded(vec![host], vec![io])
    }

    /// Runs a host split into shards, `hosts[i]` on `ios[i]` (one queue of a multi-queue
    /// device, one socket of a `SO_REUSEPORT` group), each driven by a thread of its own.
    /// The hosts should be [`Host::new_shard`]s of the first, so that they share the
    /// registry and sysctls and pick ephemeral ports that steer back to them.
    pub fn sharded(mut hosts: Vec<Host>, ios: Vec<Box<dyn PacketIo + Send>>) -> io::Result<Self> {
        if hosts.is_empty() || hosts.len() != ios.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "one backend per shard, and at least one shard",
            ));
        }
        let n = hosts.len();
        let mut shards = Vec::with_capacity(n);
        let mut ios = ios;
        for (i, (h, io)) in hosts.iter_mut().zip(&mut ios).enumerate() {
            h.mtu = io.mtu();
            h.set_tx_gso(io.gso_max());
            io.leave_partial_checksums();
            h.track_readiness(true);
            h.set_shard(n, i);
        }
        for h in hosts {
            shards.push(Shard::new(Net::Real(Box::new(h)), Some(eventfd()?)));
        }
        let shared = Shared::new(shards);
        let mut drivers = Vec::with_capacity(n);
        for (i, io) in ios.into_iter().enumerate() {
            let s = shared.clone();
            let name = if n == 1 {
                "plugtcp-driver".to_string()
            } else {
                format!("plugtcp-shard{i}")
            };
            match std::thread::Builder::new()
                .name(name)
                .spawn(move || drive::drive_real(&s, i, io))
            {
                Ok(d) => drivers.push(d),
                Err(e) => {
                    shared.shut_down();
                    drivers.into_iter().for_each(|d| {
                        let _ = d.join();
                    });
                    return Err(e);
                }
            }
        }
        Ok(Runtime {
            shared,
            drivers,
            control: None,
        })
    }

    /// The network is down: a backend failed (the device went away), or the runtime is
    /// being dropped. Blocked calls have returned ENETDOWN.
    pub fn is_down(&self) -> bool {
        self.shared.stopped()
    }

    /// Packets a shard's backend received for another shard's flows and handed over, in
    /// all: how often the backend's own steering missed.
    pub fn handed_over(&self) -> u64 {
        self.shared
            .shards
            .iter()
            .map(|s| s.handed_over.load(Ordering::Relaxed))
            .sum()
    }

    /// How many shards the host is split into.
    pub fn shards(&self) -> usize {
        self.shared.shards.len()
    }

    /// The address the Prometheus endpoint serves on, if the builder asked for one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.control.as_ref().and_then(|c| c.metrics_addr)
    }

    /// Runs `f` on host `side` of the first shard (for setup and inspection: sysctls and
    /// kldload reach every shard, which share the registry and the sysctl tree).
    pub fn with_host<R>(&self, side: Side, f: impl FnOnce(&mut Host) -> R) -> R {
        self.with_shard(0, side, f)
    }

    /// Runs `f` on host `side` of shard `shard`.
    pub fn with_shard<R>(&self, shard: usize, side: Side, f: impl FnOnce(&mut Host) -> R) -> R {
        let s = &self.shared.shards[shard];
        let r = f(host(&mut lock(s), side));
        s.notify();
        r
    }

    /// Runs `f` on every host of the runtime at once (every shard locked, in order): what
    /// the control socket and the metrics publisher see. The simulator gives both hosts.
    pub fn with_hosts<R>(&self, f: impl FnOnce(&mut [&mut Host]) -> R) -> R {
        with_hosts(&self.shared, f)
    }

    /// Runs `service` on shard `shard`'s host after every step of its driver (the built-in
    /// services of `plugtcp serve` are written this way). Replaces the shard's previous one.
    pub fn set_service(&self, shard: usize, service: Service) {
        let s = &self.shared.shards[shard];
        *s.service.lock().unwrap_or_else(|e| e.into_inner()) = Some(service);
        s.notify();
    }

    /// Listens on `addr` on host `side`, in every shard.
    pub fn listen(&self, side: Side, addr: SocketAddr, backlog: usize) -> io::Result<TcpListener> {
        TcpListener::open(&self.shared, side, addr, backlog)
    }

    /// A transparent listener (IPv4, or IPv6 with `v6`) on host `side`, in every shard: it
    /// accepts connections to any address and port routed to the host that no other
    /// listener takes; each stream's `local_addr` is the destination the peer addressed.
    pub fn listen_transparent(
        &self,
        side: Side,
        v6: bool,
        backlog: usize,
    ) -> io::Result<TcpListener> {
        TcpListener::open_transparent(&self.shared, side, v6, backlog)
    }

    /// Stops running the shards' services (see [`Runtime::set_service`]).
    pub fn clear_services(&self) {
        for s in &self.shared.shards {
            s.service.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }

    /// Connects from host `side` to `remote`, blocking until established (or refused,
    /// timed out by the stack's own connection timer, ...). The shards take turns.
    pub fn connect(&self, side: Side, remote: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect(&self.shared, side, remote, None)
    }

    /// As [`Runtime::connect`], giving up after `timeout` (ETIMEDOUT; the half-open
    /// connection is dropped).
    pub fn connect_timeout(
        &self,
        side: Side,
        remote: SocketAddr,
        timeout: std::time::Duration,
    ) -> io::Result<TcpStream> {
        TcpStream::connect(&self.shared, side, remote, Some(timeout))
    }

    /// As [`Runtime::connect`], as a future; the stream is a tokio one.
    pub async fn connect_async(
        &self,
        side: Side,
        remote: SocketAddr,
    ) -> io::Result<AsyncTcpStream> {
        async_io::connect(&self.shared, side, remote).await
    }
}

fn with_hosts<R>(shared: &Shared, f: impl FnOnce(&mut [&mut Host]) -> R) -> R {
    let mut guards: Vec<MutexGuard<'_, Net>> = shared.shards.iter().map(lock).collect();
    let mut hosts: Vec<&mut Host> = Vec::with_capacity(guards.len() * 2);
    for g in guards.iter_mut() {
        match &mut **g {
            Net::Sim(n) => {
                hosts.push(&mut n.a);
                hosts.push(&mut n.b);
            }
            Net::Real(h) => hosts.push(h),
        }
    }
    let r = f(&mut hosts);
    drop(hosts);
    drop(guards);
    shared.shards.iter().for_each(Shard::notify);
    r
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // The control thread first: it locks the shards.
        self.control.take();
        self.shared.shut_down();
        for d in self.drivers.drain(..) {
            let _ = d.join();
        }
    }
}
