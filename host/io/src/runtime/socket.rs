//! The blocking sockets: a listener over every shard and a stream on one.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugtcp_abi::stack::TcpInfo;
use plugtcp_abi::{Errno, TcpState};
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::usrreq::Shutdown;
use plugtcp_host::Host;

use super::{host, lock, Shared, Side};

/// A listening socket: one listener in every shard of its host (as FreeBSD's
/// SO_REUSEPORT_LB group), each with the backlog given.
pub struct TcpListener {
    pub(super) shared: Arc<Shared>,
    pub(super) side: Side,
    /// The listener's index in each shard's host.
    pub(super) lids: Vec<usize>,
    /// Where the next accept starts looking, so that no shard's queue starves.
    pub(super) next: AtomicUsize,
}

impl TcpListener {
    pub(super) fn open(
        shared: &Arc<Shared>,
        side: Side,
        addr: SocketAddr,
        backlog: usize,
    ) -> io::Result<TcpListener> {
        // The first shard picks the port if `addr` has none: the others take the same.
        let mut bound = addr;
        Self::open_each(shared, side, |h, shard| {
            let lid = h.listen(bound, backlog)?;
            if shard == 0 {
                bound = h.listener_addr(lid).unwrap_or(addr);
            }
            Ok(lid)
        })
        .map_err(|e| io::Error::new(e.kind(), format!("listen {addr}: {e}")))
    }

    pub(super) fn open_transparent(
        shared: &Arc<Shared>,
        side: Side,
        v6: bool,
        backlog: usize,
    ) -> io::Result<TcpListener> {
        Self::open_each(shared, side, |h, _| h.listen_transparent(v6, backlog))
    }

