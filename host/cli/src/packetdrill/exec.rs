//! The event loop, after packetdrill's run.c and run_packet.c, on the host's virtual clock.
//!
//! Time: script time 0 is host time [`START_NS`]. An event at script time `t` (absolute,
//! or relative to when the previous event finished) runs when the host clock reaches `t`:
//! the runner moves the host's clock forward timer by timer, so everything the host does
//! on its own (retransmissions, delayed ACKs) happens at its exact time. Outbound packets
//! are matched in the order the host sent them, each within `--tolerance_usecs` of the
//! script's time; a wildcard (`*`) or range time takes the packet when it comes.
//!
//! Sockets: as in packetdrill, the "socket under test" is the one the latest socket(2),
//! inbound SYN (a new passive connection) or connect(2) made; packets go to and come from
//! it, and packets of other 4-tuples the host sends are passed over. Sequence and ACK
//! numbers are mapped between script and live values relative to each side's ISN; the
//! script's own (the peer's) ISN is what its SYN says. Timestamps: an outbound `TS val V`
//! is remembered with the live value it stood for, and an inbound `ecr V` sends that
//! value back.
//!
//! Blocking system calls (`start...end`, or a call on a blocking descriptor that cannot
//! finish at once) run on a "second thread": the script goes on with its next events, and
//! the call is retried whenever the host moves, until it returns; its return time is then
//! checked against `end`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;

use plugtcp_packetdrill::display::format_seconds;
use plugtcp_packetdrill::icmp::{self, IcmpVersion};
use plugtcp_packetdrill::{
    Direction, EcnSpec, Event, EventKind, IcmpSpec, IpSpec, IpVersion, PacketBody, PacketEvent,
    Script, SeqSpec, TcpFlags, TcpOptionSpec, TcpOptionsSpec, TcpSegmentSpec, TimeSpec,
    TimestampSpec,
};

use super::packet::{self, LivePacket, TcpPacket};
use super::syscall::{self, Pending};
use super::{RunOptions, Settings};
use crate::builtins::BuiltinHost as _;
use plugtcp_host::posix::Posix;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::{wire, Host};
use plugtcp_io::pcap::PcapWriter;

/// Host time of script time 0 (a round, non-zero start, so that host clocks are never
/// mistaken for "unset").
pub const START_NS: u64 = 1_000_000_000;
const NS_PER_US: u64 = 1000;
/// The first port the script side uses for the connections it opens.
const FIRST_REMOTE_PORT: u16 = 48_000;
/// How long a `*` event waits for the host at most (script time).
const ANY_TIME_LIMIT_US: u64 = 600_000_000;
/// Host steps one wait may take before the runner calls it a livelock.
const MAX_STEPS: usize = 2_000_000;

/// How a script run ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub error: Option<String>,
    pub warnings: Vec<String>,
    pub log: Vec<String>,
    pub virtual_usecs: u64,
}

impl Outcome {
    pub fn failed(error: String) -> Outcome {
        Outcome {
            error: Some(error),
            ..Default::default()
        }
    }
}

/// A failure at a script line.
#[derive(Debug)]
pub(crate) struct Failure {
    pub line: u32,
    pub message: String,
    /// A `--non_fatal` kind of failure (a packet's content, a call's result).
    pub soft: bool,
}

impl Failure {
    pub fn at(line: u32, message: impl Into<String>) -> Failure {
        Failure {
            line,
            message: message.into(),
            soft: false,
        }
    }
}

/// Where a script-side socket is in its life, as packetdrill tracks it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum SockState {
    New,
    Listening,
    PassiveSynReceived,
    PassiveSynAckSent,
    ActiveConnecting,
    ActiveSynSent,
    Synchronized,
}

/// One connection the script takes part in.
#[derive(Clone, Debug)]
pub(crate) struct ScriptSocket {
    pub state: SockState,
    /// The host descriptor (the listener's before accept, the connection's after).
    pub fd: Option<i32>,
    /// The host's end and the script's end, as on the wire.
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub script_local_isn: u32,
    pub live_local_isn: u32,
    pub remote_isn: u32,
    /// Outbound TS val: (script value, live value), newest last.
    pub ts_map: Vec<(u32, u32)>,
    /// UDP ports the script's packets came in (TCP over UDP), to expect back.
    pub udp: Option<(u16, u16)>,
}

impl ScriptSocket {
    pub(crate) fn new(fd: Option<i32>) -> ScriptSocket {
        ScriptSocket {
            state: SockState::New,
            fd,
            local: None,
            remote: None,
            script_local_isn: 0,
            live_local_isn: 0,
            remote_isn: 0,
            ts_map: Vec::new(),
            udp: None,
        }
    }

    /// Script ACK (and SACK) numbers to live ones.
    fn ack_to_live(&self, v: u32) -> u32 {
        v.wrapping_sub(self.script_local_isn)
            .wrapping_add(self.live_local_isn)
    }

    /// A live sequence number of ours to the script's.
    fn seq_to_script(&self, v: u32) -> u32 {
        v.wrapping_sub(self.live_local_isn)
            .wrapping_add(self.script_local_isn)
    }

    /// The live TS val a script `ecr` names.
    fn ecr_to_live(&self, ecr: u32) -> u32 {
        if let Some(&(_, live)) = self.ts_map.iter().rev().find(|(s, _)| *s == ecr) {
            return live;
        }
        // Not one the script wrote: keep its distance from the newest one we know.
        match self.ts_map.last() {
            Some(&(s, l)) if ecr != 0 => ecr.wrapping_sub(s).wrapping_add(l),
            _ => ecr,
        }
    }
}

/// A packet the host sent, and when.
struct Sniffed {
    t_ns: u64,
    bytes: Vec<u8>,
}

/// The runner's state for one script.
pub struct Runner<'a> {
    script: &'a Script,
    pub(crate) s: Settings,
    pub(crate) host: Host,
    pub(crate) posix: Posix,
    pub(crate) sockets: Vec<ScriptSocket>,
    pub(crate) under_test: Option<usize>,
    /// Script descriptor -> host descriptor.
    pub(crate) fds: Vec<(i32, i32)>,
    out: VecDeque<Sniffed>,
    pub(crate) pending: Option<Pending>,
    /// Script time (us) at which the previous event finished: packetdrill's "now" for
    /// relative times.
    last_us: u64,
    next_remote_port: u16,
    verbose: bool,
    log: Vec<String>,
    warnings: Vec<String>,
    pcap: Option<PcapWriter<std::io::BufWriter<std::fs::File>>>,
    setup_error: Option<String>,
}

