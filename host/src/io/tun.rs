//! The `tun` backend: a Linux TUN device (IFF_TUN, IFF_NO_PI), so that the kernel's own TCP
//! and its clients (curl, iperf3, nc) are real peers. IPv4 and IPv6; the MTU is the
//! device's. Anything that is not an IP packet is counted and dropped.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::io::driver::PacketIo;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// What the device handed over that was not an IP packet, and what went each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunStats {
    pub sent: u64,
    pub received: u64,
    pub malformed: u64,
}

pub struct TunIo {
    fd: OwnedFd,
    name: String,
    mtu: u32,
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
        req.data[..2].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which IfReq lays out.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            return Err(explain(io::Error::last_os_error(), "TUNSETIFF"));
        }
        // SAFETY: the kernel NUL-terminates the name it writes back.
        let name = unsafe { CStr::from_ptr(req.name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let mtu = device_mtu(&name)?;
        Ok(TunIo {
            fd,
            name,
            mtu,
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

impl PacketIo for TunIo {
    fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
        // SAFETY: writes `pkt.len()` bytes from a valid slice.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            // A full device queue drops the packet, as a NIC's would.
            if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS) {
                return Ok(());
            }
            return Err(e);
        }
        self.stats.sent += 1;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], wait: Option<Duration>) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: reads at most `buf.len()` bytes into a valid slice.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                let n = n as usize;
                if n == 0 || !matches!(buf[0] >> 4, 4 | 6) {
                    self.stats.malformed += 1;
                    continue;
                }
                self.stats.received += 1;
                return Ok(Some(n));
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(None);
            }
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
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
            // Readable: read once more, and do not wait again.
            return match unsafe {
                // SAFETY: as above.
                libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
            } {
                n if n > 0 && matches!(buf[0] >> 4, 4 | 6) => {
                    self.stats.received += 1;
                    Ok(Some(n as usize))
                }
                n if n >= 0 => {
                    self.stats.malformed += 1;
                    Ok(None)
                }
                _ => Ok(None),
            };
        }
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }
}
