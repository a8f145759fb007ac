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
        let sock = UdpSocket::bind(local)?;
        Ok(UdpIo {
            local_ip: local.ip(),
            sock,
            default_port,
            ports: HashMap::new(),
            mtu,
            wait: None,
            out: vec![0; 65536],
            datagram: vec![0; 65536],
            stats: UdpStats::default(),
        })
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
            self.ports.insert((from.ip(), sport), from.port());
            match wire::wrap_tcp(buf, from.ip(), self.local_ip, seg) {
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
            self.ports
                .insert((dst, u16::from_be_bytes([seg[2], seg[3]])), port);
        }
    }
}
