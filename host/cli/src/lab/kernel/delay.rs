//! Delay lines: propagation delay, jitter and random loss in userspace, on TUN devices in
//! the router namespaces.
//!
//! Why not netem: kernels built without `CONFIG_NET_SCH_NETEM` (this project's CI VMs among
//! them) have no delay qdisc at all, and netem stacked with a shaping qdisc needs care
//! anyway (netem under htb or tbf releases packets in bursts, and netem's own `rate` is no
//! real queue). So the kernel only queues and shapes (htb and the AQM under it), and the
//! delay is a TUN device the router routes the traffic of one direction through: this
//! process reads each packet, holds it for the link's delay (plus jitter, plus the flow's
//! access delay on the first link) and writes it back, and policy routing sends what comes
//! out of the TUN device on toward the next router. A packet crosses its link's delay line
//! just before its link's queue; for a constant delay the order of a delay and a queue does
//! not change what the queue sees, with jitter it is as a jittery access link would be.
//! The TUN device has no offloads, so the kernel also cuts TSO/GSO super-packets into MTU
//! packets here, and the queue behind counts real packets.
//!
//! Cost: two syscalls per packet in one thread; fine to a few hundred Mbit/s.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::plan::sender_table;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// One direction of one link (or a flow's access delay folded into the first link's).
#[derive(Clone, Debug)]
pub struct LineSpec {
    /// The namespace and the TUN device's name in it.
    pub ns: String,
    pub dev: String,
    pub delay_ns: u64,
    /// Extra delay drawn uniformly from [0, jitter] (never reordering).
    pub jitter_ns: u64,
    /// Probability that a packet is lost here.
    pub loss: f64,
    /// Extra delay per `[[flow]]` table, found by the sender's address: the packet's source
    /// (`by_dst` false: the forward direction) or its destination (reverse).
    pub per_table_ns: Vec<u64>,
    pub by_dst: bool,
    pub seed: u64,
}

/// Counters of a line.
#[derive(Default, Debug)]
pub struct LineStats {
    pub packets: AtomicU64,
    pub losses: AtomicU64,
}

/// Creates the TUN device `dev` in the calling thread's namespace; nonblocking.
pub fn open_tun(dev: &str) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    #[repr(C)]
    struct IfReq {
        name: [libc::c_char; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TUN | IFF_NO_PI,
        _pad: [0; 22],
    };
    if dev.len() >= libc::IFNAMSIZ {
        return Err(io::Error::other(format!("device name {dev} too long")));
    }
    for (d, s) in req.name.iter_mut().zip(dev.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReq is laid out as.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// SplitMix64: the lines' loss and jitter draws, deterministic per seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Line {
    spec: LineSpec,
    fd: OwnedFd,
    rng: Rng,
    /// One FIFO per `[[flow]]` table (the last for packets of none): order is kept within
    /// a table's flows, while a short-RTT table's packets never wait behind a long-RTT
    /// table's in the same line.
    queues: Vec<VecDeque<(Instant, Vec<u8>)>>,
    last_release: Vec<Option<Instant>>,
}

impl Line {
    fn new(spec: LineSpec, fd: OwnedFd) -> Self {
        let n = spec.per_table_ns.len() + 1;
        Line {
            rng: Rng::new(spec.seed),
            spec,
            fd,
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            last_release: vec![None; n],
        }
    }

    /// The delay of one packet (IPv4 header in `pkt`) and the queue it waits in.
    fn delay_of(&mut self, pkt: &[u8]) -> (u64, usize) {
        let mut d = self.spec.delay_ns;
        if self.spec.jitter_ns > 0 {
            d += (self.rng.unit() * self.spec.jitter_ns as f64) as u64;
        }
        let mut queue = self.queues.len() - 1;
        if pkt.len() >= 20 && pkt[0] >> 4 == 4 {
            let at = if self.spec.by_dst { 16 } else { 12 };
            let a = u32::from_be_bytes([pkt[at], pkt[at + 1], pkt[at + 2], pkt[at + 3]]);
            if let Some(t) = sender_table(a).filter(|&t| t < self.spec.per_table_ns.len()) {
                d += self.spec.per_table_ns[t];
                queue = t;
            }
        }
        (d, queue)
    }

    /// Reads what the kernel handed over, queueing each packet with its release time.
    fn read_all(&mut self, stats: &LineStats, buf: &mut [u8]) {
        loop {
            // SAFETY: reading into a buffer of buf.len() bytes.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
            let pkt = &buf[..n as usize];
            stats.packets.fetch_add(1, Ordering::Relaxed);
            if self.spec.loss > 0.0 && self.rng.unit() < self.spec.loss {
                stats.losses.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let now = Instant::now();
            let (delay, q) = self.delay_of(pkt);
            let mut at = now + Duration::from_nanos(delay);
            // Never reorder within a table: jitter only holds packets longer.
            if let Some(last) = self.last_release[q] {
                at = at.max(last);
            }
            self.last_release[q] = Some(at);
            self.queues[q].push_back((at, pkt.to_vec()));
        }
    }

    /// Writes back what is due; returns when the next packet is.
    fn release(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for queue in &mut self.queues {
            while let Some((at, _)) = queue.front() {
                if *at > now {
                    next = Some(next.map_or(*at, |n| n.min(*at)));
                    break;
                }
                let (_, pkt) = queue.pop_front().expect("front exists");
                // SAFETY: writing pkt.len() bytes from pkt. A failed write (the device
                // going down at the end) loses the packet, as a wire would.
                unsafe {
                    libc::write(self.fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len());
                }
            }
        }
        next
    }
}

/// Runs the lines until `stop`: waits (ppoll, nanosecond timeout) for packets or the next
/// release.
pub fn run(lines: Vec<(LineSpec, OwnedFd)>, stats: &[LineStats], stop: &AtomicBool) {
    let mut lines: Vec<Line> = lines
        .into_iter()
        .map(|(spec, fd)| Line::new(spec, fd))
        .collect();
    let mut buf = vec![0u8; 65_536];
    let mut pfds: Vec<libc::pollfd> = lines
        .iter()
        .map(|l| libc::pollfd {
            fd: l.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        for (l, st) in lines.iter_mut().zip(stats) {
            l.read_all(st, &mut buf);
        }
        let now = Instant::now();
        let mut next = now + Duration::from_millis(20);
        for l in lines.iter_mut() {
            if let Some(t) = l.release(now) {
                next = next.min(t);
            }
        }
        let wait = next.saturating_duration_since(Instant::now());
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        for p in pfds.iter_mut() {
            p.revents = 0;
        }
        // SAFETY: pfds is a valid array of pfds.len() pollfds; no signal mask change.
        unsafe {
            libc::ppoll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_uniform_enough_and_deterministic() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<f64> = (0..10_000).map(|_| a.unit()).collect();
        assert!(xs
            .iter()
            .zip((0..10_000).map(|_| b.unit()))
            .all(|(x, y)| *x == y));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
    }
}
