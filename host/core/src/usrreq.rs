//! The application side of a connection (FreeBSD tcp_usrreq.c): listen, connect, accept,
//! send, receive, shutdown, close, abort, socket options. Sans-IO: these queue work and let
//! the stack send; the caller's driver moves packets and time.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use plugtcp_abi::stack::TcpInfo;
use plugtcp_abi::tcpcb::{tf, tf2};
use plugtcp_abi::{Errno, TcpState, Tcpcb};

use crate::conn_table::ConnId;
use crate::ctloutput::cc_errno;
use crate::registry::{BlockEntry, CcEntry};
use crate::socket::sticky::StickyOpts;
use crate::socket::table::ConnKey;
use crate::Host;

/// A listening socket.
pub struct Listener {
    pub addr: SocketAddr,
    pub backlog: usize,
    /// Established connections waiting for accept (so_comp).
    pub accept_q: VecDeque<usize>,
    /// Connections made from this listener's handshakes that are not in `accept_q` yet
    /// (half-open, or deferred by TCP_DEFER_ACCEPT); they count against `backlog` too.
    pub embryonic: usize,
    /// The stack and CC new connections get (the listener's, FreeBSD
    /// functions_inherit_listen_socket_stack).
    pub stack: Option<Arc<BlockEntry>>,
    pub cc: Option<Arc<CcEntry>>,
    /// Socket options set on the listener, inherited by its connections.
    pub tcpcb: Tcpcb,
    /// TCP_DEFER_ACCEPT seconds (0: off).
    pub defer_accept: u32,
    /// TCP_FASTOPEN: at most this many connections opened by TFO SYNs may be in
    /// SYN_RECEIVED at once (RFC 7413 5.1; 0: TFO off).
    pub tfo_qlen: u32,
    /// Connections opened by a TFO SYN still in SYN_RECEIVED.
    pub tfo_pending: u32,
    /// What else its connections inherit: socket-level options and the stack options set
    /// on it (see [`StickyOpts`]).
    pub inherit: ListenerInherit,
}

/// Options set on a listener for the connections it accepts, beyond its tcpcb's flags and
/// timeouts.
#[derive(Clone, Debug, Default)]
pub struct ListenerInherit {
    pub sndbuf: Option<usize>,
    pub rcvbuf: Option<usize>,
    /// SO_LINGER seconds when on.
    pub linger: Option<u32>,
    /// The SO_LINGER time last set, on or off.
    pub linger_time: u32,
    pub oobinline: bool,
    /// SO_MAX_PACING_RATE (bytes/s) set on the listener.
    pub max_pacing_rate: Option<u64>,
    /// IP_TOS / IPV6_TCLASS and IP_TTL / IPV6_UNICAST_HOPS (0: the default) for its
    /// SYN-ACKs and connections.
    pub ip_tos: u8,
    pub ip_ttl: u8,
    /// TCP_MAXSEG: the MSS its SYN-ACKs offer and its connections use at most.
    pub maxseg: Option<u32>,
    pub sticky: StickyOpts,
}

/// Which directions `shutdown` closes.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Shutdown {
    Read,
    Write,
    Both,
}

impl Host {
    /// Listens on `addr` (port 0 picks one); `backlog` bounds the accept queue.
    pub fn listen(&mut self, addr: SocketAddr, backlog: usize) -> Result<usize, Errno> {
        self.listen_reusing(addr, backlog, false)
    }

    /// [`Host::listen`] beside connections on the same address and port when `reuse_addr`
    /// (SO_REUSEADDR, or a socket bound earlier, whose bind(2) checked): only another
    /// listener there is a conflict.
    pub fn listen_reusing(
        &mut self,
        addr: SocketAddr,
        backlog: usize,
        reuse_addr: bool,
    ) -> Result<usize, Errno> {
        let lid = self.table.bind_listener(addr, reuse_addr)?;
        self.install_listener(lid, addr, backlog)
    }

