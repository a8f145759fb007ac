//! Running a host on real packet I/O: a backend moves IP packets, and [`IoHost`] drives the
//! sans-IO host with the wall clock, one receive batch per poll, timers in between.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::pcap::PcapWriter;
use crate::sim::{SimLinkConfig, SimPipe};
use plugtcp_host::Host;

/// A packet I/O backend: whole IP packets in and out.
pub trait PacketIo {
    /// Sends one IP packet (dropping it is allowed, as a full device queue does).
    fn send(&mut self, pkt: &[u8]) -> io::Result<()>;
    /// Receives one IP packet into `buf`, waiting up to `wait` for it (`None`: do not
    /// wait). Ok(None) when nothing came. Anything not carrying an IP packet is the
    /// backend's to count and drop.
    fn recv(&mut self, buf: &mut [u8], wait: Option<Duration>) -> io::Result<Option<usize>>;
    /// The largest IP packet the backend carries.
    fn mtu(&self) -> u32;
    /// Sends what `send` and `send_gso` queued (a backend that batches its system calls
    /// queues; drivers call this after each transmit drain).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// The largest TCP super-packet [`PacketIo::send_gso`] takes (IP header included),
    /// which the backend cuts into packets and whose TCP checksum it completes (GSO and
    /// checksum offload on transmit); 0: none, every packet goes through `send`.
    fn gso_max(&self) -> u32 {
        0
    }
    /// Sends a TCP super-packet to be cut into packets of `gso_size` payload bytes; its
    /// TCP checksum field holds the pseudo-header sum. Only when `gso_max` is nonzero.
    fn send_gso(&mut self, _pkt: &[u8], _gso_size: u16) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this backend takes no super-packets",
        ))
    }
    /// Before `send`: the packet's connection set TCP_REMOTE_UDP_ENCAPS_PORT to `port`
    /// (only the `udp` backend cares).
    fn encapsulation_port(&mut self, _pkt: &[u8], _port: u16) {}
    /// A descriptor that polls readable when a packet may be waiting, for a driver that
    /// waits on it beside others (the runtime waits on it and on application calls).
    /// `None`: the driver polls the backend at short intervals instead.
    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// From now on, leave partial checksums partial (virtio's NEEDS_CSUM on a TUN device
    /// with IFF_VNET_HDR) instead of completing them, and say so per packet through
    /// [`PacketIo::rx_partial_checksum`]; whether the backend will. A driver that hands
    /// such packets to `Host::input_checksum_offloaded` asks; a wrapper that keeps or
    /// reorders packets does not pass the request on, so its backend completes them.
    fn leave_partial_checksums(&mut self) -> bool {
        false
    }
    /// Where the packet last received has its partial checksum: (start, offset) as in
    /// virtio's csum_start and csum_offset. Only after `leave_partial_checksums`.
    fn rx_partial_checksum(&self) -> Option<(u16, u16)> {
        None
    }
    /// The encapsulation (UDP) port the packet last received came from, if the backend
    /// has one: a shard that hands the packet to another passes it along.
    fn arrival_port(&self) -> Option<u16> {
        None
    }
    /// A packet received by another shard's backend came from the peer's encapsulation
    /// `port`: answers to its sender go there.
    fn learn_port(&mut self, _pkt: &[u8], _port: u16) {}
}

impl<T: PacketIo + ?Sized> PacketIo for Box<T> {
    fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
        (**self).send(pkt)
    }
    fn recv(&mut self, buf: &mut [u8], wait: Option<Duration>) -> io::Result<Option<usize>> {
        (**self).recv(buf, wait)
    }
    fn mtu(&self) -> u32 {
        (**self).mtu()
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
    fn gso_max(&self) -> u32 {
        (**self).gso_max()
    }
    fn send_gso(&mut self, pkt: &[u8], gso_size: u16) -> io::Result<()> {
        (**self).send_gso(pkt, gso_size)
    }
    fn encapsulation_port(&mut self, pkt: &[u8], port: u16) {
        (**self).encapsulation_port(pkt, port)
    }
    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        (**self).poll_fd()
    }
    fn arrival_port(&self) -> Option<u16> {
        (**self).arrival_port()
    }
    fn leave_partial_checksums(&mut self) -> bool {
        (**self).leave_partial_checksums()
    }
    fn rx_partial_checksum(&self) -> Option<(u16, u16)> {
        (**self).rx_partial_checksum()
    }
    fn learn_port(&mut self, pkt: &[u8], port: u16) {
        (**self).learn_port(pkt, port)
    }
}

