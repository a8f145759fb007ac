//! The blocking application API: a background thread drives the network (steps the sans-IO
//! hosts, moves packets and time) while application threads use `TcpListener` and
//! `TcpStream` with `std::io::Read`/`Write`, blocking until the connection can make progress,
//! and getting the errno tcp(4) names as `std::io::Error`.
//!
//! Two drivers: the simulated network ([`SimRuntime`], a [`SimNet`]: virtual time runs as fast
//! as the driver steps, and stops while nothing is happening until an application call
//! wakes it), and one host on a real backend ([`Runtime::on`]: a TUN device, TCP over UDP;
//! the wall clock; the driver waits on the backend and on application calls at once, so a
//! write goes out at once and a packet is taken in as it arrives).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use plugtcp_abi::{Errno, TcpState};

use crate::driver::PacketIo;
use crate::simnet::SimNet;
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::usrreq::Shutdown;
use plugtcp_host::Host;

/// Which host of the simulated network.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum Side {
    A,
    B,
}

/// What a task waits on: a connection or a listener of one host.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
enum WaitKey {
    Conn(Side, ConnId),
    Listener(Side, usize),
}

/// What the driver runs: the simulated network, or one host on a real backend (whose
/// backend the driver thread owns).
enum Net {
    Sim(Box<SimNet>),
    Real(Box<Host>),
}

struct Shared {
    net: Mutex<Net>,
    /// Tasks waiting, by what they wait on. After each step the driver wakes only the
    /// tasks of the connections and listeners the hosts report ready (`Host::take_ready`).
    /// A task registers while it holds the network lock, so no step falls between its
    /// failed attempt and its registration.
    wakers: Mutex<HashMap<WaitKey, Vec<std::task::Waker>>>,
    /// Signalled after every driver step (applications re-check) and after every
    /// application call (the driver has work).
    changed: Condvar,
    stop: std::sync::atomic::AtomicBool,
    /// Wakes a real backend's driver out of its poll (an eventfd); `None` for the simulator,
    /// whose driver waits on `changed`.
    kick: Option<OwnedFd>,
}

/// A network driven by a background thread: the application side of plugtcp.
pub struct Runtime {
    shared: Arc<Shared>,
    driver: Option<JoinHandle<()>>,
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

impl SimRuntime {
    pub fn new(mut net: SimNet) -> Self {
        net.a.track_readiness(true);
        net.b.track_readiness(true);
        let shared = Arc::new(Shared {
            net: Mutex::new(Net::Sim(Box::new(net))),
            wakers: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
            kick: None,
        });
        let s = shared.clone();
        let driver = std::thread::Builder::new()
            .name("plugtcp-driver".into())
            .spawn(move || drive_sim(&s))
            .ok();
        SimRuntime(Runtime { shared, driver })
    }

    /// Runs `f` on the network (for setup and inspection).
    pub fn with<R>(&self, f: impl FnOnce(&mut SimNet) -> R) -> R {
        let mut net = lock(&self.shared);
        let Net::Sim(n) = &mut *net else {
            unreachable!("a SimRuntime drives a SimNet")
        };
        let r = f(n);
        drop(net);
        self.shared.notify();
        r
    }
}

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
    Given(Box<dyn PacketIo + Send>),
}

/// Starts a host on a real backend with what `plugtcp serve` takes: the device, the
/// addresses, sysctls and plugins. `Runtime::builder().tun("plugtcp%d").addr(ip).build()`.
pub struct Builder {
    backend: Option<BackendChoice>,
    addrs: Vec<std::net::IpAddr>,
    sysctls: Vec<(String, String)>,
    plugin_dirs: Vec<std::path::PathBuf>,
    statics: plugtcp_host::kld::StaticPlugins,
    seed: Option<u64>,
}

impl Builder {
    /// A TUN device (`%d` in the name picks the first free number); the kernel side of it
    /// (its address, routes) is the caller's to configure.
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
    /// peer sent from is used).
    pub fn udp(mut self, bind: SocketAddr, peer_port: Option<u16>) -> Self {
        self.backend = Some(BackendChoice::Udp { bind, peer_port });
        self
    }

    /// Any backend.
    pub fn backend(mut self, io: Box<dyn PacketIo + Send>) -> Self {
        self.backend = Some(BackendChoice::Given(io));
        self
    }