    /// A listener made by `listen` in every shard, in order; none if one shard refuses.
    fn open_each(
        shared: &Arc<Shared>,
        side: Side,
        mut listen: impl FnMut(&mut Host, usize) -> Result<usize, Errno>,
    ) -> io::Result<TcpListener> {
        let mut lids = Vec::with_capacity(shared.shards.len());
        for (i, s) in shared.shards.iter().enumerate() {
            let r = listen(host(&mut lock(s), side), i);
            match r {
                Ok(l) => lids.push(l),
                Err(e) => {
                    for (s, &l) in shared.shards.iter().zip(&lids) {
                        host(&mut lock(s), side).close_listener(l);
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(TcpListener {
            shared: shared.clone(),
            side,
            lids,
            next: AtomicUsize::new(0),
        })
    }

    /// One pass over the shards' accept queues.
    pub(super) fn try_accept(&self) -> Result<TcpStream, Errno> {
        let n = self.lids.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let i = (start + k) % n;
            let s = &self.shared.shards[i];
            let r = host(&mut lock(s), self.side).accept(self.lids[i]);
            match r {
                Ok(slot) => {
                    return Ok(TcpStream {
                        shared: self.shared.clone(),
                        shard: i,
                        side: self.side,
                        slot,
                    })
                }
                Err(Errno::EAGAIN) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Errno::EAGAIN)
    }

    /// The next connection, from whichever shard has one, blocking until one completes
    /// its handshake.
    pub fn accept(&self) -> io::Result<TcpStream> {
        let (bell, rung) = &self.shared.accepts;
        loop {
            let seen = *bell.lock().unwrap_or_else(|e| e.into_inner());
            match self.try_accept() {
                Ok(s) => return Ok(s),
                Err(Errno::EAGAIN) if self.shared.stopped() => return Err(Errno::ENETDOWN.into()),
                Err(Errno::EAGAIN) => {}
                Err(e) => return Err(e.into()),
            }
            let mut g = bell.lock().unwrap_or_else(|e| e.into_inner());
            while *g == seen && !self.shared.stopped() {
                g = rung.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        host(&mut lock(&self.shared.shards[0]), self.side)
            .listener_addr(self.lids[0])
            .ok_or_else(|| Errno::EBADF.into())
    }

    /// A socket option on the listener in every shard; accepted connections inherit it
    /// (TCP_FUNCTION_BLK, TCP_CONGESTION, TCP_NODELAY, buffer sizes, ...).
    pub fn setsockopt(&self, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
        for (s, &l) in self.shared.shards.iter().zip(&self.lids) {
            host(&mut lock(s), self.side)
                .listener_setsockopt(l, level, name, value)
                .map_err(io::Error::from)?;
        }
        Ok(())
    }

    /// The listener's index in shard `shard`'s host (for services run with
    /// [`super::Runtime::set_service`]).
    pub fn id_in_shard(&self, shard: usize) -> Option<usize> {
        self.lids.get(shard).copied()
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        for (s, &l) in self.shared.shards.iter().zip(&self.lids) {
            host(&mut lock(s), self.side).close_listener(l);
            s.notify();
        }
    }
}

/// A connection with blocking `Read` and `Write`; it lives in one shard.
pub struct TcpStream {
    pub(super) shared: Arc<Shared>,
    pub(super) shard: usize,
    pub(super) side: Side,
    pub(super) slot: ConnId,
}

impl TcpStream {
    /// Opens a connection from the next shard in turn and waits for the handshake, up to
    /// `timeout` if given.
    pub(super) fn connect(
        shared: &Arc<Shared>,
        side: Side,
        remote: SocketAddr,
        timeout: Option<Duration>,
    ) -> io::Result<TcpStream> {
        let shard = shared.next_connect.fetch_add(1, Ordering::Relaxed) % shared.shards.len();
        let s = &shared.shards[shard];
        let slot = host(&mut lock(s), side)
            .connect(remote, None)
            .map_err(io::Error::from)?;
        s.notify();
        let stream = TcpStream {
            shared: shared.clone(),
            shard,
            side,
            slot,
        };
        let deadline = timeout.map(|t| Instant::now() + t);
        stream.wait_until(deadline, connect_result)?;
        Ok(stream)
    }

    /// Calls `f` under the shard's lock until it has an answer, waiting for driver steps
    /// between.
    pub(super) fn wait<R>(
        &self,
        f: impl FnMut(&mut Host, ConnId) -> Option<Result<R, Errno>>,
    ) -> io::Result<R> {
        self.wait_until(None, f)
    }

    /// As `wait`, giving up with ETIMEDOUT at `deadline`.
    fn wait_until<R>(
        &self,
        deadline: Option<Instant>,
        mut f: impl FnMut(&mut Host, ConnId) -> Option<Result<R, Errno>>,
    ) -> io::Result<R> {
        let shard = &self.shared.shards[self.shard];
        let mut net = lock(shard);
        loop {
            let r = f(host(&mut net, self.side), self.slot);
            match r {
                Some(r) => {
                    drop(net);
                    shard.notify();
                    return r.map_err(io::Error::from);
                }
                None if self.shared.stopped() => return Err(Errno::ENETDOWN.into()),
                None => {
                    shard.notify();
                    net = match deadline {
                        None => shard.changed.wait(net).unwrap_or_else(|e| e.into_inner()),
                        Some(d) => {
                            let left = d.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                return Err(Errno::ETIMEDOUT.into());
                            }
                            shard
                                .changed
                                .wait_timeout(net, left)
                                .map(|(g, _)| g)
                                .unwrap_or_else(|e| e.into_inner().0)
                        }
                    };
                }
            }
        }
    }

    /// Runs `f` on the connection's host, once.
    fn with<R>(&self, f: impl FnOnce(&mut Host, ConnId) -> R) -> R {
        let shard = &self.shared.shards[self.shard];
        let r = f(host(&mut lock(shard), self.side), self.slot);
        shard.notify();
        r
    }

    /// Half-close (SHUT_WR) or more.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.with(|h, slot| h.shutdown(slot, how))
            .map_err(io::Error::from)
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.setsockopt(
            plugtcp_abi::sockopt::IPPROTO_TCP,
            plugtcp_abi::sockopt::TCP_NODELAY,
            &i32::from(on).to_ne_bytes(),
        )
    }

    /// setsockopt(2): TCP_CONGESTION and TCP_FUNCTION_BLK take a name, the rest an int
    /// (in native byte order), as tcp(4) says.
    pub fn setsockopt(&self, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
        self.with(|h, slot| h.setsockopt(slot, level, name, value))
            .map_err(io::Error::from)
    }

    /// getsockopt(2) into `buf`; the length the option filled.
    pub fn getsockopt(&self, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
        self.with(|h, slot| h.getsockopt(slot, level, name, buf))
            .map_err(io::Error::from)
    }

    /// TCP_INFO, typed.
    pub fn tcp_info(&self) -> io::Result<TcpInfo> {
        self.with(|h, slot| h.tcp_info(slot))
            .map_err(io::Error::from)
    }

    /// The local address: in transparent mode, the destination the peer addressed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.with(|h, slot| h.local_addr(slot))
            .ok_or_else(|| Errno::ENOTCONN.into())
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.with(|h, slot| h.peer_addr(slot))
            .ok_or_else(|| Errno::ENOTCONN.into())
    }

    /// The connection's state (for tests and tools).
    pub fn state(&self) -> Option<TcpState> {
        self.with(|h, slot| h.state(slot))
    }

    /// The shard the connection lives in.
    pub fn shard(&self) -> usize {
        self.shard
    }
}

/// Where a connection being opened stands: None while the handshake runs.
pub(super) fn connect_result(h: &mut Host, slot: ConnId) -> Option<Result<(), Errno>> {
    match h.state(slot) {
        Some(TcpState::SynSent) | Some(TcpState::SynReceived) => None,
        Some(TcpState::Closed) | None => {
            let e = h.tcpcb(slot).map_or(0, |tp| tp.t_softerror);
            Some(Err(Errno(if e != 0 { e } else { Errno::ECONNREFUSED.0 })))
        }
        Some(_) => Some(Ok(())),
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
        let linger = self.with(|h, slot| {
            let linger = h.linger(slot);
            h.close(slot);
            (linger, h.now())
        });
        // SO_LINGER > 0: block until our data and FIN are acknowledged, or the time is up.
        if let (Some(secs), now) = linger {
            if secs == 0 {
                return;
            }
            let deadline = now + secs as u64 * 1_000_000_000;
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
