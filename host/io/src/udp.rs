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
    /// System calls that moved datagrams: sendmmsg and recvmmsg (fewer than datagrams when
    /// batching, UDP_SEGMENT and UDP_GRO work).
    pub send_calls: u64,
    pub recv_calls: u64,
}

/// How the socket waits in `recv`, to skip the system call when it does not change.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    NonBlocking,
    Timeout(Duration),
}

/// Datagrams one recvmmsg takes (each buffer holds the largest datagram, or a UDP_GRO
/// train of them).
const RX_BATCH: usize = 16;
/// Datagram messages one sendmmsg sends.
const TX_BATCH: usize = 64;
/// Bytes queued for sending before the queue is flushed.
const TX_BYTES: usize = 256 * 1024;
const RX_BUF: usize = 65536;
const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// Most datagrams one UDP_SEGMENT send may become (the kernel's UDP_MAX_SEGMENTS).
const UDP_MAX_SEGMENTS: usize = 64;
/// The largest UDP payload over IPv4 (a UDP_SEGMENT train is one until it is cut).
const UDP_MAX_PAYLOAD: usize = 65507;

/// A message waiting in the send queue: `len` bytes of `tx_buf` from `start`, to `to`;
/// with `segment` nonzero, datagrams of that size cut by the kernel (UDP_SEGMENT).
struct TxMsg {
    start: usize,
    len: usize,
    to: SocketAddr,
    segment: u16,
}

