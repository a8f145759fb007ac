//! The smoltcp half of `plugtcp bench bulk`: one bulk TCP transfer between two smoltcp 0.14
//! interfaces joined by an in-memory lossless link, driven in one thread on a synthetic
//! clock, timed with the wall clock.
//!
//! Clock: smoltcp's timers run on `now`, a synthetic `smoltcp::time::Instant`. While packets
//! are in flight or an application made progress, `now` advances 1 µs per loop iteration
//! (each iteration is one round trip on the zero-delay link). When everything is quiet,
//! `now` jumps straight to the earliest `poll_at` of the two interfaces, so a timer (the
//! default 10 ms delayed ACK, a retransmission) fires on the very next iteration and costs
//! one loop turn of wall time, not 10 ms.

pub mod link;

use std::fmt;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::link::{Link, Side};

/// Length of the static data pattern the sender writes from (cyclically).
pub const PATTERN_LEN: usize = 1 << 20;
/// Port the listener on B accepts on.
pub const SERVER_PORT: u16 = 5001;
const CLIENT_PORT: u16 = 49152;
const ADDR_A: IpAddress = IpAddress::v4(10, 0, 0, 1);
const ADDR_B: IpAddress = IpAddress::v4(10, 0, 0, 2);
/// Loop iterations in a row without progress after which the run is declared stalled.
pub const DEFAULT_STALL_POLLS: u64 = 100_000;
/// IPv4 bounds: the minimum every link must carry and the largest total length.
const MIN_MTU: usize = 68;
const MAX_MTU: usize = 65535;
/// smoltcp's window scale shift is capped at 14, so larger buffers cannot be advertised.
const MAX_BUFFER: usize = 1 << 30;

/// TCP congestion control for both sockets.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Cc {
    /// smoltcp's default without the `socket-tcp-reno`/`socket-tcp-cubic` features: the
    /// send window is limited by the peer's receive window only.
    None,
    Reno,
    Cubic,
}

impl Cc {
    pub fn parse(s: &str) -> Option<Cc> {
        match s {
            "none" => Some(Cc::None),
            "reno" | "newreno" => Some(Cc::Reno),
            "cubic" => Some(Cc::Cubic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cc::None => "none",
            Cc::Reno => "reno",
            Cc::Cubic => "cubic",
        }
    }

    fn to_smoltcp(self) -> tcp::CongestionControl {
        match self {
            Cc::None => tcp::CongestionControl::None,
            Cc::Reno => tcp::CongestionControl::Reno,
            Cc::Cubic => tcp::CongestionControl::Cubic,
        }
    }
}

/// What to transfer and under which conditions.
#[derive(Clone, Debug)]
pub struct BulkConfig {
    /// Bytes A sends to B.
    pub bytes: u64,
    /// IP MTU of both devices.
    pub mtu: usize,
    /// Receive and send buffer size of both sockets.
    pub buffer: usize,
    pub cc: Cc,
    /// The link offers checksum offload: smoltcp neither computes nor verifies checksums.
    pub checksum_offload: bool,
    /// See [`DEFAULT_STALL_POLLS`].
    pub stall_polls: u64,
}

impl BulkConfig {
    pub fn new(bytes: u64, mtu: usize, buffer: usize) -> BulkConfig {
        BulkConfig {
            bytes,
            mtu,
            buffer,
            cc: Cc::None,
            checksum_offload: false,
            stall_polls: DEFAULT_STALL_POLLS,
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        if self.bytes == 0 {
            return Err(BenchError::InvalidArg("--bytes must be at least 1".into()));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(BenchError::InvalidArg(format!(
                "--mtu must be in {MIN_MTU}..={MAX_MTU}, got {}",
                self.mtu
            )));
        }
        if !(1..=MAX_BUFFER).contains(&self.buffer) {
            return Err(BenchError::InvalidArg(format!(
                "--buffer must be in 1..={MAX_BUFFER}, got {}",
                self.buffer
            )));
        }
        Ok(())
    }
}

/// Outcome of a completed, verified transfer.
#[derive(Clone, Debug)]
pub struct BulkReport {
    /// Bytes received by B (always equal to the configured count).
    pub bytes: u64,
    /// Wall-clock seconds from the first byte written to the last byte read.
    pub seconds: f64,
    /// Loop iterations (each polls both interfaces once) during the transfer.
    pub iterations: u64,
    /// Synthetic time that passed during the transfer.
    pub synthetic: Duration,
    /// Packets sent during the transfer: (A to B, B to A).
    pub packets: (u64, u64),
}

impl BulkReport {
    pub fn gbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds / 1e9
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum BenchError {
    InvalidArg(String),
    Setup(String),
    /// No progress for `stall_polls` iterations.
    Stalled {
        phase: &'static str,
        received: u64,
        state: tcp::State,
    },
    /// A socket left the states a transfer needs before all bytes arrived.
    Closed {
        phase: &'static str,
        client: tcp::State,
        server: tcp::State,
        received: u64,
    },
    /// Received data differs from the pattern at this stream offset.
    Mismatch {
        offset: u64,
    },
    /// B received a different number of bytes than A was asked to send.
    Count {
        received: u64,
        expected: u64,
    },
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::InvalidArg(m) => write!(f, "invalid argument: {m}"),
            BenchError::Setup(m) => write!(f, "setup failed: {m}"),
            BenchError::Stalled {
                phase,
                received,
                state,
            } => write!(
                f,
                "transfer stalled during {phase}: no progress, {received} bytes received, client in {state}"
            ),
            BenchError::Closed {
                phase,
                client,
                server,
                received,
            } => write!(
                f,
                "connection lost during {phase}: client {client}, server {server}, {received} bytes received"
            ),
            BenchError::Mismatch { offset } => {
                write!(f, "received data differs from the pattern at byte {offset}")
            }
            BenchError::Count { received, expected } => {
                write!(f, "received {received} bytes, expected {expected}")
            }
        }
    }
}

impl std::error::Error for BenchError {}

/// A fixed pseudo-random pattern (xorshift64*), so misplaced data does not match by chance.
pub fn make_pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let word = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let n = word.len().min(len - out.len());
        out.extend_from_slice(&word[..n]);
    }
    out
}

