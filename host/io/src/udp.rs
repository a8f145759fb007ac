//! The `udp` backend: TCP over UDP as FreeBSD does it (RFC 6951's encapsulation, applied to
//! TCP: `udp_tunneling_port`, `TCP_REMOTE_UDP_ENCAPS_PORT`). Each TCP segment travels as
//! the payload of one UDP datagram, without its IP header; its checksum field is zero on
//! the wire, the UDP checksum covering it instead. Two plugtcp hosts talk over 127.0.0.1
//! this way with no privileges.
//!
//! The remote UDP port of a connection is its TCP_REMOTE_UDP_ENCAPS_PORT when set, else
//! learned from what arrives (a passive open answers where the SYN came from), else the
//! default remote encapsulation port given at setup.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::driver::PacketIo;
use plugtcp_host::wire;

/// What the backend did with datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpStats {
    pub sent: u64,
    pub received: u64,
    /// Datagrams too short to hold a TCP header, or from another address family: dropped.
    pub malformed: u64,
}

/// How the socket waits in `recv`, to skip the system call when it does not change.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    NonBlocking,
    Timeout(Duration),
}

pub struct UdpIo {
    sock: UdpSocket,
    local_ip: IpAddr,
    default_port: Option<u16>,
    /// (peer address, peer TCP port) -> the peer's UDP port.
    ports: HashMap<(IpAddr, u16), u16>,
    mtu: u32,
    wait: Option<Wait>,
    /// The UDP port the last datagram came from.
    last_from: Option<u16>,
    out: Vec<u8>,
    datagram: Vec<u8>,
    pub stats: UdpStats,
}

impl UdpIo {
    /// Binds the local encapsulation port `local` (a specific address: it is the hosts' IP
    /// address too). `default_port` is the remote encapsulation port for connections this
    /// host opens; `mtu` the size of the IP packets carried (the datagram is the TCP
    /// segment, 20 or 40 bytes less).
    pub fn bind(local: SocketAddr, default_port: Option<u16>, mtu: u32) -> io::Result<Self> {
        if local.ip().is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the udp backend needs a specific local address",
            ));
        }
        Ok(Self::with_socket(
            UdpSocket::bind(local)?,
            default_port,
            mtu,
        ))
    }

    fn with_socket(sock: UdpSocket, default_port: Option<u16>, mtu: u32) -> Self {
        // A bound socket knows its address; the fallback is never used.
        let local_ip = sock
            .local_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        UdpIo {
            local_ip,
            sock,
            default_port,
            ports: HashMap::new(),
            mtu,
            wait: None,
            last_from: None,
            out: vec![0; 65536],
            datagram: vec![0; 65536],
            stats: UdpStats::default(),
        }
    }

    /// One socket per shard on the same local port (a `SO_REUSEPORT` group), with a
    /// classic BPF program that picks the socket of the TCP flow's owning shard
    /// ([`plugtcp_host::steer::shard_of`] on the TCP ports at the start of the payload), so
    /// the kernel steers every segment to its shard. `shards == 1` is [`UdpIo::bind`].
    pub fn bind_group(
        local: SocketAddr,
        default_port: Option<u16>,
        mtu: u32,
        shards: usize,
    ) -> io::Result<Vec<Self>> {
        if shards <= 1 {
            return Ok(vec![Self::bind(local, default_port, mtu)?]);
        }
        if local.ip().is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the udp backend needs a specific local address",
            ));
        }
        let mut addr = local;
        let mut group = Vec::with_capacity(shards);
        for i in 0..shards {
            let sock = reuseport_socket(addr)?;
            if i == 0 {
                attach_steering(&sock, shards)?;
                addr = sock.local_addr()?;
            }
            group.push(Self::with_socket(sock, default_port, mtu));
        }
        Ok(group)
    }

    /// The bound local encapsulation port.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    fn set_wait(&mut self, w: Wait) -> io::Result<()> {
        if self.wait == Some(w) {
            return Ok(());
        }
        match w {
            Wait::NonBlocking => self.sock.set_nonblocking(true)?,
            Wait::Timeout(d) => {
                if self.wait == Some(Wait::NonBlocking) || self.wait.is_none() {
                    self.sock.set_nonblocking(false)?;
                }
                self.sock.set_read_timeout(Some(d))?;
            }
        }
        self.wait = Some(w);
        Ok(())
    }
}

/// Most peers (address, TCP port) whose UDP port is remembered: the map is filled from
/// the wire, so it is bounded; past this it starts again (a live connection's next
/// datagram teaches its port anew).
const MAX_PORTS: usize = 1 << 16;

