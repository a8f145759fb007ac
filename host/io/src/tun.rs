//! The `tun` backend: a Linux TUN device (IFF_TUN, IFF_NO_PI), so that the kernel's own TCP
//! and its clients (curl, iperf3, nc) are real peers. IPv4 and IPv6; the MTU is the
//! device's. Anything that is not an IP packet is counted and dropped.
//!
//! With IFF_VNET_HDR each packet comes with a virtio-net header, and the device is told
//! (TUNSETOFFLOAD) that we take checksum and TSO offloads: the kernel then hands over TCP
//! super-packets of up to 64 KiB (GSO) with partial checksums, which this backend
//! completes; the host takes a super-packet as one segment, as it would an LRO merge.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::driver::PacketIo;
use plugtcp_host::wire;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
/// struct virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset.
const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;

/// What the device handed over that was not an IP packet, and what went each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunStats {
    pub sent: u64,
    pub received: u64,
    pub malformed: u64,
    /// Super-packets (GSO) received, and partial checksums completed (IFF_VNET_HDR).
    pub gso: u64,
    pub csum_completed: u64,
    /// Super-packets written for the kernel to cut (GSO on transmit).
    pub gso_sent: u64,
}

pub struct TunIo {
    fd: OwnedFd,
    name: String,
    mtu: u32,
    vnet_hdr: bool,
    /// Leave NEEDS_CSUM checksums partial (see `PacketIo::leave_partial_checksums`).
    leave_partial: bool,
    /// Where the last packet read has its partial checksum, when left so.
    partial: Option<(u16, u16)>,
    pub stats: TunStats,
}

/// `struct ifreq` with the fields this module uses.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    /// ifr_flags or ifr_mtu, then padding to the union's size.
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<Self> {
        if name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}"),
            ));
        }
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        for (d, s) in r.name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        Ok(r)
    }
}

impl TunIo {
    /// Opens (creating it if needed) TUN device `name` in this thread's network namespace.
    /// Needs CAP_NET_ADMIN; without it the error says so.
    pub fn open(name: &str) -> io::Result<Self> {
        Self::open_with(name, false)
    }

    /// As [`TunIo::open`]; with `vnet_hdr`, takes the kernel's checksum and TSO offloads.
    pub fn open_with(name: &str, vnet_hdr: bool) -> io::Result<Self> {
        Self::open_queue(name, vnet_hdr, false)
    }

    /// `queues` queues of one multi-queue device (IFF_MULTI_QUEUE), one per shard. The
    /// kernel sends a flow's packets to the queue that last wrote one of the flow's
    /// packets (its flow table), and a new flow's by hash; the runtime hands what lands
    /// on the wrong queue to the right shard. One queue is an ordinary device.
    pub fn open_queues(name: &str, queues: usize, vnet_hdr: bool) -> io::Result<Vec<Self>> {
        if queues <= 1 {
            return Ok(vec![Self::open_with(name, vnet_hdr)?]);
        }
        let first = match Self::open_queue(name, vnet_hdr, true) {
            Ok(t) => t,
            // A device made earlier without multi_queue takes one queue only: one shard.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                let one = Self::open_with(name, vnet_hdr)?;
                eprintln!(
                    "plugtcp: tun {}: not a multi-queue device (`ip tuntap add ... \
                     multi_queue` makes one): running one shard",
                    one.name
                );
                return Ok(vec![one]);
            }
            Err(e) => return Err(e),
        };
        let name = first.name.clone();
        let mut all = vec![first];
        for _ in 1..queues {
            all.push(Self::open_queue(&name, vnet_hdr, true)?);
        }
        Ok(all)
    }

    fn open_queue(name: &str, vnet_hdr: bool, multi_queue: bool) -> io::Result<Self> {
        // SAFETY: a NUL-terminated path and plain flags.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(explain(io::Error::last_os_error(), "open /dev/net/tun"));
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = IfReq::new(name)?;
        let flags = IFF_TUN
            | IFF_NO_PI
            | if vnet_hdr { IFF_VNET_HDR } else { 0 }
            | if multi_queue { IFF_MULTI_QUEUE } else { 0 };
        req.data[..2].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which IfReq lays out.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            return Err(explain(io::Error::last_os_error(), "TUNSETIFF"));
        }
        // SAFETY: the kernel NUL-terminates the name it writes back.
        let name = unsafe { CStr::from_ptr(req.name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        if vnet_hdr {
            let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
            // SAFETY: TUNSETOFFLOAD takes the flags by value.
            if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, offloads as libc::c_ulong) } < 0
            {
                return Err(explain(io::Error::last_os_error(), "TUNSETOFFLOAD"));
            }
        }
        let mtu = device_mtu(&name)?;
        Ok(TunIo {
            fd,
            name,
            mtu,
            vnet_hdr,
            leave_partial: false,
            partial: None,
            stats: TunStats::default(),
        })
    }

    /// The device's name (the kernel may have picked it from a pattern such as `tun%d`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the MTU again (after `ip link set ... mtu`).
    pub fn refresh_mtu(&mut self) -> io::Result<u32> {
        self.mtu = device_mtu(&self.name)?;
        Ok(self.mtu)
    }
}