/// Index in `chunk` of the first byte that differs from the cyclic `pattern` at stream
/// position `offset`, or `None` if the chunk matches.
pub fn first_mismatch(pattern: &[u8], offset: u64, chunk: &[u8]) -> Option<usize> {
    if pattern.is_empty() {
        return if chunk.is_empty() { None } else { Some(0) };
    }
    let mut pos = (offset % pattern.len() as u64) as usize;
    let mut done = 0;
    while done < chunk.len() {
        let n = (pattern.len() - pos).min(chunk.len() - done);
        let (got, want) = (&chunk[done..done + n], &pattern[pos..pos + n]);
        if got != want {
            return got
                .iter()
                .zip(want)
                .position(|(g, w)| g != w)
                .map(|i| done + i);
        }
        done += n;
        pos = 0;
    }
    None
}

/// Run the benchmark with the standard pattern.
pub fn run(cfg: &BulkConfig) -> Result<BulkReport, BenchError> {
    let pattern = make_pattern(PATTERN_LEN, 0x0070_6c75_6774_6370);
    run_with_patterns(cfg, &pattern, &pattern)
}

/// Run with separate sender and expected patterns (tests use a differing pair to prove
/// the data check fails).
pub fn run_with_patterns(
    cfg: &BulkConfig,
    send_pattern: &[u8],
    expect_pattern: &[u8],
) -> Result<BulkReport, BenchError> {
    let mut link = Link::new(cfg.mtu);
    link.set_checksum_offload(cfg.checksum_offload);
    run_on_link(cfg, send_pattern, expect_pattern, link)
}

fn run_on_link(
    cfg: &BulkConfig,
    send_pattern: &[u8],
    expect_pattern: &[u8],
    link: Link,
) -> Result<BulkReport, BenchError> {
    cfg.validate()?;
    if send_pattern.is_empty() {
        return Err(BenchError::InvalidArg("empty send pattern".into()));
    }
    let mut pair = Pair::new(cfg, link)?;
    pair.handshake()?;
    pair.transfer(cfg.bytes, send_pattern, expect_pattern)
}