    /// A transparent listener for the family of `v6`: it accepts connections to any
    /// address and any port that no other listener or connection takes, as FreeBSD's
    /// IP_BINDANY with a forwarding rule, or Linux's TPROXY, let a proxy catch the traffic
    /// routed to it. An accepted connection's local address is the destination the peer
    /// addressed. EADDRINUSE if the family has one already.
    pub fn listen_transparent(&mut self, v6: bool, backlog: usize) -> Result<usize, Errno> {
        let lid = self.table.bind_transparent(v6)?;
        let addr = self
            .table
            .listener_addr(lid)
            .unwrap_or_else(|| unreachable!("bind_transparent records the address"));
        self.install_listener(lid, addr, backlog)
    }

    fn install_listener(
        &mut self,
        lid: crate::socket::table::ListenerId,
        addr: SocketAddr,
        backlog: usize,
    ) -> Result<usize, Errno> {
        let idx = lid.0 as usize;
        if self.listeners.len() <= idx {
            self.listeners.resize_with(idx + 1, || None);
        }
        let snap = self.registry.load_full();
        let inherit = self.tunables.functions_inherit_listen_socket_stack != 0;
        let bound = self.table.listener_addr(lid).unwrap_or(addr);
        let mut tp = Tcpcb::new(self.mss_for(bound));
        tp.t_state = TcpState::Listen;
        self.listeners[idx] = Some(Listener {
            addr: bound,
            backlog,
            accept_q: VecDeque::new(),
            embryonic: 0,
            stack: if inherit {
                snap.default_block.clone()
            } else {
                None
            },
            cc: snap.default_cc.clone(),
            tcpcb: tp,
            defer_accept: 0,
            tfo_qlen: 0,
            tfo_pending: 0,
            inherit: ListenerInherit::default(),
        });
        self.gauges.add_pcbs(1);
        Ok(idx)
    }

    /// The address a listener is bound to (with the port chosen for port 0).
    pub fn listener_addr(&self, lid: usize) -> Option<SocketAddr> {
        self.listeners.get(lid)?.as_ref().map(|l| l.addr)
    }

    /// Sets the stack new connections of this listener get (TCP_FUNCTION_BLK on a listener).
    pub fn set_listener_stack(&mut self, lid: usize, name: &str) -> Result<(), Errno> {
        let b = self.registry.snapshot().block(name)?.clone();
        self.listeners
            .get_mut(lid)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?
            .stack = Some(b);
        Ok(())
    }

    /// Sets the CC module new connections of this listener get (TCP_CONGESTION).
    pub fn set_listener_cc(&mut self, lid: usize, name: &str) -> Result<(), Errno> {
        let c = self.registry.snapshot().cc(name).map_err(cc_errno)?.clone();
        self.listeners
            .get_mut(lid)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?
            .cc = Some(c);
        Ok(())
    }

    /// The next established connection of a listener; EAGAIN when none is waiting.
    pub fn accept(&mut self, lid: usize) -> Result<ConnId, Errno> {
        let l = self
            .listeners
            .get_mut(lid)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?;
        let slot = l.accept_q.pop_front().ok_or(Errno::EAGAIN)?;
        let c = self.conns.get_mut(slot).and_then(Option::as_mut);
        let c = c.ok_or(Errno::ECONNABORTED)?;
        c.side.queued = false;
        self.conns.id(slot).ok_or(Errno::ECONNABORTED)
    }

    /// Closes a listener: pending connections in its queue are reset.
    pub fn close_listener(&mut self, lid: usize) {
        if let Some(r) = self.ready.as_mut() {
            r.note_listener(lid);
        }
        if let Some(l) = self.listeners.get_mut(lid).and_then(Option::take) {
            self.gauges.add_pcbs(-1);
            self.table
                .remove_listener(crate::socket::table::ListenerId(lid as u32));
            for slot in l.accept_q {
                if let Some(id) = self.conns.id(slot) {
                    self.abort(id);
                }
            }
        }
    }