/// A privilege error says which privilege, in one line.
fn explain(e: io::Error, what: &str) -> io::Error {
    if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EACCES) {
        io::Error::new(
            e.kind(),
            format!("{what}: {e} (a TUN device needs CAP_NET_ADMIN: run as root or grant it)"),
        )
    } else {
        io::Error::new(e.kind(), format!("{what}: {e}"))
    }
}

/// SIOCGIFMTU on a throwaway socket.
fn device_mtu(name: &str) -> io::Result<u32> {
    // SAFETY: plain socket(2) arguments.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` was just opened and is owned by nothing else.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    let mut req = IfReq::new(name)?;
    // SAFETY: SIOCGIFMTU fills ifr_mtu in a `struct ifreq`.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFMTU, &mut req) } < 0 {
        return Err(explain(io::Error::last_os_error(), "SIOCGIFMTU"));
    }
    let mtu = i32::from_ne_bytes([req.data[0], req.data[1], req.data[2], req.data[3]]);
    Ok(mtu.max(68) as u32)
}

/// The virtio-net header of a TCP super-packet for the kernel to cut into packets of
/// `gso_size` payload bytes (GSO), its TCP checksum partial (NEEDS_CSUM); `None` if `pkt`
/// is not a TCP packet with whole headers.
fn gso_header(pkt: &[u8], gso_size: u16) -> Option<[u8; VNET_HDR_LEN]> {
    const GSO_TCPV4: u8 = 1;
    const GSO_TCPV6: u8 = 4;
    const IPPROTO_TCP: u8 = 6;
    let (ip_hlen, gso_type) = match pkt.first()? >> 4 {
        4 if pkt.get(9) == Some(&IPPROTO_TCP) => (usize::from(pkt[0] & 0x0f) * 4, GSO_TCPV4),
        6 if pkt.get(6) == Some(&IPPROTO_TCP) => (40, GSO_TCPV6),
        _ => return None,
    };
    let th_len = usize::from(pkt.get(ip_hlen + 12)? >> 4) * 4;
    let hdr_len = u16::try_from(ip_hlen + th_len).ok()?;
    if usize::from(hdr_len) > pkt.len() || gso_size == 0 {
        return None;
    }
    let mut h = [0u8; VNET_HDR_LEN];
    h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h[1] = gso_type;
    // The device's byte order: native (legacy virtio-net, TUNSETVNETLE unset).
    h[2..4].copy_from_slice(&hdr_len.to_ne_bytes());
    h[4..6].copy_from_slice(&gso_size.to_ne_bytes());
    h[6..8].copy_from_slice(&(ip_hlen as u16).to_ne_bytes());
    // The TCP checksum's offset within the TCP header.
    h[8..10].copy_from_slice(&16u16.to_ne_bytes());
    Some(h)
}

/// Whether a partial checksum at (`start`, `offset`) is the TCP checksum of `pkt` (the only
/// one the host can take unverified).
fn is_tcp_checksum(pkt: &[u8], start: u16, offset: u16) -> bool {
    const IPPROTO_TCP: u8 = 6;
    let ip_hlen = match pkt[0] >> 4 {
        4 if pkt.get(9) == Some(&IPPROTO_TCP) => usize::from(pkt[0] & 0x0f) * 4,
        6 if pkt.get(6) == Some(&IPPROTO_TCP) => 40,
        _ => return false,
    };
    usize::from(start) == ip_hlen && offset == 16
}