/// Both interfaces, their sockets, the link and the synthetic clock.
struct Pair {
    link: Link,
    iface_a: Interface,
    iface_b: Interface,
    sockets_a: SocketSet<'static>,
    sockets_b: SocketSet<'static>,
    client: SocketHandle,
    server: SocketHandle,
    now: Instant,
    stall_polls: u64,
}

fn new_iface(
    link: &mut Link,
    side: Side,
    addr: IpAddress,
    seed: u64,
) -> Result<Interface, BenchError> {
    let mut config = Config::new(HardwareAddress::Ip);
    // Fixed seeds: reproducible ISNs and ephemeral choices across runs.
    config.random_seed = seed;
    let mut iface = Interface::new(config, &mut link.port(side), Instant::ZERO);
    let mut res = Ok(());
    iface.update_ip_addrs(|addrs| {
        res = addrs
            .push(IpCidr::new(addr, 24))
            .map_err(|_| BenchError::Setup("interface address table full".into()));
    });
    res.map(|()| iface)
}

fn new_socket(cfg: &BulkConfig) -> tcp::Socket<'static> {
    let rx = tcp::SocketBuffer::new(vec![0; cfg.buffer]);
    let tx = tcp::SocketBuffer::new(vec![0; cfg.buffer]);
    let mut socket = tcp::Socket::new(rx, tx);
    // Defaults otherwise: Nagle on, 10 ms delayed ACK (forced after one MSS of unACKed
    // data), window scale chosen from the rx buffer size, no timestamps.
    socket.set_congestion_control(cfg.cc.to_smoltcp());
    socket
}

impl Pair {
    fn new(cfg: &BulkConfig, mut link: Link) -> Result<Pair, BenchError> {
        let mut iface_a = new_iface(&mut link, Side::A, ADDR_A, 0x5eed_000a)?;
        let iface_b = new_iface(&mut link, Side::B, ADDR_B, 0x5eed_000b)?;

        let mut sockets_b = SocketSet::new(Vec::new());
        let mut listener = new_socket(cfg);
        listener
            .listen(SERVER_PORT)
            .map_err(|e| BenchError::Setup(format!("listen: {e}")))?;
        let server = sockets_b.add(listener);

        let mut sockets_a = SocketSet::new(Vec::new());
        let mut client_socket = new_socket(cfg);
        client_socket
            .connect(iface_a.context(), (ADDR_B, SERVER_PORT), CLIENT_PORT)
            .map_err(|e| BenchError::Setup(format!("connect: {e}")))?;
        let client = sockets_a.add(client_socket);

        Ok(Pair {
            link,
            iface_a,
            iface_b,
            sockets_a,
            sockets_b,
            client,
            server,
            now: Instant::ZERO,
            stall_polls: cfg.stall_polls,
        })
    }

    fn poll(&mut self) {
        self.iface_a
            .poll(self.now, &mut self.link.port(Side::A), &mut self.sockets_a);
        self.iface_b
            .poll(self.now, &mut self.link.port(Side::B), &mut self.sockets_b);
    }

    /// Move the synthetic clock: by 1 µs while busy, else to the next timer.
    fn advance(&mut self, progress: bool) {
        let tick = Duration::from_micros(1);
        if progress || self.link.in_flight() > 0 {
            self.now += tick;
            return;
        }
        let next = [
            self.iface_a.poll_at(self.now, &self.sockets_a),
            self.iface_b.poll_at(self.now, &self.sockets_b),
        ]
        .into_iter()
        .flatten()
        .min();
        self.now = match next {
            Some(t) if t > self.now => t,
            _ => self.now + tick,
        };
    }

    fn states(&self) -> (tcp::State, tcp::State) {
        (
            self.sockets_a.get::<tcp::Socket>(self.client).state(),
            self.sockets_b.get::<tcp::Socket>(self.server).state(),
        )
    }