/// Completes a checksum the backend left partial (for a packet that leaves the driver:
/// another shard, a capture file).
pub(crate) fn complete_partial(pkt: &mut [u8], partial: Option<(u16, u16)>) {
    if let Some((start, offset)) = partial {
        plugtcp_host::wire::complete_checksum(pkt, start.into(), offset.into());
    }
}

/// Hands a received packet to the host, unverified if the backend left its checksum
/// partial (the kernel vouches for it).
pub(crate) fn input(host: &mut Host, pkt: &[u8], partial: Option<(u16, u16)>) {
    if partial.is_some() {
        host.input_checksum_offloaded(pkt);
    } else {
        host.input(pkt);
    }
}

/// Sends a packet, or a super-packet whole to a backend that cuts it.
pub(crate) fn send(io: &mut impl PacketIo, pkt: &[u8], gso_size: u16) -> io::Result<()> {
    if gso_size == 0 {
        io.send(pkt)
    } else {
        io.send_gso(pkt, gso_size)
    }
}

/// Most packets taken per poll as one receive batch (as a NIC's interrupt moderation or
/// recvmmsg would hand them over).
const BATCH: usize = 64;

/// A host on a packet I/O backend, its clock the wall clock since it started.
pub struct IoHost<I: PacketIo> {
    pub host: Host,
    pub io: I,
    epoch: Instant,
    buf: Vec<u8>,
    pcap: Option<PcapWriter<BufWriter<File>>>,
}

impl<I: PacketIo> IoHost<I> {
    /// Puts `host` on `io`: its MTU becomes the backend's.
    pub fn new(mut host: Host, mut io: I) -> Self {
        host.mtu = io.mtu();
        host.set_tx_gso(io.gso_max());
        io.leave_partial_checksums();
        // Room for any IP packet: a device with offloads hands over 64 KiB super-packets.
        let buf = vec![0u8; 65536];
        IoHost {
            host,
            io,
            epoch: Instant::now(),
            buf,
            pcap: None,
        }
    }

    /// Writes every packet sent and received to a pcap file (tcpdump reads it).
    pub fn capture(&mut self, path: &Path) -> io::Result<()> {
        // The file shows packets as on the wire: the host cuts its own segments.
        self.host.set_tx_gso(0);
        self.pcap = Some(PcapWriter::new(BufWriter::new(File::create(path)?))?);
        Ok(())
    }

    /// Flushes the capture file.
    pub fn finish_capture(&mut self) -> io::Result<()> {
        self.pcap.as_mut().map_or(Ok(()), PcapWriter::flush)
    }

    /// Nanoseconds since this host started: its clock.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Sends everything the host queued.
    pub fn flush(&mut self) -> io::Result<()> {
        let now = self.now();
        let (io, pcap) = (&mut self.io, &mut self.pcap);
        let mut result = Ok(());
        self.host.transmit_gso(|pkt, port, gso_size| {
            if let Some(w) = pcap.as_mut() {
                let _ = w.write_packet(now, pkt);
            }
            if port != 0 {
                io.encapsulation_port(pkt, port);
            }
            if result.is_ok() {
                result = send(io, pkt, gso_size);
            }
        });
        result.and_then(|()| io.flush())
    }

