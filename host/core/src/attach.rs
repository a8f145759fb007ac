//! A socket before it has a 4-tuple (FreeBSD tcp_usr_attach, tcp_usr_bind, tcp_usr_listen,
//! tcp_usr_connect): `socket(2)` makes a connection object at once, on the default stack
//! and CC, so that options set before `bind`, `listen` or `connect` are checked by the stack
//! that will run it; `listen` turns it into a listener that passes those options on, and
//! `connect` gives it an address and sends the SYN. The POSIX layer ([`crate::posix`]) is
//! built on these.

use std::net::SocketAddr;

use plugtcp_abi::tcpcb::{tf, tf2};
use plugtcp_abi::{Errno, TcpState};

use crate::conn::Conn;
use crate::socket::table::{ConnId, ConnKey};
use crate::usrreq::ListenerInherit;
use crate::Host;

impl Host {
    /// socket(2): a connection with no address yet, on the default stack and CC. Free it
    /// with [`Host::close`] if it never connects.
    pub fn open(&mut self, ipv6: bool) -> Result<ConnId, Errno> {
        self.gauges.admit_socket()?;
        let slot = self.conns.try_vacant()?;
        let t = &self.tunables;
        let mss = self.mtu.saturating_sub(if ipv6 { 60 } else { 40 });
        let mut c = crate::conn_table::try_box(Conn::new(
            slot,
            mss.max(t.minmss as u32),
            t.sendspace as usize,
            t.recvspace as usize,
            self.registry.cc_globals,
        ))?;
        if ipv6 {
            c.ctx.tp.t_flags2 |= tf2::INET6;
        }
        let id = self.put_conn(slot, c);
        self.attach_plugins(slot, None, None, None)?;
        Ok(id)
    }

