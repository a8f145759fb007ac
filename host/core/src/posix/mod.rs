//! A POSIX socket layer over a [`Host`]: file descriptors and the BSD socket calls with
//! FreeBSD's semantics and errnos, for the packetdrill runner now and a C API or an
//! LD_PRELOAD shim later.
//!
//! Sans-IO like the host: no call ever blocks. A call that would block returns EAGAIN (and
//! `connect` EINPROGRESS) whether or not the descriptor is non-blocking;
//! [`Posix::is_nonblocking`] tells the caller whether the application expects that answer
//! or a wait. A caller that waits retries the call when the host has moved (reads, writes,
//! accept) or asks [`Posix::connect_status`] whether a connect has finished.
//!
//! What follows FreeBSD rather than Linux, where they differ: accept(2) hands the new
//! socket its listener's O_NONBLOCK; the connection's error (so_error) is reported once,
//! after which reads see end of stream; a write after the connection was dropped is EPIPE;
//! connect(2) on a dropped connection is ECONNREFUSED; getsockopt of a SOL_SOCKET flag
//! returns the flag's bit (SO_KEEPALIVE reads 8), and poll(2) reports no POLLERR.
//!
//! Addresses: an AF_INET6 socket may use IPv4-mapped addresses (`::ffff:a.b.c.d`), which
//! go on the wire as IPv4, as FreeBSD does when `IPV6_V6ONLY` is off.

pub mod consts;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use plugtcp_abi::sockopt::{IPPROTO_TCP, SOL_SOCKET};
use plugtcp_abi::{Errno, TcpState};

use crate::conn_table::ConnId;
use crate::usrreq::Shutdown;
use crate::Host;
use consts::*;

/// The lowest descriptor a new socket gets (0, 1 and 2 are the standard streams).
pub const FIRST_FD: i32 = 3;

/// An address family.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
}

impl Family {
    pub fn from_domain(domain: i32) -> Result<Family, Errno> {
        match domain {
            AF_INET => Ok(Family::Inet),
            AF_INET6 | AF_INET6_LINUX => Ok(Family::Inet6),
            _ => Err(Errno::EAFNOSUPPORT),
        }
    }

    fn wildcard(self) -> SocketAddr {
        match self {
            Family::Inet => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            Family::Inet6 => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        }
    }
}

/// What a descriptor refers to in the host.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// socket(2) called: a connection object without an address (options go to it).
    Fresh(ConnId),
    Listening(usize),
    /// connect(2) called or accepted: this connection.
    Conn(ConnId),
}

/// One open socket descriptor.
#[derive(Clone, Debug)]
struct File {
    family: Family,
    kind: Kind,
    nonblock: bool,
    cloexec: bool,
    /// bind(2)'s address (host form), held in the socket table until listen or connect.
    bound: Option<SocketAddr>,
    /// SO_DEBUG, SO_REUSEADDR, ... as FreeBSD's so_options bits.
    so_options: i32,
    sndlowat: i32,
    rcvlowat: i32,
    sndtimeo: [u8; 16],
    rcvtimeo: [u8; 16],
    v6only: bool,
    /// IP_TOS / IPV6_TCLASS and IP_TTL / IPV6_UNICAST_HOPS as set (applied when connected).
    tos: Option<u8>,
    ttl: Option<u8>,
    /// The connection's error was reported to the application (FreeBSD clears so_error
    /// when a call returns it).
    error_reported: bool,
    /// A listener's pending error (FreeBSD so_error): shutdown(2) aborts accept once.
    listen_error: Option<Errno>,
}

/// One entry of poll(2)'s array.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PollFd {
    pub fd: i32,
    pub events: i16,
    pub revents: i16,
}

/// The descriptor table and the calls.
#[derive(Default)]
pub struct Posix {
    files: Vec<Option<File>>,
}

impl Posix {
    pub fn new() -> Self {
        Self::default()
    }

    fn file(&self, fd: i32) -> Result<&File, Errno> {
        usize::try_from(fd - FIRST_FD)
            .ok()
            .and_then(|i| self.files.get(i)?.as_ref())
            .ok_or(Errno::EBADF)
    }

    fn file_mut(&mut self, fd: i32) -> Result<&mut File, Errno> {
        usize::try_from(fd - FIRST_FD)
            .ok()
            .and_then(|i| self.files.get_mut(i)?.as_mut())
            .ok_or(Errno::EBADF)
    }

    /// Whether `fd` is an open socket.
    pub fn is_open(&self, fd: i32) -> bool {
        self.file(fd).is_ok()
    }

    /// Whether the application asked for EAGAIN rather than a wait (O_NONBLOCK).
    pub fn is_nonblocking(&self, fd: i32) -> bool {
        self.file(fd).is_ok_and(|f| f.nonblock)
    }