    /// One turn: send what is queued, wait (at most `max_wait`, and never past the next
    /// timer) for packets, hand what arrived to the host as one batch, run due timers.
    pub fn poll(&mut self, max_wait: Duration) -> io::Result<()> {
        self.flush()?;
        let now = self.now();
        let wait = self.host.next_timeout().map_or(max_wait, |t| {
            Duration::from_nanos(t.saturating_sub(now)).min(max_wait)
        });
        let mut wait = Some(wait);
        let mut batch = false;
        for _ in 0..BATCH {
            let Some(n) = self.io.recv(&mut self.buf, wait)? else {
                break;
            };
            wait = None;
            if !batch {
                self.host.advance(self.now());
                self.host.batch_begin();
                batch = true;
            }
            let partial = self.io.rx_partial_checksum();
            if let Some(w) = self.pcap.as_mut() {
                // The file shows the packet with its checksum, as on a wire.
                complete_partial(&mut self.buf[..n], partial);
                let _ = w.write_packet(self.epoch.elapsed().as_nanos() as u64, &self.buf[..n]);
            }
            input(&mut self.host, &self.buf[..n], partial);
        }
        if batch {
            self.host.batch_end();
        }
        self.host.advance(self.now());
        if self.host.has_log() {
            // The operator's messages (log_in_vain), as the console shows the kernel's.
            for line in self.host.take_log() {
                eprintln!("plugtcp: {line}");
            }
        }
        self.flush()
    }

    /// Polls until `done` holds (true) or `deadline` passes (false); `done` runs between
    /// polls, as an application would.
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&mut Host) -> bool,
    ) -> io::Result<bool> {
        loop {
            if done(&mut self.host) {
                self.flush()?;
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.poll(left.min(Duration::from_millis(10)))?;
        }
    }
}

/// Fault injection around any backend (this kernel has no netem): each direction goes
/// through a simulated pipe with its own loss, delay, jitter, reordering, duplication,
/// corruption and rate limit, seeded, on the wall clock.
pub struct Faulty<I: PacketIo> {
    pub inner: I,
    /// What this host sends, before the backend.
    pub out: SimPipe,
    /// What the backend delivered, before this host.
    pub inbound: SimPipe,
    epoch: Instant,
    scratch: Vec<u8>,
}

impl<I: PacketIo> Faulty<I> {
    pub fn new(inner: I, out: SimLinkConfig, inbound: SimLinkConfig) -> Self {
        let scratch = vec![0u8; inner.mtu().max(1500) as usize];
        Faulty {
            inner,
            out: SimPipe::new(out),
            inbound: SimPipe::new(inbound),
            epoch: Instant::now(),
            scratch,
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Hands the backend what the outbound pipe delivers by now.
    fn pump_out(&mut self, now: u64) -> io::Result<()> {
        let (out, inner) = (&mut self.out, &mut self.inner);
        let mut result = Ok(());
        out.poll(now, |pkt| {
            if result.is_ok() {
                result = inner.send(pkt);
            }
        });
        result.and_then(|()| inner.flush())
    }
}

impl<I: PacketIo> PacketIo for Faulty<I> {
    fn encapsulation_port(&mut self, pkt: &[u8], port: u16) {
        self.inner.encapsulation_port(pkt, port);
    }

    fn learn_port(&mut self, pkt: &[u8], port: u16) {
        self.inner.learn_port(pkt, port);
    }

    fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
        let now = self.now();
        self.out.send(now, pkt);
        self.pump_out(now)
    }

    fn recv(&mut self, buf: &mut [u8], wait: Option<Duration>) -> io::Result<Option<usize>> {
        let until = self.now() + wait.map_or(0, |d| d.as_nanos() as u64);
        loop {
            let now = self.now();
            self.pump_out(now)?;
            let mut got = None;
            self.inbound.poll_one(now, |p| {
                buf[..p.len()].copy_from_slice(p);
                got = Some(p.len());
            });
            if got.is_some() {
                return Ok(got);
            }
            // Wait for the backend, but not past the pipes' next delivery.
            let next = [self.inbound.next_delivery(), self.out.next_delivery()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(u64::MAX)
                .min(until);
            let wait = (next > now).then(|| Duration::from_nanos(next - now));
            match self.inner.recv(&mut self.scratch, wait)? {
                Some(n) => {
                    let now = self.now();
                    self.inbound.send(now, &self.scratch[..n]);
                }
                None if self.now() >= until
                    && self.inbound.next_delivery().is_none_or(|t| t > self.now()) =>
                {
                    return Ok(None)
                }
                None => {}
            }
        }
    }

    fn mtu(&self) -> u32 {
        self.inner.mtu()
    }
}