    /// Active open to `remote` from `local` (or this host's first address of the family,
    /// with an ephemeral port): SYN_SENT, and the stack sends the SYN.
    pub fn connect(
        &mut self,
        remote: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Result<ConnId, Errno> {
        let id = self.socket(remote, local)?;
        match self.start_connect(id) {
            Ok(()) => Ok(id),
            Err(e) => {
                self.free_conn(id.slot());
                Err(e)
            }
        }
    }

    /// A connection to `remote` that has not started: CLOSED, its addresses and port
    /// taken, its stack and CC attached (socket(2), bind(2) and connect's address choice),
    /// so that options that only a closed socket takes (TCP_REMOTE_UDP_ENCAPS_PORT) can be
    /// set before [`Host::start_connect`] sends the SYN.
    pub fn socket(
        &mut self,
        remote: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Result<ConnId, Errno> {
        let local = match local {
            Some(l) if l.port() != 0 => l,
            Some(l) => SocketAddr::new(l.ip(), self.table.connect_port(l.ip(), remote)?),
            None => {
                let ip = self
                    .local_addr_for(remote.ip())
                    .ok_or(Errno::EADDRNOTAVAIL)?;
                SocketAddr::new(ip, self.table.connect_port(ip, remote)?)
            }
        };
        let key = ConnKey::new(local, remote);
        let slot = self.alloc_conn(key)?;
        if let Err(e) = self.attach_plugins(slot, None, None, None) {
            self.free_conn(slot);
            return Err(e);
        }
        self.conns.id(slot).ok_or(Errno::ENOMEM)
    }

    /// connect(2) for a connection made by [`Host::socket`]: SYN_SENT, and the stack sends
    /// the SYN. EISCONN once it started.
    pub fn start_connect(&mut self, id: ConnId) -> Result<(), Errno> {
        self.start_connect_inner(id, false)
    }

    /// [`Host::start_connect`]; `msg_fastopen`: TCP Fast Open asked for by the send that
    /// connects (see [`Host::connect_with_data`]).
    pub(crate) fn start_connect_inner(
        &mut self,
        id: ConnId,
        msg_fastopen: bool,
    ) -> Result<(), Errno> {
        let slot = self.conns.resolve(id);
        let c = self.conn_at(slot).ok_or(Errno::EBADF)?;
        if c.ctx.tp.t_state != TcpState::Closed || c.ctx.tp.iss != 0 || c.side.listener.is_some() {
            return Err(Errno::EISCONN);
        }
        // TCP-MD5: the key for the peer, now that the peer is known; with none the SYN could
        // not go out (FreeBSD's tcp_output fails the connect with the SA lookup's error).
        if c.ctx.tp.t_flags & plugtcp_abi::tcpcb::tf::SIGNATURE != 0 && c.side.md5_key.is_none() {
            let key = self.md5_key_for(c.side.remote.ip()).ok_or(Errno::ENOENT)?;
            if let Some(c) = self.conns[slot].as_mut() {
                c.side.md5_key = Some(key);
            }
        }
        let c = self.conn_at(slot).ok_or(Errno::EBADF)?;
        let key = ConnKey::new(c.side.local, c.side.remote);
        let iss = self.isn(&key);
        let ts_offset = self.ts_offset(&key);
        let wscale = self.rcv_wscale();
        let t = self.tunables.clone();
        let c = self.conns[slot].as_mut().ok_or(Errno::ENOMEM)?;
        let tp = &mut c.ctx.tp;
        tp.t_state = TcpState::SynSent;
        tp.iss = iss;
        tp.snd_una = iss;
        tp.snd_nxt = iss;
        tp.snd_max = iss;
        tp.snd_up = iss;
        tp.snd_recover = iss;
        tp.t_starttime = self.worker.now;
        // FreeBSD tcp_newtcpcb: rfc1323 1 asks for both, 2 for window scaling only, 3 for
        // timestamps only.
        if rfc1323_scale(t.rfc1323) {
            tp.t_flags |= tf::REQ_SCALE;
            tp.request_r_scale = wscale;
        }
        if rfc1323_ts(t.rfc1323) {
            tp.t_flags |= tf::REQ_TSTMP;
            tp.ts_offset = ts_offset;
        }
        // What the host cache remembers of the peer (MTU now, RTT and ssthresh as hints).
        self.hostcache_apply(slot);
        // TCP Fast Open: the cookie for this path; the SYN may wait for the data.
        let defer = self.tfo_prepare_connect(slot, msg_fastopen);
        let defer = defer || self.conn_at(slot).is_some_and(|c| c.side.tfo_defer);
        if let Some(c) = self.conns[slot].as_mut() {
            c.side.tfo_defer = defer;
        }
        if !defer {
            let _ = self.with_slot(slot, |c, w| c.output(w));
        }
        self.after_call(slot);
        Ok(())
    }

    /// Queues `data` for sending; returns how much fit in the send buffer (EAGAIN when none
    /// did). EPIPE after shutdown, the connection's error once it failed, ENOTCONN when it
    /// never connected.
    pub fn send(&mut self, id: ConnId, data: &[u8]) -> Result<usize, Errno> {
        let slot = self.conns.resolve(id);
        let c = self
            .conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?;
        if c.ctx.tp.t_softerror != 0 {
            return Err(Errno(c.ctx.tp.t_softerror));
        }
        let tp = &c.ctx.tp;
        if c.side.wr_shut || tp.t_state.sent_close() {
            return Err(Errno::EPIPE);
        }
        if tp.t_state == TcpState::Closed {
            return Err(Errno::ENOTCONN);
        }
        let room = c.side.snd.space();
        let n = c.side.snd.append(&mut self.worker.pool, data);
        if n == 0 && !data.is_empty() {
            // Room in the buffer but no storage for it (kern.ipc.maxmbufmem): ENOBUFS, as
            // FreeBSD's sosend when it gets no mbufs.
            return Err(if room > 0 {
                Errno::ENOBUFS
            } else {
                Errno::EAGAIN
            });
        }
        // TCP_FASTOPEN_CONNECT: the SYN that waited goes now, with this data.
        c.side.tfo_defer = false;
        let _ = self.with_slot(slot, |c, w| c.output(w));
        self.after_call(slot);
        Ok(n)
    }

    /// Reads received bytes. Ok(0) at end of stream (the peer's FIN); EAGAIN when nothing is
    /// there yet; the connection's error (ECONNRESET, ETIMEDOUT, ...) once it failed.
    pub fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, Errno> {
        let slot = self.conns.resolve(id);
        let (side, pool) = self.side_and_pool(slot)?;
        let limit = side.read_limit(pool).min(buf.len());
        let n = side.rcv.read(pool, &mut buf[..limit]);
        side.advance_read(n);
        self.after_read(slot, n, buf.is_empty())
    }

    /// Zero-copy read (like `BufRead::fill_buf` + `consume`): calls `f` with received bytes
    /// still in the socket buffer (a contiguous run: there may be more after it) and
    /// consumes as many as `f` returns (clamped to the run). Without bytes to offer, `f`
    /// is not called and the result is `recv`'s: Ok(0) at end of stream, EAGAIN, or the
    /// connection's error.
    pub fn recv_with(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&[u8]) -> usize,
    ) -> Result<usize, Errno> {
        let slot = self.conns.resolve(id);
        let (side, pool) = self.side_and_pool(slot)?;
        let limit = side.read_limit(pool);
        let run = side.rcv.front();
        let run = &run[..run.len().min(limit)];
        let n = if run.is_empty() {
            0
        } else {
            f(run).min(run.len())
        };
        side.rcv.consume(pool, n);
        side.advance_read(n);
        self.after_read(slot, n, false)
    }

    /// The connection in `slot`; EBADF if there is none.
    pub(crate) fn conn_mut(&mut self, slot: usize) -> Result<&mut crate::conn::Conn, Errno> {
        self.conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .map(|b| &mut **b)
            .ok_or(Errno::EBADF)
    }

    /// A connection's host side and the buffer pool, for the read calls.
    fn side_and_pool(
        &mut self,
        slot: usize,
    ) -> Result<
        (
            &mut crate::conn::HostSide,
            &mut crate::socket::buffer::ChunkPool,
        ),
        Errno,
    > {
        let c = self.conns.get_mut(slot).and_then(Option::as_mut);
        Ok((&mut c.ok_or(Errno::EBADF)?.side, &mut self.worker.pool))
    }

    /// After a read consumed `n` bytes: window update, or the end-of-stream/error answer.
    fn after_read(&mut self, slot: usize, n: usize, empty_buf: bool) -> Result<usize, Errno> {
        if n > 0 {
            // tcp_usr_rcvd: the window may have opened enough to tell the peer.
            let _ = self.with_slot(slot, |c, w| c.output(w));
            self.after_call(slot);
            return Ok(n);
        }
        let Some(c) = self.conn_at(slot) else {
            return Err(Errno::EBADF);
        };
        let tp = &c.ctx.tp;
        if empty_buf {
            return Ok(0);
        }
        if tp.t_softerror != 0 {
            return Err(Errno(tp.t_softerror));
        }
        if tp.t_flags2 & tf2::FIN_RCVD != 0 || c.side.rd_shut {
            return Ok(0);
        }
        if tp.t_state == TcpState::Closed {
            return Err(Errno::ENOTCONN);
        }
        Err(Errno::EAGAIN)
    }

    /// send(MSG_OOB): `data` goes into the stream and its last byte is urgent; the urgent
    /// pointer (BSD: past that byte) rides on every segment until it is acknowledged.
    pub fn send_oob(&mut self, id: ConnId, data: &[u8]) -> Result<usize, Errno> {
        let slot = self.conns.resolve(id);
        let c = self.conn_mut(slot)?;
        if data.is_empty() || c.side.snd.space() < data.len() {
            // All or nothing: the pointer must land on the byte written.
            return Err(if data.is_empty() {
                Errno::EINVAL
            } else {
                Errno::EAGAIN
            });
        }
        let tp = &c.ctx.tp;
        let syn =
            matches!(tp.t_state, TcpState::SynSent | TcpState::SynReceived) && tp.snd_una == tp.iss;
        let end = tp
            .snd_una
            .wrapping_add(syn as u32)
            .wrapping_add((c.side.snd.len() + data.len()) as u32);
        // The pointer first, so that the segments `send` puts out already carry it.
        let old = std::mem::replace(&mut c.ctx.tp.snd_up, end);
        match self.send(id, data) {
            Ok(n) => Ok(n),
            Err(e) => {
                if let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) {
                    c.ctx.tp.snd_up = old;
                }
                Err(e)
            }
        }
    }