    /// connect(2) for a connection made by [`Host::open`]: picks the local address and
    /// port when `local` does not give them, enters the 4-tuple in the table (EADDRINUSE
    /// when it is taken) and sends the SYN.
    pub fn connect_from(
        &mut self,
        id: ConnId,
        remote: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Result<(), Errno> {
        self.connect_from_inner(id, remote, local, false)
    }

    /// [`Host::connect_from`]; `msg_fastopen`: asked for with data (sendto with an address,
    /// MSG_FASTOPEN), which TCP Fast Open may put in the SYN.
    pub(crate) fn connect_from_inner(
        &mut self,
        id: ConnId,
        remote: SocketAddr,
        local: Option<SocketAddr>,
        msg_fastopen: bool,
    ) -> Result<(), Errno> {
        let slot = self.conns.resolve(id);
        let c = self.conn_at(slot).ok_or(Errno::EBADF)?;
        let tp = &c.ctx.tp;
        if tp.t_state != TcpState::Closed || tp.iss != 0 {
            return Err(Errno::EISCONN);
        }
        if remote.ip().is_unspecified() || remote.port() == 0 {
            return Err(Errno::EADDRNOTAVAIL);
        }
        let local = match local {
            Some(l) if l.port() != 0 && !l.ip().is_unspecified() => l,
            Some(l) => {
                let ip = if l.ip().is_unspecified() {
                    self.local_addr_for(remote.ip())
                        .ok_or(Errno::EADDRNOTAVAIL)?
                } else {
                    l.ip()
                };
                let port = match l.port() {
                    0 => self.table.connect_port(ip, remote)?,
                    p => p,
                };
                SocketAddr::new(ip, port)
            }
            None => {
                let ip = self
                    .local_addr_for(remote.ip())
                    .ok_or(Errno::EADDRNOTAVAIL)?;
                SocketAddr::new(ip, self.table.connect_port(ip, remote)?)
            }
        };
        let key = ConnKey::new(local, remote);
        let id = self.conns.id(slot).ok_or(Errno::EBADF)?;
        self.table.insert_conn(key, id)?;
        let udp_port = self.conns[slot].as_ref().map_or(0, |c| c.side.udp_port);
        let mss = self.tunneled_mss(self.mss_for(local), udp_port);
        let local_peer = self.addrs.contains(&remote.ip());
        let own_default = self.socket_default_mss(slot);
        let c = self.conns[slot].as_mut().ok_or(Errno::EBADF)?;
        c.side.local = key.local;
        c.side.remote = key.remote;
        let tp = &mut c.ctx.tp;
        // An AF_INET6 socket talking to an IPv4-mapped peer is IPv4 on the wire (FreeBSD
        // clears INC_ISIPV6): the IPv4 MSS, unless TCP_MAXSEG lowered it.
        if key.remote.is_ipv4() {
            tp.t_flags2 &= !tf2::INET6;
        }
        tp.t_maxseg = if tp.t_maxseg >= own_default {
            mss
        } else {
            tp.t_maxseg.min(mss)
        };
        if local_peer {
            tp.t_flags2 |= tf2::LOCAL_PEER;
        }
        self.last_demux = None;
        self.start_connect_inner(id, msg_fastopen)
    }

    /// listen(2) for a connection made by [`Host::open`]: a listener on `addr` whose
    /// connections get the stack, CC and options set on the socket; the connection object
    /// goes away. Returns the listener. `reuse_addr` as [`Host::listen_reusing`].
    pub fn listen_from(
        &mut self,
        id: ConnId,
        addr: SocketAddr,
        backlog: usize,
        reuse_addr: bool,
    ) -> Result<usize, Errno> {
        let slot = self.conns.resolve(id);
        let c = self.conn_at(slot).ok_or(Errno::EBADF)?;
        if c.ctx.tp.t_state != TcpState::Closed || c.ctx.tp.iss != 0 {
            return Err(Errno::EINVAL);
        }
        let default_mss = self.socket_default_mss(slot);
        let c = self.conn_at(slot).ok_or(Errno::EBADF)?;
        let tp = c.ctx.tp.clone();
        let (stack, cc) = (c.stack().cloned(), c.cc().cloned());
        let side = &c.side;
        let inherit = ListenerInherit {
            sndbuf: (!side.snd_auto).then(|| side.snd.hiwat()),
            rcvbuf: (!side.rcv_auto).then(|| side.rcv.hiwat()),
            linger: side.linger,
            linger_time: side.linger_time,
            oobinline: side.oobinline,
            max_pacing_rate: side
                .pacer
                .as_ref()
                .map(|p| p.max_rate)
                .filter(|&r| r != crate::pacing::NO_MAX_RATE),
            ip_tos: side.ip_tos,
            ip_ttl: side.ip_ttl,
            maxseg: (tp.t_maxseg < default_mss).then_some(tp.t_maxseg),
            sticky: side.sticky.as_deref().cloned().unwrap_or_default(),
        };
        let tfo_qlen = (tp.t_flags & tf::FASTOPEN != 0).then_some(side.tfo_qlen);
        let lid = self.listen_reusing(addr, backlog, reuse_addr)?;
        let Some(l) = self.listeners.get_mut(lid).and_then(Option::as_mut) else {
            return Err(Errno::ENOMEM);
        };
        l.stack = stack;
        l.cc = cc;
        l.inherit = inherit;
        // TCP_FASTOPEN set before listen(2): an int is the queue length, FreeBSD's struct
        // asks for half the backlog.
        if let Some(qlen) = tfo_qlen {
            l.tfo_qlen = qlen.unwrap_or((backlog / 2).max(1) as u32);
            l.tcpcb.t_flags |= tf::FASTOPEN;
        }
        let ltp = &mut l.tcpcb;
        ltp.t_flags |= tp.t_flags & (tf::NODELAY | tf::NOPUSH | tf::NOOPT | tf::SIGNATURE);
        ltp.t_flags2 |= tp.t_flags2 & (tf2::KEEPALIVE | tf2::QUICKACK | tf2::CORK);
        ltp.t_keepinit = tp.t_keepinit;
        ltp.t_keepidle = tp.t_keepidle;
        ltp.t_keepintvl = tp.t_keepintvl;
        ltp.t_keepcnt = tp.t_keepcnt;
        ltp.t_user_timeout = tp.t_user_timeout;
        self.close_conn(slot);
        Ok(lid)
    }

    /// Changes a listener's backlog (listen(2) again on a listening socket).
    pub fn set_backlog(&mut self, lid: usize, backlog: usize) -> Result<(), Errno> {
        let l = self
            .listeners
            .get_mut(lid)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?;
        l.backlog = backlog;
        Ok(())
    }

    /// Connections waiting in a listener's accept queue.
    pub fn accept_queue_len(&self, lid: usize) -> usize {
        self.listener_at(lid).map_or(0, |l| l.accept_q.len())
    }

    /// recv(MSG_PEEK): received bytes copied out without consuming them; Ok(0) at end of
    /// stream, EAGAIN when nothing is there, the connection's error once it failed.
    pub fn recv_peek(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, Errno> {
        let slot = self.conns.resolve(id);
        let c = self.conn_at(slot).ok_or(Errno::EBADF)?;
        let side = &c.side;
        // Stop at the urgent mark, as a read would.
        let limit = match side.urg {
            Some(u) if !side.oobinline && side.read_pos < u.off => (u.off - side.read_pos) as usize,
            _ => usize::MAX,
        };
        let want = buf.len().min(limit);
        let n = side.rcv.peek(0, &mut buf[..want]);
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        let tp = &c.ctx.tp;
        if tp.t_softerror != 0 {
            return Err(Errno(tp.t_softerror));
        }
        if tp.t_flags2 & tf2::FIN_RCVD != 0 || side.rd_shut {
            return Ok(0);
        }
        if tp.t_state == TcpState::Closed {
            return Err(Errno::ENOTCONN);
        }
        Err(Errno::EAGAIN)
    }

    /// Room in the send buffer (what a write may take now).
    pub fn send_space(&self, id: ConnId) -> usize {
        let slot = self.conns.resolve(id);
        self.conn_at(slot).map_or(0, |c| c.side.snd.space())
    }

    /// Whether the peer's FIN (or a shutdown of our read side) ended the stream.
    pub fn read_closed(&self, id: ConnId) -> bool {
        let slot = self.conns.resolve(id);
        self.conn_at(slot)
            .is_some_and(|c| c.ctx.tp.t_flags2 & tf2::FIN_RCVD != 0 || c.side.rd_shut)
    }

    /// Sets what the connection's packets carry in the IP header: the TOS / traffic class
    /// (DSCP bits; ECN stays the stack's) and the TTL / hop limit (IP_TOS, IPV6_TCLASS,
    /// IP_TTL, IPV6_UNICAST_HOPS).
    pub fn set_ip_header(
        &mut self,
        id: ConnId,
        tos: Option<u8>,
        ttl: Option<u8>,
    ) -> Result<(), Errno> {
        let slot = self.conns.resolve(id);
        let c = self
            .conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?;
        if let Some(tos) = tos {
            c.side.ip_tos = tos & !0x03;
        }
        if let Some(ttl) = ttl {
            c.side.ip_ttl = ttl;
        }
        Ok(())
    }

    /// The MSS socket(2) gave `slot` for its family: below it, TCP_MAXSEG lowered it.
    fn socket_default_mss(&self, slot: usize) -> u32 {
        let v6 = self
            .conn_at(slot)
            .is_some_and(|c| c.ctx.tp.t_flags2 & tf2::INET6 != 0 && c.side.remote.port() == 0);
        self.mtu
            .saturating_sub(if v6 { 60 } else { 40 })
            .max(self.tunables.minmss.max(0) as u32)
    }

    /// IP_TOS / IP_TTL on a listener: its SYN-ACKs carry them, its connections inherit
    /// them (FreeBSD syncache_add takes the listener's inp_ip_tos and inp_ip_ttl).
    pub fn set_listener_ip_header(
        &mut self,
        lid: usize,
        tos: Option<u8>,
        ttl: Option<u8>,
    ) -> Result<(), Errno> {
        let l = self
            .listeners
            .get_mut(lid)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?;
        if let Some(tos) = tos {
            l.inherit.ip_tos = tos & !0x03;
        }
        l.inherit.ip_ttl = ttl.unwrap_or(0);
        Ok(())
    }

    /// The TOS and TTL the connection's packets carry (0 TTL: the host's default).
    pub fn ip_header(&self, id: ConnId) -> Option<(u8, u8)> {
        let slot = self.conns.resolve(id);
        let c = self.conns.get(slot)?.as_ref()?;
        let ttl = if c.side.ip_ttl == 0 {
            self.worker.ttl
        } else {
            c.side.ip_ttl
        };
        Some((c.side.ip_tos, ttl))
    }
}