impl TunIo {
    /// Writes one packet, after its virtio-net header `hdr` on an IFF_VNET_HDR device.
    fn write_packet(&mut self, hdr: &[u8; VNET_HDR_LEN], pkt: &[u8]) -> io::Result<()> {
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: VNET_HDR_LEN,
            },
            libc::iovec {
                iov_base: pkt.as_ptr() as *mut libc::c_void,
                iov_len: pkt.len(),
            },
        ];
        let skip = usize::from(!self.vnet_hdr);
        // SAFETY: valid iovecs over live buffers; the device only reads them.
        let n =
            unsafe { libc::writev(self.fd.as_raw_fd(), iov[skip..].as_ptr(), (2 - skip) as i32) };
        if n < 0 {
            let e = io::Error::last_os_error();
            // A full device queue drops the packet, as a NIC's would.
            // EIO: the link is down (not yet up, or set down): dropped, as a NIC without
            // carrier drops, until someone brings it up.
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) || matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EIO))
            {
                return Ok(());
            }
            return Err(e);
        }
        self.stats.sent += 1;
        Ok(())
    }

    /// One read: the packet into `buf` (its virtio-net header, if any, taken off and
    /// acted on). Ok(None) when nothing is there.
    fn read_one(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let n = if self.vnet_hdr {
            let iov = [
                libc::iovec {
                    iov_base: hdr.as_mut_ptr().cast(),
                    iov_len: VNET_HDR_LEN,
                },
                libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                },
            ];
            // SAFETY: two valid iovecs over live buffers.
            let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
            if n < 0 {
                n
            } else {
                n - VNET_HDR_LEN as isize
            }
        } else {
            // SAFETY: reads at most `buf.len()` bytes into a valid slice.
            unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let n = n as usize;
        if n == 0 || !matches!(buf[0] >> 4, 4 | 6) {
            self.stats.malformed += 1;
            return self.read_one(buf);
        }
        if self.vnet_hdr {
            if hdr[1] != 0 {
                self.stats.gso += 1;
            }
            self.partial = None;
            if hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
                let start = u16::from_ne_bytes([hdr[6], hdr[7]]);
                let offset = u16::from_ne_bytes([hdr[8], hdr[9]]);
                let field = usize::from(start) + usize::from(offset);
                if self.leave_partial && field + 2 <= n && is_tcp_checksum(&buf[..n], start, offset)
                {
                    self.partial = Some((start, offset));
                    self.stats.received += 1;
                    return Ok(Some(n));
                }
                if !wire::complete_checksum(&mut buf[..n], start.into(), offset.into()) {
                    self.stats.malformed += 1;
                    return self.read_one(buf);
                }
                self.stats.csum_completed += 1;
            }
        }
        self.stats.received += 1;
        Ok(Some(n))
    }
}

impl PacketIo for TunIo {
    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
        // With IFF_VNET_HDR, an all-zero header: a whole packet, checksums done.
        self.write_packet(&[0u8; VNET_HDR_LEN], pkt)
    }

    fn leave_partial_checksums(&mut self) -> bool {
        self.leave_partial = self.vnet_hdr;
        self.leave_partial
    }

    fn rx_partial_checksum(&self) -> Option<(u16, u16)> {
        self.partial
    }

    fn gso_max(&self) -> u32 {
        if self.vnet_hdr {
            u16::MAX as u32
        } else {
            0
        }
    }

    fn send_gso(&mut self, pkt: &[u8], gso_size: u16) -> io::Result<()> {
        let Some(hdr) = gso_header(pkt, gso_size) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a TCP packet the device can cut",
            ));
        };
        if !self.vnet_hdr {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "super-packets need IFF_VNET_HDR",
            ));
        }
        self.write_packet(&hdr, pkt)?;
        self.stats.gso_sent += 1;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], wait: Option<Duration>) -> io::Result<Option<usize>> {
        if let Some(n) = self.read_one(buf)? {
            return Ok(Some(n));
        }
        let Some(d) = wait.filter(|d| !d.is_zero()) else {
            return Ok(None);
        };
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = d.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(None);
        }
        self.read_one(buf)
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The virtio-net header of a super-packet: TCPv4 or TCPv6 GSO, headers' length with
    /// the TCP options, the checksum to complete from the TCP header's start at offset 16.
    #[test]
    fn gso_header_describes_the_super_packet() {
        let mut v4 = vec![0u8; 20 + 32 + 3000];
        v4[0] = 0x45;
        v4[9] = 6;
        v4[20 + 12] = 8 << 4; // 32 bytes of TCP header
        let h = gso_header(&v4, 1448).unwrap();
        let word = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
        assert_eq!((h[0], h[1]), (VIRTIO_NET_HDR_F_NEEDS_CSUM, 1));
        assert_eq!((word(2), word(4), word(6), word(8)), (52, 1448, 20, 16));
        let mut v6 = vec![0u8; 40 + 20 + 3000];
        v6[0] = 0x60;
        v6[6] = 6;
        v6[40 + 12] = 5 << 4;
        let h = gso_header(&v6, 1440).unwrap();
        let word = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
        assert_eq!(h[1], 4);
        assert_eq!((word(2), word(4), word(6)), (60, 1440, 40));
        // Not TCP, truncated, or no segment size: nothing to cut.
        v4[9] = 17;
        assert!(gso_header(&v4, 1448).is_none());
        assert!(gso_header(&v6[..50], 1440).is_none());
        assert!(gso_header(&v6, 0).is_none());
    }
}