    /// recv(MSG_OOB): the urgent byte. EINVAL when there is none (or SO_OOBINLINE is on, or
    /// it was taken already), EAGAIN when it has not arrived yet (BSD).
    pub fn recv_oob(&mut self, id: ConnId) -> Result<u8, Errno> {
        let slot = self.conns.resolve(id);
        let c = self.conn_mut(slot)?;
        let side = &mut c.side;
        let Some(mut u) = side.urg.filter(|u| !u.taken && !side.oobinline) else {
            return Err(Errno::EINVAL);
        };
        let byte = match u.byte {
            Some(b) => b,
            None => {
                let at = (u.off - side.read_pos) as usize;
                let mut b = [0u8; 1];
                if side.rcv.peek(at, &mut b) == 0 {
                    return Err(Errno::EAGAIN);
                }
                b[0]
            }
        };
        u.taken = true;
        // Passed by the reader already: forget it; else the reader still skips it.
        side.urg = if u.byte.is_some() { None } else { Some(u) };
        Ok(byte)
    }

    /// SIOCATMARK: the read head is at the urgent mark.
    pub fn at_mark(&self, id: ConnId) -> bool {
        let slot = self.conns.resolve(id);
        self.conn_at(slot)
            .and_then(|c| {
                c.side
                    .urg
                    .map(|u| u.off == c.side.read_pos && u.byte.is_none())
            })
            // (inline or not: the read head is at the urgent byte's place)
            .unwrap_or(false)
    }

