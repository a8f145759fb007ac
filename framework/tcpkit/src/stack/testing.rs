//! A fake host for the unit tests of a TCP function block, in-tree or out-of-tree: one
//! connection on a block, driven through its ABI descriptor (the [`TcpFunctionBlockRef`]
//! its `export_function_block!`'s `function_block()` returns) exactly as `host/core` calls
//! it, with the host side a test controls and inspects:
//!
//! - the clock and the connection's timers ([`tt`]), armed and cancelled by the stack with
//!   their deadlines ([`TestConn::deadline`]), fired when the test moves the clock
//!   ([`TestConn::advance`], [`TestConn::fire`]);
//! - the send and receive buffers the host owns (`snd_*` and `rcv_*` ops), filled and
//!   drained by the application calls ([`TestConn::send`], [`TestConn::recv`]);
//! - every segment the stack emits, captured as its descriptor with the payload bytes the
//!   host would copy from the send buffer ([`Sent`]), with the host's checks (EINVAL for
//!   bytes not in the buffer or a TSO descriptor beyond the limits, EOPNOTSUPP for TCP-MD5);
//! - the events the stack reports ([`ConnEvent`]), and the block's counters;
//! - the connection's [`Tcpcb`], which the test may read and change between calls as the
//!   host does (connect, shutdown, close, options, ICMP).
//!
//! Use it to check a stack's answers segment by segment without a network or a second
//! host: a handshake, the ACK a data segment earns, what the windows let out, what a timer
//! does. For whole transfers over a lossy link, stack switches under load and interplay
//! with the host's own machinery (SYN cache, LRO, TIME_WAIT, the socket API), use the
//! integration tests' simulated network (`host/cli/tests`), which runs the real host.
//!
//! What the fake host does on the stack's behalf follows the contract in
//! [`plugtcp_abi::stack`] ("The host<->stack contract"): [`TestConn::connect`] writes
//! SYN_SENT and calls `output`; [`TestConn::accepted`] makes a connection as the SYN cache
//! does (SYN_RECEIVED, `init(Fresh)`, `inherit`) and hands it the handshake's ACK;
//! [`TestConn::send`] appends to the send buffer and calls `output`; [`TestConn::recv`]
//! consumes and calls `output`; [`TestConn::shutdown`] and [`TestConn::close`] move
//! `t_state` and call `output`; [`TestConn::setsockopt`] stores the options the host keeps
//! (keepalive, TCP_USER_TIMEOUT) and notifies the stack, and passes the rest to
//! `ctloutput`; [`TestConn::switch_to`] is the make-before-break switch of
//! setsockopt(TCP_FUNCTION_BLK). It does not model what the host does without the stack:
//! TIME_WAIT (a segment for a connection in TIME_WAIT is the host's: [`TestConn::input`]
//! panics), listeners and the SYN cache's own answers, LRO, ICMP beyond
//! [`TestConn::mtu_chg`].
//!
//! A hook that panics (the export wrapper turns the panic into
//! [`HookStatus::PANICKED`]) fails the test: the host would free the connection. Errnos
//! the host ignores (`do_segment`, `output`, `timer`, `mtu_chg`) are collected in
//! [`TestConn::hook_errors`].
//!
//! Test code only: the block's counters (which the host keeps for as long as it runs) are
//! leaked, and the CC globals come from [`crate::cc::testing::globals`].
//!
//! ```
//! use plugtcp_abi::segment::{th, SegIn, SegOut};
//! use plugtcp_abi::sockopt::SockOpt;
//! use plugtcp_abi::stack::{tt, InitMode, OldStack, StackCtx, TcpStack};
//! use plugtcp_abi::{Errno, TcpState};
//! use plugtcp_tcpkit::stack::testing::{Handshake, PeerSeg, TestConn};
//!
//! /// A toy stack: sends the SYN, takes any SYN-ACK, and acknowledges every in-order
//! /// payload at once.
//! struct Toy;
//!
//! impl Toy {
//!     fn ack(cx: &mut StackCtx) {
//!         let seg = SegOut {
//!             seq: cx.tp.snd_nxt,
//!             ack: cx.tp.rcv_nxt,
//!             flags: th::ACK,
//!             win: cx.host.rcv_space().min(65535) as u16,
//!             ..Default::default()
//!         };
//!         let _ = cx.host.output(&seg);
//!     }
//! }
//!
//! impl TcpStack for Toy {
//!     const NAME: &'static str = "toy";
//!     fn init(_cx: &mut StackCtx, _mode: InitMode, _old: OldStack) -> Result<Self, Errno> {
//!         Ok(Toy)
//!     }
//!     fn do_segment(&mut self, cx: &mut StackCtx, seg: &SegIn<'_>) -> Result<(), Errno> {
//!         let tp = &mut cx.tp;
//!         if tp.t_state == TcpState::SynSent && seg.flags & th::SYN != 0 {
//!             (tp.irs, tp.rcv_nxt, tp.snd_una) = (seg.seq, seg.seq.wrapping_add(1), seg.ack);
//!             tp.t_state = TcpState::Established;
//!             cx.host.timer_stop(tt::REXMT);
//!         } else if seg.seq == tp.rcv_nxt && !seg.payload.is_empty() {
//!             let n = cx.host.rcv_write(0, &seg.payload);
//!             cx.host.rcv_commit(n);
//!             cx.tp.rcv_nxt = cx.tp.rcv_nxt.wrapping_add(n);
//!         } else {
//!             return Ok(());
//!         }
//!         Toy::ack(cx);
//!         Ok(())
//!     }
//!     fn output(&mut self, cx: &mut StackCtx) -> Result<(), Errno> {
//!         if cx.tp.t_state == TcpState::SynSent && cx.tp.snd_max == cx.tp.iss {
//!             let syn = SegOut { seq: cx.tp.iss, flags: th::SYN, win: 65535, ..Default::default() };
//!             cx.host.output(&syn)?;
//!             (cx.tp.snd_nxt, cx.tp.snd_max) = (cx.tp.iss + 1, cx.tp.iss + 1);
//!             cx.host.timer_start(tt::REXMT, 1_000_000_000);
//!         }
//!         Ok(())
//!     }
//!     fn timer(&mut self, _cx: &mut StackCtx, _which: u32) -> Result<(), Errno> {
//!         Ok(()) // a real stack retransmits its SYN here
//!     }
//!     fn ctloutput(&mut self, _cx: &mut StackCtx, _opt: &mut SockOpt<'_>) -> Result<(), Errno> {
//!         Err(Errno::ENOPROTOOPT)
//!     }
//! }
//!
//! // socket(2) on the block, then connect(2): the stack sends its SYN and arms a timer.
//! let mut c = TestConn::of::<Toy>();
//! c.connect(1000).unwrap();
//! let syn = c.take_one();
//! assert_eq!(syn.key(), (1000, 0, th::SYN, 0));
//! assert_eq!(c.timer(tt::REXMT), Some(1_000_000_000));
//!
//! // The peer's SYN-ACK 10 ms later: ESTABLISHED and an ACK.
//! c.advance(10_000_000);
//! c.input(&PeerSeg::syn_ack(5000, 1001));
//! assert_eq!(c.state(), TcpState::Established);
//! assert_eq!(c.take_one().key(), (1001, 5001, th::ACK, 0));
//! assert_eq!(c.timer(tt::REXMT), None);
//!
//! // In-order data: in the receive buffer, and acknowledged.
//! c.input(&PeerSeg::ack(5001, 1001).data(b"hello"));
//! assert_eq!(c.rcv_readable(), b"hello");
//! assert_eq!(c.take_one().key(), (1001, 5006, th::ACK, 0));
//!
//! // The same, through the helper that does the whole active open.
//! let mut c = TestConn::of::<Toy>();
//! c.active_open(&Handshake::default());
//! assert_eq!((c.tp().snd_una, c.tp().rcv_nxt), (1001, 5001));
//! ```
//!
//! `stacks/engine/src/tests.rs` (the shared engine's own tests) and
//! `examples/stack-template` use it on real stacks.

use std::any::TypeId;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::fmt;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use plugtcp_abi::abi_stable::prefix_type::WithMetadata;
use plugtcp_abi::abi_stable::std_types::{RSlice, RSliceMut};
use plugtcp_abi::cc::{CcAlgoRef, CcConn, CcHooks, CcVar};
use plugtcp_abi::errno::{Errno, HookError, HookStatus};
use plugtcp_abi::segment::{ecn, th, to, SackBlock, SegIn, SegOut, TcpOpts};
use plugtcp_abi::sockopt::{self, SockOpt, SockOptDir, IPPROTO_TCP, SOL_SOCKET};
use plugtcp_abi::stack::{
    autosize, tt, ConnEvent, HostIf, HostOps, HostOpsRef, InitMode, OldStack, StackCtx,
    StackTunables, StackVtable, TcpFunctionBlockRef, TcpInfo, TcpStack,
};
use plugtcp_abi::tcpcb::{tf, tf2, TcpState, Tcpcb};

/// `t_maxseg` of a new connection: a 1500-byte link, less 40 header bytes.
pub const MSS: u32 = 1460;
/// The send buffer's default size (`net.inet.tcp.sendspace`).
pub const SNDBUF: u32 = 32_768;
/// The receive buffer's default size (`net.inet.tcp.recvspace`).
pub const RCVBUF: u32 = 65_536;
/// `kern.ipc.maxsockbuf`'s default: no buffer grows beyond it.
pub const SB_MAX: u32 = 2 * 1024 * 1024;
/// How far past `rcv_hiwat` the host's receive buffer takes bytes (what a scaled window
/// rounds up by; host/core's `WINDOW_ROUNDING_SLACK`).
pub const RCV_WRITE_SLACK: u32 = (1 << 14) - 1;
/// Milliseconds, in the host clock's nanoseconds.
pub const MS: u64 = 1_000_000;

/// How the fake host makes a connection: what the real host takes from the link, its
/// sysctls and the socket's defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// `t_maxseg` at creation (the link MTU less headers). [`MSS`].
    pub maxseg: u32,
    /// The send and receive buffers' sizes ([`SNDBUF`], [`RCVBUF`]).
    pub snd_hiwat: u32,
    /// See `snd_hiwat`.
    pub rcv_hiwat: u32,
    /// `kern.ipc.maxsockbuf` ([`SB_MAX`]): the ceiling of `autosize`.
    pub sb_max: u32,
    /// `t_tsomax_segs`, which the host writes before every call: 1 (no TSO, the default
    /// here so that every descriptor is one packet), or up to 45 (`net.inet.tcp.tso` 1).
    pub tso_segs: u32,
    /// The `net.inet.tcp.*` values the stack reads ([`StackCtx::tun`]): FreeBSD's defaults.
    pub tunables: StackTunables,
    /// The clock when the connection is made, ns.
    pub start_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            maxseg: MSS,
            snd_hiwat: SNDBUF,
            rcv_hiwat: RCVBUF,
            sb_max: SB_MAX,
            tso_segs: 1,
            tunables: StackTunables::FREEBSD,
            start_ns: 0,
        }
    }
}