    /// The connection behind `fd`, once it has one.
    pub fn conn_id(&self, fd: i32) -> Option<ConnId> {
        match self.file(fd).ok()?.kind {
            Kind::Fresh(s) | Kind::Conn(s) => Some(s),
            Kind::Listening(_) => None,
        }
    }

    /// The listener behind `fd`, if it listens.
    pub fn listener(&self, fd: i32) -> Option<usize> {
        match self.file(fd).ok()?.kind {
            Kind::Listening(l) => Some(l),
            _ => None,
        }
    }

    /// Open descriptors, lowest first.
    pub fn open_fds(&self) -> Vec<i32> {
        (0..self.files.len())
            .filter(|&i| self.files[i].is_some())
            .map(|i| i as i32 + FIRST_FD)
            .collect()
    }

    fn install(&mut self, f: File) -> i32 {
        let i = match self.files.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.files.push(None);
                self.files.len() - 1
            }
        };
        self.files[i] = Some(f);
        i as i32 + FIRST_FD
    }

    /// socket(2): only TCP streams (EAFNOSUPPORT, EPROTONOSUPPORT, EPROTOTYPE otherwise).
    pub fn socket(&mut self, h: &mut Host, domain: i32, ty: i32, proto: i32) -> Result<i32, Errno> {
        let family = Family::from_domain(domain)?;
        let base = ty & !(SOCK_CLOEXEC | SOCK_NONBLOCK);
        if proto != 0 && proto != IPPROTO_TCP {
            return Err(Errno::EPROTONOSUPPORT);
        }
        if base != SOCK_STREAM {
            return Err(if proto == IPPROTO_TCP {
                Errno::EPROTOTYPE
            } else {
                Errno::EPROTONOSUPPORT
            });
        }
        let slot = h.open(family == Family::Inet6)?;
        Ok(self.install(File {
            family,
            kind: Kind::Fresh(slot),
            nonblock: ty & SOCK_NONBLOCK != 0,
            cloexec: ty & SOCK_CLOEXEC != 0,
            bound: None,
            so_options: 0,
            sndlowat: 2048,
            rcvlowat: 1,
            sndtimeo: [0; 16],
            rcvtimeo: [0; 16],
            // FreeBSD: net.inet6.ip6.v6only is 1, so an AF_INET6 socket is IPv6 only
            // until IPV6_V6ONLY is cleared.
            v6only: family == Family::Inet6,
            tos: None,
            ttl: None,
            error_reported: false,
            listen_error: None,
        }))
    }

    /// An address the application gave, in the host's form: the family must match, and an
    /// IPv4-mapped address on an AF_INET6 socket is IPv4.
    fn host_addr(f: &File, addr: SocketAddr) -> Result<SocketAddr, Errno> {
        match (f.family, addr) {
            (Family::Inet, SocketAddr::V4(_)) => Ok(addr),
            (Family::Inet6, SocketAddr::V6(a)) => match a.ip().to_ipv4_mapped() {
                Some(_) if f.v6only => Err(Errno::EINVAL),
                Some(v4) => Ok(SocketAddr::new(IpAddr::V4(v4), a.port())),
                None => Ok(addr),
            },
            _ => Err(Errno::EAFNOSUPPORT),
        }
    }

    /// An address from the host, as the application's family shows it.
    fn app_addr(f: &File, addr: SocketAddr) -> SocketAddr {
        match (f.family, addr.ip()) {
            (Family::Inet6, IpAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port())
            }
            _ => addr,
        }
    }

    /// bind(2). EINVAL when already bound (or listening, or connected).
    pub fn bind(&mut self, h: &mut Host, fd: i32, addr: SocketAddr) -> Result<(), Errno> {
        let f = self.file(fd)?;
        if f.bound.is_some() || !matches!(f.kind, Kind::Fresh(_)) {
            return Err(Errno::EINVAL);
        }
        // FreeBSD tcp_usr_bind: "must check for multicast addresses and disallow binding
        // to them".
        if addr.ip().is_multicast() {
            return Err(Errno::EAFNOSUPPORT);
        }
        // FreeBSD in6_pcbbind: an IPv4-mapped address on an IPv6-only socket is no
        // address of this host.
        let addr = match Self::host_addr(f, addr) {
            Err(Errno::EINVAL) => return Err(Errno::EADDRNOTAVAIL),
            r => r?,
        };
        let reuse = f.so_options & (SO_REUSEADDR | SO_REUSEPORT) != 0;
        let bound = h.table.reserve_addr(addr, reuse)?;
        self.file_mut(fd)?.bound = Some(bound);
        Ok(())
    }

    /// listen(2): a negative or too large backlog is SOMAXCONN; listening again changes
    /// the backlog.
    pub fn listen(&mut self, h: &mut Host, fd: i32, backlog: i32) -> Result<(), Errno> {
        let backlog = usize::try_from(backlog)
            .ok()
            .filter(|&b| b <= SOMAXCONN)
            .unwrap_or(SOMAXCONN);
        let f = self.file(fd)?.clone();
        let slot = match f.kind {
            Kind::Listening(lid) => return h.set_backlog(lid, backlog),
            Kind::Conn(_) => return Err(Errno::EINVAL),
            Kind::Fresh(slot) => slot,
        };
        let addr = f.bound.unwrap_or_else(|| f.family.wildcard());
        if let Some(b) = f.bound {
            h.table.release_addr(b);
        }
        // FreeBSD: a bound socket's bind(2) did the conflict checks (tcp_usr_listen binds
        // only an unbound one), so listening beside that port's connections is fine.
        let reuse = f.bound.is_some() || f.so_options & SO_REUSEADDR != 0;
        match h.listen_from(slot, addr, backlog, reuse) {
            Ok(lid) => {
                let f = self.file_mut(fd)?;
                f.kind = Kind::Listening(lid);
                f.bound = None;
                Ok(())
            }
            Err(e) => {
                if let Some(b) = f.bound {
                    let _ = h.table.reserve_addr(b, true);
                }
                Err(e)
            }
        }
    }

    /// accept(2): the next connection and its peer; EAGAIN when none is waiting, EINVAL on
    /// a socket that does not listen. The new socket has its listener's O_NONBLOCK.
    pub fn accept(&mut self, h: &mut Host, fd: i32) -> Result<(i32, SocketAddr), Errno> {
        let f = self.file(fd)?.clone();
        let Kind::Listening(lid) = f.kind else {
            return Err(Errno::EINVAL);
        };
        if let Some(e) = self.file_mut(fd)?.listen_error.take() {
            return Err(e);
        }
        let slot = h.accept(lid)?;
        let peer = h.peer_addr(slot).ok_or(Errno::ECONNABORTED)?;
        let nfd = self.install(File {
            kind: Kind::Conn(slot),
            bound: None,
            error_reported: false,
            tos: None,
            ttl: None,
            ..f.clone()
        });
        Ok((nfd, Self::app_addr(&f, peer)))
    }

    /// connect(2): EINPROGRESS once the SYN is out (blocking or not: see
    /// [`Posix::connect_status`]); EALREADY while it is on its way, EISCONN after,
    /// ECONNREFUSED once the connection was dropped, EOPNOTSUPP on a listener.
    pub fn connect(&mut self, h: &mut Host, fd: i32, addr: SocketAddr) -> Result<(), Errno> {
        let f = self.file(fd)?.clone();
        match f.kind {
            Kind::Listening(_) => Err(Errno::EOPNOTSUPP),
            Kind::Conn(slot) => Err(match h.state(slot) {
                Some(TcpState::SynSent | TcpState::SynReceived) => Errno::EALREADY,
                Some(TcpState::Closed) | None => Errno::ECONNREFUSED,
                Some(_) => Errno::EISCONN,
            }),
            Kind::Fresh(slot) => {
                let remote = Self::host_addr(&f, addr)?;
                // FreeBSD tcp_usr_connect: no TCP to a multicast or broadcast address.
                match remote.ip() {
                    ip if ip.is_multicast() => return Err(Errno::EAFNOSUPPORT),
                    IpAddr::V4(v4) if v4.is_broadcast() => return Err(Errno::EACCES),
                    _ => {}
                }
                if let Some(b) = f.bound {
                    h.table.release_addr(b);
                }
                if let Err(e) = h.connect_from(slot, remote, f.bound) {
                    if let Some(b) = f.bound {
                        let _ = h.table.reserve_addr(b, true);
                    }
                    return Err(e);
                }
                let _ = h.set_ip_header(slot, f.tos, f.ttl);
                let nf = self.file_mut(fd)?;
                nf.kind = Kind::Conn(slot);
                nf.bound = None;
                match h.state(slot) {
                    Some(s) if s.have_established() => Ok(()),
                    // TCP_FASTOPEN_CONNECT with a cookie: the SYN goes with the first write.
                    _ if h.tfo_deferred(slot) => Ok(()),
                    _ => Err(Errno::EINPROGRESS),
                }
            }
        }
    }

    /// Whether a connect(2) in progress has finished: `None` while the handshake goes on,
    /// then Ok or the error (reported, as so_error is, once).
    pub fn connect_status(&mut self, h: &Host, fd: i32) -> Option<Result<(), Errno>> {
        let f = self.file(fd).ok()?;
        let Kind::Conn(slot) = f.kind else {
            return Some(Err(Errno::EBADF));
        };
        let tp = h.tcpcb(slot)?;
        match tp.t_state {
            TcpState::SynSent | TcpState::SynReceived => None,
            TcpState::Closed if tp.t_softerror != 0 => {
                let e = Errno(tp.t_softerror);
                if let Ok(f) = self.file_mut(fd) {
                    f.error_reported = true;
                }
                Some(Err(e))
            }
            TcpState::Closed => Some(Err(Errno::ECONNREFUSED)),
            _ => Some(Ok(())),
        }
    }

    /// The connection's pending error (FreeBSD so_error), cleared as it is returned.
    fn take_error(&mut self, h: &Host, fd: i32) -> Option<Errno> {
        let f = self.file(fd).ok()?;
        if f.error_reported {
            return None;
        }
        let slot = match f.kind {
            Kind::Conn(s) => s,
            _ => return None,
        };
        let e = h.tcpcb(slot).map_or(0, |tp| tp.t_softerror);
        if e == 0 {
            return None;
        }
        if let Ok(f) = self.file_mut(fd) {
            f.error_reported = true;
        }
        Some(Errno(e))
    }

    fn connected_slot(&self, fd: i32) -> Result<ConnId, Errno> {
        match self.file(fd)?.kind {
            Kind::Conn(s) => Ok(s),
            _ => Err(Errno::ENOTCONN),
        }
    }

    /// recv(2) (read(2) with flags 0): MSG_PEEK, MSG_OOB (the urgent byte), MSG_WAITALL
    /// and MSG_DONTWAIT are the caller's to wait on; 0 at end of stream; the connection's
    /// error once, then end of stream.
    pub fn recv(
        &mut self,
        h: &mut Host,
        fd: i32,
        buf: &mut [u8],
        flags: i32,
    ) -> Result<usize, Errno> {
        let slot = self.connected_slot(fd)?;
        if flags & MSG_OOB != 0 {
            let b = h.recv_oob(slot)?;
            if let Some(d) = buf.first_mut() {
                *d = b;
                return Ok(1);
            }
            return Ok(0);
        }
        // FreeBSD soreceive on a non-blocking socket (without MSG_DONTWAIT): fewer bytes
        // than SO_RCVLOWAT (and than asked for) are not worth returning yet.
        let f = self.file(fd)?;
        let want = buf.len().min(f.rcvlowat.max(1) as usize);
        let queued = h.readable(slot);
        if f.nonblock
            && flags & MSG_DONTWAIT == 0
            && queued > 0
            && queued < want
            && !h.read_closed(slot)
            && h.tcpcb(slot).is_some_and(|tp| tp.t_softerror == 0)
        {
            return Err(Errno::EAGAIN);
        }
        let r = if flags & MSG_PEEK != 0 {
            h.recv_peek(slot, buf)
        } else {
            h.recv(slot, buf)
        };
        match r {
            Err(e) if e != Errno::EAGAIN && e != Errno::ENOTCONN => {
                // The error goes to the application once (so_error), then end of stream.
                let f = self.file_mut(fd)?;
                if f.error_reported {
                    return Ok(0);
                }
                if flags & MSG_PEEK == 0 {
                    f.error_reported = true;
                }
                Err(e)
            }
            Err(Errno::ENOTCONN) if h.state(slot) == Some(TcpState::SynSent) => Err(Errno::EAGAIN),
            r => r,
        }
    }

    /// send(2) (write(2) with flags 0): how much the send buffer took (EAGAIN when
    /// nothing); EPIPE after shutdown or once the connection was dropped; ENOTCONN before
    /// the handshake completed; MSG_OOB makes the last byte urgent.
    pub fn send(&mut self, h: &mut Host, fd: i32, data: &[u8], flags: i32) -> Result<usize, Errno> {
        let slot = self.connected_slot(fd)?;
        match h.state(slot) {
            // TCP_FASTOPEN_CONNECT: connect(2) returned with the SYN waiting for this data.
            Some(TcpState::SynSent) if h.tfo_deferred(slot) => {}
            // Opened by a TFO SYN: connected for the application already (FreeBSD
            // syncache_tfo_expand calls soisconnected).
            Some(TcpState::SynReceived)
                if h.tcpcb(slot)
                    .is_some_and(|tp| tp.t_flags & plugtcp_abi::tcpcb::tf::FASTOPEN != 0) => {}
            Some(TcpState::SynSent | TcpState::SynReceived) => return Err(Errno::ENOTCONN),
            Some(TcpState::Closed) | None => {
                // A connection that never got anywhere, or one that was dropped.
                return Err(if h.tcpcb(slot).is_some_and(|tp| tp.iss == 0) {
                    Errno::ENOTCONN
                } else {
                    Errno::EPIPE
                });
            }
            _ => {}
        }
        let r = if flags & MSG_OOB != 0 {
            h.send_oob(slot, data)
        } else {
            h.send(slot, data)
        };
        match r {
            // FreeBSD checks "can't send more" before so_error: a dropped connection is EPIPE.
            Err(e)
                if e != Errno::EAGAIN
                    && e != Errno::EPIPE
                    && e != Errno::EINVAL
                    && e != Errno::ENOBUFS =>
            {
                Err(Errno::EPIPE)
            }
            r => r,
        }
    }

    /// sendto(2) with an address: on a socket that is not connected, an implied connect
    /// with the data (FreeBSD's PRUS with an address, Linux's MSG_FASTOPEN), which TCP Fast
    /// Open may carry in the SYN; EISCONN on a connected one, EOPNOTSUPP on a listener.
    pub fn sendto(
        &mut self,
        h: &mut Host,
        fd: i32,
        data: &[u8],
        flags: i32,
        addr: SocketAddr,
    ) -> Result<usize, Errno> {
        let f = self.file(fd)?.clone();
        let slot = match f.kind {
            Kind::Listening(_) => return Err(Errno::EOPNOTSUPP),
            Kind::Conn(_) => return Err(Errno::EISCONN),
            Kind::Fresh(slot) => slot,
        };
        let remote = Self::host_addr(&f, addr)?;
        match remote.ip() {
            ip if ip.is_multicast() => return Err(Errno::EAFNOSUPPORT),
            IpAddr::V4(v4) if v4.is_broadcast() => return Err(Errno::EACCES),
            _ => {}
        }
        let nonblocking = self.is_nonblocking(fd);
        let msg_fastopen = flags & MSG_FASTOPEN != 0;
        // Linux: MSG_FASTOPEN while client TFO is off is refused, nothing connects.
        if msg_fastopen && h.tunables.fastopen_client_enable == 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if let Some(b) = f.bound {
            h.table.release_addr(b);
        }
        let r = h.connect_with_data(slot, remote, f.bound, data, msg_fastopen, nonblocking);
        if h.state(slot).is_none_or(|s| s == TcpState::Closed) {
            if let Some(b) = f.bound {
                let _ = h.table.reserve_addr(b, true);
            }
            return r;
        }
        let _ = h.set_ip_header(slot, f.tos, f.ttl);
        let nf = self.file_mut(fd)?;
        nf.kind = Kind::Conn(slot);
        nf.bound = None;
        r
    }

    /// shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR (EINVAL otherwise); ENOTCONN unless
    /// connected.
    pub fn shutdown(&mut self, h: &mut Host, fd: i32, how: i32) -> Result<(), Errno> {
        let how = match how {
            SHUT_RD => Shutdown::Read,
            SHUT_WR => Shutdown::Write,
            SHUT_RDWR => Shutdown::Both,
            _ => return Err(Errno::EINVAL),
        };
        // FreeBSD soshutdown on a listener: not connected, but a blocked accept(2) is
        // woken with ECONNABORTED (once).
        if matches!(self.file(fd)?.kind, Kind::Listening(_)) {
            if how != Shutdown::Write {
                self.file_mut(fd)?.listen_error = Some(Errno::ECONNABORTED);
            }
            return Err(Errno::ENOTCONN);
        }
        let slot = self.connected_slot(fd)?;
        match h.state(slot) {
            Some(TcpState::Closed) | None if h.tcpcb(slot).is_some_and(|tp| tp.iss == 0) => {
                Err(Errno::ENOTCONN)
            }
            Some(TcpState::Closed) | None => Ok(()),
            _ => h.shutdown(slot, how),
        }
    }

    /// close(2).
    pub fn close(&mut self, h: &mut Host, fd: i32) -> Result<(), Errno> {
        let f = self.file(fd)?.clone();
        match f.kind {
            Kind::Fresh(slot) => {
                if let Some(b) = f.bound {
                    h.table.release_addr(b);
                }
                h.close(slot);
            }
            Kind::Listening(lid) => h.close_listener(lid),
            Kind::Conn(slot) => h.close(slot),
        }
        let i = (fd - FIRST_FD) as usize;
        self.files[i] = None;
        Ok(())
    }

    /// fcntl(2): F_GETFL (O_RDWR and O_NONBLOCK), F_SETFL (O_NONBLOCK), F_GETFD and
    /// F_SETFD (FD_CLOEXEC).
    pub fn fcntl(&mut self, fd: i32, cmd: i32, arg: i32) -> Result<i32, Errno> {
        let f = self.file_mut(fd)?;
        match cmd {
            F_GETFL => Ok(O_RDWR | if f.nonblock { O_NONBLOCK } else { 0 }),
            F_SETFL => {
                f.nonblock = arg & O_NONBLOCK != 0;
                Ok(0)
            }
            F_GETFD => Ok(if f.cloexec { FD_CLOEXEC } else { 0 }),
            F_SETFD => {
                f.cloexec = arg & FD_CLOEXEC != 0;
                Ok(0)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// setsockopt(2) at SOL_SOCKET, IPPROTO_IP, IPPROTO_IPV6 and IPPROTO_TCP.
    pub fn setsockopt(
        &mut self,
        h: &mut Host,
        fd: i32,
        level: i32,
        name: i32,
        val: &[u8],
    ) -> Result<(), Errno> {
        let int = || -> Result<i32, Errno> {
            let b = val.get(..4).ok_or(Errno::EINVAL)?;
            Ok(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let f = self.file(fd)?.clone();
        match (level, name) {
            (
                SOL_SOCKET,
                SO_DEBUG | SO_REUSEADDR | SO_REUSEPORT | SO_DONTROUTE | SO_BROADCAST | SO_NOSIGPIPE,
            ) => {
                let on = int()? != 0;
                let f = self.file_mut(fd)?;
                if on {
                    f.so_options |= name;
                } else {
                    f.so_options &= !name;
                }
                Ok(())
            }
            (SOL_SOCKET, SO_SNDLOWAT | SO_RCVLOWAT) => {
                let v = int()?;
                if v < 0 {
                    return Err(Errno::EINVAL);
                }
                let f = self.file_mut(fd)?;
                if name == SO_SNDLOWAT {
                    f.sndlowat = v.max(1);
                } else {
                    f.rcvlowat = v.max(1);
                }
                Ok(())
            }
            (SOL_SOCKET, SO_SNDTIMEO | SO_RCVTIMEO) => {
                // struct timeval: 16 bytes on the LP64 systems plugtcp runs on.
                if val.len() < 16 {
                    return Err(Errno::EINVAL);
                }
                let mut tv = [0u8; 16];
                tv.copy_from_slice(&val[..16]);
                let f = self.file_mut(fd)?;
                if name == SO_SNDTIMEO {
                    f.sndtimeo = tv;
                } else {
                    f.rcvtimeo = tv;
                }
                Ok(())
            }
            (SOL_SOCKET, SO_SNDBUF | SO_RCVBUF) => {
                let v = int()?;
                let limit = crate::conn::sb_max_adj(
                    h.worker.sb_max.load(std::sync::atomic::Ordering::Relaxed),
                );
                if v <= 0 {
                    return Err(Errno::EINVAL);
                }
                if v as u64 > limit {
                    return Err(Errno::ENOBUFS);
                }
                self.set_on_socket(h, &f, level, name, &v.to_ne_bytes())
            }
            (SOL_SOCKET, SO_KEEPALIVE | SO_OOBINLINE | SO_LINGER | SO_MAX_PACING_RATE) => {
                self.set_on_socket(h, &f, level, name, val)
            }
            (SOL_SOCKET, SO_ERROR | SO_TYPE | SO_ACCEPTCONN) => Err(Errno::ENOPROTOOPT),
            (SOL_SOCKET, _) => Err(Errno::ENOPROTOOPT),
            (IPPROTO_IP, IP_TOS | IP_TTL) | (IPPROTO_IPV6, IPV6_TCLASS | IPV6_UNICAST_HOPS) => {
                let v = int()?;
                let v6 = level == IPPROTO_IPV6;
                if v6 != (f.family == Family::Inet6) && (v6 || f.family == Family::Inet) {
                    return Err(Errno::EINVAL);
                }
                // IPv6 takes -1 for "the default"; IPv4 takes 0..=255.
                let value = match v {
                    -1 if v6 => None,
                    0..=255 => Some(v as u8),
                    _ => return Err(Errno::EINVAL),
                };
                let tos_opt =
                    matches!(name, IP_TOS) && level == IPPROTO_IP || name == IPV6_TCLASS && v6;
                let fm = self.file_mut(fd)?;
                if tos_opt {
                    fm.tos = Some(value.unwrap_or(0));
                } else {
                    fm.ttl = value;
                }
                let (tos, ttl) = (fm.tos, fm.ttl);
                // From the SYN on (FreeBSD tcpip_fillheaders), and for a listener its
                // SYN-ACKs and the connections it accepts.
                match f.kind {
                    Kind::Conn(slot) | Kind::Fresh(slot) => {
                        h.set_ip_header(slot, tos, Some(ttl.unwrap_or(0)))?
                    }
                    Kind::Listening(lid) => h.set_listener_ip_header(lid, tos, ttl)?,
                }
                Ok(())
            }
            (IPPROTO_IPV6, IPV6_V6ONLY) => {
                let on = int()? != 0;
                if f.family != Family::Inet6 {
                    return Err(Errno::EINVAL);
                }
                if !matches!(f.kind, Kind::Fresh(_)) || f.bound.is_some() {
                    return Err(Errno::EINVAL);
                }
                self.file_mut(fd)?.v6only = on;
                Ok(())
            }
            (IPPROTO_IP | IPPROTO_IPV6, _) => Err(Errno::ENOPROTOOPT),
            (IPPROTO_TCP, _) => self.set_on_socket(h, &f, level, name, val),
            // FreeBSD: tcp_ctloutput hands any other level to ip_ctloutput, which wants
            // IPPROTO_IP.
            _ => Err(Errno::EINVAL),
        }
    }

    /// A host option on whatever the descriptor has: its connection or its listener.
    fn set_on_socket(
        &mut self,
        h: &mut Host,
        f: &File,
        level: i32,
        name: i32,
        val: &[u8],
    ) -> Result<(), Errno> {
        match f.kind {
            Kind::Fresh(slot) | Kind::Conn(slot) => h.setsockopt(slot, level, name, val),
            Kind::Listening(lid) => h.listener_setsockopt(lid, level, name, val),
        }
    }

    /// getsockopt(2): writes the value into `buf` and returns its length (EINVAL when
    /// `buf` is too short; TCP_INFO and TCP_STATS are cut to it).
    pub fn getsockopt(
        &mut self,
        h: &mut Host,
        fd: i32,
        level: i32,
        name: i32,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        let f = self.file(fd)?.clone();
        let mut put_int = |v: i32| -> Result<usize, Errno> {
            let dst = buf.get_mut(..4).ok_or(Errno::EINVAL)?;
            dst.copy_from_slice(&v.to_ne_bytes());
            Ok(4)
        };
        match (level, name) {
            (SOL_SOCKET, SO_ERROR) => {
                let e = self.take_error(h, fd).map_or(0, |e| e.0);
                put_int(e)
            }
            (SOL_SOCKET, SO_TYPE) => put_int(SOCK_STREAM),
            (SOL_SOCKET, SO_ACCEPTCONN) => put_int(if matches!(f.kind, Kind::Listening(_)) {
                SO_ACCEPTCONN
            } else {
                0
            }),
            (
                SOL_SOCKET,
                SO_DEBUG | SO_REUSEADDR | SO_REUSEPORT | SO_DONTROUTE | SO_BROADCAST | SO_NOSIGPIPE,
            ) => put_int(f.so_options & name),
            (SOL_SOCKET, SO_SNDLOWAT) => put_int(f.sndlowat),
            (SOL_SOCKET, SO_RCVLOWAT) => put_int(f.rcvlowat),
            (SOL_SOCKET, SO_SNDTIMEO | SO_RCVTIMEO) => {
                let tv = if name == SO_SNDTIMEO {
                    f.sndtimeo
                } else {
                    f.rcvtimeo
                };
                let dst = buf.get_mut(..16).ok_or(Errno::EINVAL)?;
                dst.copy_from_slice(&tv);
                Ok(16)
            }
            (SOL_SOCKET, SO_KEEPALIVE | SO_OOBINLINE) => {
                let mut b = [0u8; 4];
                self.get_from_socket(h, &f, level, name, &mut b)?;
                // FreeBSD returns the option's bit, not 1.
                put_int(if i32::from_ne_bytes(b) != 0 { name } else { 0 })
            }
            (SOL_SOCKET, SO_SNDBUF | SO_RCVBUF | SO_LINGER | SO_MAX_PACING_RATE) => {
                self.get_from_socket(h, &f, level, name, buf)
            }
            (SOL_SOCKET, _) => Err(Errno::ENOPROTOOPT),
            (IPPROTO_IP, IP_TOS) if f.family == Family::Inet => {
                put_int(i32::from(f.tos.unwrap_or(0)))
            }
            (IPPROTO_IP, IP_TTL) if f.family == Family::Inet => {
                put_int(i32::from(f.ttl.unwrap_or(h.worker.ttl)))
            }
            (IPPROTO_IPV6, IPV6_TCLASS) if f.family == Family::Inet6 => {
                put_int(f.tos.map_or(-1, i32::from))
            }
            // -1 until set: "the kernel's default" (FreeBSD in6p_hops).
            (IPPROTO_IPV6, IPV6_UNICAST_HOPS) if f.family == Family::Inet6 => {
                put_int(f.ttl.map_or(-1, i32::from))
            }
            (IPPROTO_IPV6, IPV6_V6ONLY) if f.family == Family::Inet6 => {
                put_int(i32::from(f.v6only))
            }
            (IPPROTO_IP | IPPROTO_IPV6, _) => Err(Errno::ENOPROTOOPT),
            (IPPROTO_TCP, _) => self.get_from_socket(h, &f, level, name, buf),
            _ => Err(Errno::EINVAL),
        }
    }

    fn get_from_socket(
        &mut self,
        h: &mut Host,
        f: &File,
        level: i32,
        name: i32,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        match f.kind {
            Kind::Fresh(slot) | Kind::Conn(slot) => h.getsockopt(slot, level, name, buf),
            Kind::Listening(lid) => h.listener_getsockopt(lid, level, name, buf),
        }
    }

    /// ioctl(2) with an int argument: FIONREAD / SIOCINQ (bytes to read), FIONWRITE /
    /// SIOCOUTQ (bytes in the send buffer), FIONSPACE (room in it), SIOCATMARK, FIONBIO
    /// (sets O_NONBLOCK from `arg`). ENOTTY for anything else.
    pub fn ioctl(&mut self, h: &mut Host, fd: i32, req: u64, arg: i32) -> Result<i32, Errno> {
        let f = self.file(fd)?.clone();
        let slot = match f.kind {
            Kind::Conn(s) | Kind::Fresh(s) => Some(s),
            Kind::Listening(_) => None,
        };
        let clamp = |n: usize| n.min(i32::MAX as usize) as i32;
        match req {
            FIONREAD | SIOCINQ_LINUX => Ok(slot.map_or(0, |s| clamp(h.readable(s)))),
            FIONWRITE | SIOCOUTQ_LINUX => Ok(slot.map_or(0, |s| clamp(h.unacked(s)))),
            FIONSPACE => Ok(slot.map_or(0, |s| clamp(h.send_space(s)))),
            SIOCATMARK | SIOCATMARK_LINUX => Ok(slot.is_some_and(|s| h.at_mark(s)) as i32),
            FIONBIO | FIONBIO_LINUX => {
                self.file_mut(fd)?.nonblock = arg != 0;
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    /// The events of `fd` that are ready now (FreeBSD sopoll_generic): `events` selects
    /// which; POLLHUP and POLLNVAL come regardless.
    pub fn poll_one(&self, h: &Host, fd: i32, events: i16) -> i16 {
        let Ok(f) = self.file(fd) else {
            return POLLNVAL;
        };
        let slot = match f.kind {
            Kind::Listening(lid) => {
                return if h.accept_queue_len(lid) > 0 {
                    events & (POLLIN | POLLRDNORM)
                } else {
                    0
                };
            }
            Kind::Fresh(_) => return 0,
            Kind::Conn(s) => s,
        };
        let Some(tp) = h.tcpcb(slot) else {
            return POLLHUP;
        };
        let dropped = tp.t_state == TcpState::Closed && tp.iss != 0;
        let error = tp.t_softerror != 0 && !f.error_reported;
        let cant_rcv = h.read_closed(slot) || dropped;
        let cant_snd = dropped || tp.t_state.sent_close();
        let connected = tp.t_state.have_established() && !dropped;
        let mut r = 0;
        if h.readable(slot) >= f.rcvlowat.max(1) as usize || error || cant_rcv {
            r |= events & (POLLIN | POLLRDNORM);
        }
        let space = h.send_space(slot) >= f.sndlowat.max(1) as usize;
        if (space && connected) || cant_snd || error {
            r |= events & (POLLOUT | POLLWRNORM);
        }
        if h.at_mark(slot) {
            r |= events & (POLLPRI | POLLRDBAND);
        }
        if events & POLLINIGNEOF == 0 && cant_rcv {
            r |= events & (POLLIN | POLLRDNORM | POLLRDHUP);
            if cant_snd {
                r |= POLLHUP;
            }
        }
        r
    }

    /// poll(2) without waiting: fills each `revents`, returns how many are non-zero.
    pub fn poll(&self, h: &Host, fds: &mut [PollFd]) -> usize {
        let mut n = 0;
        for p in fds.iter_mut() {
            p.revents = if p.fd < 0 {
                0
            } else {
                self.poll_one(h, p.fd, p.events)
            };
            n += usize::from(p.revents != 0);
        }
        n
    }

    /// getsockname(2): the bound or connected local address (the family's wildcard before
    /// bind).
    pub fn getsockname(&self, h: &Host, fd: i32) -> Result<SocketAddr, Errno> {
        let f = self.file(fd)?;
        let a = match f.kind {
            Kind::Fresh(_) => f.bound.unwrap_or_else(|| f.family.wildcard()),
            Kind::Listening(lid) => h.listener_addr(lid).ok_or(Errno::EINVAL)?,
            Kind::Conn(slot) => h.local_addr(slot).ok_or(Errno::EINVAL)?,
        };
        Ok(Self::app_addr(f, a))
    }

    /// getpeername(2): ENOTCONN unless connected.
    pub fn getpeername(&self, h: &Host, fd: i32) -> Result<SocketAddr, Errno> {
        let f = self.file(fd)?;
        match f.kind {
            Kind::Conn(slot) if h.state(slot).is_some_and(|s| s != TcpState::Closed) => {
                Ok(Self::app_addr(f, h.peer_addr(slot).ok_or(Errno::ENOTCONN)?))
            }
            _ => Err(Errno::ENOTCONN),
        }
    }
}