impl UdpIo {
    fn remember_port(&mut self, ip: IpAddr, tcp_port: u16, udp_port: u16) {
        if self.ports.len() >= MAX_PORTS && !self.ports.contains_key(&(ip, tcp_port)) {
            self.ports.clear();
        }
        self.ports.insert((ip, tcp_port), udp_port);
    }
}

/// A UDP socket bound to `addr` with SO_REUSEPORT (set before bind, as the kernel wants).
fn reuseport_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    use std::os::fd::FromRawFd;
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) arguments.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else; UdpSocket closes it.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: an int option from a live variable.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let (storage, len) = sockaddr_of(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes for the socket's family.
    if unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, valid all zero.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// SO_ATTACH_REUSEPORT_CBPF (not in every libc).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// The group's steering: [`plugtcp_host::steer::shard_of`] of the TCP source and
/// destination ports, computed on the datagram's payload (the kernel runs the program with the UDP header
/// pulled off, so offset 0 is the TCP header).
fn attach_steering(sock: &UdpSocket, shards: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let op = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let prog = [
        op(0x20, 0),             // ld [0]       A = sport << 16 | dport
        op(0x07, 0),             // tax          X = A
        op(0x54, 0xffff),        // and #0xffff  A = dport
        op(0x02, 0),             // st M[0]
        op(0x87, 0),             // txa
        op(0x74, 16),            // rsh #16      A = sport
        op(0x61, 0),             // ldx M[0]     X = dport
        op(0x0c, 0),             // add x
        op(0x24, 0x9e37_79b1),   // mul #0x9e3779b1 (steer::shard_of's spreading)
        op(0x74, 16),            // rsh #16
        op(0x94, shards as u32), // mod #shards
        op(0x16, 0),             // ret a
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: a sock_fprog over a live program; the kernel copies it.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl PacketIo for UdpIo {
    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.sock.as_raw_fd())
    }

    fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
        let Some((_, dst, seg)) = wire::tcp_segment(pkt) else {
            return Ok(());
        };
        if seg.len() < 20 {
            return Ok(());
        }
        let dport = u16::from_be_bytes([seg[2], seg[3]]);
        let Some(port) = self.ports.get(&(dst, dport)).copied().or(self.default_port) else {
            // No encapsulation port known for this peer: like a route that is not there.
            return Ok(());
        };
        let out = &mut self.out[..seg.len()];
        out.copy_from_slice(seg);
        out[16..18].fill(0);
        match self.sock.send_to(out, (dst, port)) {
            Ok(_) => {
                self.stats.sent += 1;
                Ok(())
            }
            // A full socket buffer drops the packet, as a full device queue would.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn recv(&mut self, buf: &mut [u8], wait: Option<Duration>) -> io::Result<Option<usize>> {
        match wait {
            Some(d) if !d.is_zero() => self.set_wait(Wait::Timeout(d))?,
            _ => self.set_wait(Wait::NonBlocking)?,
        }
        loop {
            let (n, from) = match self.sock.recv_from(&mut self.datagram) {
                Ok(r) => r,
                // (Interrupted: a signal, such as the SIGTERM that stops `serve`.)
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    return Ok(None)
                }
                // A port-unreachable answer to an earlier datagram (Linux reports it here).
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            let seg = &self.datagram[..n];
            if n < 20 || from.is_ipv4() != self.local_ip.is_ipv4() {
                self.stats.malformed += 1;
                continue;
            }
            self.stats.received += 1;
            let sport = u16::from_be_bytes([seg[0], seg[1]]);
            self.last_from = Some(from.port());
            let wrapped = wire::wrap_tcp(buf, from.ip(), self.local_ip, seg);
            self.remember_port(from.ip(), sport, from.port());
            match wrapped {
                Ok(len) => return Ok(Some(len)),
                Err(_) => {
                    self.stats.malformed += 1;
                    continue;
                }
            }
        }
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    /// A connection's TCP_REMOTE_UDP_ENCAPS_PORT: its peer is reached there from now on.
    fn encapsulation_port(&mut self, pkt: &[u8], port: u16) {
        if let Some((_, dst, seg)) = wire::tcp_segment(pkt).filter(|(_, _, s)| s.len() >= 4) {
            self.remember_port(dst, u16::from_be_bytes([seg[2], seg[3]]), port);
        }
    }

    fn arrival_port(&self) -> Option<u16> {
        self.last_from
    }

    fn learn_port(&mut self, pkt: &[u8], port: u16) {
        if let Some((src, _, seg)) = wire::tcp_segment(pkt).filter(|(_, _, s)| s.len() >= 4) {
            self.remember_port(src, u16::from_be_bytes([seg[0], seg[1]]), port);
        }
    }
}