    /// An address of this host (connections to it are its own; the first of a family is
    /// the source of active opens).
    pub fn addr(mut self, ip: std::net::IpAddr) -> Self {
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
    pub fn plugin_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
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

    /// The host, on its backend, driven by a thread of its own. Errors name what failed:
    /// the device, a sysctl, a plugin file.
    pub fn build(self) -> io::Result<Runtime> {
        use plugtcp_host::registry::loader::SearchPath;
        use plugtcp_host::secrets::Entropy;
        let entropy = self.seed.map_or(Entropy::Os, Entropy::Seed);
        let search = SearchPath::from_env(&self.plugin_dirs);
        let mut host = Host::configured(search, entropy, &self.statics, &self.sysctls)
            .map_err(io::Error::other)?;
        for ip in self.addrs {
            host.add_addr(ip);
        }
        let io: Box<dyn PacketIo + Send> = match self.backend {
            Some(BackendChoice::Tun { name, vnet_hdr }) => Box::new(
                crate::tun::TunIo::open_with(&name, vnet_hdr)
                    .map_err(|e| io::Error::new(e.kind(), format!("tun {name}: {e}")))?,
            ),
            Some(BackendChoice::Udp { bind, peer_port }) => Box::new(
                crate::udp::UdpIo::bind(bind, peer_port, 1500)
                    .map_err(|e| io::Error::new(e.kind(), format!("udp {bind}: {e}")))?,
            ),
            Some(BackendChoice::Given(io)) => io,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no backend: call tun, udp or backend",
                ))
            }
        };
        Runtime::on(host, io)
    }
}

impl Runtime {
    /// A builder for a host on a real backend.
    pub fn builder() -> Builder {
        Builder {
            backend: None,
            addrs: Vec::new(),
            sysctls: Vec::new(),
            plugin_dirs: Vec::new(),
            statics: Default::default(),
            seed: None,
        }
    }

    /// Runs `host` on the real backend `io` (a TUN device, TCP over UDP) with the wall
    /// clock: its MTU becomes the backend's. The host is `Side::A` of the calls below.
    pub fn on(mut host: Host, io: Box<dyn PacketIo + Send>) -> io::Result<Self> {
        host.mtu = io.mtu();
        host.track_readiness(true);
        // SAFETY: eventfd has no memory preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor eventfd just returned, owned by nobody else.
        let kick = unsafe { OwnedFd::from_raw_fd(fd) };
        let shared = Arc::new(Shared {
            net: Mutex::new(Net::Real(Box::new(host))),
            wakers: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
            kick: Some(kick),
        });
        let s = shared.clone();
        let driver = std::thread::Builder::new()
            .name("plugtcp-driver".into())
            .spawn(move || drive_real(&s, io))?;
        Ok(Runtime {
            shared,
            driver: Some(driver),
        })
    }

    /// Runs `f` on host `side` (for setup and inspection: sysctls, kldload, stats).
    pub fn with_host<R>(&self, side: Side, f: impl FnOnce(&mut Host) -> R) -> R {
        let r = f(host(&mut lock(&self.shared), side));
        self.shared.notify();
        r
    }

    /// Listens on `addr` on host `side`.
    pub fn listen(&self, side: Side, addr: SocketAddr, backlog: usize) -> io::Result<TcpListener> {
        let lid = self
            .with_host(side, |h| h.listen(addr, backlog))
            .map_err(io::Error::from)?;
        Ok(TcpListener {
            shared: self.shared.clone(),
            side,
            lid,
        })
    }

    /// Connects from host `side` to `remote`, blocking until established (or refused,
    /// timed out, ...).
    pub fn connect(&self, side: Side, remote: SocketAddr) -> io::Result<TcpStream> {
        let slot = self
            .with_host(side, |h| h.connect(remote, None))
            .map_err(io::Error::from)?;
        let s = TcpStream {
            shared: self.shared.clone(),
            side,
            slot,
        };
        s.wait(|h, slot| match h.state(slot) {
            Some(TcpState::SynSent) | Some(TcpState::SynReceived) => None,
            Some(TcpState::Closed) | None => {
                let e = h.tcpcb(slot).map_or(0, |tp| tp.t_softerror);
                Some(Err(Errno(if e != 0 { e } else { Errno::ECONNREFUSED.0 })))
            }
            Some(_) => Some(Ok(())),
        })?;
        Ok(s)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.notify();
        if let Some(d) = self.driver.take() {
            let _ = d.join();
        }
    }
}