    /// Bytes waiting to be read (SIOCINQ / FIONREAD).
    pub fn readable(&self, id: ConnId) -> usize {
        let slot = self.conns.resolve(id);
        self.conn_at(slot).map_or(0, |c| c.side.rcv.readable())
    }

    /// Bytes not yet acknowledged by the peer (SIOCOUTQ).
    pub fn unacked(&self, id: ConnId) -> usize {
        let slot = self.conns.resolve(id);
        self.conn_at(slot).map_or(0, |c| c.side.snd.len())
    }

    /// tcp_usrclosed: closing our direction moves the state machine and the stack sends
    /// the FIN after the data.
    pub fn shutdown(&mut self, id: ConnId, how: Shutdown) -> Result<(), Errno> {
        let slot = self.conns.resolve(id);
        let c = self
            .conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?;
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            c.side.rd_shut = true;
            let pool = &mut self.worker.pool;
            c.side.rcv.clear(pool);
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) && !c.side.wr_shut {
            c.side.wr_shut = true;
            let tp = &mut c.ctx.tp;
            match tp.t_state {
                TcpState::Closed | TcpState::Listen => return Err(Errno::ENOTCONN),
                TcpState::SynSent => {
                    // Nothing was established: just go away (FreeBSD tcp_close).
                    tp.t_state = TcpState::Closed;
                    c.side.user_closed = true;
                    self.free_conn(slot);
                    return Ok(());
                }
                TcpState::SynReceived | TcpState::Established => tp.t_state = TcpState::FinWait1,
                TcpState::CloseWait => tp.t_state = TcpState::LastAck,
                _ => {}
            }
            let _ = self.with_slot(slot, |c, w| c.output(w));
            self.after_call(slot);
        }
        Ok(())
    }

    /// close(2): shutdown both ways; the connection lingers until the FIN handshake ends and
    /// is freed then. Unread data is thrown away and the FIN goes out as usual (FreeBSD
    /// tcp_disconnect flushes so_rcv; Linux would send a RST instead).
    pub fn close(&mut self, id: ConnId) {
        let slot = self.conns.resolve(id);
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        c.side.user_closed = true;
        c.ctx.tp.t_flags |= tf::CLOSED;
        // SO_LINGER with a zero timeout makes close an abort (RST), as BSD does.
        let hard = c.side.linger == Some(0);
        if hard && c.ctx.tp.t_state.have_established() {
            self.abort(id);
            return;
        }
        c.side.rcv.clear(&mut self.worker.pool);
        let state = c.ctx.tp.t_state;
        if state == TcpState::Closed {
            self.free_conn(slot);
            return;
        }
        let _ = self.shutdown(id, Shutdown::Write);
        // Let the stack see TF_CLOSED (an orphaned FIN_WAIT_2 gets its timeout).
        if self.conns.get(slot).is_some_and(Option::is_some) {
            let _ = self.with_slot(slot, |c, w| c.output(w));
        }
        self.after_call(slot);
    }

    /// tcpdrop(8): FreeBSD's tcp_drop(tp, ECONNABORTED) on the operator's word. A RST to the
    /// peer if the connection is synchronized (not from TIME_WAIT), then it is closed: timers
    /// stopped, and the application gets ECONNABORTED from its next call and frees it with
    /// close, as it would a socket the kernel dropped (an orphaned connection is freed now).
    /// ESRCH when the connection is already closed.
    pub fn tcpdrop(&mut self, id: ConnId) -> Result<(), Errno> {
        let slot = self.conns.resolve(id);
        let c = self
            .conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(Errno::ESRCH)?;
        let tp = &c.ctx.tp;
        if matches!(tp.t_state, TcpState::Closed | TcpState::Listen) {
            return Err(Errno::ESRCH);
        }
        if tp.t_state != TcpState::TimeWait {
            self.rst_peer(slot);
        }
        let c = self.conns[slot].as_mut().expect("checked above");
        c.side.stop_timers(&mut self.worker);
        let tp = &mut c.ctx.tp;
        tp.t_state = TcpState::Closed;
        tp.t_softerror = Errno::ECONNABORTED.0;
        c.side.events |= 1 << plugtcp_abi::stack::ConnEvent::Closed as u8;
        self.after_call(slot);
        Ok(())
    }

    /// A RST to the peer of a synchronized connection (FreeBSD tcp_drop's tcp_respond).
    pub(crate) fn rst_peer(&mut self, slot: usize) {
        let Some(c) = self.conn_at(slot) else {
            return;
        };
        let tp = &c.ctx.tp;
        if !(tp.t_state.have_established() || tp.t_state == TcpState::SynReceived) {
            return;
        }
        let persisting = c.side.timers[plugtcp_abi::stack::tt::PERSIST as usize].is_some();
        let seg = tp.drop_rst(persisting, self.worker.now);
        self.send_conn_segment(slot, &seg);
        self.stats.out_rsts += 1;
    }

    /// Drops the connection with a RST (tcp_drop), and frees it.
    pub fn abort(&mut self, id: ConnId) {
        let slot = self.conns.resolve(id);
        if self.conn_at(slot).is_none() {
            return;
        }
        self.rst_peer(slot);
        self.free_conn(slot);
    }

    pub fn state(&self, id: ConnId) -> Option<TcpState> {
        let slot = self.conns.resolve(id);
        self.conns.get(slot)?.as_ref().map(|c| c.state())
    }

    /// getsockname: the connection's local address.
    pub fn local_addr(&self, id: ConnId) -> Option<SocketAddr> {
        let slot = self.conns.resolve(id);
        self.conns.get(slot)?.as_ref().map(|c| c.side.local)
    }

    /// getpeername: the connection's remote address.
    pub fn peer_addr(&self, id: ConnId) -> Option<SocketAddr> {
        let slot = self.conns.resolve(id);
        self.conns.get(slot)?.as_ref().map(|c| c.side.remote)
    }

    /// SO_LINGER's seconds when it is on.
    pub fn linger(&self, id: ConnId) -> Option<u32> {
        self.conns.get_by_id(id)?.side.linger
    }

    pub fn tcpcb(&self, id: ConnId) -> Option<&Tcpcb> {
        let slot = self.conns.resolve(id);
        self.conns.get(slot)?.as_ref().map(|c| &c.ctx.tp)
    }

    /// TCP_INFO.
    pub fn tcp_info(&mut self, id: ConnId) -> Result<TcpInfo, Errno> {
        let slot = self.conns.resolve(id);
        self.with_slot(slot, |c, w| c.info(w))
    }

    /// This host's first address of `remote`'s family.
    pub(crate) fn local_addr_for(&self, remote: IpAddr) -> Option<IpAddr> {
        self.addrs
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
    }
}

/// net.inet.tcp.rfc1323 asks for window scaling (1 or 2).
pub(crate) fn rfc1323_scale(v: i64) -> bool {
    matches!(v, 1 | 2)
}

/// net.inet.tcp.rfc1323 asks for timestamps (1 or 3).
pub(crate) fn rfc1323_ts(v: i64) -> bool {
    matches!(v, 1 | 3)
}