/// The two ends of a handshake for [`TestConn::active_open`] and [`TestConn::accepted`]:
/// sequence numbers, what the peer offers, and the round-trip time.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// Our initial sequence number (the host picks it; RFC 6528).
    pub iss: u32,
    /// The peer's initial sequence number.
    pub irs: u32,
    /// The window field of the peer's SYN (never scaled, RFC 7323 2.2) and of its later
    /// segments (scaled by `peer_wscale` when scaling is agreed).
    pub peer_win: u16,
    /// The MSS option of the peer's SYN (none: the stack assumes `mssdflt`).
    pub peer_mss: Option<u16>,
    /// The window-scale option of the peer's SYN (agreed only when ours offered one too:
    /// `rfc1323` 1 or 2).
    pub peer_wscale: Option<u8>,
    /// The peer's SYN says SACK-permitted.
    pub peer_sack: bool,
    /// The peer's timestamp value in its SYN (timestamps are agreed only when ours asked:
    /// `rfc1323` 1 or 3); its later segments' TSval goes on from there.
    pub peer_ts: Option<u32>,
    /// Time between our SYN and the peer's answer, ns.
    pub rtt_ns: u64,
}

impl Default for Handshake {
    /// ISS 1000, IRS 5000, a window of 65535 and an MSS of 1460 offered, no other option,
    /// 10 ms round trip.
    fn default() -> Self {
        Handshake {
            iss: 1000,
            irs: 5000,
            peer_win: 65535,
            peer_mss: Some(1460),
            peer_wscale: None,
            peer_sack: false,
            peer_ts: None,
            rtt_ns: 10 * MS,
        }
    }
}

/// A segment from the peer, owned, built with the methods below; [`Self::as_seg_in`] is
/// what the stack's `do_segment` gets (checksums verified, options parsed: the host's part).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerSeg {
    /// Sequence number of the first byte (of the SYN, if set).
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// `th::*` flags.
    pub flags: u16,
    /// The window field as on the wire.
    pub win: u16,
    /// The urgent pointer field.
    pub urp: u16,
    /// The IP ECN codepoint.
    pub ip_ecn: u8,
    /// Options.
    pub opts: TcpOpts,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

impl PeerSeg {
    /// `flags` at `seq`, acknowledging `ack`, window 65535, no option, no payload.
    pub fn new(seq: u32, ack: u32, flags: u16) -> Self {
        PeerSeg {
            seq,
            ack,
            flags,
            win: 65535,
            ..Default::default()
        }
    }
    /// A SYN at `seq` (an active open from the peer, or a simultaneous open).
    pub fn syn(seq: u32) -> Self {
        PeerSeg::new(seq, 0, th::SYN)
    }
    /// A SYN-ACK at `seq` acknowledging `ack`.
    pub fn syn_ack(seq: u32, ack: u32) -> Self {
        PeerSeg::new(seq, ack, th::SYN | th::ACK)
    }
    /// An ACK at `seq` acknowledging `ack` (add data with [`Self::data`]).
    pub fn ack(seq: u32, ack: u32) -> Self {
        PeerSeg::new(seq, ack, th::ACK)
    }
    /// A RST at `seq` (without ACK).
    pub fn rst(seq: u32) -> Self {
        PeerSeg::new(seq, 0, th::RST)
    }
    /// With `bytes` as payload (and PSH, as a sender sets it on what empties its buffer).
    pub fn data(mut self, bytes: &[u8]) -> Self {
        self.payload = bytes.to_vec();
        self.flags |= th::PUSH;
        self
    }
    /// With `f` (`th::*`) set as well.
    pub fn with(mut self, f: u16) -> Self {
        self.flags |= f;
        self
    }
    /// With `f` (`th::*`) cleared.
    pub fn without(mut self, f: u16) -> Self {
        self.flags &= !f;
        self
    }
    /// With FIN set.
    pub fn fin(self) -> Self {
        self.with(th::FIN)
    }
    /// With this window field.
    pub fn win(mut self, win: u16) -> Self {
        self.win = win;
        self
    }
    /// With the MSS option.
    pub fn mss(mut self, mss: u16) -> Self {
        self.opts.flags |= to::MSS;
        self.opts.mss = mss;
        self
    }
    /// With the window-scale option.
    pub fn wscale(mut self, shift: u8) -> Self {
        self.opts.flags |= to::WSCALE;
        self.opts.wscale = shift.min(14);
        self
    }
    /// With the SACK-permitted option.
    pub fn sack_permitted(mut self) -> Self {
        self.opts.flags |= to::SACKPERM;
        self
    }
    /// With the timestamp option.
    pub fn ts(mut self, tsval: u32, tsecr: u32) -> Self {
        self.opts.flags |= to::TSTAMP;
        self.opts.tsval = tsval;
        self.opts.tsecr = tsecr;
        self
    }
    /// With these SACK blocks, `[start, end)` each (at most 4 are kept, as the host does).
    pub fn sack(mut self, blocks: &[(u32, u32)]) -> Self {
        self.opts.flags |= to::SACK;
        let n = blocks.len().min(4);
        for (i, &(start, end)) in blocks[..n].iter().enumerate() {
            self.opts.sacks[i] = SackBlock { start, end };
        }
        self.opts.nsacks = n as u8;
        self
    }
    /// With this IP ECN codepoint (`ecn::*`).
    pub fn ecn(mut self, codepoint: u8) -> Self {
        self.ip_ecn = codepoint;
        self
    }
    /// With URG and this urgent pointer.
    pub fn urg(mut self, urp: u16) -> Self {
        self.flags |= th::URG;
        self.urp = urp;
        self
    }
    /// The sequence space it takes: payload, plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32
            + u32::from(self.flags & th::SYN != 0)
            + u32::from(self.flags & th::FIN != 0)
    }
    /// What the stack's `do_segment` gets for it.
    pub fn as_seg_in(&self) -> SegIn<'_> {
        SegIn {
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            win: self.win,
            urp: self.urp,
            ip_ecn: self.ip_ecn,
            opts: self.opts,
            payload: self.payload.as_slice().into(),
        }
    }
}

/// A segment the stack asked the host to send: its descriptor, the payload the host copied
/// from the send buffer, and the clock when it went.
#[derive(Clone, PartialEq, Eq)]
pub struct Sent {
    /// The descriptor as the stack passed it to `HostOps::output`.
    pub seg: SegOut,
    /// `seg.data_len` bytes from `seg.data_off` of the send buffer.
    pub payload: Vec<u8>,
    /// The host clock when it was sent, ns.
    pub at_ns: u64,
}

impl Sent {
    /// Sequence number.
    pub fn seq(&self) -> u32 {
        self.seg.seq
    }
    /// Acknowledgment number.
    pub fn ack(&self) -> u32 {
        self.seg.ack
    }
    /// `th::*` flags.
    pub fn flags(&self) -> u16 {
        self.seg.flags
    }
    /// The window field (already shifted by `rcv_scale`).
    pub fn win(&self) -> u16 {
        self.seg.win
    }
    /// Payload bytes.
    pub fn len(&self) -> u32 {
        self.seg.data_len
    }
    /// No payload.
    pub fn is_empty(&self) -> bool {
        self.seg.data_len == 0
    }
    /// Whether flag `f` (`th::*`) is set.
    pub fn has(&self, f: u16) -> bool {
        self.seg.flags & f != 0
    }
    /// The sequence space it takes: payload, plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        self.len() + u32::from(self.has(th::SYN)) + u32::from(self.has(th::FIN))
    }
    /// The sequence number after it.
    pub fn end(&self) -> u32 {
        self.seq().wrapping_add(self.seq_len())
    }
    /// `(seq, ack, flags, len)`: what an exact assertion compares.
    pub fn key(&self) -> (u32, u32, u16, u32) {
        (self.seq(), self.ack(), self.flags(), self.len())
    }
    /// The packets the host puts on the wire for it: one, or with TSO (`tso_segsz` below
    /// `data_len`) one per `tso_segsz` bytes with the same header and options, each its own
    /// sequence number, PSH and FIN on the last only.
    pub fn packets(&self) -> Vec<Sent> {
        let (segsz, len) = (self.seg.tso_segsz, self.seg.data_len);
        if segsz == 0 || len <= segsz {
            return vec![self.clone()];
        }
        let mut out = Vec::with_capacity(len.div_ceil(segsz) as usize);
        let mut off = 0;
        while off < len {
            let k = segsz.min(len - off);
            let last = off + k == len;
            let mut seg = SegOut {
                tso_segsz: 0,
                ..self.seg
            };
            seg.seq = self.seg.seq.wrapping_add(off);
            seg.data_off = self.seg.data_off + off;
            seg.data_len = k;
            if !last {
                seg.flags &= !(th::PUSH | th::FIN);
            }
            out.push(Sent {
                seg,
                payload: self.payload[off as usize..(off + k) as usize].to_vec(),
                at_ns: self.at_ns,
            });
            off += k;
        }
        out
    }
}