    fn handshake(&mut self) -> Result<(), BenchError> {
        let mut idle = 0;
        loop {
            self.poll();
            let (client, server) = self.states();
            if client == tcp::State::Established && server == tcp::State::Established {
                return Ok(());
            }
            if client == tcp::State::Closed {
                return Err(BenchError::Closed {
                    phase: "handshake",
                    client,
                    server,
                    received: 0,
                });
            }
            let progress = self.link.in_flight() > 0;
            idle = if progress { 0 } else { idle + 1 };
            if idle > self.stall_polls {
                return Err(BenchError::Stalled {
                    phase: "handshake",
                    received: 0,
                    state: client,
                });
            }
            self.advance(progress);
        }
    }

    fn transfer(
        &mut self,
        total: u64,
        send_pattern: &[u8],
        expect_pattern: &[u8],
    ) -> Result<BulkReport, BenchError> {
        let plen = send_pattern.len() as u64;
        let mut sent = 0u64;
        let mut received = 0u64;
        let mut closed = false;
        let mut idle = 0u64;
        let mut iterations = 0u64;
        let start_now = self.now;
        let packets_before = self.link.packets();
        let start = std::time::Instant::now();
        loop {
            // A queues as much of the stream as its send buffer takes.
            let sent_before = sent;
            let client = self.sockets_a.get_mut::<tcp::Socket>(self.client);
            while sent < total {
                let off = (sent % plen) as usize;
                let len = (total - sent).min(plen - off as u64) as usize;
                match client.send_slice(&send_pattern[off..off + len]) {
                    Ok(0) => break,
                    Ok(n) => sent += n as u64,
                    Err(_) => break,
                }
            }
            if sent == total && !closed {
                // Like a real bulk writer: write everything, then close. The FIN also lets
                // the last partial segment bypass Nagle.
                client.close();
                closed = true;
            }

            self.poll();
            iterations += 1;

            // B drains its receive buffer, checking every chunk against the pattern.
            let received_before = received;
            let server = self.sockets_b.get_mut::<tcp::Socket>(self.server);
            while server.can_recv() {
                let at = received;
                let chunk = server.recv(|buf| {
                    let bad = first_mismatch(expect_pattern, at, buf);
                    (buf.len(), (buf.len(), bad))
                });
                match chunk {
                    Ok((_, Some(i))) => {
                        return Err(BenchError::Mismatch {
                            offset: at + i as u64,
                        });
                    }
                    Ok((0, None)) => break,
                    Ok((n, None)) => received += n as u64,
                    Err(_) => break,
                }
            }
            if received >= total {
                let seconds = start.elapsed().as_secs_f64();
                if received != total {
                    return Err(BenchError::Count {
                        received,
                        expected: total,
                    });
                }
                return Ok(BulkReport {
                    bytes: received,
                    seconds,
                    iterations,
                    synthetic: self.now - start_now,
                    packets: (
                        self.link.packets().0 - packets_before.0,
                        self.link.packets().1 - packets_before.1,
                    ),
                });
            }

            let (client_state, server_state) = self.states();
            if !matches!(
                client_state,
                tcp::State::Established | tcp::State::FinWait1 | tcp::State::FinWait2
            ) || !matches!(
                server_state,
                tcp::State::Established | tcp::State::CloseWait
            ) {
                return Err(BenchError::Closed {
                    phase: "transfer",
                    client: client_state,
                    server: server_state,
                    received,
                });
            }

            let progress = sent > sent_before || received > received_before;
            idle = if progress { 0 } else { idle + 1 };
            if idle > self.stall_polls {
                return Err(BenchError::Stalled {
                    phase: "transfer",
                    received,
                    state: client_state,
                });
            }
            self.advance(progress);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn transfer(bytes: u64, mtu: usize, buffer: usize, cc: Cc) -> BulkReport {
        let mut cfg = BulkConfig::new(bytes, mtu, buffer);
        cfg.cc = cc;
        let report = run(&cfg).unwrap_or_else(|e| panic!("mtu {mtu} buffer {buffer}: {e}"));
        assert_eq!(report.bytes, bytes);
        assert!(report.seconds > 0.0);
        assert!(report.iterations > 0);
        report
    }

    #[test]
    fn four_mib_at_mtu_1500_and_65535_with_64k_and_4m_buffers() {
        for mtu in [1500, 65535] {
            for buffer in [64 << 10, 4 << 20] {
                let r = transfer(4 * MIB, mtu, buffer, Cc::None);
                // The delayed-ACK timer may fire, but a lossless transfer never waits for
                // retransmission timeouts (smoltcp's minimum RTO is far above this).
                assert!(
                    r.synthetic < Duration::from_millis(900),
                    "mtu {mtu} buffer {buffer}: synthetic time {}",
                    r.synthetic
                );
            }
        }
    }

    #[test]
    fn congestion_controllers_complete() {
        transfer(MIB, 1500, 64 << 10, Cc::Reno);
        transfer(MIB, 1500, 64 << 10, Cc::Cubic);
    }

    #[test]
    fn odd_sizes_complete() {
        // A count that is not a multiple of the MSS, the pattern or the buffer; a buffer
        // smaller than one segment; a small MTU.
        transfer(3 * MIB + 12345, 9000, 1000, Cc::None);
        transfer(100_001, 576, 3000, Cc::None);
        transfer(1, 1500, 64 << 10, Cc::None);
    }

    #[test]
    fn data_check_detects_wrong_bytes() {
        let cfg = BulkConfig::new(300_000, 1500, 64 << 10);
        let sent = make_pattern(PATTERN_LEN, 1);
        let mut expect = sent.clone();
        expect[123_456] ^= 0x40;
        assert_eq!(
            run_with_patterns(&cfg, &sent, &expect).unwrap_err(),
            BenchError::Mismatch { offset: 123_456 }
        );
    }

    #[test]
    fn corrupted_packet_is_dropped_by_checksum_and_retransmitted() {
        // If checksums were not verified, the damaged payload would reach B and fail the
        // pattern check; with verification the segment is dropped and TCP recovers.
        let cfg = BulkConfig::new(2 * MIB, 1500, 64 << 10);
        let mut link = Link::new(cfg.mtu);
        link.corrupt_a_to_b(100);
        let pattern = make_pattern(PATTERN_LEN, 5);
        let r = run_on_link(&cfg, &pattern, &pattern, link).unwrap();
        assert_eq!(r.bytes, 2 * MIB);
        // One segment more than the clean run: the retransmission.
        let clean = run_with_patterns(&cfg, &pattern, &pattern).unwrap();
        assert!(
            r.packets.0 > clean.packets.0,
            "{:?} vs {:?}",
            r.packets,
            clean.packets
        );
    }

    #[test]
    fn lost_link_reports_stall() {
        let mut cfg = BulkConfig::new(1000, 1500, 4096);
        cfg.stall_polls = 50;
        let mut link = Link::new(cfg.mtu);
        link.set_drop_all(true);
        let pattern = make_pattern(4096, 7);
        let err = run_on_link(&cfg, &pattern, &pattern, link).unwrap_err();
        assert!(
            matches!(
                err,
                BenchError::Stalled {
                    phase: "handshake",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_arguments_are_rejected() {
        for cfg in [
            BulkConfig::new(0, 1500, 65536),
            BulkConfig::new(10, 67, 65536),
            BulkConfig::new(10, 65536, 65536),
            BulkConfig::new(10, 1500, 0),
            BulkConfig::new(10, 1500, (1 << 30) + 1),
        ] {
            assert!(
                matches!(run(&cfg), Err(BenchError::InvalidArg(_))),
                "{cfg:?}"
            );
        }
    }

    #[test]
    fn mismatch_finder_handles_wraparound() {
        let p = make_pattern(10, 3);
        let mut stream: Vec<u8> = p.iter().chain(&p).chain(&p).copied().collect();
        assert_eq!(first_mismatch(&p, 0, &stream), None);
        assert_eq!(first_mismatch(&p, 27, &stream[7..]), None);
        assert_eq!(first_mismatch(&p, 4, &stream[4..17]), None);
        stream[21] ^= 1;
        assert_eq!(first_mismatch(&p, 7, &stream[7..]), Some(14));
        assert_eq!(first_mismatch(&p, 8, &stream[7..]), Some(0));
    }

    #[test]
    fn pattern_is_not_short_periodic() {
        let p = make_pattern(PATTERN_LEN, 9);
        assert_eq!(p.len(), PATTERN_LEN);
        assert_ne!(p[..4096], p[4096..8192]);
        assert_ne!(p[..1460], p[1460..2920]);
    }
}