/// A message recvmmsg filled: its length, sender, and UDP_GRO datagram size (0: one
/// datagram).
#[derive(Clone, Copy)]
struct RxMsg {
    len: usize,
    from: SocketAddr,
    gro: u16,
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
    /// Datagrams waiting for one sendmmsg ([`PacketIo::flush`]).
    tx_buf: Vec<u8>,
    tx: Vec<TxMsg>,
    /// What the last recvmmsg took, handed out one TCP segment at a time: message
    /// `rx_next` from byte `rx_off`.
    rx_bufs: Vec<Vec<u8>>,
    rx: Vec<RxMsg>,
    rx_next: usize,
    rx_off: usize,
    /// The kernel takes UDP_SEGMENT sends (cleared if one fails with EIO).
    udp_segment: bool,
    /// Hand segments over with their TCP checksum partial (the UDP checksum covered them).
    leave_partial: bool,
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
        // Where the kernel has them: trains of datagrams in (UDP_GRO) and out (UDP_SEGMENT,
        // probed by setting it and taking it back).
        let _ = set_int(&sock, SOL_UDP, UDP_GRO, 1);
        let udp_segment = set_int(&sock, SOL_UDP, UDP_SEGMENT, 1200).is_ok()
            && set_int(&sock, SOL_UDP, UDP_SEGMENT, 0).is_ok();
        UdpIo {
            local_ip,
            sock,
            default_port,
            ports: HashMap::new(),
            mtu,
            wait: None,
            last_from: None,
            tx_buf: Vec::with_capacity(TX_BYTES + RX_BUF + UDP_MAX_SEGMENTS * 60),
            tx: Vec::with_capacity(TX_BATCH),
            rx_bufs: (0..RX_BATCH).map(|_| vec![0; RX_BUF]).collect(),
            rx: Vec::with_capacity(RX_BATCH),
            rx_next: 0,
            rx_off: 0,
            udp_segment,
            leave_partial: false,
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
    set_int(&sock, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
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

/// setsockopt of an int.
fn set_int(
    sock: &UdpSocket,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: an int option from a live variable.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The address in a sockaddr the kernel filled.
fn socket_addr_from(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in, which the storage can hold.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::from((
                sin.sin_addr.s_addr.to_ne_bytes(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Control-message room for one int (UDP_GRO in, UDP_SEGMENT out), aligned for cmsghdr.
type Cmsg = [u64; 4];

impl UdpIo {
    /// The UDP port the segment's peer is reached at, if known.
    fn peer_port(&self, dst: IpAddr, tcp: &[u8]) -> Option<u16> {
        let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
        self.ports.get(&(dst, dport)).copied().or(self.default_port)
    }

    /// Makes room for `bytes` more in the send queue (and a message), flushing if needed.
    fn reserve_tx(&mut self, bytes: usize, msgs: usize) -> io::Result<()> {
        if self.tx_buf.len() + bytes > self.tx_buf.capacity() || self.tx.len() + msgs > TX_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Queues `tcp` for `to`: its checksum field zero, the UDP checksum covers it.
    fn queue(&mut self, tcp: &[u8], to: SocketAddr) {
        let start = self.tx_buf.len();
        self.tx_buf.extend_from_slice(tcp);
        self.tx_buf[start + 16..start + 18].fill(0);
        self.tx.push(TxMsg {
            start,
            len: tcp.len(),
            to,
            segment: 0,
        });
    }

    /// One sendmmsg of queued messages from `first`: how many went (0 after an error that
    /// dropped them, as a full device queue drops).
    fn send_some(&mut self, first: usize) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let msgs = &self.tx[first..(first + TX_BATCH).min(self.tx.len())];
        let n = msgs.len();
        // SAFETY: plain data, valid all zero.
        let mut hdrs: [libc::mmsghdr; TX_BATCH] = unsafe { std::mem::zeroed() };
        let mut names: [(libc::sockaddr_storage, libc::socklen_t); TX_BATCH] =
            // SAFETY: as above.
            unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; TX_BATCH] = unsafe { std::mem::zeroed() };
        let mut ctrl: [Cmsg; TX_BATCH] = [[0; 4]; TX_BATCH];
        for (i, m) in msgs.iter().enumerate() {
            names[i] = sockaddr_of(m.to);
            iovs[i] = libc::iovec {
                iov_base: self.tx_buf[m.start..].as_ptr() as *mut libc::c_void,
                iov_len: m.len,
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&mut names[i].0 as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = names[i].1;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            if m.segment != 0 {
                // SAFETY: CMSG_* walk a control buffer we own, sized for one u16 option.
                unsafe {
                    h.msg_control = ctrl[i].as_mut_ptr().cast();
                    h.msg_controllen = libc::CMSG_SPACE(2) as _;
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), m.segment);
                }
            }
        }
        // SAFETY: `n` headers over live buffers; the kernel only reads them.
        let r = unsafe { libc::sendmmsg(self.sock.as_raw_fd(), hdrs.as_mut_ptr(), n as u32, 0) };
        self.stats.send_calls += 1;
        if r > 0 {
            for m in &msgs[..r as usize] {
                self.stats.sent += match m.segment {
                    0 => 1,
                    s => m.len.div_ceil(usize::from(s)) as u64,
                };
            }
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // A full socket buffer: the rest is dropped, as a full device queue drops.
            Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => Ok(n),
            // An ICMP error from an earlier datagram, reported here: this one is lost.
            Some(libc::ECONNREFUSED) | Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) => Ok(1),
            // Larger than the route takes: lost, as on a link with a smaller MTU.
            Some(libc::EMSGSIZE) => Ok(1),
            // The route cannot take UDP_SEGMENT (no checksum offload): that train is lost,
            // later ones are sent datagram by datagram.
            Some(libc::EIO) if msgs[0].segment != 0 => {
                self.udp_segment = false;
                Ok(1)
            }
            _ => Err(e),
        }
    }

    /// The next TCP segment of what the last recvmmsg took, wrapped into `buf` as an IP
    /// packet; `None` when all is handed out.
    fn next_segment(&mut self, buf: &mut [u8]) -> Option<usize> {
        while self.rx_next < self.rx.len() {
            let m = self.rx[self.rx_next];
            let left = m.len - self.rx_off;
            let take = match m.gro {
                0 => left,
                g => left.min(usize::from(g)),
            };
            let seg = &self.rx_bufs[self.rx_next][self.rx_off..self.rx_off + take];
            self.rx_off += take;
            if self.rx_off >= m.len {
                self.rx_next += 1;
                self.rx_off = 0;
            }
            if take < 20 || m.from.is_ipv4() != self.local_ip.is_ipv4() {
                self.stats.malformed += 1;
                continue;
            }
            let sport = u16::from_be_bytes([seg[0], seg[1]]);
            let wrapped = if self.leave_partial {
                wire::wrap_tcp_partial(buf, m.from.ip(), self.local_ip, seg)
            } else {
                wire::wrap_tcp(buf, m.from.ip(), self.local_ip, seg)
            };
            let Ok(len) = wrapped else {
                self.stats.malformed += 1;
                continue;
            };
            self.stats.received += 1;
            self.last_from = Some(m.from.port());
            self.remember_port(m.from.ip(), sport, m.from.port());
            return Some(len);
        }
        None
    }

    /// One recvmmsg (waiting as `set_wait` said for the first datagram): Ok(false) when
    /// nothing came.
    fn receive_batch(&mut self) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        // SAFETY: plain data, valid all zero.
        let mut hdrs: [libc::mmsghdr; RX_BATCH] = unsafe { std::mem::zeroed() };
        let mut names: [libc::sockaddr_storage; RX_BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; RX_BATCH] = unsafe { std::mem::zeroed() };
        let mut ctrl: [Cmsg; RX_BATCH] = [[0; 4]; RX_BATCH];
        for i in 0..RX_BATCH {
            iovs[i] = libc::iovec {
                iov_base: self.rx_bufs[i].as_mut_ptr().cast(),
                iov_len: RX_BUF,
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of::<Cmsg>() as _;
        }
        // SAFETY: RX_BATCH headers over live buffers the kernel may fill.
        let r = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                RX_BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        self.stats.recv_calls += 1;
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                // (Interrupted: a signal, such as the SIGTERM that stops `serve`.)
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(false),
                // A port-unreachable answer to an earlier datagram (Linux reports it here).
                io::ErrorKind::ConnectionRefused => Ok(true),
                _ => Err(e),
            };
        }
        self.rx.clear();
        self.rx_next = 0;
        self.rx_off = 0;
        for (i, h) in hdrs[..r as usize].iter().enumerate() {
            let Some(from) = socket_addr_from(&names[i]) else {
                self.stats.malformed += 1;
                continue;
            };
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.stats.malformed += 1;
                continue;
            }
            let mut gro = 0u16;
            // SAFETY: CMSG_* walk the control buffer the kernel filled for this message.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                while !c.is_null() {
                    if (*c).cmsg_level == SOL_UDP && (*c).cmsg_type == UDP_GRO {
                        let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                        gro = u16::try_from(v).unwrap_or(0);
                    }
                    c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
                }
            }
            self.rx.push(RxMsg {
                len: h.msg_len as usize,
                from,
                gro,
            });
        }
        Ok(true)
    }
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
        let Some(port) = self.peer_port(dst, seg) else {
            // No encapsulation port known for this peer: like a route that is not there.
            return Ok(());
        };
        self.reserve_tx(seg.len(), 1)?;
        self.queue(seg, (dst, port).into());
        Ok(())
    }

    /// The UDP backend cuts super-packets itself (into whole TCP segments, one datagram
    /// each) and sends each train with one UDP_SEGMENT message where the kernel has it.
    fn gso_max(&self) -> u32 {
        u16::MAX as u32
    }

    fn send_gso(&mut self, pkt: &[u8], gso_size: u16) -> io::Result<()> {
        let Some((_, dst, seg)) = wire::tcp_segment(pkt) else {
            return Ok(());
        };
        let th_len = usize::from(seg.get(12).map_or(0, |b| b >> 4)) * 4;
        if seg.len() < 20 || th_len < 20 || th_len > seg.len() || gso_size == 0 {
            return Ok(());
        }
        let Some(port) = self.peer_port(dst, seg) else {
            return Ok(());
        };
        let to = SocketAddr::from((dst, port));
        let (hdr, payload) = seg.split_at(th_len);
        let seq = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        let gso = usize::from(gso_size);
        let segments = payload.len().div_ceil(gso).max(1);
        let mut first = 0;
        while first < segments {
            // A train is one UDP datagram to the kernel until it cuts it: 64 KiB at most.
            let per_train = (UDP_MAX_PAYLOAD / (th_len + gso)).clamp(1, UDP_MAX_SEGMENTS);
            let train = (segments - first).min(per_train);
            let from = first * gso;
            let to_byte = ((first + train) * gso).min(payload.len());
            let bytes = (to_byte - from) + train * th_len;
            self.reserve_tx(bytes, train)?;
            let start = self.tx_buf.len();
            for k in first..first + train {
                let chunk = &payload[k * gso..((k + 1) * gso).min(payload.len())];
                let at = self.tx_buf.len();
                self.tx_buf.extend_from_slice(hdr);
                self.tx_buf.extend_from_slice(chunk);
                let h = &mut self.tx_buf[at..at + th_len];
                h[4..8].copy_from_slice(&seq.wrapping_add((k * gso) as u32).to_be_bytes());
                // PSH and FIN belong to the last segment of the super-packet only.
                if k + 1 < segments {
                    h[13] &= !(0x01 | 0x08);
                }
                h[16..18].fill(0);
                if !self.udp_segment || train == 1 {
                    self.tx.push(TxMsg {
                        start: at,
                        len: th_len + chunk.len(),
                        to,
                        segment: 0,
                    });
                }
            }
            if self.udp_segment && train > 1 {
                self.tx.push(TxMsg {
                    start,
                    len: bytes,
                    to,
                    segment: (th_len + gso) as u16,
                });
            }
            first += train;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut done = 0;
        let result = loop {
            if done >= self.tx.len() {
                break Ok(());
            }
            match self.send_some(done) {
                Ok(0) => break Ok(()),
                Ok(k) => done += k,
                Err(e) => break Err(e),
            }
        };
        self.tx.clear();
        self.tx_buf.clear();
        result
    }

    fn recv(&mut self, buf: &mut [u8], wait: Option<Duration>) -> io::Result<Option<usize>> {
        if let Some(n) = self.next_segment(buf) {
            return Ok(Some(n));
        }
        match wait {
            Some(d) if !d.is_zero() => self.set_wait(Wait::Timeout(d))?,
            _ => self.set_wait(Wait::NonBlocking)?,
        }
        // A refused earlier datagram is reported once; then read again.
        for _ in 0..2 {
            if !self.receive_batch()? {
                return Ok(None);
            }
            if let Some(n) = self.next_segment(buf) {
                return Ok(Some(n));
            }
            self.set_wait(Wait::NonBlocking)?;
        }
        Ok(None)
    }

    fn leave_partial_checksums(&mut self) -> bool {
        self.leave_partial = true;
        true
    }

    /// Every segment this backend hands over: the UDP checksum covered it.
    fn rx_partial_checksum(&self) -> Option<(u16, u16)> {
        self.leave_partial.then_some(if self.local_ip.is_ipv4() {
            (20, 16)
        } else {
            (40, 16)
        })
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