/// tcpdump's flag letters: S F R P U E W, `.` for ACK.
pub fn flag_letters(flags: u16) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (th::SYN, 'S'),
        (th::FIN, 'F'),
        (th::RST, 'R'),
        (th::PUSH, 'P'),
        (th::URG, 'U'),
        (th::ECE, 'E'),
        (th::CWR, 'W'),
        (th::ACK, '.'),
    ] {
        if flags & bit != 0 {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

impl fmt::Debug for Sent {
    /// One line, tcpdump's way: `[S.] seq 1000:1001(0) ack 5001 win 65535 <mss 1460>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.seg;
        write!(
            f,
            "[{}] seq {}:{}({}) ack {} win {}",
            flag_letters(s.flags),
            s.seq,
            self.end(),
            s.data_len,
            s.ack,
            s.win
        )?;
        let o = &s.opts;
        let mut opts = Vec::new();
        if o.has(to::MSS) {
            opts.push(format!("mss {}", o.mss));
        }
        if o.has(to::WSCALE) {
            opts.push(format!("wscale {}", o.wscale));
        }
        if o.has(to::SACKPERM) {
            opts.push("sackOK".to_owned());
        }
        if o.has(to::TSTAMP) {
            opts.push(format!("TS val {} ecr {}", o.tsval, o.tsecr));
        }
        if o.has(to::SACK) {
            let b: Vec<String> = o
                .sack_blocks()
                .iter()
                .map(|b| format!("{}:{}", b.start, b.end))
                .collect();
            opts.push(format!("sack {}", b.join(" ")));
        }
        if !opts.is_empty() {
            write!(f, " <{}>", opts.join(","))?;
        }
        if s.urp != 0 {
            write!(f, " urp {}", s.urp)?;
        }
        if s.tso_segsz != 0 {
            write!(f, " tso {}", s.tso_segsz)?;
        }
        if s.ip_ecn != ecn::NOT_ECT {
            write!(f, " ecn {}", s.ip_ecn)?;
        }
        Ok(())
    }
}

/// The host side of the connection: what `StackCtx.host.host` points at during a call.
struct TestHost {
    now: u64,
    /// Deadlines of the connection's timers, ns on the clock.
    timers: [Option<u64>; tt::COUNT as usize],
    /// From the first unacknowledged data byte to the last byte the application wrote.
    snd: VecDeque<u8>,
    snd_hiwat: u32,
    /// From the application's read position: `rcv_readable` readable bytes, then what the
    /// stack wrote beyond them (out-of-order bytes; holes read as 0) up to `rcv_written`.
    rcv: Vec<u8>,
    rcv_readable: usize,
    rcv_written: usize,
    rcv_hiwat: u32,
    /// Auto-sizing allowed (the application did not fix the size: SO_SNDBUF/SO_RCVBUF).
    snd_auto: bool,
    rcv_auto: bool,
    sb_max: u32,
    tso_segs: u32,
    /// The tunables the connection's calls see (owned by the TestConn).
    tunables: *const StackTunables,
    fail_output: Option<Errno>,
    sent: Vec<Sent>,
    events: Vec<ConnEvent>,
    /// Inside [`TestConn::input_batch`] (what `HostIf::input_batch` answers).
    in_batch: bool,
    /// What the stack set with `pacing_set` (recorded, not enforced: the fake host sends
    /// everything at once and `pacing` always says "now").
    pacing_rate: u64,
    pacing_quantum: u32,
    /// The attached CC module's `cong_control`, when it is rate-based.
    cc_rate_hook: Option<plugtcp_abi::cc::CongControlFn>,
}

fn host<'a>(p: *mut c_void) -> Option<&'a mut TestHost> {
    // SAFETY: TestConn points `cx.host.host` at its boxed TestHost for the duration of each
    // hook call only (`TestConn::call`) and nulls it afterwards; the TestHost is disjoint
    // from the StackCtx the stack borrows. Null: a call without host, every op a no-op.
    unsafe { (p as *mut TestHost).as_mut() }
}

/// Bytes the options of `o` take on the wire (padded to 4), as the host writes them on a
/// segment with `flags`.
fn opts_len(o: &TcpOpts, flags: u16) -> u32 {
    let syn = flags & th::SYN != 0;
    let mut n = 0;
    if syn && o.has(to::MSS) {
        n += 4;
    }
    if syn && o.has(to::WSCALE) {
        n += 4;
    }
    if syn && o.has(to::SACKPERM) {
        n += 4;
    }
    if o.has(to::TSTAMP) {
        n += 12;
    }
    if !syn && o.has(to::SACK) {
        n += 4 + 8 * o.sack_blocks().len() as u32;
    }
    n.min(40)
}

extern "C" fn op_output(p: *mut c_void, seg: &SegOut) -> HookStatus {
    let Some(h) = host(p) else {
        return HookStatus(Errno::ENOTCONN.0);
    };
    if let Some(e) = h.fail_output {
        return HookStatus(e.0);
    }
    if seg.opts.has(to::SIGNATURE) {
        return HookStatus(Errno::EOPNOTSUPP.0);
    }
    let (off, len) = (seg.data_off as usize, seg.data_len as usize);
    let end = off.saturating_add(len);
    if len > 0 && end > h.snd.len() {
        // Payload not in the send buffer.
        return HookStatus(Errno::EINVAL.0);
    }
    let segsz = seg.tso_segsz;
    let per_packet = if segsz != 0 && seg.data_len > segsz {
        if seg.flags & (th::SYN | th::URG | th::CWR) != 0
            || seg.data_len.div_ceil(segsz) > h.tso_segs
        {
            return HookStatus(Errno::EINVAL.0);
        }
        segsz
    } else {
        seg.data_len
    };
    // IPv4 and TCP headers, the options, the payload: one IP packet.
    if per_packet.saturating_add(40 + opts_len(&seg.opts, seg.flags)) > 65535 {
        return HookStatus(Errno::EINVAL.0);
    }
    let payload = if len > 0 {
        h.snd.range(off..end).copied().collect()
    } else {
        Vec::new()
    };
    h.sent.push(Sent {
        seg: *seg,
        payload,
        at_ns: h.now,
    });
    HookStatus::OK
}
extern "C" fn op_snd_len(p: *mut c_void) -> u32 {
    host(p).map_or(0, |h| h.snd.len() as u32)
}
extern "C" fn op_snd_read(p: *mut c_void, off: u32, mut dst: RSliceMut<'_, u8>) -> u32 {
    let Some(h) = host(p) else { return 0 };
    let off = off as usize;
    if off >= h.snd.len() {
        return 0;
    }
    let n = dst.len().min(h.snd.len() - off);
    for (d, s) in dst[..n].iter_mut().zip(h.snd.range(off..off + n)) {
        *d = *s;
    }
    n as u32
}
extern "C" fn op_snd_drop(p: *mut c_void, n: u32) {
    if let Some(h) = host(p) {
        let n = (n as usize).min(h.snd.len());
        h.snd.drain(..n);
    }
}
extern "C" fn op_rcv_space(p: *mut c_void) -> u32 {
    host(p).map_or(0, |h| h.rcv_space())
}
extern "C" fn op_rcv_hiwat(p: *mut c_void) -> u32 {
    host(p).map_or(0, |h| h.rcv_hiwat)
}
extern "C" fn op_autosize(p: *mut c_void, which: u32, size: u32) -> u32 {
    let Some(h) = host(p) else { return 0 };
    // SAFETY: set by TestConn::call to its boxed tunables, alive and unchanged during the
    // call.
    let t = unsafe { h.tunables.as_ref() }.unwrap_or(&StackTunables::FREEBSD);
    match which {
        autosize::RESERVE_RCV => {
            h.rcv_hiwat = size.min(h.sb_max).max(h.rcv_hiwat);
            h.rcv_hiwat
        }
        autosize::RESERVE_SND => {
            h.snd_hiwat = size.min(h.sb_max).max(h.snd_hiwat);
            h.snd_hiwat
        }
        autosize::RCV => {
            if h.rcv_auto && t.recvbuf_auto != 0 {
                h.rcv_hiwat = size.min(t.recvbuf_max).max(h.rcv_hiwat);
            }
            h.rcv_hiwat
        }
        _ => {
            if h.snd_auto && t.sendbuf_auto != 0 {
                h.snd_hiwat = size.min(t.sendbuf_max).max(h.snd_hiwat);
            }
            h.snd_hiwat
        }
    }
}
extern "C" fn op_snd_hiwat(p: *mut c_void) -> u32 {
    host(p).map_or(0, |h| h.snd_hiwat)
}
extern "C" fn op_rcv_write(p: *mut c_void, off: u32, data: RSlice<'_, u8>) -> u32 {
    let Some(h) = host(p) else { return 0 };
    let Some(start) = h.rcv_readable.checked_add(off as usize) else {
        return 0;
    };
    let limit = (h.rcv_hiwat + RCV_WRITE_SLACK) as usize;
    if start >= limit {
        return 0;
    }
    let n = data.len().min(limit - start);
    if h.rcv.len() < start + n {
        h.rcv.resize(start + n, 0);
    }
    h.rcv[start..start + n].copy_from_slice(&data[..n]);
    if n > 0 {
        h.rcv_written = h.rcv_written.max(start + n);
    }
    n as u32
}
extern "C" fn op_rcv_commit(p: *mut c_void, n: u32) {
    if let Some(h) = host(p) {
        h.rcv_readable += (n as usize).min(h.rcv_written - h.rcv_readable);
    }
}
extern "C" fn op_timer_start(p: *mut c_void, which: u32, delay_ns: u64) {
    if let Some(h) = host(p) {
        if let Some(t) = h.timers.get_mut(which as usize) {
            *t = Some(h.now.saturating_add(delay_ns));
        }
    }
}
extern "C" fn op_timer_stop(p: *mut c_void, which: u32) {
    if let Some(t) = host(p).and_then(|h| h.timers.get_mut(which as usize)) {
        *t = None;
    }
}
extern "C" fn op_timer_remaining(p: *mut c_void, which: u32) -> u64 {
    let Some(h) = host(p) else { return u64::MAX };
    h.timers
        .get(which as usize)
        .copied()
        .flatten()
        .map_or(u64::MAX, |d| d.saturating_sub(h.now))
}
extern "C" fn op_now(p: *mut c_void) -> u64 {
    host(p).map_or(0, |h| h.now)
}
extern "C" fn op_input_batch(p: *mut c_void) -> bool {
    host(p).is_some_and(|h| h.in_batch)
}
extern "C" fn op_event(p: *mut c_void, ev: ConnEvent) {
    if let Some(h) = host(p) {
        h.events.push(ev);
    }
}

extern "C" fn op_pacing(p: *mut c_void) -> plugtcp_abi::stack::Pacing {
    let (rate, quantum) = host(p).map_or((0, 0), |h| (h.pacing_rate, h.pacing_quantum));
    plugtcp_abi::stack::Pacing {
        rate,
        quantum,
        wait_ns: 0,
        max_rate: u64::MAX,
    }
}
extern "C" fn op_pacing_set(p: *mut c_void, rate: u64, quantum: u32) {
    if let Some(h) = host(p) {
        h.pacing_rate = rate;
        h.pacing_quantum = quantum;
    }
}
extern "C" fn op_cc_cong_control(p: *mut c_void) -> plugtcp_abi::cc::CongControlHook {
    plugtcp_abi::cc::CongControlHook {
        func: host(p).and_then(|h| h.cc_rate_hook),
    }
}
extern "C" fn op_stack_param(_p: *mut c_void, _idx: u32) -> i64 {
    // The fake host has no sysctl tree: every parameter reads as its default.
    i64::MIN
}

const HOST_OPS_WM: &WithMetadata<HostOps> = &WithMetadata::new(HostOps {
    output: op_output,
    snd_len: op_snd_len,
    snd_read: op_snd_read,
    snd_drop: op_snd_drop,
    rcv_space: op_rcv_space,
    rcv_hiwat: op_rcv_hiwat,
    autosize: op_autosize,
    snd_hiwat: op_snd_hiwat,
    rcv_write: op_rcv_write,
    rcv_commit: op_rcv_commit,
    timer_start: op_timer_start,
    timer_stop: op_timer_stop,
    timer_remaining: op_timer_remaining,
    now: op_now,
    event: op_event,
    input_batch: op_input_batch,
    pacing: op_pacing,
    pacing_set: op_pacing_set,
    cc_cong_control: op_cc_cong_control,
    stack_param: op_stack_param,
});

/// The fake host's operations, as a stack sees them in `cx.host.ops`.
pub const HOST_OPS: HostOpsRef = HostOpsRef(HOST_OPS_WM.static_as_prefix());

impl TestHost {
    fn rcv_space(&self) -> u32 {
        self.rcv_hiwat.saturating_sub(self.rcv_readable as u32)
    }
}

/// `T`'s ABI descriptor: the one its `export_function_block!`'s `function_block()` returns.
pub fn block<T: TcpStack>() -> TcpFunctionBlockRef {
    StackVtable::<T>::BLOCK
}

/// Fresh counters for `block` (all 0), leaked: the host keeps a block's counters for as long
/// as it runs.
fn leak_counters(block: TcpFunctionBlockRef) -> &'static [AtomicUsize] {
    Box::leak(
        block
            .counters()
            .iter()
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

/// One connection on a function block, with the fake host around it. See the module docs.
pub struct TestConn {
    cx: StackCtx,
    host: Box<TestHost>,
    tunables: Box<StackTunables>,
    block: TcpFunctionBlockRef,
    /// The block's per-connection state, as its `init` made it (null before, or when it has
    /// no `init`).
    state: *mut c_void,
    /// The Rust type of the block's state, when the block was given by type.
    stack_type: Option<TypeId>,
    /// The IPPROTO_TCP options set through `ctloutput` that succeeded (TCP_QUICKACK aside):
    /// what the host replays after a switch.
    remembered: Vec<(i32, i32, Vec<u8>)>,
    hook_errors: Vec<(&'static str, Errno)>,
    /// The stack reported `Closed` (or left `t_state` CLOSED after the connection began):
    /// the host took it out of its lookup table.
    removed: bool,
    /// `fini(purged)` ran: the connection is gone.
    freed: bool,
}

impl TestConn {
    /// socket(2) on block `T` with the [`Config`] defaults: a CLOSED connection, `T`'s
    /// `init` in [`InitMode::Fresh`]. Panics if `init` fails.
    pub fn of<T: TcpStack>() -> Self {
        Self::of_with::<T>(Config::default())
    }

    /// [`Self::of`] with `cfg`.
    pub fn of_with<T: TcpStack>(cfg: Config) -> Self {
        let mut c = Self::new_with(block::<T>(), cfg);
        c.stack_type = Some(TypeId::of::<T>());
        c
    }

    /// socket(2) on the block `block` (a `function_block()`, or a descriptor loaded some
    /// other way) with the [`Config`] defaults. Panics if its `init` fails.
    pub fn new(block: TcpFunctionBlockRef) -> Self {
        Self::new_with(block, Config::default())
    }

    /// [`Self::new`] with `cfg`.
    pub fn new_with(block: TcpFunctionBlockRef, cfg: Config) -> Self {
        match Self::try_new(block, cfg) {
            Ok(c) => c,
            Err(e) => panic!("{}: init(Fresh) failed: {e}", block.name()),
        }
    }

    /// socket(2): `Err` with `init`'s errno when the stack refuses the connection.
    pub fn try_new(block: TcpFunctionBlockRef, cfg: Config) -> Result<Self, Errno> {
        let mut c = Self::unattached(block, cfg);
        c.attach_fresh()?;
        Ok(c)
    }

    /// A connection the host's SYN cache made from the peer's SYN and the handshake's ACK
    /// (passive open), on block `T`: the tcpcb in SYN_RECEIVED as the SYN cache writes it
    /// (see [`plugtcp_abi::stack`], "The tcpcb"), `init(Fresh)`, `inherit` with a listener
    /// in LISTEN, then the ACK (`hs.iss + 1`, window `hs.peer_win`) to `do_segment`, `rtt_ns`
    /// after the SYN-ACK. Options are agreed as the SYN cache agrees them: window scaling
    /// when `peer_wscale` is set and `rfc1323` asks for it, timestamps likewise with
    /// `peer_ts`, SACK with `peer_sack` and `sack.enable`. Sent segments and events are
    /// kept for the test to look at.
    pub fn accepted<T: TcpStack>(hs: &Handshake) -> Self {
        Self::accepted_with::<T>(hs, Config::default())
    }

    /// [`Self::accepted`] with `cfg`.
    pub fn accepted_with<T: TcpStack>(hs: &Handshake, cfg: Config) -> Self {
        let mut c = Self::unattached(block::<T>(), cfg);
        c.stack_type = Some(TypeId::of::<T>());
        let t = c.tunables.clone();
        let rcv_wscale = c.rcv_wscale();
        let synack_wnd = c.host.rcv_hiwat.min(65535);
        let tp = &mut c.cx.tp;
        tp.t_state = TcpState::SynReceived;
        tp.iss = hs.iss;
        tp.irs = hs.irs;
        tp.snd_una = hs.iss;
        tp.snd_nxt = hs.iss.wrapping_add(1);
        tp.snd_max = tp.snd_nxt;
        tp.snd_up = tp.snd_nxt;
        tp.rcv_nxt = hs.irs.wrapping_add(1);
        tp.rcv_up = tp.rcv_nxt;
        tp.rcv_adv = tp.rcv_nxt.wrapping_add(synack_wnd);
        tp.snd_wl1 = hs.irs;
        let mssdflt = if tp.t_flags2 & tf2::INET6 != 0 {
            t.v6mssdflt
        } else {
            t.mssdflt
        };
        tp.t_peer_mss = hs.peer_mss.map_or(mssdflt, u32::from);
        tp.t_maxseg = tp.t_maxseg.min(tp.t_peer_mss).max(t.minmss);
        if let (Some(ws), 1 | 2) = (hs.peer_wscale, t.rfc1323) {
            tp.t_flags |= tf::REQ_SCALE | tf::RCVD_SCALE;
            tp.snd_scale = ws.min(14);
            tp.rcv_scale = rcv_wscale;
            tp.request_r_scale = rcv_wscale;
        }
        if let (Some(ts), 1 | 3) = (hs.peer_ts, t.rfc1323) {
            tp.t_flags |= tf::REQ_TSTMP | tf::RCVD_TSTMP;
            tp.ts_recent = ts;
            tp.ts_recent_age = c.host.now;
        }
        if hs.peer_sack && t.sack_enable != 0 {
            tp.t_flags |= tf::SACK_PERMIT;
        }
        if let Err(e) = c.attach_fresh() {
            panic!("{}: init(Fresh) failed: {e}", c.block.name());
        }
        let mut listener = Tcpcb::new(c.cx.tp.t_maxseg);
        listener.t_state = TcpState::Listen;
        if let Some(inherit) = c.block.inherit() {
            let state = c.state;
            let st = c.call("inherit", |cx| inherit(state, cx, &listener));
            if let Err(e) = st.into_result() {
                panic!("{}: inherit failed: {e}", c.block.name());
            }
        }
        // The SYN-ACK's TSval, which the ACK echoes.
        let synack_ts = c.our_tsval();
        c.advance(hs.rtt_ns);
        let mut ack = PeerSeg::ack(hs.irs.wrapping_add(1), hs.iss.wrapping_add(1)).win(hs.peer_win);
        if c.cx.tp.t_flags & tf::RCVD_TSTMP != 0 {
            ack = ack.ts(hs.peer_ts.unwrap_or(0).wrapping_add(1), synack_ts);
        }
        c.input(&ack);
        c
    }

    fn unattached(block: TcpFunctionBlockRef, cfg: Config) -> Self {
        let tunables = Box::new(cfg.tunables.clone());
        let host = Box::new(TestHost {
            now: cfg.start_ns,
            timers: [None; tt::COUNT as usize],
            snd: VecDeque::new(),
            snd_hiwat: cfg.snd_hiwat,
            rcv: Vec::new(),
            rcv_readable: 0,
            rcv_written: 0,
            rcv_hiwat: cfg.rcv_hiwat,
            snd_auto: true,
            rcv_auto: true,
            sb_max: cfg.sb_max,
            tso_segs: cfg.tso_segs.max(1),
            tunables: std::ptr::null(),
            fail_output: None,
            sent: Vec::new(),
            events: Vec::new(),
            in_batch: false,
            pacing_rate: 0,
            pacing_quantum: 0,
            cc_rate_hook: None,
        });
        TestConn {
            cx: StackCtx {
                tp: Tcpcb::new(cfg.maxseg),
                cc: CcConn::new(crate::cc::testing::globals()),
                host: HostIf {
                    ops: HOST_OPS,
                    host: std::ptr::null_mut(),
                },
                counters: leak_counters(block).into(),
                tunables: std::ptr::null(),
            },
            host,
            tunables,
            block,
            state: std::ptr::null_mut(),
            stack_type: None,
            remembered: Vec::new(),
            hook_errors: Vec::new(),
            removed: false,
            freed: false,
        }
    }

    fn attach_fresh(&mut self) -> Result<(), Errno> {
        for (what, present) in [
            ("do_segment", self.block.do_segment().is_some()),
            ("output", self.block.output().is_some()),
            ("ctloutput", self.block.ctloutput().is_some()),
            ("handoff_ok", self.block.handoff_ok().is_some()),
        ] {
            assert!(
                present,
                "{}: no {what} hook: the host refuses the block (EINVAL)",
                self.block.name()
            );
        }
        if let Some(init) = self.block.init() {
            let mut st = std::ptr::null_mut();
            let r = self.call("init", |cx| {
                init(cx, InitMode::Fresh, OldStack::NONE, &mut st)
            });
            self.state = st;
            r.into_result().map_err(HookError::errno)?;
        }
        Ok(())
    }

    /// Runs one hook call with the host interface and the tunables pointed at this
    /// connection's, as the host does, and unpointed afterwards. A panic in the hook (or in
    /// a CC hook called inside it) fails the test.
    fn call(
        &mut self,
        hook: &'static str,
        f: impl FnOnce(&mut StackCtx) -> HookStatus,
    ) -> HookStatus {
        assert!(
            !self.freed,
            "{}: {hook} on a freed connection",
            self.block.name()
        );
        self.host.tunables = &*self.tunables;
        self.cx.tunables = &*self.tunables;
        self.cx.tp.t_tsomax_segs = self.host.tso_segs;
        self.cx.host.host = &mut *self.host as *mut TestHost as *mut c_void;
        let st = f(&mut self.cx);
        self.cx.host.host = std::ptr::null_mut();
        self.cx.tunables = std::ptr::null();
        self.host.tunables = std::ptr::null();
        if std::mem::take(&mut self.cx.cc.faulted) {
            panic!(
                "a CC hook panicked during {}'s {hook}: the host frees the connection",
                self.block.name()
            );
        }
        if st == HookStatus::PANICKED {
            panic!(
                "{}'s {hook} panicked: the host frees the connection",
                self.block.name()
            );
        }
        st
    }

    /// A hook whose errno the host ignores: record it; then the host's look at the events
    /// and the state.
    fn call_ignored(&mut self, hook: &'static str, f: impl FnOnce(&mut StackCtx) -> HookStatus) {
        let before = self.host.events.len();
        let st = self.call(hook, f);
        if let Err(HookError::Errno(e)) = st.into_result() {
            self.hook_errors.push((hook, e));
        }
        let closed_ev = self.host.events[before..].contains(&ConnEvent::Closed);
        if closed_ev || (self.cx.tp.t_state == TcpState::Closed && self.cx.tp.iss != 0) {
            self.removed = true;
            // Out of the table and closed by the application: the host frees it.
            if self.cx.tp.t_flags & tf::CLOSED != 0 {
                self.free();
            }
        }
    }

    fn assert_in_table(&self, what: &str) {
        assert!(
            !self.removed,
            "{what}: the connection was closed (Closed reported or t_state CLOSED): the host \
             no longer has it in its lookup table"
        );
    }

    /// The host's `output` call (tcp_output): what it does after connect, send, recv,
    /// shutdown, close, send(MSG_OOB), `mtu_chg` and at the end of a receive batch.
    pub fn output(&mut self) {
        let h = self.block.output().expect("required hook");
        let state = self.state;
        self.call_ignored("output", |cx| h(state, cx));
    }

    /// The peer's segment `seg` reaches the stack's `do_segment` (outside a receive batch:
    /// no `output` call after it). Panics in TIME_WAIT (the host answers those itself) and
    /// once the connection left the lookup table.
    pub fn input(&mut self, seg: &PeerSeg) {
        self.assert_in_table("input");
        assert!(
            self.cx.tp.t_state != TcpState::TimeWait,
            "input in TIME_WAIT: the host answers segments in TIME_WAIT itself"
        );
        let h = self.block.do_segment().expect("required hook");
        let state = self.state;
        let seg = seg.as_seg_in();
        self.call_ignored("do_segment", |cx| h(state, cx, &seg));
    }

    /// A receive batch: each segment to `do_segment` with `HostIf::input_batch` true (as
    /// long as the connection stays in the table), then one `output` call.
    pub fn input_batch(&mut self, segs: &[PeerSeg]) {
        self.assert_in_table("input_batch");
        self.host.in_batch = true;
        for s in segs {
            if self.removed || self.cx.tp.t_state == TcpState::TimeWait {
                break;
            }
            self.input(s);
        }
        self.host.in_batch = false;
        if !self.removed {
            self.output();
        }
    }

    /// connect(2) with initial sequence number `iss` (not 0: the host takes 0 for "never
    /// connected"): the host writes SYN_SENT (`t_state`, `iss`, `snd_una`, `snd_nxt`,
    /// `snd_max`, `snd_up`, `snd_recover`, `t_starttime`; `tf::REQ_SCALE` with
    /// `request_r_scale` and `tf::REQ_TSTMP` as the `rfc1323` tunable says) and calls
    /// `output`: the stack sends the SYN. EISCONN unless the connection is CLOSED and
    /// never connected.
    pub fn connect(&mut self, iss: u32) -> Result<(), Errno> {
        assert!(iss != 0, "ISS 0 means \"never connected\" to the host");
        let tp = &self.cx.tp;
        if tp.t_state != TcpState::Closed || tp.iss != 0 || self.removed {
            return Err(Errno::EISCONN);
        }
        let (rfc1323, wscale, now) = (self.tunables.rfc1323, self.rcv_wscale(), self.host.now);
        let tp = &mut self.cx.tp;
        tp.t_state = TcpState::SynSent;
        tp.iss = iss;
        tp.snd_una = iss;
        tp.snd_nxt = iss;
        tp.snd_max = iss;
        tp.snd_up = iss;
        tp.snd_recover = iss;
        tp.t_starttime = now;
        if matches!(rfc1323, 1 | 2) {
            tp.t_flags |= tf::REQ_SCALE;
            tp.request_r_scale = wscale;
        }
        if matches!(rfc1323, 1 | 3) {
            tp.t_flags |= tf::REQ_TSTMP;
        }
        self.output();
        Ok(())
    }

    /// An active open to ESTABLISHED: [`Self::connect`] with `hs.iss`, `hs.rtt_ns` later the
    /// peer's SYN-ACK (`hs.irs`, acknowledging the SYN, with the options `hs` offers and
    /// window `hs.peer_win`), then the sent segments (SYN, ACK) and the events are cleared.
    /// Panics unless the stack is ESTABLISHED afterwards.
    pub fn active_open(&mut self, hs: &Handshake) -> &mut Self {
        if let Err(e) = self.connect(hs.iss) {
            panic!("connect: {e}");
        }
        let syn_opts = self
            .host
            .sent
            .last()
            .map(|s| s.seg.opts)
            .unwrap_or_default();
        self.advance(hs.rtt_ns);
        let mut sa = PeerSeg::syn_ack(hs.irs, hs.iss.wrapping_add(1)).win(hs.peer_win);
        if let Some(m) = hs.peer_mss {
            sa = sa.mss(m);
        }
        if let Some(w) = hs.peer_wscale {
            sa = sa.wscale(w);
        }
        if hs.peer_sack {
            sa = sa.sack_permitted();
        }
        if let Some(ts) = hs.peer_ts {
            sa = sa.ts(ts, syn_opts.tsval);
        }
        self.input(&sa);
        assert_eq!(
            self.state(),
            TcpState::Established,
            "{} after the SYN-ACK; sent: {:?}",
            self.block.name(),
            self.host.sent
        );
        self.host.sent.clear();
        self.host.events.clear();
        self
    }

    /// The window-scale shift the host asks for: the smallest that covers the largest
    /// receive buffer (FreeBSD tcp_connect).
    fn rcv_wscale(&self) -> u8 {
        let max = self.tunables.recvbuf_max.max(self.host.rcv_hiwat) as u64;
        let mut s = 0u8;
        while s < 14 && (65535u64 << s) < max {
            s += 1;
        }
        s
    }

    /// Our timestamp clock now (the stack's TSval when it follows RFC 7323 as the host's
    /// own segments do): milliseconds of the clock plus `ts_offset`.
    pub fn our_tsval(&self) -> u32 {
        ((self.host.now / MS) as u32).wrapping_add(self.cx.tp.ts_offset)
    }

    /// send(2): appends what fits in the send buffer and calls `output` (none when nothing
    /// fit: EAGAIN). The host's errnos: the connection's error once it failed, EPIPE after
    /// shutdown, ENOTCONN while CLOSED.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Errno> {
        let tp = &self.cx.tp;
        if tp.t_softerror != 0 {
            return Err(Errno(tp.t_softerror));
        }
        if tp.t_state.sent_close() {
            return Err(Errno::EPIPE);
        }
        if tp.t_state == TcpState::Closed {
            return Err(Errno::ENOTCONN);
        }
        let room = self
            .host
            .snd_hiwat
            .saturating_sub(self.host.snd.len() as u32) as usize;
        let n = data.len().min(room);
        if n == 0 && !data.is_empty() {
            return Err(Errno::EAGAIN);
        }
        self.host.snd.extend(&data[..n]);
        self.output();
        Ok(n)
    }

    /// recv(2) of up to `max` bytes: takes them out of the receive buffer and, when it took
    /// any, calls `output` (a window update may be due).
    pub fn recv(&mut self, max: usize) -> Vec<u8> {
        let h = &mut *self.host;
        let n = max.min(h.rcv_readable);
        let out: Vec<u8> = h.rcv.drain(..n).collect();
        h.rcv_readable -= n;
        h.rcv_written -= n;
        if n > 0 && !self.freed {
            self.output();
        }
        out
    }

    /// shutdown(SHUT_WR): the host moves `t_state` (SYN_RECEIVED and ESTABLISHED to
    /// FIN_WAIT_1, CLOSE_WAIT to LAST_ACK; SYN_SENT to CLOSED, freeing the connection) and
    /// calls `output`: the stack sends its FIN after the data.
    pub fn shutdown(&mut self) {
        let tp = &mut self.cx.tp;
        match tp.t_state {
            TcpState::SynSent => {
                tp.t_state = TcpState::Closed;
                self.removed = true;
                self.free();
                return;
            }
            TcpState::SynReceived | TcpState::Established => tp.t_state = TcpState::FinWait1,
            TcpState::CloseWait => tp.t_state = TcpState::LastAck,
            _ => {}
        }
        if !self.removed {
            self.output();
        }
    }

    /// close(2): `tf::CLOSED`, unread data thrown away, shutdown(SHUT_WR) (one `output`),
    /// then `output` again. A connection already CLOSED, or out of the lookup table, is
    /// freed instead (`fini(purged = true)`).
    pub fn close(&mut self) {
        if self.freed {
            return;
        }
        if self.removed || self.cx.tp.t_state == TcpState::Closed {
            self.free();
            return;
        }
        self.cx.tp.t_flags |= tf::CLOSED;
        let h = &mut *self.host;
        h.rcv.drain(..h.rcv_readable);
        h.rcv_written -= h.rcv_readable;
        h.rcv_readable = 0;
        self.shutdown();
        if !self.freed && !self.removed {
            self.output();
        }
    }

    /// Frees the connection as the host does: the stack's `fini(purged = true)`, the CC's
    /// `cb_destroy`, timers cancelled. Later calls into the stack panic.
    pub fn free(&mut self) {
        if self.freed {
            return;
        }
        if let Some(fini) = self.block.fini() {
            let state = self.state;
            let _ = self.call("fini", |cx| fini(state, cx, true));
        }
        self.state = std::ptr::null_mut();
        self.freed = true;
        self.removed = true;
        self.host.timers = [None; tt::COUNT as usize];
        if let Some(d) = self.cx.cc.hooks.cb_destroy {
            if !self.cx.cc.ccv.cc_data.is_null() {
                d(&mut self.cx.cc.ccv);
                self.cx.cc.ccv.cc_data = std::ptr::null_mut();
            }
        }
    }

    /// setsockopt(2). The options the host keeps in the tcpcb (SO_KEEPALIVE, TCP_KEEPINIT,
    /// TCP_KEEPIDLE, TCP_KEEPINTVL in seconds, TCP_KEEPCNT, TCP_USER_TIMEOUT in ms) are
    /// stored there, then the stack is told (`ctloutput`, its errno ignored); every other
    /// option goes to `ctloutput` and its errno is the answer. A set that succeeds there is
    /// remembered (IPPROTO_TCP, TCP_QUICKACK aside) and replayed after a switch. Not for
    /// the options only the host answers (TCP_CONGESTION, TCP_FUNCTION_BLK: use
    /// [`Self::switch_to`], SO_SNDBUF, ...): they reach the stack here as any other.
    pub fn setsockopt(&mut self, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        if self.host_option(level, name, val)? {
            let _ = self.ctloutput_set(level, name, val);
            return Ok(());
        }
        self.ctloutput_set(level, name, val)?;
        if level == IPPROTO_TCP && name != sockopt::TCP_QUICKACK {
            self.remembered
                .retain(|(l, n, _)| (*l, *n) != (level, name));
            self.remembered.push((level, name, val.to_vec()));
        }
        Ok(())
    }

    /// [`Self::setsockopt`] with a native-endian int.
    pub fn setsockopt_int(&mut self, level: i32, name: i32, v: i32) -> Result<(), Errno> {
        self.setsockopt(level, name, &v.to_ne_bytes())
    }

    /// The host's part of the options it keeps: `Ok(true)` when `(level, name)` is one of
    /// them and the value was stored.
    fn host_option(&mut self, level: i32, name: i32, val: &[u8]) -> Result<bool, Errno> {
        let int = || -> Result<i32, Errno> {
            let b: [u8; 4] = val.try_into().map_err(|_| Errno::EINVAL)?;
            Ok(i32::from_ne_bytes(b))
        };
        let tp = &mut self.cx.tp;
        match (level, name) {
            (SOL_SOCKET, sockopt::SO_KEEPALIVE) => {
                if int()? != 0 {
                    tp.t_flags2 |= tf2::KEEPALIVE;
                } else {
                    tp.t_flags2 &= !tf2::KEEPALIVE;
                }
            }
            (
                IPPROTO_TCP,
                sockopt::TCP_KEEPINIT | sockopt::TCP_KEEPIDLE | sockopt::TCP_KEEPINTVL,
            ) => {
                let secs = int()?;
                if secs < 1 {
                    return Err(Errno::EINVAL);
                }
                let ms = (secs as u32).saturating_mul(1000);
                match name {
                    sockopt::TCP_KEEPINIT => tp.t_keepinit = ms,
                    sockopt::TCP_KEEPIDLE => tp.t_keepidle = ms,
                    _ => tp.t_keepintvl = ms,
                }
            }
            (IPPROTO_TCP, sockopt::TCP_KEEPCNT) => {
                let n = int()?;
                if n < 1 {
                    return Err(Errno::EINVAL);
                }
                tp.t_keepcnt = n as u32;
            }
            (IPPROTO_TCP, sockopt::TCP_USER_TIMEOUT) => {
                let ms = int()?;
                if ms < 0 {
                    return Err(Errno::EINVAL);
                }
                tp.t_user_timeout = ms as u32;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn ctloutput_set(&mut self, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        let mut buf = val.to_vec();
        let len = buf.len() as u32;
        let h = self.block.ctloutput().expect("required hook");
        let state = self.state;
        let st = self.call("ctloutput", |cx| {
            let mut opt = SockOpt {
                level,
                name,
                dir: SockOptDir::Set,
                val: buf.as_mut_slice().into(),
                len,
            };
            h(state, cx, &mut opt)
        });
        st.into_result().map_err(HookError::errno)
    }

    /// getsockopt(2) through the stack's `ctloutput`: the bytes it wrote into `buf` (at
    /// most `buf.len()`), or its errno.
    pub fn getsockopt(&mut self, level: i32, name: i32, buf: &mut [u8]) -> Result<usize, Errno> {
        let h = self.block.ctloutput().expect("required hook");
        let state = self.state;
        let cap = buf.len() as u32;
        let mut len = 0;
        let st = self.call("ctloutput", |cx| {
            let mut opt = SockOpt {
                level,
                name,
                dir: SockOptDir::Get,
                val: RSliceMut::from_mut_slice(&mut *buf),
                len: cap,
            };
            let st = h(state, cx, &mut opt);
            len = opt.len;
            st
        });
        st.into_result().map_err(HookError::errno)?;
        Ok((len.min(cap)) as usize)
    }

    /// [`Self::getsockopt`] of a native-endian int.
    pub fn getsockopt_int(&mut self, level: i32, name: i32) -> Result<i32, Errno> {
        let mut b = [0u8; 4];
        let n = self.getsockopt(level, name, &mut b)?;
        if n != 4 {
            return Err(Errno::EINVAL);
        }
        Ok(i32::from_ne_bytes(b))
    }

    /// getsockopt(TCP_INFO): [`TcpInfo::from_tcpcb`], then the stack's `info` hook when it
    /// has one.
    pub fn tcp_info(&mut self) -> Result<TcpInfo, Errno> {
        let mut out = TcpInfo::from_tcpcb(&self.cx.tp);
        if let Some(h) = self.block.info() {
            let state = self.state;
            let st = self.call("info", |cx| h(state, cx, &mut out));
            st.into_result().map_err(HookError::errno)?;
        }
        Ok(out)
    }

    /// An ICMP "fragmentation needed" with path MTU `mtu` for data in flight, as the host
    /// handles it (FreeBSD tcp_mtudisc): `t_maxseg` lowered to `mtu - 40` (at most the send
    /// buffer's size), `snd_nxt = snd_una`, `snd_recover = snd_max`, `tf::FASTRECOVERY`
    /// cleared when SACK is on; then `mtu_chg` and `output`.
    pub fn mtu_chg(&mut self, mtu: u32) {
        let hdr = if self.cx.tp.t_flags2 & tf2::INET6 != 0 {
            60
        } else {
            40
        };
        let minmss = self.tunables.minmss;
        let snd_hiwat = self.host.snd_hiwat;
        let tp = &mut self.cx.tp;
        let mss = mtu.saturating_sub(hdr).max(minmss).min(snd_hiwat);
        if mss >= tp.t_maxseg {
            return;
        }
        tp.t_maxseg = mss;
        tp.snd_nxt = tp.snd_una;
        tp.snd_recover = tp.snd_max;
        if tp.t_flags & tf::SACK_PERMIT != 0 {
            tp.t_flags &= !tf::FASTRECOVERY;
        }
        if let Some(h) = self.block.mtu_chg() {
            let state = self.state;
            self.call_ignored("mtu_chg", |cx| h(state, cx, mtu));
        }
        self.output();
    }

    /// setsockopt(TCP_FUNCTION_BLK) to block `T`; see [`Self::switch_to`].
    pub fn switch_to_stack<T: TcpStack>(&mut self) -> Result<(), Errno> {
        self.switch_impl(block::<T>(), Some(TypeId::of::<T>()))
    }

    /// setsockopt(TCP_FUNCTION_BLK) to `block`, make-before-break as the host does it (see
    /// "Stack switch" in [`plugtcp_abi::stack`]): ECONNRESET in TIME_WAIT or on a closed
    /// connection; success without a call when `block` (by name) is the one in use; the new
    /// block's `handoff_ok` (its errno returned); the old stack's timers stopped; the new
    /// block's counters; its `init(Switch)` with a handle on the old stack (`chg_query`).
    /// If `init` fails (EIO for a panic): its timers cancelled, the old timers and counters
    /// back, the old stack's `switch_failed`, the errno returned. If it succeeds: each
    /// standard timer it armed keeps the old deadline when that was sooner, the old stack's
    /// `fini(false)` runs with its own counters and no timer visible (what it arms is
    /// undone), and the remembered options are set again (`ctloutput`, errors ignored).
    pub fn switch_to(&mut self, block: TcpFunctionBlockRef) -> Result<(), Errno> {
        self.switch_impl(block, None)
    }

    fn switch_impl(&mut self, block: TcpFunctionBlockRef, ty: Option<TypeId>) -> Result<(), Errno> {
        assert!(!self.freed, "switch on a freed connection");
        let tp = &self.cx.tp;
        if tp.t_state == TcpState::TimeWait
            || (tp.t_state == TcpState::Closed
                && (tp.t_softerror != 0 || tp.t_flags & tf::CLOSED != 0 || self.removed))
        {
            return Err(Errno::ECONNRESET);
        }
        if block.name() == self.block.name() {
            return Ok(());
        }
        let handoff = block
            .handoff_ok()
            .expect("the host refuses a block without handoff_ok");
        let st = self.call("handoff_ok", |cx| handoff(cx));
        st.into_result().map_err(HookError::errno)?;
        let saved = std::mem::replace(&mut self.host.timers, [None; tt::COUNT as usize]);
        let old_counters = std::mem::replace(&mut self.cx.counters, leak_counters(block).into());
        let old = OldStack {
            state: self.state,
            chg_query: self.block.chg_query(),
        };
        let mut new_state = std::ptr::null_mut();
        let st = match block.init() {
            // A panic in a switch target's init only fails the switch: not a test failure
            // here either, so call it without `call`'s panic check.
            Some(init) => {
                self.call_switch_init(|cx| init(cx, InitMode::Switch, old, &mut new_state))
            }
            None => HookStatus::OK,
        };
        if let Err(e) = st.into_result() {
            self.cx.counters = old_counters;
            self.host.timers = saved;
            if let Some(sf) = self.block.switch_failed() {
                let state = self.state;
                let _ = self.call("switch_failed", |cx| sf(state, cx));
            }
            return Err(match e {
                HookError::Panicked => Errno::EIO,
                HookError::Errno(e) => e,
            });
        }
        for (i, old_deadline) in saved.iter().enumerate().take(tt::PRIV0 as usize) {
            if let (Some(old), Some(new)) = (*old_deadline, self.host.timers[i]) {
                if old < new {
                    self.host.timers[i] = Some(old);
                }
            }
        }
        let new_counters = std::mem::replace(&mut self.cx.counters, old_counters);
        let new_timers = std::mem::replace(&mut self.host.timers, [None; tt::COUNT as usize]);
        if let Some(fini) = self.block.fini() {
            let state = self.state;
            let _ = self.call("fini", |cx| fini(state, cx, false));
        }
        self.host.timers = new_timers;
        self.cx.counters = new_counters;
        self.block = block;
        self.state = new_state;
        self.stack_type = ty;
        for (level, name, val) in self.remembered.clone() {
            let _ = self.ctloutput_set(level, name, &val);
        }
        Ok(())
    }

    fn call_switch_init(&mut self, f: impl FnOnce(&mut StackCtx) -> HookStatus) -> HookStatus {
        self.host.tunables = &*self.tunables;
        self.cx.tunables = &*self.tunables;
        self.cx.tp.t_tsomax_segs = self.host.tso_segs;
        self.cx.host.host = &mut *self.host as *mut TestHost as *mut c_void;
        let st = f(&mut self.cx);
        self.cx.host.host = std::ptr::null_mut();
        self.cx.tunables = std::ptr::null();
        self.host.tunables = std::ptr::null();
        if std::mem::take(&mut self.cx.cc.faulted) {
            return HookStatus::PANICKED;
        }
        st
    }

    /// Attaches CC module `algo` (TCP_CONGESTION, or the default CC at socket(2)) as the host
    /// does: a fresh cc_var with the module's parameter defaults and fresh counters, its
    /// `cb_init` (its errno returned), the old module's `cb_destroy`, and `conn_init` when
    /// the connection is established. Without one, every CC call of the stack does nothing
    /// and cwnd stays where the stack put it.
    pub fn attach_cc(&mut self, algo: CcAlgoRef) -> Result<(), Errno> {
        let params: &'static [AtomicIsize] = Box::leak(
            algo.params()
                .iter()
                .map(|d| AtomicIsize::new(d.default as isize))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let counters: &'static [AtomicUsize] = Box::leak(
            algo.counters()
                .iter()
                .map(|_| AtomicUsize::new(0))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let mut ccv = CcVar::new(self.cx.cc.ccv.globals);
        ccv.params = params.into();
        ccv.counters = counters.into();
        ccv.flags = self.cx.cc.ccv.flags;
        if let Some(init) = algo.cb_init() {
            match init(&mut ccv, &mut self.cx.tp).into_result() {
                Ok(()) => {}
                Err(HookError::Panicked) => panic!("{}: cb_init panicked", algo.name()),
                Err(HookError::Errno(e)) => return Err(e),
            }
        }
        if let Some(d) = self.cx.cc.hooks.cb_destroy {
            if !self.cx.cc.ccv.cc_data.is_null() {
                d(&mut self.cx.cc.ccv);
            }
        }
        self.cx.cc.hooks = CcHooks::of(algo);
        self.cx.cc.ccv = ccv;
        self.host.cc_rate_hook = algo.cong_control().flatten();
        if self.cx.tp.t_state.have_established() {
            self.cx.cc.conn_init(&mut self.cx.tp);
            assert!(
                !std::mem::take(&mut self.cx.cc.faulted),
                "{}: conn_init panicked",
                algo.name()
            );
        }
        Ok(())
    }

    // ---- time and timers ----

    /// The host clock, ns.
    pub fn now(&self) -> u64 {
        self.host.now
    }

    /// Moves the clock `ns` forward and delivers the timers that are due then, as the host's
    /// `advance` does: collected first, then in deadline order, each forgotten before its
    /// `timer` call; one that an earlier handler of the same advance stopped or re-armed is
    /// not delivered. Returns the timers delivered.
    pub fn advance(&mut self, ns: u64) -> Vec<u32> {
        let to = self.host.now.saturating_add(ns);
        self.advance_to(to)
    }

    /// [`Self::advance`] to the absolute time `t` (not before now).
    pub fn advance_to(&mut self, t: u64) -> Vec<u32> {
        assert!(t >= self.host.now, "the clock does not go back");
        self.host.now = t;
        if self.freed {
            return Vec::new();
        }
        let mut due: Vec<(u64, u32)> = self
            .host
            .timers
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.filter(|&d| d <= t).map(|d| (d, i as u32)))
            .collect();
        due.sort_unstable();
        let mut fired = Vec::new();
        for (deadline, which) in due {
            if self.freed || self.host.timers[which as usize] != Some(deadline) {
                continue;
            }
            self.host.timers[which as usize] = None;
            fired.push(which);
            if let Some(h) = self.block.timer() {
                let state = self.state;
                self.call_ignored("timer", |cx| h(state, cx, which));
            }
        }
        fired
    }

    /// Moves the clock to timer `which`'s deadline and delivers what is due then (that
    /// timer, and any due as early). Panics when it is not armed. Returns the timers
    /// delivered.
    pub fn fire(&mut self, which: u32) -> Vec<u32> {
        let Some(d) = self.deadline(which) else {
            panic!("timer {which} is not armed; armed: {:?}", self.armed());
        };
        let fired = self.advance_to(d);
        assert!(fired.contains(&which), "timer {which} was not delivered");
        fired
    }

    /// Nanoseconds until timer `which` fires (what the stack's `timer_remaining` says), or
    /// `None` when it is not armed.
    pub fn timer(&self, which: u32) -> Option<u64> {
        self.deadline(which)
            .map(|d| d.saturating_sub(self.host.now))
    }

    /// Timer `which`'s deadline on the clock, ns.
    pub fn deadline(&self, which: u32) -> Option<u64> {
        self.host.timers.get(which as usize).copied().flatten()
    }

    /// The armed timers and their deadlines, in timer order.
    pub fn armed(&self) -> Vec<(u32, u64)> {
        self.host
            .timers
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.map(|d| (i as u32, d)))
            .collect()
    }

    // ---- what the stack did ----

    /// Every segment sent since the last `take_sent` (oldest first).
    pub fn sent(&self) -> &[Sent] {
        &self.host.sent
    }

    /// The segments sent so far, clearing the record.
    pub fn take_sent(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.host.sent)
    }

    /// The one segment sent since the last look; panics (listing them) unless there was
    /// exactly one.
    pub fn take_one(&mut self) -> Sent {
        let mut s = self.take_sent();
        assert_eq!(s.len(), 1, "expected one segment, got {s:#?}");
        s.remove(0)
    }

    /// Events reported since the last `take_events`, in order (repeats included).
    pub fn events(&self) -> &[ConnEvent] {
        &self.host.events
    }

    /// The events reported so far, clearing the record.
    pub fn take_events(&mut self) -> Vec<ConnEvent> {
        std::mem::take(&mut self.host.events)
    }

    /// Errnos the stack returned from calls whose errno the host ignores (`do_segment`,
    /// `output`, `timer`, `mtu_chg`), with the hook's name.
    pub fn hook_errors(&self) -> &[(&'static str, Errno)] {
        &self.hook_errors
    }

    /// The stack reported `Closed` (or left CLOSED a connection that had begun): the host
    /// took it out of its lookup table.
    pub fn is_closed(&self) -> bool {
        self.removed
    }

    /// The stack's block-wide counter `name` (one of its `COUNTERS`), as the host exports
    /// it; panics for a name the block does not declare.
    pub fn counter(&self, name: &str) -> usize {
        let names = self.block.counters();
        let Some(i) = names.iter().position(|n| n.as_str() == name) else {
            panic!("{} has no counter {name}: {names:?}", self.block.name());
        };
        self.cx.counters[i].load(Ordering::Relaxed)
    }

    // ---- connection state ----

    /// The control block.
    pub fn tp(&self) -> &Tcpcb {
        &self.cx.tp
    }

    /// The control block, to change as the host would between calls.
    pub fn tp_mut(&mut self) -> &mut Tcpcb {
        &mut self.cx.tp
    }

    /// `t_state`.
    pub fn state(&self) -> TcpState {
        self.cx.tp.t_state
    }

    /// The connection's CC (module hooks and cc_var).
    pub fn cc(&mut self) -> &mut CcConn {
        &mut self.cx.cc
    }

    /// The block in charge.
    pub fn block(&self) -> TcpFunctionBlockRef {
        self.block
    }

    /// The stack's per-connection state, when the block was given as `T` ([`Self::of`],
    /// [`Self::accepted`], [`Self::switch_to_stack`]); panics otherwise.
    pub fn stack_state<T: TcpStack>(&self) -> &T {
        assert_eq!(
            self.stack_type,
            Some(TypeId::of::<T>()),
            "the block in charge ({}) was not given as {}",
            self.block.name(),
            std::any::type_name::<T>()
        );
        let p = self.state as *const T;
        assert!(!p.is_null(), "no stack state");
        // SAFETY: the block is T's (`StackVtable::<T>`, checked above), whose init made the
        // state as a Box<T>; it lives until fini, which needs `&mut self`.
        unsafe { &*p }
    }

    /// The tunables the stack reads, to change between calls (as a sysctl would).
    pub fn tunables_mut(&mut self) -> &mut StackTunables {
        &mut self.tunables
    }

    /// `t_tsomax_segs` for the next calls (1: no TSO; the host's default is 45).
    pub fn set_tso_segs(&mut self, n: u32) {
        self.host.tso_segs = n.max(1);
    }

    /// Makes `HostOps::output` fail with `e` (ENOBUFS: no buffer for the packet), or work
    /// again with `None`.
    pub fn fail_output(&mut self, e: Option<Errno>) {
        self.host.fail_output = e;
    }

    // ---- buffers ----

    /// Bytes in the send buffer (unacknowledged and unsent).
    pub fn snd_len(&self) -> u32 {
        self.host.snd.len() as u32
    }

    /// The send buffer's size.
    pub fn snd_hiwat(&self) -> u32 {
        self.host.snd_hiwat
    }

    /// The readable bytes of the receive buffer (what recv(2) would return), not consumed.
    pub fn rcv_readable(&self) -> &[u8] {
        &self.host.rcv[..self.host.rcv_readable]
    }

    /// The receive window the host reports (`rcv_hiwat` less the readable bytes).
    pub fn rcv_space(&self) -> u32 {
        self.host.rcv_space()
    }

    /// The receive buffer's size.
    pub fn rcv_hiwat(&self) -> u32 {
        self.host.rcv_hiwat
    }

    /// setsockopt(SO_RCVBUF) as the host handles it (the stack is not called): the receive
    /// buffer's size, and no auto-sizing of it any more.
    pub fn set_rcv_hiwat(&mut self, n: u32) {
        self.host.rcv_hiwat = n;
        self.host.rcv_auto = false;
    }

    /// setsockopt(SO_SNDBUF) as the host handles it: the send buffer's size, and no
    /// auto-sizing of it any more.
    pub fn set_snd_hiwat(&mut self, n: u32) {
        self.host.snd_hiwat = n;
        self.host.snd_auto = false;
    }
}

impl Drop for TestConn {
    /// Frees the connection ([`TestConn::free`]) unless it was, or the test is already
    /// failing (a second panic would abort).
    fn drop(&mut self) {
        if !self.freed && !std::thread::panicking() {
            self.free();
        }
    }
}

impl fmt::Debug for TestConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tp = &self.cx.tp;
        write!(
            f,
            "TestConn {{ block: {}, {:?}, snd_una {} snd_nxt {} snd_max {} rcv_nxt {} snd_wnd {} \
             cwnd {}, now {} ns, armed {:?} }}",
            self.block.name(),
            tp.t_state,
            tp.snd_una,
            tp.snd_nxt,
            tp.snd_max,
            tp.rcv_nxt,
            tp.snd_wnd,
            tp.snd_cwnd,
            self.host.now,
            self.armed()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugtcp_abi::abi_stable::std_types::RStr;
    use plugtcp_abi::stack::{query, ChgQuery};

    /// A stack that records what the host did: acknowledges in-order data, keeps
    /// out-of-order data where it belongs, sends the whole send buffer on `output`, resends
    /// from snd_una on REXMT, answers option 77 with its segment count, and counts segments
    /// in counter 0.
    struct Probe {
        segs: u32,
        timers: Vec<u32>,
    }

    const COUNTERS: &[RStr<'static>] = &[RStr::from_str("probe_segs")];

    impl Probe {
        fn send_all(cx: &mut StackCtx, from: u32) {
            let off = from.wrapping_sub(cx.tp.snd_una);
            let len = cx.host.snd_len().saturating_sub(off);
            let seg = SegOut {
                seq: from,
                ack: cx.tp.rcv_nxt,
                flags: th::ACK,
                data_off: off,
                data_len: len,
                ..Default::default()
            };
            if cx.host.output(&seg).is_ok() && len > 0 {
                cx.tp.snd_max = cx.tp.snd_max.max(from.wrapping_add(len));
                cx.tp.snd_nxt = cx.tp.snd_max;
                cx.host.timer_start(tt::REXMT, 200 * MS);
            }
        }
    }

    impl TcpStack for Probe {
        const NAME: &'static str = "probe";
        const COUNTERS: &'static [RStr<'static>] = COUNTERS;
        fn init(cx: &mut StackCtx, mode: InitMode, old: OldStack) -> Result<Self, Errno> {
            let mut segs = 0;
            if mode == InitMode::Switch {
                let mut q = ChgQuery {
                    req: query::TIMERS_UP,
                    ..Default::default()
                };
                if old.query(cx, &mut q)? {
                    segs = q.req_param;
                }
                if cx.tp.snd_una != cx.tp.snd_max {
                    cx.host.timer_start(tt::REXMT, 500 * MS);
                }
                cx.host.timer_start(tt::PRIV0, MS);
            }
            Ok(Probe {
                segs,
                timers: Vec::new(),
            })
        }
        fn do_segment(&mut self, cx: &mut StackCtx, seg: &SegIn<'_>) -> Result<(), Errno> {
            self.segs += 1;
            cx.count(0, 1);
            if seg.flags & th::RST != 0 {
                cx.tp.t_state = TcpState::Closed;
                cx.host.event(ConnEvent::Closed);
                return Ok(());
            }
            if seg.flags & th::ACK != 0 && seg.ack.wrapping_sub(cx.tp.snd_una) as i32 > 0 {
                cx.host.snd_drop(seg.ack.wrapping_sub(cx.tp.snd_una));
                cx.tp.snd_una = seg.ack;
            }
            let off = seg.seq.wrapping_sub(cx.tp.rcv_nxt);
            let n = cx.host.rcv_write(off, &seg.payload);
            if off == 0 {
                cx.host.rcv_commit(n);
                cx.tp.rcv_nxt = cx.tp.rcv_nxt.wrapping_add(n);
            }
            Ok(())
        }
        fn output(&mut self, cx: &mut StackCtx) -> Result<(), Errno> {
            let nxt = cx.tp.snd_nxt;
            Probe::send_all(cx, nxt);
            Ok(())
        }
        fn timer(&mut self, cx: &mut StackCtx, which: u32) -> Result<(), Errno> {
            assert_eq!(cx.host.timer_remaining(which), None, "forgotten first");
            self.timers.push(which);
            if which == tt::REXMT {
                let una = cx.tp.snd_una;
                Probe::send_all(cx, una);
            }
            Err(Errno::EAGAIN)
        }
        fn ctloutput(&mut self, cx: &mut StackCtx, opt: &mut SockOpt<'_>) -> Result<(), Errno> {
            match (opt.name, opt.dir) {
                (77, SockOptDir::Get) => opt.reply_int(self.segs as i32),
                (sockopt::TCP_NODELAY, SockOptDir::Set) => {
                    cx.tp.t_flags |= tf::NODELAY;
                    Ok(())
                }
                _ => Err(Errno::ENOPROTOOPT),
            }
        }
        fn chg_query(&self, _cx: &StackCtx, q: &mut ChgQuery) -> Result<(), Errno> {
            q.req_param = self.segs;
            q.answered = 1;
            Ok(())
        }
    }

    /// The same stack under another name: a switch target.
    struct Probe2(Probe);

    impl TcpStack for Probe2 {
        const NAME: &'static str = "probe2";
        fn init(cx: &mut StackCtx, mode: InitMode, old: OldStack) -> Result<Self, Errno> {
            if cx.tp.t_flags & tf::NOPUSH != 0 {
                return Err(Errno::EBUSY);
            }
            Probe::init(cx, mode, old).map(Probe2)
        }
        fn do_segment(&mut self, cx: &mut StackCtx, seg: &SegIn<'_>) -> Result<(), Errno> {
            self.0.do_segment(cx, seg)
        }
        fn output(&mut self, cx: &mut StackCtx) -> Result<(), Errno> {
            self.0.output(cx)
        }
        fn timer(&mut self, cx: &mut StackCtx, which: u32) -> Result<(), Errno> {
            self.0.timer(cx, which)
        }
        fn ctloutput(&mut self, cx: &mut StackCtx, opt: &mut SockOpt<'_>) -> Result<(), Errno> {
            self.0.ctloutput(cx, opt)
        }
        fn handoff_ok(cx: &StackCtx) -> Result<(), Errno> {
            if cx.tp.t_state == TcpState::Closed {
                Err(Errno::EINVAL)
            } else {
                Ok(())
            }
        }
    }

    fn established() -> TestConn {
        let mut c = TestConn::of::<Probe>();
        let tp = c.tp_mut();
        tp.t_state = TcpState::Established;
        tp.iss = 100;
        (tp.snd_una, tp.snd_nxt, tp.snd_max) = (101, 101, 101);
        tp.rcv_nxt = 500;
        c
    }

    #[test]
    fn payload_from_the_send_buffer_and_its_checks() {
        let mut c = established();
        assert_eq!(c.send(b"abcdef"), Ok(6));
        let s = c.take_one();
        assert_eq!(s.key(), (101, 500, th::ACK, 6));
        assert_eq!(s.payload, b"abcdef");
        assert_eq!(c.counter("probe_segs"), 0);
        // The ACK of 4 bytes: the stack drops them; a resend starts at snd_una.
        c.input(&PeerSeg::ack(500, 105));
        assert_eq!(c.snd_len(), 2);
        c.fire(tt::REXMT);
        let s = c.take_one();
        assert_eq!((s.seq(), s.payload.as_slice()), (105, &b"ef"[..]));
        assert_eq!(c.hook_errors(), [("timer", Errno::EAGAIN)]);
        // Bytes not in the buffer: EINVAL, nothing sent.
        let beyond = SegOut {
            seq: 105,
            data_off: 1,
            data_len: 2,
            ..Default::default()
        };
        let st = c.call("test", |cx| (cx.host.ops.output())(cx.host.host, &beyond));
        assert_eq!(st, HookStatus(Errno::EINVAL.0));
        assert!(c.sent().is_empty());
        c.fail_output(Some(Errno::ENOBUFS));
        c.output();
        assert!(c.sent().is_empty());
        c.set_snd_hiwat(2);
        assert_eq!(c.send(b"x"), Err(Errno::EAGAIN));
    }

    #[test]
    fn receive_buffer_in_order_and_beyond() {
        let mut c = established();
        c.input(&PeerSeg::ack(505, 101).data(b"world"));
        assert_eq!(c.rcv_readable(), b"");
        c.input(&PeerSeg::ack(500, 101).data(b"hello"));
        assert_eq!(c.rcv_readable(), b"hello");
        assert_eq!(c.rcv_space(), RCVBUF - 5);
        // The out-of-order bytes sit where they belong: a commit of 5 more reveals them.
        let st = c.call("test", |cx| {
            cx.host.rcv_commit(50);
            HookStatus::OK
        });
        assert_eq!(st, HookStatus::OK);
        assert_eq!(
            c.rcv_readable(),
            b"helloworld",
            "commit clamped to what was written"
        );
        assert_eq!(c.recv(3), b"hel");
        assert_eq!(c.rcv_readable(), b"loworld");
        assert_eq!(c.stack_state::<Probe>().segs, 2);
        assert_eq!(c.counter("probe_segs"), 2);
        assert_eq!(c.getsockopt_int(IPPROTO_TCP, 77), Ok(2));
    }

    #[test]
    fn timers_fire_in_deadline_order_and_are_forgotten_first() {
        let mut c = established();
        c.send(b"a").unwrap();
        assert_eq!(c.timer(tt::REXMT), Some(200 * MS));
        c.advance(199 * MS);
        assert_eq!(c.timer(tt::REXMT), Some(MS));
        assert_eq!(c.advance(MS - 1), Vec::<u32>::new());
        assert_eq!(c.advance(1), [tt::REXMT]);
        assert_eq!(c.now(), 200 * MS);
        // The resend re-armed it.
        assert_eq!(c.armed(), [(tt::REXMT, 400 * MS)]);
        assert_eq!(c.fire(tt::REXMT), [tt::REXMT]);
        assert_eq!(c.stack_state::<Probe>().timers, [tt::REXMT, tt::REXMT]);
        assert_eq!(c.take_sent().len(), 3);
    }

    #[test]
    fn tso_descriptors_are_cut_as_the_host_cuts_them() {
        let mut c = established();
        c.set_tso_segs(3);
        c.host.snd.extend(vec![7u8; 2500]);
        let seg = SegOut {
            seq: 101,
            ack: 500,
            flags: th::ACK | th::PUSH | th::FIN,
            data_len: 2500,
            tso_segsz: 1000,
            ..Default::default()
        };
        let st = c.call("test", |cx| (cx.host.ops.output())(cx.host.host, &seg));
        assert_eq!(st, HookStatus::OK);
        let p = c.take_one().packets();
        let keys: Vec<_> = p.iter().map(Sent::key).collect();
        assert_eq!(
            keys,
            [
                (101, 500, th::ACK, 1000),
                (1101, 500, th::ACK, 1000),
                (2101, 500, th::ACK | th::PUSH | th::FIN, 500)
            ]
        );
        let too_many = SegOut {
            tso_segsz: 500,
            ..seg
        };
        let st = c.call("test", |cx| (cx.host.ops.output())(cx.host.host, &too_many));
        assert_eq!(st, HookStatus(Errno::EINVAL.0));
        let syn = SegOut {
            flags: th::SYN,
            ..seg
        };
        let st = c.call("test", |cx| (cx.host.ops.output())(cx.host.host, &syn));
        assert_eq!(st, HookStatus(Errno::EINVAL.0));
    }

    #[test]
    fn closed_connections_leave_the_table_and_are_freed_by_close() {
        let mut c = established();
        c.input(&PeerSeg::rst(500));
        assert!(c.is_closed());
        assert_eq!(c.take_events(), [ConnEvent::Closed]);
        let again =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.input(&PeerSeg::rst(500))));
        assert!(again.is_err(), "no segment after Closed");
        c.close();
        assert!(c.freed);
    }

    #[test]
    fn switch_is_make_before_break() {
        let mut c = established();
        c.setsockopt_int(IPPROTO_TCP, sockopt::TCP_NODELAY, 1)
            .unwrap();
        assert_eq!(
            c.setsockopt_int(IPPROTO_TCP, 99, 1),
            Err(Errno::ENOPROTOOPT)
        );
        c.input(&PeerSeg::ack(500, 101));
        c.send(b"abc").unwrap();
        c.take_sent();
        let old_rexmt = c.deadline(tt::REXMT).unwrap();
        // The same block: nothing happens.
        assert_eq!(c.switch_to_stack::<Probe>(), Ok(()));
        // A failing init: the old stack keeps the connection and its timers.
        c.tp_mut().t_flags |= tf::NOPUSH;
        assert_eq!(c.switch_to_stack::<Probe2>(), Err(Errno::EBUSY));
        assert_eq!(c.block().name(), "probe");
        assert_eq!(c.deadline(tt::REXMT), Some(old_rexmt));
        c.tp_mut().t_flags &= !(tf::NOPUSH | tf::NODELAY);
        c.advance(10 * MS);
        assert_eq!(c.switch_to_stack::<Probe2>(), Ok(()));
        assert_eq!(c.block().name(), "probe2");
        // The old stack's answer to chg_query, the sooner REXMT kept, the private timer
        // the new stack's own, and TCP_NODELAY replayed.
        assert_eq!(c.stack_state::<Probe2>().0.segs, 1);
        assert_eq!(c.deadline(tt::REXMT), Some(old_rexmt));
        assert_eq!(c.timer(tt::PRIV0), Some(MS));
        assert!(c.tp().t_flags & tf::NODELAY != 0);
        // handoff_ok's errno comes back as is.
        let mut closed = TestConn::of::<Probe>();
        assert_eq!(closed.switch_to_stack::<Probe2>(), Err(Errno::EINVAL));
    }

    #[test]
    fn host_options_are_stored_then_the_stack_told() {
        let mut c = established();
        c.setsockopt_int(IPPROTO_TCP, sockopt::TCP_KEEPIDLE, 30)
            .unwrap();
        c.setsockopt_int(SOL_SOCKET, sockopt::SO_KEEPALIVE, 1)
            .unwrap();
        assert_eq!(c.tp().t_keepidle, 30_000);
        assert!(c.tp().t_flags2 & tf2::KEEPALIVE != 0);
        assert_eq!(
            c.setsockopt_int(IPPROTO_TCP, sockopt::TCP_KEEPCNT, 0),
            Err(Errno::EINVAL)
        );
        assert!(c.remembered.is_empty(), "the host keeps those itself");
    }

    #[test]
    fn sent_prints_as_tcpdump_does() {
        let s = Sent {
            seg: SegOut {
                seq: 1000,
                ack: 0,
                flags: th::SYN,
                win: 65535,
                opts: TcpOpts {
                    flags: to::MSS | to::SACKPERM,
                    mss: 1460,
                    ..Default::default()
                },
                ..Default::default()
            },
            payload: Vec::new(),
            at_ns: 0,
        };
        assert_eq!(
            format!("{s:?}"),
            "[S] seq 1000:1001(0) ack 0 win 65535 <mss 1460,sackOK>"
        );
        assert_eq!(flag_letters(th::FIN | th::ACK | th::PUSH), "FP.");
    }
}