impl<'a> Runner<'a> {
    pub fn new(script: &'a Script, s: Settings, opts: &RunOptions) -> Runner<'a> {
        let mut host = Host::with_seed(SearchPath::default(), opts.seed.max(1));
        host.register_builtins();
        host.add_addr(s.local_ip);
        let mut setup_error = None;
        host.advance(START_NS);
        for (name, value) in [
            ("net.inet.tcp.functions_default", &opts.stack),
            ("net.inet.tcp.cc.algorithm", &opts.cc),
        ] {
            if let Some(v) = value {
                if let Err(e) = host.sysctl_set(name, v) {
                    setup_error = Some(format!("{}: {name}={v}: {e}", script.path));
                }
            }
        }
        if let Some(secret) = &s.tcp_md5_secret {
            if let Err(e) = host.md5_key_set(s.remote_ip, None, secret.as_bytes()) {
                setup_error = Some(format!("{}: --tcp_md5_secret: {e}", script.path));
            }
        }
        let pcap = opts.pcap.as_ref().and_then(|p| {
            let f = std::fs::File::create(p).ok()?;
            PcapWriter::new(std::io::BufWriter::new(f)).ok()
        });
        if opts.pcap.is_some() && pcap.is_none() {
            setup_error = Some(format!("cannot write the capture file {:?}", opts.pcap));
        }
        Runner {
            script,
            s,
            host,
            posix: Posix::new(),
            sockets: Vec::new(),
            under_test: None,
            fds: Vec::new(),
            out: VecDeque::new(),
            pending: None,
            last_us: 0,
            next_remote_port: FIRST_REMOTE_PORT,
            verbose: opts.verbose,
            log: Vec::new(),
            warnings: Vec::new(),
            pcap,
            setup_error,
        }
    }

    /// Script time now, in microseconds.
    pub(crate) fn now_us(&self) -> u64 {
        self.host.now().saturating_sub(START_NS) / NS_PER_US
    }

    fn ns(us: u64) -> u64 {
        START_NS + us.saturating_mul(NS_PER_US)
    }

    pub(crate) fn note(&mut self, line: u32, what: impl AsRef<str>) {
        if self.verbose {
            let t = format_seconds(self.now_us());
            self.log.push(format!("{t} line {line}: {}", what.as_ref()));
        }
    }

    pub(crate) fn warn(&mut self, w: String) {
        self.warnings.push(w);
    }

    /// Runs the whole script.
    pub fn run(mut self) -> Outcome {
        let path = self.script.path.clone();
        let mut error = self.setup_error.take();
        if error.is_none() {
            if let Some(cmd) = &self.script.init_command {
                if let Err(e) = super::command::run(&mut self, cmd.line, &cmd.command) {
                    error = Some(format!(
                        "{path}:{}: error executing init command: {e}",
                        cmd.line
                    ));
                }
            }
        }
        if error.is_none() {
            if let Err(f) = self.events() {
                error = Some(format!(
                    "{path}:{}: {}",
                    f.line,
                    with_error_word(&f.message)
                ));
            }
        }
        if let Some(cmd) = &self.script.cleanup_command {
            if let Err(e) = super::command::run(&mut self, cmd.line, &cmd.command) {
                let msg = format!("{path}:{}: error executing cleanup command: {e}", cmd.line);
                error.get_or_insert(msg);
            }
        }
        if let Some(p) = self.pcap.as_mut() {
            let _ = p.flush();
        }
        Outcome {
            error,
            warnings: self.warnings,
            log: self.log,
            virtual_usecs: self.host.now().saturating_sub(START_NS) / NS_PER_US,
        }
    }

    fn events(&mut self) -> Result<(), Failure> {
        let events = &self.script.events;
        let mut last_abs: Option<u64> = None;
        for (i, ev) in events.iter().enumerate() {
            if i == 0 && !matches!(ev.time, TimeSpec::Absolute(0) | TimeSpec::Relative(0)) {
                return Err(Failure::at(ev.line, "first event should be at time 0"));
            }
            if let TimeSpec::Absolute(t) = ev.time {
                if let Some(prev) = last_abs {
                    if t < prev {
                        return Err(Failure::at(
                            ev.line,
                            format!("time goes backward in script from {prev} usec to {t} usec"),
                        ));
                    }
                }
                last_abs = Some(t);
            }
            let r = self.event(ev);
            match r {
                Err(f) if f.soft && self.non_fatal(ev) => {
                    let w = format!("{}:{}: warning: {}", self.script.path, f.line, f.message);
                    self.warn(w);
                }
                r => r?,
            }
        }
        // A blocking call still running: give it until its end (and the tolerance).
        if let Some(p) = self.pending.as_ref() {
            let (line, until) = (p.line, p.end_us.unwrap_or(p.start_us));
            let deadline = until + self.tolerance(until);
            self.advance_to(Self::ns(deadline))?;
            if self.pending.is_some() {
                return Err(Failure::at(
                    line,
                    format!(
                        "blocking system call did not return by {}",
                        format_seconds(deadline)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn non_fatal(&self, ev: &Event) -> bool {
        match ev.kind {
            EventKind::Packet(_) => self.s.non_fatal_packet,
            EventKind::Syscall(_) => self.s.non_fatal_syscall,
            _ => false,
        }
    }

    /// The timing tolerance for something expected at script time `t`.
    pub(crate) fn tolerance(&self, t: u64) -> u64 {
        let pct = (t.saturating_sub(self.last_us) as f64 * self.s.tolerance_percent / 100.0) as u64;
        self.s.tolerance_usecs.max(pct)
    }

    /// The script time an event is due, and the end of its window for ranges.
    fn due(&self, time: TimeSpec) -> (u64, Option<u64>) {
        match time {
            TimeSpec::Absolute(t) => (t, None),
            TimeSpec::Relative(d) => (self.last_us + d, None),
            TimeSpec::Any => (self.last_us, Some(self.last_us + ANY_TIME_LIMIT_US)),
            TimeSpec::AbsoluteRange { start, end } => (start, Some(end)),
            TimeSpec::RelativeRange { start, end } => {
                (self.last_us + start, Some(self.last_us + end))
            }
        }
    }

    fn event(&mut self, ev: &Event) -> Result<(), Failure> {
        let (due, range_end) = self.due(ev.time);
        match &ev.kind {
            EventKind::Packet(p) if p.direction == Direction::Outbound => {
                self.outbound(ev, p, due, range_end)?;
            }
            kind => {
                self.wait_until(ev.line, due, kind_name(kind))?;
                match kind {
                    EventKind::Packet(p) => self.inbound(ev.line, p)?,
                    EventKind::Syscall(call) => {
                        // END has the start's time base: after a relative start it is
                        // relative to the same previous event.
                        let base = self.last_us;
                        let end = call.blocking_end.map(|e| match ev.time {
                            TimeSpec::Relative(_) | TimeSpec::RelativeRange { .. } => base + e,
                            _ => e,
                        });
                        syscall::run(self, ev.line, call, due, end)?;
                    }
                    EventKind::Command(cmd) => {
                        self.note(ev.line, format!("`{}`", cmd.command));
                        super::command::run(self, ev.line, &cmd.command)
                            .map_err(|e| Failure::at(ev.line, e))?;
                    }
                    EventKind::Code(code) => self.code(ev.line, &code.text)?,
                }
            }
        }
        self.last_us = self.now_us();
        Ok(())
    }

    /// Moves the host to script time `t` (an inbound packet, a call, a command is due);
    /// packetdrill's timing error if the host is past it already.
    fn wait_until(&mut self, line: u32, t: u64, what: &str) -> Result<(), Failure> {
        self.advance_to(Self::ns(t))?;
        let now = self.now_us();
        if now > t + self.tolerance(t) {
            return Err(Failure::at(
                line,
                format!(
                    "timing error: expected {what} at {} sec but happened at {} sec",
                    format_seconds(t),
                    format_seconds(now)
                ),
            ));
        }
        Ok(())
    }

    /// Takes what the host sent into the outbound queue (and the capture).
    ///
    /// A connection with a UDP encapsulation port (TCP_REMOTE_UDP_ENCAPS_PORT, or one
    /// learned from what the peer sent over UDP) goes out in UDP from
    /// net.inet.tcp.udp_tunneling_port, as FreeBSD's tunnel sends it.
    fn collect(&mut self) {
        let t = self.host.now();
        let sport = self.host.tunables.udp_tunneling_port as u16;
        let (out, pcap) = (&mut self.out, &mut self.pcap);
        self.host.transmit_tagged(|p, port| {
            let bytes = match port {
                0 => p.to_vec(),
                dport => packet::encapsulate(p, sport, dport).unwrap_or_else(|| p.to_vec()),
            };
            if let Some(w) = pcap.as_mut() {
                let _ = w.write_packet(t, &bytes);
            }
            out.push_back(Sniffed { t_ns: t, bytes });
        });
    }

    /// Runs the host forward to `target` (host ns): every timer on the way fires at its
    /// time, and a blocking call is retried after each step.
    pub(crate) fn advance_to(&mut self, target: u64) -> Result<(), Failure> {
        for _ in 0..MAX_STEPS {
            self.collect();
            self.poll_pending()?;
            self.collect();
            // The host's next timer, or a blocked call's own timeout (poll), if sooner.
            let wake = self.pending.as_ref().and_then(|p| p.wake_ns());
            let next = match (self.host.next_timeout(), wake) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match next {
                Some(t) if t <= target => {
                    let t = t.max(self.host.now());
                    self.host.advance(t);
                    // A timer that re-arms itself for the same instant must not stall us.
                    if self.host.next_timeout().is_some_and(|n| n <= t) {
                        self.host.advance(t + 1);
                    }
                }
                _ => {
                    if self.host.now() < target {
                        self.host.advance(target);
                    }
                    self.collect();
                    self.poll_pending()?;
                    self.collect();
                    return Ok(());
                }
            }
        }
        Err(Failure::at(
            0,
            "the host does not settle (too many timer steps)",
        ))
    }

    /// One step of the host: to its next timer, if there is one before `limit`.
    fn step(&mut self, limit: u64) -> Result<bool, Failure> {
        match self.host.next_timeout() {
            Some(t) if t <= limit => {
                self.advance_to(t.max(self.host.now()))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn poll_pending(&mut self) -> Result<(), Failure> {
        if self.pending.is_some() {
            syscall::retry(self)?;
        }
        Ok(())
    }

    /// The socket under test, or packetdrill's error.
    fn socket(&self, line: u32) -> Result<usize, Failure> {
        self.under_test
            .ok_or_else(|| Failure::at(line, "no matching socket for script packet"))
    }

    /// The newest connection whose peer (the script) uses `port`.
    fn socket_with_remote_port(&self, port: u16) -> Option<usize> {
        self.sockets
            .iter()
            .rposition(|s| s.remote.is_some_and(|r| r.port() == port))
    }

    pub(crate) fn socket_by_fd(&self, fd: i32) -> Option<usize> {
        self.sockets.iter().rposition(|s| s.fd == Some(fd))
    }

    /// A script socket for a connection the script's peer starts (or a stray segment): local
    /// at the port the socket under test is bound to (else the script's bind port), remote at
    /// the segment's source port (else the next fresh one). It becomes the socket under test.
    fn new_peer_socket(&mut self, tcp: &TcpSegmentSpec) -> usize {
        let lport = self
            .under_test
            .and_then(|i| self.sockets[i].fd)
            .and_then(|fd| self.posix.getsockname(&self.host, fd).ok())
            .map(|a| a.port())
            .filter(|&p| p != 0)
            .unwrap_or(self.s.bind_port);
        let mut s = ScriptSocket::new(None);
        s.local = Some(SocketAddr::new(self.s.local_ip, lport));
        let rport = tcp.ports.map_or_else(|| self.remote_port(), |p| p.src);
        s.remote = Some(SocketAddr::new(self.s.remote_ip, rport));
        self.sockets.push(s);
        self.under_test = Some(self.sockets.len() - 1);
        self.sockets.len() - 1
    }

    fn remote_port(&mut self) -> u16 {
        let p = self.next_remote_port;
        self.next_remote_port = self.next_remote_port.wrapping_add(1).max(FIRST_REMOTE_PORT);
        p
    }

    // ---- inbound packets -------------------------------------------------------------

    fn inbound(&mut self, line: u32, p: &PacketEvent) -> Result<(), Failure> {
        let bytes = match &p.body {
            PacketBody::Tcp(tcp) => self.inbound_tcp(line, &p.ip, tcp)?,
            PacketBody::Icmp(icmp) => self.inbound_icmp(line, icmp)?,
        };
        self.note(line, format!("inject {p}"));
        if let Some(w) = self.pcap.as_mut() {
            let _ = w.write_packet(self.host.now(), &bytes);
        }
        match self.decapsulate(&bytes) {
            Some(Some((plain, port))) => self.host.input_with_port(&plain, port),
            Some(None) => {}
            None => self.host.input_with_port(&bytes, 0),
        }
        self.collect();
        self.poll_pending()?;
        self.collect();
        Ok(())
    }

    /// A TCP-over-UDP packet from the script as the host's tunnel takes it: the segment
    /// in a plain IP packet and the peer's UDP port. Only the port
    /// net.inet.tcp.udp_tunneling_port has a tunnel: elsewhere (or with it 0) the datagram
    /// is dropped (`Some(None)`). `None`: not UDP.
    fn decapsulate(&mut self, bytes: &[u8]) -> Option<Option<(Vec<u8>, u16)>> {
        let live = LivePacket::parse(bytes)?;
        let (sport, dport) = live.udp?;
        let tunnel = self.host.tunables.udp_tunneling_port as u16;
        if tunnel == 0 || dport != tunnel {
            return Some(None);
        }
        let Some(seg) = packet::udp_payload(bytes) else {
            return Some(None);
        };
        let mut buf = vec![0; seg.len() + 40];
        match wire::wrap_tcp(&mut buf, live.src.ip(), live.dst.ip(), seg) {
            Ok(n) => {
                buf.truncate(n);
                Some(Some((buf, sport)))
            }
            Err(_) => Some(None),
        }
    }

    fn inbound_tcp(
        &mut self,
        line: u32,
        ip: &IpSpec,
        tcp: &TcpSegmentSpec,
    ) -> Result<Vec<u8>, Failure> {
        let syn = tcp.flags.contains(TcpFlags::SYN);
        let ack = tcp.flags.contains(TcpFlags::ACK);
        let seq = match tcp.seq {
            SeqSpec::Relative { start, .. } | SeqSpec::Absolute { start, .. } => start,
            SeqSpec::Ignored { .. } => {
                return Err(Failure::at(line, "inbound packets need a sequence number"));
            }
        };
        // Explicit ports name the connection (Google's `SRC>DST`): one the script has
        // already, or, for a SYN, a new one.
        if let Some(p) = tcp.ports {
            if let Some(i) = self.socket_with_remote_port(p.src) {
                self.under_test = Some(i);
            }
        }
        let named_elsewhere = tcp.ports.is_some_and(|p| {
            self.under_test
                .is_none_or(|i| self.sockets[i].remote.map(|r| r.port()) != Some(p.src))
        });
        // A SYN to a listening (or fresh) socket opens a new connection under test.
        let opens = syn
            && !ack
            && (named_elsewhere
                || self.under_test.is_none_or(|i| {
                    matches!(self.sockets[i].state, SockState::New | SockState::Listening)
                }));
        // A new SYN on a synchronized connection while a listener is there may start a new
        // incarnation of the 4-tuple (after TIME_WAIT): the host's SYN-ACK then sets a new
        // local ISN; the peer's numbers keep their base, as in packetdrill.
        let listening = self.sockets.iter().any(|s| s.state == SockState::Listening);
        if syn && !ack && !opens && listening {
            if let Some(i) = self.under_test {
                if self.sockets[i].state == SockState::Synchronized {
                    self.sockets[i].state = SockState::PassiveSynReceived;
                }
            }
        }
        if opens {
            let child = self.new_peer_socket(tcp);
            self.sockets[child].state = SockState::PassiveSynReceived;
            self.sockets[child].remote_isn = seq;
        }
        // A segment before any connection exists (to a listener, or a closed port): from
        // the script's address, with sequence numbers taken as they are.
        let stray = self
            .under_test
            .is_none_or(|i| self.sockets[i].local.is_none() || self.sockets[i].remote.is_none());
        if stray && !opens {
            self.new_peer_socket(tcp);
        }
        let i = self.socket(line)?;
        {
            let sock = &mut self.sockets[i];
            match sock.state {
                SockState::ActiveSynSent if syn => {
                    // The SYN-ACK (or a simultaneous SYN): the peer's ISN.
                    sock.remote_isn = seq;
                    if ack {
                        sock.state = SockState::Synchronized;
                    }
                }
                SockState::PassiveSynAckSent if ack => sock.state = SockState::Synchronized,
                _ => {}
            }
        }
        let sock = &self.sockets[i];
        let (Some(local), Some(remote)) = (sock.local, sock.remote) else {
            return Err(Failure::at(
                line,
                "no connection to send this packet on (no SYN or connect yet)",
            ));
        };
        let mut options = match &tcp.options {
            TcpOptionsSpec::Any => {
                return Err(Failure::at(line, "<...> is for outbound packets only"));
            }
            TcpOptionsSpec::List(list) => {
                let mapped: Vec<TcpOptionSpec> = list
                    .iter()
                    .map(|o| match o {
                        TcpOptionSpec::Sack(blocks) => TcpOptionSpec::Sack(
                            blocks
                                .iter()
                                .map(|b| plugtcp_packetdrill::SackBlock {
                                    left: sock.ack_to_live(b.left),
                                    right: sock.ack_to_live(b.right),
                                })
                                .collect(),
                        ),
                        TcpOptionSpec::Timestamp(ts) if ack && !ts.ecr_absolute => {
                            TcpOptionSpec::Timestamp(TimestampSpec {
                                ecr: sock.ecr_to_live(ts.ecr),
                                ..*ts
                            })
                        }
                        o => o.clone(),
                    })
                    .collect();
                packet::encode_options(&mapped, 0)
            }
        };
        if options.len() > 40 {
            return Err(Failure::at(line, "TCP options longer than 40 bytes"));
        }
        if options.len() % 4 != 0 {
            // The parser checks this; pad defensively rather than send a bad header.
            options.resize(options.len().div_ceil(4) * 4, 0);
        }
        let ports = tcp.ports.map(|p| (p.src, p.dst));
        let (src, dst) = match ports {
            Some((s, d)) => (
                SocketAddr::new(remote.ip(), s),
                SocketAddr::new(local.ip(), d),
            ),
            None => (remote, local),
        };
        let udp = tcp.udp_encapsulation.map(|p| (p.src, p.dst));
        if udp.is_some() {
            self.sockets[i].udp = udp;
        }
        let sock = &self.sockets[i];
        let tos = ip_tos(ip);
        let pkt = TcpPacket {
            src: Some(src),
            dst: Some(dst),
            tos,
            ttl: ip.ttl.unwrap_or(64),
            flow_label: ip.flow_label.unwrap_or(0),
            seq,
            ack: if ack {
                sock.ack_to_live(tcp.ack.unwrap_or(0))
            } else {
                tcp.ack.unwrap_or(0)
            },
            flags: tcp.flags.bits(),
            win: tcp.window.unwrap_or(65535),
            urp: tcp.urgent.unwrap_or(0),
            options,
            payload: vec![0u8; usize::from(tcp.seq.len())],
            udp,
        };
        let mut bytes = pkt.build();
        // `md5` or `md5 valid` in an inbound packet: signed with the host's key for the
        // peer (`--tcp_md5_secret`); `md5 invalid`: signed wrong.
        let md5 = match &tcp.options {
            TcpOptionsSpec::List(l) => l.iter().find_map(|o| match o {
                TcpOptionSpec::Md5(plugtcp_packetdrill::Md5Spec::Digest(_)) => None,
                TcpOptionSpec::Md5(spec) => Some(*spec == plugtcp_packetdrill::Md5Spec::Invalid),
                _ => None,
            }),
            TcpOptionsSpec::Any => None,
        };
        if let (Some(corrupt), None) = (md5, udp) {
            let key = self
                .host
                .md5_key_for(src.ip())
                .ok_or_else(|| Failure::at(line, "an md5 option needs --tcp_md5_secret"))?;
            packet::sign_md5(&mut bytes, &key, corrupt);
        }
        Ok(bytes)
    }

    /// Whether an outbound packet's TCP-MD5 signature is right for the host's key for its
    /// destination (`None`: it carries none).
    fn outbound_md5(&self, bytes: &[u8]) -> Option<bool> {
        let (src, dst, tcp) = wire::tcp_segment(bytes)?;
        wire::signature_offset(tcp)?;
        let key = self.host.md5_key_for(dst)?;
        wire::md5_signature_ok(src, dst, tcp, &key)
    }

    fn inbound_icmp(&mut self, line: u32, spec: &IcmpSpec) -> Result<Vec<u8>, Failure> {
        let version = if self.s.local_ip.is_ipv6() {
            IcmpVersion::V6
        } else {
            IcmpVersion::V4
        };
        let tc = icmp::resolve(spec, version).map_err(|e| Failure::at(line, e))?;
        let i = self.socket(line)?;
        let sock = &self.sockets[i];
        let (Some(local), Some(remote)) = (sock.local, sock.remote) else {
            return Err(Failure::at(
                line,
                "no connection for this ICMP message to quote",
            ));
        };
        // The quoted packet is one of ours: its sequence number is in our space.
        let (seq, len) = match spec.quoted.map(|q| q.seq) {
            Some(SeqSpec::Relative { start, len }) => (sock.ack_to_live(start), len),
            Some(SeqSpec::Absolute { start, len }) => (start, len),
            Some(SeqSpec::Ignored { len }) => (sock.live_local_isn, len),
            None => (sock.live_local_isn, 0),
        };
        let quoted = TcpPacket {
            src: Some(local),
            dst: Some(remote),
            ttl: 64,
            seq,
            ack: sock.remote_isn.wrapping_add(1),
            flags: TcpFlags::ACK.bits(),
            win: 0,
            payload: vec![0u8; usize::from(len)],
            ..Default::default()
        }
        .build();
        // RFC 792: the IP header and the first 8 bytes of the datagram (RFC 1812 allows
        // more; FreeBSD reads the first 8).
        let hlen = if local.is_ipv4() { 20 } else { 40 };
        let quote = &quoted[..(hlen + 8).min(quoted.len())];
        Ok(packet::icmp_error(
            remote.ip(),
            local.ip(),
            tc.icmp_type,
            tc.code,
            spec.mtu.unwrap_or(0),
            quote,
        ))
    }

    // ---- outbound packets ------------------------------------------------------------

    fn outbound(
        &mut self,
        ev: &Event,
        p: &PacketEvent,
        due: u64,
        range_end: Option<u64>,
    ) -> Result<(), Failure> {
        let PacketBody::Tcp(spec) = &p.body else {
            return Err(Failure::at(
                ev.line,
                "outbound ICMP packets are not supported",
            ));
        };
        let line = ev.line;
        if let Some(p) = spec.ports {
            if let Some(i) = self.socket_with_remote_port(p.dst) {
                self.under_test = Some(i);
            }
        }
        let i = self.socket(line)?;
        // An outbound SYN-ACK or SYN fixes the script's ISN for this connection.
        let syn = spec.flags.contains(TcpFlags::SYN);
        if syn {
            if let Some(start) = spec.seq.start() {
                let st = self.sockets[i].state;
                if matches!(
                    st,
                    SockState::PassiveSynReceived | SockState::ActiveConnecting
                ) || (st == SockState::New && !spec.flags.contains(TcpFlags::ACK))
                {
                    self.sockets[i].script_local_isn = start;
                }
            }
        }
        let end = range_end.unwrap_or(due);
        let deadline = end + self.tolerance(end);
        let (t_ns, live) = self.sniff(line, i, Self::ns(deadline), due)?;
        let live = self.merge_segments(i, live, spec, Self::ns(deadline));
        let actual_us = t_ns.saturating_sub(START_NS) / NS_PER_US;
        self.learn_from(i, &live, spec);
        let r = self.verify(i, p, spec, &live);
        let timing = self.verify_time(ev.time, due, range_end, actual_us);
        let sock = &self.sockets[i];
        let shown = show_actual(sock, &live, p.ip.ecn.is_some());
        self.note(line, format!("sniffed {shown}"));
        let err = match (r, timing) {
            (Err(e), _) => Some((format!("error handling packet: {e}"), true)),
            (Ok(()), Err(e)) => Some((format!("error handling packet: {e}"), true)),
            (Ok(()), Ok(())) => None,
        };
        if let Some((mut msg, soft)) = err {
            let _ = write!(
                msg,
                "\nscript packet: {:>10} {}\nactual packet: {:>10} {}",
                format_seconds(due),
                p,
                format_seconds(actual_us),
                shown
            );
            return Err(Failure {
                line,
                message: msg,
                soft,
            });
        }
        Ok(())
    }

    /// The next packet the host sends on connection `i` (passing over others), waiting
    /// for it until `deadline` (host ns).
    fn sniff(
        &mut self,
        line: u32,
        i: usize,
        deadline: u64,
        due: u64,
    ) -> Result<(u64, LivePacket), Failure> {
        for _ in 0..MAX_STEPS {
            self.collect();
            while let Some(s) = self.out.pop_front() {
                let Some(mut live) = LivePacket::parse(&s.bytes) else {
                    continue;
                };
                live.md5_ok = self.outbound_md5(&s.bytes);
                if self.belongs(i, &live) {
                    return Ok((s.t_ns, live));
                }
                self.note(
                    line,
                    format!(
                        "passed over a packet of another connection: {} > {}",
                        live.src, live.dst
                    ),
                );
            }
            if !self.step(deadline)? {
                break;
            }
        }
        Err(Failure {
            line,
            message: format!(
                "error handling packet: timed out waiting for packet: expected one at {} sec, nothing by {} sec",
                format_seconds(due),
                format_seconds(deadline.saturating_sub(START_NS) / NS_PER_US)
            ),
            soft: false,
        })
    }

    /// Whether the host's packet belongs to connection `i`; a connecting socket's first
    /// SYN tells its local address and ISN.
    fn belongs(&mut self, i: usize, live: &LivePacket) -> bool {
        let sock = &mut self.sockets[i];
        let flags = TcpFlags::from_bits(live.flags);
        if sock.state == SockState::ActiveConnecting
            && flags.contains(TcpFlags::SYN)
            && !flags.contains(TcpFlags::ACK)
            && sock.remote == Some(live.dst)
        {
            sock.local = Some(live.src);
            sock.live_local_isn = live.seq;
            sock.state = SockState::ActiveSynSent;
            return true;
        }
        sock.local == Some(live.src) && sock.remote == Some(live.dst)
    }

    /// What a matched packet teaches: the host's ISN from its SYN-ACK, and the live value
    /// of each TS val the script wrote.
    fn learn_from(&mut self, i: usize, live: &LivePacket, spec: &TcpSegmentSpec) {
        let sock = &mut self.sockets[i];
        let flags = TcpFlags::from_bits(live.flags);
        if sock.state == SockState::PassiveSynReceived
            && flags.contains(TcpFlags::SYN)
            && flags.contains(TcpFlags::ACK)
        {
            sock.live_local_isn = live.seq;
            sock.state = SockState::PassiveSynAckSent;
        }
        let script_val = match &spec.options {
            TcpOptionsSpec::List(list) => list.iter().find_map(|o| match o {
                TcpOptionSpec::Timestamp(TimestampSpec { val: Some(v), .. }) => Some(*v),
                _ => None,
            }),
            TcpOptionsSpec::Any => None,
        };
        let live_val = packet::ts_val_offset(&live.options).map(|o| {
            let b = &live.options[o..o + 4];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        });
        if let (Some(s), Some(l)) = (script_val, live_val) {
            sock.ts_map.push((s, l));
            if sock.ts_map.len() > 64 {
                sock.ts_map.remove(0);
            }
        }
    }

    /// Google's segment merging: a script packet longer than what the host sent in one
    /// packet matches consecutive packets sent together, as a TSO/GSO capture shows them.
    fn merge_segments(
        &mut self,
        i: usize,
        mut live: LivePacket,
        spec: &TcpSegmentSpec,
        deadline: u64,
    ) -> LivePacket {
        let want = usize::from(spec.seq.len());
        if self.s.strict_segments || live.payload.is_empty() || live.payload.len() >= want {
            return live;
        }
        let mut taken = 0;
        let mut merged = live.clone();
        let mut ok = false;
        for s in self.out.iter() {
            let Some(next) = LivePacket::parse(&s.bytes) else {
                break;
            };
            let contiguous = next.src == merged.src
                && next.dst == merged.dst
                && next.seq == merged.seq.wrapping_add(merged.payload.len() as u32)
                && next.ack == merged.ack
                && next.options == merged.options
                && (next.flags & !0x09) == (merged.flags & !0x09)
                && merged.flags & 0x01 == 0;
            if !contiguous || merged.payload.len() + next.payload.len() > want {
                break;
            }
            merged.payload.extend_from_slice(&next.payload);
            merged.flags = (merged.flags & !0x09) | (next.flags & 0x09);
            merged.win = next.win;
            taken += 1;
            if merged.payload.len() == want {
                ok = true;
                break;
            }
        }
        let _ = (i, deadline);
        if ok {
            for _ in 0..taken {
                self.out.pop_front();
            }
            live = merged;
        }
        live
    }

    /// Compares the host's packet with the script's, in script space.
    fn verify(
        &self,
        i: usize,
        p: &PacketEvent,
        spec: &TcpSegmentSpec,
        live: &LivePacket,
    ) -> Result<(), String> {
        let sock = &self.sockets[i];
        let field = |name: &str, expected: u32, actual: u32| -> Result<(), String> {
            if expected == actual {
                Ok(())
            } else {
                Err(format!(
                    "live packet field {name}: expected: {expected} (0x{expected:x}) vs actual: {actual} (0x{actual:x})"
                ))
            }
        };
        if !live.ip_sum_ok {
            return Err("bad outbound IP checksum".into());
        }
        if !live.tcp_sum_ok {
            return Err("bad outbound TCP checksum".into());
        }
        if live.md5_ok == Some(false) {
            return Err("bad outbound TCP-MD5 signature".into());
        }
        let want_udp = spec.udp_encapsulation.is_some();
        if want_udp != live.udp.is_some() {
            return Err(format!(
                "live packet encapsulation: expected {} vs actual {}",
                if want_udp {
                    "TCP over UDP"
                } else {
                    "plain TCP"
                },
                if live.udp.is_some() {
                    "TCP over UDP"
                } else {
                    "plain TCP"
                }
            ));
        }
        let names = [
            ("tcp_fin", TcpFlags::FIN),
            ("tcp_syn", TcpFlags::SYN),
            ("tcp_rst", TcpFlags::RST),
            ("tcp_psh", TcpFlags::PSH),
            ("tcp_ack", TcpFlags::ACK),
            ("tcp_urg", TcpFlags::URG),
            ("tcp_ece", TcpFlags::ECE),
            ("tcp_cwr", TcpFlags::CWR),
            ("tcp_ae", TcpFlags::AE),
        ];
        let lf = TcpFlags::from_bits(live.flags);
        for (name, f) in names {
            field(
                name,
                u32::from(spec.flags.contains(f)),
                u32::from(lf.contains(f)),
            )?;
        }
        if let Some(start) = spec.seq.start() {
            let actual = match spec.seq {
                SeqSpec::Absolute { .. } => live.seq,
                _ => sock.seq_to_script(live.seq),
            };
            field("tcp_seq", start, actual)?;
        }
        let expected_len = u32::from(spec.seq.len());
        field("tcp_payload_len", expected_len, live.payload.len() as u32)?;
        if spec.flags.contains(TcpFlags::ACK) {
            field("tcp_ack_seq", spec.ack.unwrap_or(0), live.ack)?;
        }
        if let Some(w) = spec.window {
            field("tcp_window", u32::from(w), u32::from(live.win))?;
        }
        field(
            "tcp_urg_ptr",
            u32::from(spec.urgent.unwrap_or(0)),
            u32::from(live.urp),
        )?;
        // IP: ECN, TOS, TTL when the script says.
        let ecn = live.tos & 0x03;
        match p.ip.ecn {
            None => {}
            Some(EcnSpec::Ect0OrEct1) if ecn == 1 || ecn == 2 => {}
            Some(EcnSpec::Ect0OrEct1) => {
                return Err(format!(
                    "live packet field ip_ecn: expected: 0x1 or 0x2 vs actual: 0x{ecn:x}"
                ));
            }
            Some(e) => field("ip_ecn", u32::from(ecn_bits(e)), u32::from(ecn))?,
        }
        if let Some(tos) = p.ip.tos {
            field(
                "ip_tos",
                u32::from(tos & !0x03),
                u32::from(live.tos & !0x03),
            )?;
        }
        if let Some(dscp) = p.ip.dscp {
            field("ip_dscp", u32::from(dscp), u32::from(live.tos >> 2))?;
        }
        if let Some(ttl) = p.ip.ttl {
            field("ip_ttl", u32::from(ttl), u32::from(live.ttl))?;
        }
        self.verify_options(sock, spec, live)?;
        if live.payload.iter().any(|&b| b != 0) {
            return Err("incorrect outbound data payload".into());
        }
        Ok(())
    }

    fn verify_options(
        &self,
        sock: &ScriptSocket,
        spec: &TcpSegmentSpec,
        live: &LivePacket,
    ) -> Result<(), String> {
        let TcpOptionsSpec::List(list) = &spec.options else {
            return Ok(());
        };
        let live_ts = packet::ts_val_offset(&live.options).map(|o| {
            let b = &live.options[o..o + 4];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        });
        // SACK edges are in the script's (the peer's) space already: no mapping. A TS val
        // is not compared unless --tcp_ts_tick_usecs says how fast the clock runs; `TS val
        // ...` never is.
        let script_ts = list.iter().find_map(|o| match o {
            TcpOptionSpec::Timestamp(ts) => Some(ts.val),
            _ => None,
        });
        let mut expected = packet::encode_options(list, live_ts.unwrap_or(0));
        let mut actual = live.options.clone();
        if let (Some(Some(sv)), Some(lv)) = (script_ts, live_ts) {
            if self.s.tcp_ts_tick_usecs > 0 {
                let prev = sock.ts_map.iter().rev().find(|(s, _)| *s != sv);
                if let Some(&(ps, pl)) = prev {
                    // The clock's advance since a known pair, in ticks, must agree.
                    let want = pl.wrapping_add(sv.wrapping_sub(ps));
                    let off = (lv.wrapping_sub(want) as i32).unsigned_abs() as u64;
                    if off * self.s.tcp_ts_tick_usecs > self.s.tolerance_usecs {
                        return Err(format!(
                            "bad outbound TCP timestamp value: expected {want} vs actual {lv}"
                        ));
                    }
                }
            }
            if let Some(o) = packet::ts_val_offset(&expected) {
                expected[o..o + 4].copy_from_slice(&lv.to_be_bytes());
            }
        }
        // A wildcard window scale (`wscale *`) takes whatever shift was sent.
        if let (Some(we), Some(wa)) = (wscale_offset(list, &expected), wscale_at(&actual)) {
            if list
                .iter()
                .any(|o| matches!(o, TcpOptionSpec::WindowScale(None)))
            {
                expected[we] = actual[wa];
            }
        }
        // An MD5 placeholder does not compare the digest.
        if list.iter().any(|o| {
            matches!(
                o,
                TcpOptionSpec::Md5(
                    plugtcp_packetdrill::Md5Spec::Placeholder | plugtcp_packetdrill::Md5Spec::Valid
                )
            )
        }) {
            if let (Some(e), Some(a)) = (packet::md5_offset(&expected), packet::md5_offset(&actual))
            {
                expected[e..e + 16].fill(0);
                actual[a..a + 16].fill(0);
            }
        }
        if expected != actual {
            return Err(format!(
                "bad outbound TCP options: expected <{}> vs actual <{}>",
                join(&packet::decode_options(&expected)),
                join(&packet::decode_options(&live.options))
            ));
        }
        Ok(())
    }

    fn verify_time(
        &self,
        time: TimeSpec,
        due: u64,
        range_end: Option<u64>,
        actual: u64,
    ) -> Result<(), String> {
        let tol = self.tolerance(due);
        match time {
            TimeSpec::Any => Ok(()),
            TimeSpec::AbsoluteRange { .. } | TimeSpec::RelativeRange { .. } => {
                let end = range_end.unwrap_or(due);
                if actual + tol < due || actual > end + tol {
                    Err(format!(
                        "timing error: expected outbound packet in time range {}~{} sec but happened at {} sec",
                        format_seconds(due),
                        format_seconds(end),
                        format_seconds(actual)
                    ))
                } else {
                    Ok(())
                }
            }
            _ => {
                if actual + tol < due || actual > due + tol {
                    Err(format!(
                        "timing error: expected outbound packet at {} sec but happened at {} sec",
                        format_seconds(due),
                        format_seconds(actual)
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    // ---- code ------------------------------------------------------------------------

    /// `%{ ... }%`: evaluated now on the socket under test's TCP_INFO.
    fn code(&mut self, line: u32, text: &str) -> Result<(), Failure> {
        let fd = self
            .under_test
            .and_then(|i| self.sockets[i].fd)
            .or_else(|| self.posix.open_fds().last().copied())
            .ok_or_else(|| Failure::at(line, "no socket to collect TCP_INFO from"))?;
        let mut buf = [0u8; plugtcp_abi::stack::TCP_INFO_LEN];
        let n = self
            .posix
            .getsockopt(
                &mut self.host,
                fd,
                plugtcp_abi::sockopt::IPPROTO_TCP,
                plugtcp_abi::sockopt::TCP_INFO,
                &mut buf,
            )
            .map_err(|e| Failure::at(line, format!("getsockopt(TCP_INFO): {e}")))?;
        let info = super::command::tcp_info_fields(&buf[..n]);
        let names = |name: &str| {
            info.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .or_else(|| super::symbols::lookup(name))
        };
        match super::code::run(text, &names) {
            Ok(out) => {
                if !out.printed.is_empty() {
                    self.note(line, format!("code printed: {}", out.printed.trim_end()));
                }
                Ok(())
            }
            Err(e) => Err(Failure::at(
                line + e.line.saturating_sub(1) as u32,
                format!("error in code: {e}"),
            )),
        }
    }
}

fn kind_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Packet(_) => "inbound packet",
        EventKind::Syscall(_) => "system call start",
        EventKind::Command(_) => "command",
        EventKind::Code(_) => "data collection for code",
    }
}

fn ecn_bits(e: EcnSpec) -> u8 {
    match e {
        EcnSpec::NotEct => 0,
        EcnSpec::Ect1 => 1,
        EcnSpec::Ect0 => 2,
        EcnSpec::Ce => 3,
        EcnSpec::Ect0OrEct1 => 2,
    }
}

/// The TOS byte an inbound packet carries.
fn ip_tos(ip: &IpSpec) -> u8 {
    let dscp = ip
        .tos
        .map(|t| t & !0x03)
        .or(ip.dscp.map(|d| d << 2))
        .unwrap_or(0);
    dscp | ip.ecn.map_or(0, ecn_bits)
}

fn join(list: &[TcpOptionSpec]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn wscale_at(raw: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            0 | 1 => i += 1,
            3 if raw.get(i + 1) == Some(&3) => return Some(i + 2),
            _ => i += usize::from(*raw.get(i + 1)?).max(2),
        }
    }
    None
}

fn wscale_offset(list: &[TcpOptionSpec], encoded: &[u8]) -> Option<usize> {
    list.iter()
        .any(|o| matches!(o, TcpOptionSpec::WindowScale(_)))
        .then(|| wscale_at(encoded))
        .flatten()
}

/// The host's packet in packetdrill notation, mapped into script space.
pub(crate) fn show_actual(sock: &ScriptSocket, live: &LivePacket, with_ecn: bool) -> String {
    let flags = TcpFlags::from_bits(live.flags);
    let seg = TcpSegmentSpec {
        ports: None,
        flags,
        ace_notation: false,
        seq: SeqSpec::Relative {
            start: sock.seq_to_script(live.seq),
            len: live.payload.len().min(u16::MAX as usize) as u16,
        },
        ack: flags.contains(TcpFlags::ACK).then_some(live.ack),
        window: Some(live.win),
        urgent: (live.urp != 0).then_some(live.urp),
        options: TcpOptionsSpec::List(packet::decode_options(&live.options)),
        udp_encapsulation: live
            .udp
            .map(|(s, d)| plugtcp_packetdrill::PortPair { src: s, dst: d }),
    };
    let ecn = match live.tos & 0x03 {
        0 => EcnSpec::NotEct,
        1 => EcnSpec::Ect1,
        2 => EcnSpec::Ect0,
        _ => EcnSpec::Ce,
    };
    let ev = PacketEvent {
        direction: Direction::Outbound,
        ip: IpSpec {
            ecn: (with_ecn || live.tos & 0x03 != 0).then_some(ecn),
            ..Default::default()
        },
        body: PacketBody::Tcp(seg),
    };
    ev.to_string()
}

/// The IP version a script's sockets use by default (`socket(..., ...)`).
pub(crate) fn default_domain(v: IpVersion) -> i32 {
    match v {
        IpVersion::Ipv4 => plugtcp_host::posix::consts::AF_INET,
        _ => plugtcp_host::posix::consts::AF_INET6,
    }
}

/// packetdrill's messages say what failed first (`error handling packet: ...`, `runtime
/// error in read call: ...`, `timing error: ...`); any other gets `error: ` in front, so
/// every failure reads `SCRIPT:LINE: error ...` or `SCRIPT:LINE: ... error ...`.
fn with_error_word(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let lead = first.split(':').next().unwrap_or_default();
    if lead.contains("error") {
        message.to_string()
    } else {
        format!("error: {message}")
    }
}