fn lock(s: &Shared) -> MutexGuard<'_, Net> {
    // A panic on another thread while holding the lock leaves the network as it was after its
    // last complete step; carrying on is better than poisoning every stream.
    s.net.lock().unwrap_or_else(|e| e.into_inner())
}

fn drive_sim(s: &Shared) {
    let mut net = lock(s);
    let mut ready = (Vec::new(), Vec::new());
    while !s.stop.load(std::sync::atomic::Ordering::Acquire) {
        let Net::Sim(sim) = &mut *net else {
            return;
        };
        let progressed = sim.step();
        s.changed.notify_all();
        s.wake_ready(&mut net, &mut ready);
        if progressed {
            // Let application threads in between steps.
            drop(net);
            std::thread::yield_now();
            net = lock(s);
        } else {
            // Nothing to do until an application call (or a bounded wait, in case of a lost
            // wakeup).
            net = s
                .changed
                .wait_timeout(net, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

/// A listening socket.
pub struct TcpListener {
    shared: Arc<Shared>,
    side: Side,
    lid: usize,
}

impl TcpListener {
    /// The next connection, blocking until one completes its handshake.
    pub fn accept(&self) -> io::Result<TcpStream> {
        let mut net = lock(&self.shared);
        loop {
            match host(&mut net, self.side).accept(self.lid) {
                Ok(slot) => {
                    return Ok(TcpStream {
                        shared: self.shared.clone(),
                        side: self.side,
                        slot,
                    })
                }
                Err(Errno::EAGAIN) if self.shared.stopped() => return Err(Errno::ENETDOWN.into()),
                Err(Errno::EAGAIN) => {
                    net = self
                        .shared
                        .changed
                        .wait(net)
                        .unwrap_or_else(|e| e.into_inner());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        let mut net = lock(&self.shared);
        host(&mut net, self.side)
            .listener_addr(self.lid)
            .ok_or_else(|| Errno::EBADF.into())
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let mut net = lock(&self.shared);
        host(&mut net, self.side).close_listener(self.lid);
        drop(net);
        self.shared.notify();
    }
}

/// A connection with blocking `Read` and `Write`.
pub struct TcpStream {
    shared: Arc<Shared>,
    side: Side,
    slot: ConnId,
}

impl TcpStream {
    /// Calls `f` under the lock until it has an answer, waiting for driver steps between.
    fn wait<R>(
        &self,
        mut f: impl FnMut(&mut Host, ConnId) -> Option<Result<R, Errno>>,
    ) -> io::Result<R> {
        let mut net = lock(&self.shared);
        loop {
            let r = f(host(&mut net, self.side), self.slot);
            match r {
                Some(r) => {
                    drop(net);
                    self.shared.notify();
                    return r.map_err(io::Error::from);
                }
                None if self.shared.stopped() => return Err(Errno::ENETDOWN.into()),
                None => {
                    self.shared.notify();
                    net = self
                        .shared
                        .changed
                        .wait(net)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }

    /// Half-close (SHUT_WR) or more.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.wait(|h, slot| Some(h.shutdown(slot, how)))
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        let v = (on as i32).to_ne_bytes();
        self.wait(|h, slot| {
            Some(h.setsockopt(
                slot,
                plugtcp_abi::sockopt::IPPROTO_TCP,
                plugtcp_abi::sockopt::TCP_NODELAY,
                &v,
            ))
        })
    }

    /// The connection's state (for tests and tools).
    pub fn state(&self) -> Option<TcpState> {
        let mut net = lock(&self.shared);
        host(&mut net, self.side).state(self.slot)
    }
}

impl io::Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait(|h, slot| match h.recv(slot, buf) {
            Err(Errno::EAGAIN) => None,
            r => Some(r),
        })
    }
}

impl io::Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wait(|h, slot| match h.send(slot, buf) {
            Err(Errno::EAGAIN) => None,
            Err(Errno::ENOTCONN) if h.state(slot) == Some(TcpState::SynSent) => None,
            r => Some(r),
        })
    }

    /// Data is handed to the stack by `write`; flush has nothing more to push.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TcpStream {
    /// close(2): the connection finishes its FIN handshake in the background.
    fn drop(&mut self) {
        let mut net = lock(&self.shared);
        let linger = host(&mut net, self.side).linger(self.slot);
        host(&mut net, self.side).close(self.slot);
        drop(net);
        self.shared.notify();
        // SO_LINGER > 0: block until our data and FIN are acknowledged, or the time is up.
        if let Some(secs) = linger.filter(|&s| s > 0) {
            let deadline =
                host(&mut lock(&self.shared), self.side).now() + secs as u64 * 1_000_000_000;
            let _ = self.wait(|h, slot| {
                let done = match h.state(slot) {
                    None
                    | Some(TcpState::Closed)
                    | Some(TcpState::TimeWait)
                    | Some(TcpState::FinWait2) => true,
                    Some(_) => h.now() >= deadline,
                };
                done.then_some(Ok(()))
            });
        }
    }
}

impl Shared {
    /// The driver has ended (the runtime dropped, or its backend failed).
    fn stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Acquire)
    }

    /// An application call may have given the driver work: wake it.
    fn notify(&self) {
        self.changed.notify_all();
        if let Some(k) = &self.kick {
            let one = 1u64.to_ne_bytes();
            // SAFETY: an 8-byte write from a live buffer to our eventfd. A full counter
            // (EAGAIN) already wakes the driver.
            let _ = unsafe { libc::write(k.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
    }

    /// Registers the task of `cx` as waiting on `key`. Call with the network lock held.
    fn park(&self, key: WaitKey, cx: &std::task::Context<'_>) {
        let mut w = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        let list = w.entry(key).or_default();
        if !list.iter().any(|x| x.will_wake(cx.waker())) {
            list.push(cx.waker().clone());
        }
    }

    /// Wakes the tasks waiting on what the hosts report ready. Called with the network lock
    /// held; `ready` is scratch space kept across steps.
    fn wake_ready(&self, net: &mut Net, ready: &mut (Vec<ConnId>, Vec<usize>)) {
        let mut w = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        let sides: &[Side] = match net {
            Net::Sim(_) => &[Side::A, Side::B],
            Net::Real(_) => &[Side::A],
        };
        for &side in sides {
            host(net, side).take_ready(&mut ready.0, &mut ready.1);
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
    }
}

/// The tokio flavour of [`TcpStream`]: `AsyncRead` and `AsyncWrite`.
pub struct AsyncTcpStream {
    inner: TcpStream,
}

impl TcpStream {
    /// This connection as an `AsyncRead + AsyncWrite` stream.
    pub fn into_async(self) -> AsyncTcpStream {
        AsyncTcpStream { inner: self }
    }
}

impl AsyncTcpStream {
    fn poll_op<R>(
        &self,
        cx: &mut std::task::Context<'_>,
        f: impl FnOnce(&mut Host, ConnId) -> Result<R, Errno>,
    ) -> std::task::Poll<io::Result<R>> {
        let s = &self.inner;
        let mut net = lock(&s.shared);
        let r = f(host(&mut net, s.side), s.slot);
        if matches!(r, Err(Errno::EAGAIN)) {
            s.shared.park(WaitKey::Conn(s.side, s.slot), cx);
        }
        drop(net);
        match r {
            Err(Errno::EAGAIN) if s.shared.stopped() => {
                std::task::Poll::Ready(Err(Errno::ENETDOWN.into()))
            }
            Err(Errno::EAGAIN) => {
                // The driver has work: an application call may have queued some.
                s.shared.notify();
                std::task::Poll::Pending
            }
            r => {
                s.shared.notify();
                std::task::Poll::Ready(r.map_err(io::Error::from))
            }
        }
    }
}

impl tokio::io::AsyncRead for AsyncTcpStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let dst = buf.initialize_unfilled();
        match self.poll_op(cx, |h, slot| h.recv(slot, dst)) {
            std::task::Poll::Ready(Ok(n)) => {
                buf.advance(n);
                std::task::Poll::Ready(Ok(()))
            }
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl tokio::io::AsyncWrite for AsyncTcpStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        self.poll_op(cx, |h, slot| match h.send(slot, buf) {
            Err(Errno::ENOTCONN) if h.state(slot) == Some(TcpState::SynSent) => Err(Errno::EAGAIN),
            r => r,
        })
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    /// Half-close (SHUT_WR), as tokio's `shutdown` means.
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        self.poll_op(cx, |h, slot| h.shutdown(slot, Shutdown::Write))
    }
}

impl TcpListener {
    /// The next connection, as a future.
    pub async fn accept_async(&self) -> io::Result<AsyncTcpStream> {
        std::future::poll_fn(|cx| {
            let mut net = lock(&self.shared);
            let r = host(&mut net, self.side).accept(self.lid);
            if matches!(r, Err(Errno::EAGAIN)) {
                self.shared.park(WaitKey::Listener(self.side, self.lid), cx);
            }
            drop(net);
            match r {
                Ok(slot) => std::task::Poll::Ready(Ok(TcpStream {
                    shared: self.shared.clone(),
                    side: self.side,
                    slot,
                }
                .into_async())),
                Err(Errno::EAGAIN) if self.shared.stopped() => {
                    std::task::Poll::Ready(Err(Errno::ENETDOWN.into()))
                }
                Err(Errno::EAGAIN) => {
                    self.shared.notify();
                    std::task::Poll::Pending
                }
                Err(e) => std::task::Poll::Ready(Err(e.into())),
            }
        })
        .await
    }
}

/// Most packets taken per wake-up as one receive batch.
const BATCH: usize = 64;

/// The driver of a host on a real backend: waits (without the lock) until the backend has
/// a packet, an application call kicks, or the next timer is due; then, under the lock,
/// takes the packets in as one batch, runs due timers, sends what the host queued and
/// wakes the tasks of the connections that moved.
fn drive_real(s: &Shared, mut io: Box<dyn PacketIo + Send>) {
    let epoch = std::time::Instant::now();
    let now = || epoch.elapsed().as_nanos() as u64;
    let mut buf = vec![0u8; 65536];
    let mut ready = (Vec::new(), Vec::new());
    let kick = s.kick.as_ref().map(AsRawFd::as_raw_fd);
    // A backend without a descriptor is polled at this interval.
    let idle_poll = if io.poll_fd().is_some() { 50 } else { 1 };
    while !s.stop.load(std::sync::atomic::Ordering::Acquire) {
        let next = host(&mut lock(s), Side::A).next_timeout();
        let wait_ms = next.map_or(idle_poll, |t| {
            let ns = t.saturating_sub(now());
            ns.div_ceil(1_000_000).min(idle_poll as u64) as i32
        });
        let mut fds = [io.poll_fd(), kick].map(|fd| libc::pollfd {
            fd: fd.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: two valid pollfds (a negative fd is ignored by poll).
        unsafe { libc::poll(fds.as_mut_ptr(), 2, wait_ms) };
        if let Some(k) = kick.filter(|_| fds[1].revents != 0) {
            let mut b = [0u8; 8];
            // SAFETY: an 8-byte read into a live buffer from our nonblocking eventfd.
            let _ = unsafe { libc::read(k, b.as_mut_ptr().cast(), b.len()) };
        }
        let mut net = lock(s);
        let h = host(&mut net, Side::A);
        h.advance(now());
        let mut batch = false;
        let mut failed = None;
        for _ in 0..BATCH {
            let n = match io.recv(&mut buf, None) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            if !batch {
                h.batch_begin();
                batch = true;
            }
            h.input(&buf[..n]);
        }
        if batch {
            h.batch_end();
        }
        h.transmit_tagged(|pkt, port| {
            if port != 0 {
                io.encapsulation_port(pkt, port);
            }
            if failed.is_none() {
                failed = io.send(pkt).err();
            }
        });
        if let Some(e) = failed {
            // The device went away (or refuses every packet): the stack cannot carry on.
            eprintln!("plugtcp: packet I/O failed: {e}; the network is down");
            s.stop.store(true, std::sync::atomic::Ordering::Release);
        }
        s.wake_ready(&mut net, &mut ready);
        drop(net);
        s.changed.notify_all();
    }
    // Whoever waits learns the network is gone.
    let mut w = s.wakers.lock().unwrap_or_else(|e| e.into_inner());
    w.drain()
        .flat_map(|(_, l)| l)
        .for_each(std::task::Waker::wake);
}
