//! One connection as the host keeps it: the shared [`StackCtx`] that its stack and CC work
//! on, which stack and CC it uses, and the host side that the stack reaches through
//! [`HostOps`]. Attaching, switching (make-before-break) and detaching stacks and CC modules
//! happen here, with the user counts kept in the registry entries.

use std::ffi::c_void;
use std::net::SocketAddr;
use std::sync::Arc;

use abi_stable::prefix_type::WithMetadata;
use abi_stable::std_types::{RSlice, RSliceMut};
use plugtcp_abi::cc::{CcConn, CcGlobals, CcVar};
use plugtcp_abi::segment::{th, to, SegIn, SegOut};
use plugtcp_abi::sockopt::SockOpt;
use plugtcp_abi::stack::{
    tt, ConnEvent, HostIf, HostOps, HostOpsRef, InitMode, OldStack, Pacing, StackCtx,
    StackTunables, TcpInfo,
};
use plugtcp_abi::{Errno, HookError, HookStatus, TcpState, Tcpcb};

use crate::observe::{ConnObserver, HostObserver, SegmentSeen};
use crate::registry::{BlockEntry, CcEntry};
use crate::socket::buffer::{ChunkPool, RecvBuf, SendBuf};
use crate::timer::{TimerId, TimerWheel};
use crate::wire;

/// Which plugin a failed call is blamed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Culprit {
    Stack(String),
    Cc(String),
}

/// A failed call into a plugin on behalf of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnFault {
    pub culprit: Culprit,
    pub error: HookError,
}

impl ConnFault {
    pub fn errno(&self) -> Errno {
        self.error.errno()
    }
}

/// State one worker shares among its connections: the clock, the timer wheel and the pool
/// that socket-buffer chunks come from. Stack calls reach it through [`HostOps`].
pub struct Worker {
    pub now: u64,
    /// Packets built for transmission, in order; the I/O backend drains them.
    pub tx: TxQueue,
    /// IP TTL / hop limit for what we send.
    pub ttl: u8,
    pub wheel: TimerWheel,
    pub pool: ChunkPool,
    /// What stacks see as `StackCtx::tun()`; the host replaces it when sysctls change. An
    /// Arc so that the pointer stacks read stays valid while host ops hold `&mut Worker`.
    pub tunables: Arc<StackTunables>,
    /// Packets one segment descriptor may become (`Tcpcb::t_tsomax_segs`): [`TSO_MAX_SEGS`]
    /// with `net.inet.tcp.tso` on, else 1.
    pub tso_segs: u32,
    /// The largest super-packet the backend takes whole and cuts itself (GSO on transmit,
    /// the TCP checksum left to it: a TUN device with IFF_VNET_HDR); 0: none, the host
    /// cuts TSO segments into packets.
    pub tx_gso_max: u32,
    /// The backend computes TCP checksums on transmit (checksum offload): every packet
    /// leaves with the pseudo-header sum in its checksum field.
    pub tx_csum_offload: bool,
    pub offload: OffloadStats,
    /// What the pacer did (see `pacing.rs`).
    pub pacing: crate::pacing::PacingStats,
    /// Totals of connections that closed, by the (stack, CC) they ran on last, for the
    /// metrics (drained when they are published; one entry per pair, so bounded).
    pub departed: Vec<Attribution>,
    /// The host-wide observer (the siftr(4) log while `net.inet.siftr.enabled` is 1).
    pub observer: Option<Box<dyn HostObserver>>,
    /// `kern.ipc.maxsockbuf` (FreeBSD sb_max): no socket buffer grows beyond it.
    pub sb_max: Arc<std::sync::atomic::AtomicU64>,
}

/// FreeBSD's default `kern.ipc.maxsockbuf` (2 MiB).
pub const SB_MAX_DEFAULT: u64 = 2 * 1024 * 1024;

/// What setsockopt(SO_SNDBUF/SO_RCVBUF) may ask for under `sb_max`: FreeBSD's sb_max_adj,
/// sb_max scaled by MCLBYTES / (MSIZE + MCLBYTES) for mbuf overhead.
pub fn sb_max_adj(sb_max: u64) -> u64 {
    sb_max * 2048 / (256 + 2048)
}

/// What a connection's tcpcb counts, as the metrics label it by stack and CC:
/// [`TOT_SND_BYTES`]... (FreeBSD tcps_sndbyte, tcps_rcvbyte, tcps_sndtotal, tcps_rcvtotal,
/// tcps_sndrexmitpack, tcps_sndrexmitbyte).
pub type ConnTotals = [u64; 6];
pub const TOT_SND_BYTES: usize = 0;
pub const TOT_RCV_BYTES: usize = 1;
pub const TOT_SND_SEGS: usize = 2;
pub const TOT_RCV_SEGS: usize = 3;
pub const TOT_REXMIT_SEGS: usize = 4;
pub const TOT_REXMIT_BYTES: usize = 5;

/// Totals credited to one (stack, CC) pair.
pub type Attribution = (Arc<BlockEntry>, Arc<CcEntry>, ConnTotals);

pub fn conn_totals(tp: &Tcpcb) -> ConnTotals {
    [
        tp.t_snd_bytes,
        tp.t_rcv_bytes,
        tp.t_snd_segs,
        tp.t_rcv_segs,
        tp.t_sndrexmitpack,
        tp.t_rexmit_bytes,
    ]
}

/// Adds `delta` to the entry for (`b`, `c`) in `list` (pairs are few: a linear scan).
pub fn credit(
    list: &mut Vec<Attribution>,
    b: &Arc<BlockEntry>,
    c: &Arc<CcEntry>,
    delta: &ConnTotals,
) {
    match list
        .iter_mut()
        .find(|(xb, xc, _)| Arc::ptr_eq(xb, b) && Arc::ptr_eq(xc, c))
    {
        Some((_, _, t)) => t.iter_mut().zip(delta).for_each(|(t, d)| *t += d),
        None => list.push((b.clone(), c.clone(), *delta)),
    }
}

/// A connection that changed stack or CC: what it did under each earlier pair, and the
/// totals at the last change (what it did since belongs to the current pair).
#[derive(Default)]
pub struct Attributed {
    pub mark: ConnTotals,
    pub by: Vec<Attribution>,
}

/// What segmentation offload (TSO) and receive coalescing (LRO) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// TSO descriptors the host cut into packets, and the packets they became.
    pub tso_sends: u64,
    pub tso_packets: u64,
    /// TSO descriptors handed to the backend whole, as super-packets it cuts (GSO).
    pub gso_sends: u64,
    /// LRO (FreeBSD's lro_queued / lro_flushed): packets that went into merged segments,
    /// and the segments handed to stacks.
    pub lro_queued: u64,
    pub lro_flushed: u64,
}

/// Packets per TSO descriptor: as many as a 64 KiB IP packet holds at MSS 1460 (FreeBSD's
/// default if_hw_tsomaxsegcount is 35 mbufs; here the limit is the 64 KiB one).
pub const TSO_MAX_SEGS: u32 = 45;

/// Timer wheel granularity: 10 µs (RACK wants microsecond timers; ticks finer than this
/// only cost wheel work).
pub const TIMER_TICK_NS: u64 = 10_000;

impl Worker {
    pub fn new(now: u64) -> Self {
        Worker {
            now,
            tx: TxQueue::default(),
            ttl: 64,
            // The tick is a non-zero constant, so the wheel cannot refuse it.
            wheel: TimerWheel::new(now, TIMER_TICK_NS).unwrap_or_else(|_| unreachable!()),
            pool: ChunkPool::new(),
            tunables: Arc::default(),
            tso_segs: TSO_MAX_SEGS,
            tx_gso_max: 0,
            tx_csum_offload: false,
            offload: OffloadStats::default(),
            pacing: Default::default(),
            departed: Vec::new(),
            observer: None,
            sb_max: Arc::new(std::sync::atomic::AtomicU64::new(SB_MAX_DEFAULT)),
        }
    }
}

/// Packets waiting for the I/O backend. Buffers are recycled, so steady state does not
/// allocate; each keeps the largest size it was ever given. Each packet carries its
/// connection's UDP encapsulation port (TCP_REMOTE_UDP_ENCAPS_PORT; 0: none) and, for a
/// super-packet the backend is to cut (see [`Worker::tx_gso_max`]), its segment size.
#[derive(Default)]
pub struct TxQueue {
    pkts: Vec<(Vec<u8>, usize, u16, u16)>,
    free: Vec<Vec<u8>>,
    /// `net.inet.tcp.path_mtu_discovery` off: IPv4 packets leave without DF, each with its
    /// own IP ID (RFC 6864: a datagram that may be fragmented needs a unique ID).
    pub no_df: bool,
    next_ip_id: u16,
    /// Packets ever queued (TcpOutSegs; a plain add here costs less than counting elsewhere).
    pub sent: u64,
}

impl TxQueue {
    /// Builds one packet of at most `cap` bytes with `f`, which returns the length written.
    pub fn push_with<E>(
        &mut self,
        cap: usize,
        f: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), E> {
        self.push_tagged(cap, 0, f)
    }

    /// As `push_with`, for a connection with UDP encapsulation port `port`.
    pub fn push_tagged<E>(
        &mut self,
        cap: usize,
        port: u16,
        f: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), E> {
        self.push_gso(cap, port, 0, f)
    }

    /// As `push_tagged`, for a super-packet the backend cuts into packets of `gso_size`
    /// payload bytes (0: a plain packet).
    pub fn push_gso<E>(
        &mut self,
        cap: usize,
        port: u16,
        gso_size: u16,
        f: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), E> {
        let mut b = self.free.pop().unwrap_or_default();
        if b.len() < cap {
            b.resize(cap, 0);
        }
        match f(&mut b[..cap]) {
            Ok(n) => {
                self.pkts.push((b, n, port, gso_size));
                self.sent += 1;
                Ok(())
            }
            Err(e) => {
                self.free.push(b);
                Err(e)
            }
        }
    }

    /// Hands every queued packet to `f`, oldest first.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) {
        self.drain_tagged(|p, _| f(p));
    }

    /// As `drain`, with each packet's UDP encapsulation port.
    pub fn drain_tagged(&mut self, mut f: impl FnMut(&[u8], u16)) {
        self.drain_gso(|p, port, _| f(p, port));
    }

    /// As `drain_tagged`, with each packet's GSO segment size (0: a plain packet).
    pub fn drain_gso(&mut self, mut f: impl FnMut(&[u8], u16, u16)) {
        for (mut b, n, port, gso) in self.pkts.drain(..) {
            if self.no_df {
                self.next_ip_id = self.next_ip_id.wrapping_add(1);
                clear_df(&mut b[..n], self.next_ip_id);
            }
            f(&b[..n], port, gso);
            self.free.push(b);
        }
    }

    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// Takes back the packets queued after the first `keep` (a paced burst that must wait),
    /// oldest first, with their lengths in bytes summed into `bytes`.
    pub fn take_tail(
        &mut self,
        keep: usize,
        depart_ns: u64,
        out: &mut std::collections::VecDeque<crate::pacing::HeldPacket>,
    ) {
        for (buf, len, udp_port, gso_size) in self.pkts.drain(keep..) {
            self.sent -= 1;
            out.push_back(crate::pacing::HeldPacket {
                depart_ns,
                buf,
                len,
                udp_port,
                gso_size,
            });
        }
    }

    /// Queues a packet the pacer held.
    pub fn push_held(&mut self, p: crate::pacing::HeldPacket) {
        self.pkts.push((p.buf, p.len, p.udp_port, p.gso_size));
        self.sent += 1;
    }

    /// Gives a held packet's buffer back for reuse (its connection went away).
    pub fn recycle(&mut self, p: crate::pacing::HeldPacket) {
        self.free.push(p.buf);
    }

    /// Wire bytes of the packets queued after the first `from`: a GSO super-packet counts
    /// each packet it becomes with its own headers.
    pub fn bytes_after(&self, from: usize, payload: u32) -> u64 {
        self.pkts[from.min(self.pkts.len())..]
            .iter()
            .map(|&(_, len, _, gso)| {
                if gso == 0 || payload <= gso as u32 {
                    return len as u64;
                }
                let header = len as u64 - payload as u64;
                len as u64 + (payload.div_ceil(gso as u32) as u64 - 1) * header
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }
}

/// Takes DF off an IPv4 packet and gives it IP ID `id` (its header checksum redone); other
/// packets stay as they are.
fn clear_df(pkt: &mut [u8], id: u16) {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return;
    }
    let hlen = usize::from(pkt[0] & 0x0f) * 4;
    if hlen < 20 || hlen > pkt.len() {
        return;
    }
    pkt[4..6].copy_from_slice(&id.to_be_bytes());
    pkt[6] &= !0x40;
    pkt[10..12].fill(0);
    let c = wire::ip_header_checksum(&pkt[..hlen]);
    pkt[10..12].copy_from_slice(&c);
}

/// The `which` of a connection's pacing wakeup in the wheel (the host's own, beside the
/// stack's `tt::*` timers).
pub const PACE_TIMER: u32 = 0xff;

/// A timer token in the wheel: the connection's slot and which of its timers.
#[inline]
pub fn timer_token(slot: usize, which: u32) -> u64 {
    ((slot as u64) << 8) | which as u64
}

#[inline]
pub fn timer_token_parts(token: u64) -> (usize, u32) {
    ((token >> 8) as usize, (token & 0xff) as u32)
}

/// What the host keeps for a connection besides the shared context: its addresses, socket
/// buffers, timers in the worker's wheel, and the events of the current call.
pub struct HostSide {
    pub slot: usize,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub snd: SendBuf,
    pub rcv: RecvBuf,
    pub timers: [Option<TimerId>; tt::COUNT as usize],
    /// Events the stack reported during the current call (bit `1 << ConnEvent`); the host
    /// handles and clears them.
    pub events: u8,
    /// The listener that accepted it (passive opens).
    pub listener: Option<u32>,
    /// Waiting in its listener's accept queue.
    pub queued: bool,
    /// Made from a listener's handshake but not yet in its accept queue (half-open, or held
    /// by TCP_DEFER_ACCEPT): counted against the listener's backlog.
    pub embryonic: bool,
    /// TCP_DEFER_ACCEPT: not acceptable before this time unless data arrives.
    pub deferred_until: Option<u64>,
    /// SO_LINGER seconds, when on.
    pub linger: Option<u32>,
    /// The last ICMP soft error (FreeBSD t_softerror): reported instead of ETIMEDOUT
    /// should the connection time out.
    pub soft_error: Option<Errno>,
    /// The SO_LINGER time last set, on or off (getsockopt reads it back).
    pub linger_time: u32,
    /// TCP_REMOTE_UDP_ENCAPS_PORT: the peer's UDP port when this connection runs over UDP
    /// encapsulation (0: not set).
    pub udp_port: u16,
    /// TCP-MD5: the key its segments are signed and checked with (with `tf::SIGNATURE`).
    pub md5_key: Option<Arc<[u8]>>,
    /// In the host's TIME_WAIT queue (see `timewait.rs`).
    pub tw_listed: bool,
    /// Opened by a TFO SYN: in its listener's accept queue from the SYN on.
    pub tfo_passive: bool,
    /// Counted in its listener's `tfo_pending` (opened by a TFO SYN, still in
    /// SYN_RECEIVED).
    pub tfo_pending: bool,
    /// TCP Fast Open client: the SYN asked for TFO on this path (see `fastopen.rs`).
    pub tfo_active: bool,
    /// TCP_FASTOPEN as set on this socket before connect or listen: Linux's queue
    /// length (an int), or `None` for FreeBSD's `struct tcp_fastopen`.
    pub tfo_qlen: Option<u32>,
    /// The pre-shared key FreeBSD's `struct tcp_fastopen` gave (PSK mode client).
    pub tfo_psk: Option<[u8; crate::fastopen::KEY_LEN]>,
    /// TCP_FASTOPEN_CONNECT (Linux): with a cookie, connect(2) leaves the SYN for the
    /// first write.
    pub tfo_connect: bool,
    /// The SYN waits for the first write (TCP_FASTOPEN_CONNECT with a cookie).
    pub tfo_defer: bool,
    /// Its stack's `t_segqlen` and `snd_numholes` as last added to the host-wide sums.
    pub segq_seen: u32,
    pub holes_seen: u32,
    /// IP_TOS / IPV6_TCLASS: the DSCP bits its packets carry.
    pub ip_tos: u8,
    /// IP_TTL / IPV6_UNICAST_HOPS (0: the host's default).
    pub ip_ttl: u8,
    /// Bytes the application has read so far (stream offset of the read head).
    pub read_pos: u64,
    /// Out-of-band data received (BSD urgent byte).
    pub urg: Option<UrgentMark>,
    /// SO_OOBINLINE: the urgent byte stays in the stream.
    pub oobinline: bool,
    /// The buffers may be auto-sized (cleared by SO_RCVBUF / SO_SNDBUF).
    pub rcv_auto: bool,
    pub snd_auto: bool,
    /// The application closed it: free it once the stack is done.
    pub user_closed: bool,
    /// shutdown(SHUT_WR) / shutdown(SHUT_RD) were called.
    pub wr_shut: bool,
    pub rd_shut: bool,
    /// In the current receive batch: its segments reach the stack with
    /// `HostIf::input_batch` true, and one `output` call follows at the batch's end.
    pub in_batch: bool,
    /// Already in the host's ready list (see `Host::take_ready`).
    pub ready_marked: bool,
    /// The connection's own observer (its TCP_SIFTR trace).
    pub observer: Option<Box<dyn ConnObserver>>,
    /// Its pacing (see `pacing.rs`), once set by its stack or SO_MAX_PACING_RATE.
    pub pacer: Option<Box<crate::pacing::Pacer>>,
    /// The `cong_control` hook of its CC module when that is rate-based.
    pub cc_rate_hook: Option<plugtcp_abi::cc::CongControlFn>,
    /// Its stack's parameter values (`net.inet.tcp.<block>.*`).
    pub stack_params: &'static [std::sync::atomic::AtomicIsize],
    /// Stack options set on it, set again on the next stack after a switch (boxed: most
    /// connections never set one).
    pub sticky: Option<Box<crate::socket::sticky::StickyOpts>>,
}

impl HostSide {
    pub fn new(slot: usize, sndbuf: usize, rcvbuf: usize) -> Self {
        let unspec = SocketAddr::from(([0, 0, 0, 0], 0));
        HostSide {
            slot,
            local: unspec,
            remote: unspec,
            snd: SendBuf::new(sndbuf),
            rcv: RecvBuf::new(rcvbuf),
            timers: [None; tt::COUNT as usize],
            events: 0,
            listener: None,
            queued: false,
            embryonic: false,
            deferred_until: None,
            linger: None,
            soft_error: None,
            linger_time: 0,
            udp_port: 0,
            md5_key: None,
            tw_listed: false,
            tfo_passive: false,
            tfo_pending: false,
            tfo_active: false,
            tfo_qlen: None,
            tfo_psk: None,
            tfo_connect: false,
            tfo_defer: false,
            segq_seen: 0,
            holes_seen: 0,
            ip_tos: 0,
            ip_ttl: 0,
            read_pos: 0,
            urg: None,
            oobinline: false,
            rcv_auto: true,
            snd_auto: true,
            user_closed: false,
            wr_shut: false,
            rd_shut: false,
            in_batch: false,
            ready_marked: false,
            observer: None,
            sticky: None,
            pacer: None,
            cc_rate_hook: None,
            stack_params: &[],
        }
    }

    /// SO_MAX_PACING_RATE: caps the pacing rate, and paces on its own when the stack sets
    /// none (`NO_MAX_RATE`: no cap).
    pub fn set_max_pacing_rate(&mut self, rate: u64) {
        if rate == crate::pacing::NO_MAX_RATE && self.pacer.is_none() {
            return;
        }
        self.pacer.get_or_insert_with(Default::default).max_rate = rate;
    }

    /// SO_MAX_PACING_RATE as set (`NO_MAX_RATE`: none).
    pub fn max_pacing_rate(&self) -> u64 {
        self.pacer
            .as_ref()
            .map_or(crate::pacing::NO_MAX_RATE, |p| p.max_rate)
    }

    /// Cancels every timer of the connection; returns their deadlines so that a failed stack
    /// switch can put them back.
    pub fn stop_timers(&mut self, w: &mut Worker) -> [Option<u64>; tt::COUNT as usize] {
        let mut saved = [None; tt::COUNT as usize];
        for (i, t) in self.timers.iter_mut().enumerate() {
            if let Some(id) = t.take() {
                saved[i] = w.wheel.get(id).map(|(deadline, _)| deadline);
                w.wheel.cancel(id);
            }
        }
        saved
    }

    /// Starts (or moves) timer `which` to fire `delay_ns` from now.
    pub fn start_timer(&mut self, w: &mut Worker, which: u32, delay_ns: u64) {
        let slot = self.slot;
        let Some(t) = self.timers.get_mut(which as usize) else {
            return;
        };
        let deadline = w.now.saturating_add(delay_ns);
        match t {
            Some(id) if w.wheel.reschedule(*id, deadline) => {}
            _ => *t = Some(w.wheel.schedule(deadline, timer_token(slot, which))),
        }
    }

    pub fn restore_timers(&mut self, w: &mut Worker, saved: [Option<u64>; tt::COUNT as usize]) {
        for (i, d) in saved.into_iter().enumerate() {
            if let Some(d) = d {
                self.timers[i] = Some(w.wheel.schedule(d, timer_token(self.slot, i as u32)));
            }
        }
    }

    /// How many bytes the next read may take: reads stop at the urgent mark (SIOCATMARK
    /// then says so). A read at the mark first takes the urgent byte out of the stream
    /// (kept for recv(MSG_OOB)) unless SO_OOBINLINE.
    pub fn read_limit(&mut self, pool: &mut ChunkPool) -> usize {
        let Some(u) = self.urg else {
            return usize::MAX;
        };
        if !self.oobinline && self.read_pos == u.off && self.rcv.readable() > 0 {
            let mut b = [0u8; 1];
            self.rcv.read(pool, &mut b);
            self.read_pos += 1;
            self.urg = if u.taken {
                None
            } else {
                Some(UrgentMark {
                    byte: Some(b[0]),
                    ..u
                })
            };
            return usize::MAX;
        }
        if self.read_pos < u.off {
            (u.off - self.read_pos) as usize
        } else {
            usize::MAX
        }
    }

    /// The application consumed `n` bytes.
    pub fn advance_read(&mut self, n: usize) {
        self.read_pos += n as u64;
        if self.oobinline && self.urg.is_some_and(|u| self.read_pos > u.off) {
            self.urg = None;
        }
    }

    /// Releases buffer chunks and timers (the connection is being freed).
    pub fn release(&mut self, w: &mut Worker) {
        self.stop_timers(w);
        if let Some(mut p) = self.pacer.take() {
            if let Some((id, _)) = p.timer.take() {
                w.wheel.cancel(id);
            }
            for h in p.held.drain(..) {
                w.tx.recycle(h);
            }
        }
        self.snd.clear(&mut w.pool);
        self.rcv.clear(&mut w.pool);
    }
}

/// Where the peer's urgent byte sits in the stream, and whether the application took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrgentMark {
    /// Stream offset of the urgent byte.
    pub off: u64,
    /// The byte, once the read head has passed it (it is kept out of the stream).
    pub byte: Option<u8>,
    /// recv(MSG_OOB) returned it.
    pub taken: bool,
}

/// What `StackCtx.host.host` points at during one stack call.
struct HostCall<'a> {
    side: &'a mut HostSide,
    worker: &'a mut Worker,
}

fn call<'a>(host: *mut c_void) -> Option<&'a mut HostCall<'a>> {
    // SAFETY: the host points `ctx.host.host` at a HostCall on its own stack frame for the
    // duration of each stack call (`Conn::with_call`) and nulls it after; HostCall borrows
    // the HostSide and the Worker, which are disjoint from the StackCtx the stack borrows.
    // Null means a detached call (a connection dropped without `close`): ops do nothing.
    unsafe { (host as *mut HostCall<'a>).as_mut() }
}

/// Most chunks one segment's payload can span (64 KiB over 16 KiB chunks, plus the ends).
const MAX_SLICES: usize = 8;

extern "C" fn op_output(host: *mut c_void, seg: &SegOut) -> HookStatus {
    let Some(c) = call(host) else {
        return HookStatus(Errno::ENOTCONN.0);
    };
    // Pure ACKs (and RSTs) are not paced: they carry no data for the rate to spread, and
    // holding them would only delay the peer's clock.
    let no_data = seg.data_len == 0 && seg.flags & (th::SYN | th::FIN) == 0;
    if no_data || c.side.pacer.as_ref().is_none_or(|p| p.rate() == 0) {
        return output_now(c, seg);
    }
    let queued = c.worker.tx.len();
    if c.side
        .pacer
        .as_ref()
        .is_some_and(|p| p.held.len() >= crate::pacing::MAX_HELD_PACKETS)
    {
        c.worker.pacing.refused += 1;
        return HookStatus(Errno::ENOBUFS.0);
    }
    let st = output_now(c, seg);
    let now = c.worker.now;
    let bytes = c.worker.tx.bytes_after(queued, seg.data_len);
    if bytes == 0 {
        return st;
    }
    let Some(p) = c.side.pacer.as_mut() else {
        return st;
    };
    let depart = p.depart(now, bytes);
    c.worker.pacing.bursts += 1;
    c.worker.pacing.bytes += bytes;
    if depart > now {
        // Too early: the burst waits in the pacer, in order behind what already waits.
        c.worker.pacing.held += 1;
        c.worker.tx.take_tail(queued, depart, &mut p.held);
    } else if !p.held.is_empty() {
        // Never overtake held packets: on time, but behind them.
        let at = p.held.back().map_or(depart, |h| h.depart_ns);
        c.worker.tx.take_tail(queued, at, &mut p.held);
    }
    arm_pacer(c.side, c.worker);
    st
}

/// Puts the connection's pacing wakeup on the wheel for when it is next due (or takes it
/// off when nothing is).
pub fn arm_pacer(side: &mut HostSide, w: &mut Worker) {
    let slot = side.slot;
    let Some(p) = side.pacer.as_mut() else { return };
    match (p.wakeup_at(), p.timer) {
        (Some(at), Some((_, armed))) if armed == at => {}
        (Some(at), Some((id, _))) => {
            if w.wheel.reschedule(id, at) {
                p.timer = Some((id, at));
            } else {
                p.timer = Some((w.wheel.schedule(at, timer_token(slot, PACE_TIMER)), at));
            }
        }
        (Some(at), None) => {
            p.timer = Some((w.wheel.schedule(at, timer_token(slot, PACE_TIMER)), at));
        }
        (None, Some((id, _))) => {
            w.wheel.cancel(id);
            p.timer = None;
        }
        (None, None) => {}
    }
}

/// Builds the packets of one segment descriptor into the transmit queue, now.
fn output_now(c: &mut HostCall<'_>, seg: &SegOut) -> HookStatus {
    let (segsz, len) = (seg.tso_segsz, seg.data_len);
    if segsz == 0 || len <= segsz {
        return transmit(c, seg);
    }
    // TSO: the host is the NIC, and cuts the segment into packets (see `SegOut`).
    if seg.flags & (th::SYN | th::URG | th::CWR) != 0 || len.div_ceil(segsz) > c.worker.tso_segs {
        return HookStatus(Errno::EINVAL.0);
    }
    // A backend that cuts super-packets itself gets the segment whole (one build, one
    // write, the checksum left to it); not a signed one: each packet carries its own digest.
    if wire::MAX_HEADER + len as usize <= c.worker.tx_gso_max as usize
        && segsz <= u16::MAX as u32
        && !seg.opts.has(to::SIGNATURE)
    {
        let st = transmit_whole(c, seg, segsz as u16);
        if st == HookStatus::OK {
            c.worker.offload.gso_sends += 1;
        }
        return st;
    }
    let mut pkt = SegOut {
        tso_segsz: 0,
        ..*seg
    };
    let mut off = 0;
    while off < len {
        let k = segsz.min(len - off);
        pkt.seq = seg.seq.wrapping_add(off);
        pkt.data_off = seg.data_off + off;
        pkt.data_len = k;
        if off + k < len {
            pkt.flags = seg.flags & !(th::PUSH | th::FIN);
        } else {
            pkt.flags = seg.flags;
        }
        let st = transmit(c, &pkt);
        if st != HookStatus::OK {
            return st;
        }
        off += k;
        c.worker.offload.tso_packets += 1;
    }
    c.worker.offload.tso_sends += 1;
    HookStatus::OK
}

/// Builds one packet from the send buffer into the transmit queue.
fn transmit(c: &mut HostCall<'_>, seg: &SegOut) -> HookStatus {
    transmit_whole(c, seg, 0)
}

/// Builds one packet, or with `gso_size` one super-packet for the backend to cut (its
/// checksum partial), from the send buffer into the transmit queue.
fn transmit_whole(c: &mut HostCall<'_>, seg: &SegOut, gso_size: u16) -> HookStatus {
    let mut slices: [&[u8]; MAX_SLICES] = [&[]; MAX_SLICES];
    let mut n = 0;
    let mut got = 0usize;
    for s in c
        .side
        .snd
        .slices_at(seg.data_off as usize, seg.data_len as usize)
    {
        if n == MAX_SLICES {
            return HookStatus(Errno::EINVAL.0);
        }
        slices[n] = s;
        got += s.len();
        n += 1;
    }
    if got != seg.data_len as usize {
        // The stack asked for bytes the send buffer does not hold.
        return HookStatus(Errno::EINVAL.0);
    }
    let (local, remote, tos) = (c.side.local, c.side.remote, c.side.ip_tos);
    let ttl = if c.side.ip_ttl != 0 {
        c.side.ip_ttl
    } else {
        c.worker.ttl
    };
    let cap = wire::MAX_HEADER + got;
    let partial = gso_size != 0 || c.worker.tx_csum_offload;
    let key = if seg.opts.has(to::SIGNATURE) {
        // TCP-MD5 with no key for the peer: nothing is sent (tcp(4)).
        match c.side.md5_key.clone() {
            Some(k) => Some(k),
            None => return HookStatus(Errno::ENOENT.0),
        }
    } else {
        None
    };
    match c.worker.tx.push_gso(cap, c.side.udp_port, gso_size, |buf| {
        let finish = match &key {
            Some(k) => wire::Finish::Signed(k),
            None if partial => wire::Finish::PartialChecksum,
            None => wire::Finish::Checksum,
        };
        wire::build_finished(buf, local, remote, seg, &slices[..n], (ttl, tos), finish)
    }) {
        Ok(()) => HookStatus::OK,
        Err(e) => HookStatus(e.errno().0),
    }
}
extern "C" fn op_snd_len(host: *mut c_void) -> u32 {
    call(host).map_or(0, |c| c.side.snd.len() as u32)
}
extern "C" fn op_snd_read(host: *mut c_void, off: u32, mut dst: RSliceMut<'_, u8>) -> u32 {
    call(host).map_or(0, |c| c.side.snd.read_at(off as usize, &mut dst) as u32)
}
extern "C" fn op_snd_drop(host: *mut c_void, n: u32) {
    if let Some(c) = call(host) {
        c.side.snd.drop_front(&mut c.worker.pool, n as usize);
    }
}
extern "C" fn op_rcv_space(host: *mut c_void) -> u32 {
    call(host).map_or(0, |c| c.side.rcv.space() as u32)
}
extern "C" fn op_rcv_hiwat(host: *mut c_void) -> u32 {
    call(host).map_or(0, |c| c.side.rcv.hiwat() as u32)
}
extern "C" fn op_autosize(host: *mut c_void, which: u32, size: u32) -> u32 {
    use plugtcp_abi::stack::autosize;
    let Some(c) = call(host) else { return 0 };
    let t = &c.worker.tunables;
    let side = &mut c.side;
    let sb_max = c.worker.sb_max.load(std::sync::atomic::Ordering::Relaxed);
    let reserve = |cur: usize| (size as usize).min(sb_max as usize).max(cur);
    match which {
        autosize::RESERVE_RCV => {
            side.rcv.set_hiwat(reserve(side.rcv.hiwat()));
            side.rcv.hiwat() as u32
        }
        autosize::RESERVE_SND => {
            side.snd.set_hiwat(reserve(side.snd.hiwat()));
            side.snd.hiwat() as u32
        }
        autosize::RCV => {
            if side.rcv_auto && t.recvbuf_auto != 0 {
                let size = (size as usize)
                    .min(t.recvbuf_max as usize)
                    .max(side.rcv.hiwat());
                side.rcv.set_hiwat(size);
            }
            side.rcv.hiwat() as u32
        }
        _ => {
            if side.snd_auto && t.sendbuf_auto != 0 {
                let size = (size as usize)
                    .min(t.sendbuf_max as usize)
                    .max(side.snd.hiwat());
                side.snd.set_hiwat(size);
            }
            side.snd.hiwat() as u32
        }
    }
}
extern "C" fn op_snd_hiwat(host: *mut c_void) -> u32 {
    call(host).map_or(0, |c| c.side.snd.hiwat() as u32)
}
extern "C" fn op_rcv_write(host: *mut c_void, off: u32, data: RSlice<'_, u8>) -> u32 {
    call(host).map_or(0, |c| {
        c.side.rcv.write_at(&mut c.worker.pool, off as usize, &data) as u32
    })
}
extern "C" fn op_rcv_commit(host: *mut c_void, n: u32) {
    if let Some(c) = call(host) {
        c.side.rcv.commit(n as usize);
    }
}
extern "C" fn op_timer_start(host: *mut c_void, which: u32, delay_ns: u64) {
    let Some(c) = call(host) else { return };
    c.side.start_timer(c.worker, which, delay_ns);
}
extern "C" fn op_timer_stop(host: *mut c_void, which: u32) {
    let Some(c) = call(host) else { return };
    if let Some(id) = c.side.timers.get_mut(which as usize).and_then(Option::take) {
        c.worker.wheel.cancel(id);
    }
}
extern "C" fn op_timer_remaining(host: *mut c_void, which: u32) -> u64 {
    let Some(c) = call(host) else { return u64::MAX };
    c.side
        .timers
        .get(which as usize)
        .copied()
        .flatten()
        .and_then(|id| c.worker.wheel.get(id))
        .map_or(u64::MAX, |(deadline, _)| {
            deadline.saturating_sub(c.worker.now)
        })
}
extern "C" fn op_now(host: *mut c_void) -> u64 {
    call(host).map_or(0, |c| c.worker.now)
}
extern "C" fn op_input_batch(host: *mut c_void) -> bool {
    call(host).is_some_and(|c| c.side.in_batch)
}
extern "C" fn op_event(host: *mut c_void, ev: ConnEvent) {
    if let Some(c) = call(host) {
        c.side.events |= 1 << ev as u8;
    }
}
extern "C" fn op_pacing(host: *mut c_void) -> Pacing {
    let Some(c) = call(host) else {
        return Pacing::default();
    };
    let now = c.worker.now;
    let Some(p) = c.side.pacer.as_mut() else {
        return Pacing {
            max_rate: crate::pacing::NO_MAX_RATE,
            ..Pacing::default()
        };
    };
    let wait_ns = p.wait_ns(now);
    if wait_ns > 0 && !p.wake_stack {
        p.wake_stack = true;
        arm_pacer(c.side, c.worker);
    }
    let Some(p) = c.side.pacer.as_ref() else {
        return Pacing::default();
    };
    Pacing {
        rate: p.rate(),
        quantum: p.quantum(),
        wait_ns,
        max_rate: p.max_rate,
    }
}
extern "C" fn op_pacing_set(host: *mut c_void, rate: u64, quantum: u32) {
    let Some(c) = call(host) else { return };
    if rate == 0 && c.side.pacer.is_none() {
        return;
    }
    let p = c.side.pacer.get_or_insert_with(Default::default);
    p.stack_rate = rate;
    p.stack_quantum = quantum;
}
extern "C" fn op_cc_cong_control(host: *mut c_void) -> plugtcp_abi::cc::CongControlHook {
    plugtcp_abi::cc::CongControlHook {
        func: call(host).and_then(|c| c.side.cc_rate_hook),
    }
}
extern "C" fn op_stack_param(host: *mut c_void, idx: u32) -> i64 {
    call(host)
        .and_then(|c| c.side.stack_params.get(idx as usize))
        .map_or(i64::MIN, |v| {
            v.load(std::sync::atomic::Ordering::Relaxed) as i64
        })
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

/// The host operations every connection's stack sees.
pub const HOST_OPS: HostOpsRef = HostOpsRef(HOST_OPS_WM.static_as_prefix());

struct AttachedStack {
    entry: Arc<BlockEntry>,
    state: *mut c_void,
}

/// A connection.
pub struct Conn {
    pub ctx: StackCtx,
    pub side: HostSide,
    stack: Option<AttachedStack>,
    cc: Option<Arc<CcEntry>>,
    /// The alias the stack was selected by (TCP_FUNCTION_BLK with an alias).
    selected_as: Option<String>,
    /// Set once the connection changes stack or CC with counts to its name (boxed: most
    /// connections never switch, and this keeps them small).
    attributed: Option<Box<Attributed>>,
}

fn hook(st: HookStatus) -> Result<(), HookError> {
    st.into_result()
}

impl Conn {
    /// A connection in `slot` with no stack or CC attached yet.
    pub fn new(
        slot: usize,
        maxseg: u32,
        sndbuf: usize,
        rcvbuf: usize,
        globals: &'static CcGlobals,
    ) -> Self {
        Conn {
            ctx: StackCtx {
                tp: Tcpcb::new(maxseg),
                cc: CcConn::new(globals),
                host: HostIf {
                    ops: HOST_OPS,
                    host: std::ptr::null_mut(),
                },
                counters: RSlice::from_slice(&[]),
                tunables: std::ptr::null(),
            },
            side: HostSide::new(slot, sndbuf, rcvbuf),
            stack: None,
            cc: None,
            selected_as: None,
            attributed: None,
        }
    }

    pub fn stack(&self) -> Option<&Arc<BlockEntry>> {
        self.stack.as_ref().map(|s| &s.entry)
    }

    pub fn cc(&self) -> Option<&Arc<CcEntry>> {
        self.cc.as_ref()
    }

    /// Runs `f` (a call into the stack) with the host interface pointed at this connection's
    /// host side and the worker, and unpointed afterwards.
    fn with_call<R>(
        &mut self,
        w: &mut Worker,
        f: impl FnOnce(&Option<AttachedStack>, &mut StackCtx) -> R,
    ) -> R {
        self.ctx.tunables = Arc::as_ptr(&w.tunables);
        self.ctx.tp.t_tsomax_segs = w.tso_segs;
        let mut hc = HostCall {
            side: &mut self.side,
            worker: w,
        };
        self.ctx.host.host = &mut hc as *mut HostCall as *mut c_void;
        let r = f(&self.stack, &mut self.ctx);
        self.ctx.host.host = std::ptr::null_mut();
        self.ctx.tunables = std::ptr::null();
        r
    }

    /// The function block's name (TCP_FUNCTION_BLK).
    pub fn stack_name(&self) -> String {
        self.stack
            .as_ref()
            .map_or_else(String::new, |s| s.entry.name.clone())
    }

    /// Blames a failed stack call on the CC when a CC hook panicked inside it.
    fn check(&mut self, st: HookStatus) -> Result<(), ConnFault> {
        if std::mem::take(&mut self.ctx.cc.faulted) {
            let name = self
                .cc
                .as_ref()
                .map_or_else(String::new, |c| c.name.clone());
            return Err(ConnFault {
                culprit: Culprit::Cc(name),
                error: HookError::Panicked,
            });
        }
        hook(st).map_err(|error| ConnFault {
            culprit: Culprit::Stack(self.stack_name()),
            error,
        })
    }

    /// Switches (or first attaches) the connection's CC: TCP_CONGESTION, make-before-break.
    /// The new module's cb_init runs on a fresh cc_var first; only if it succeeds does the
    /// old module's cb_destroy run. cwnd and ssthresh stay in the tcpcb. conn_init runs if
    /// the connection is established.
    pub fn set_cc(&mut self, entry: Arc<CcEntry>) -> Result<(), ConnFault> {
        self.attribute();
        let fault = |error| ConnFault {
            culprit: Culprit::Cc(entry.name.clone()),
            error,
        };
        entry.acquire().map_err(|e| fault(HookError::Errno(e)))?;
        let mut ccv = CcVar::new(self.ctx.cc.ccv.globals);
        ccv.params = entry.params.into();
        ccv.counters = entry.counters.into();
        ccv.flags = self.ctx.cc.ccv.flags;
        if let Some(init) = entry.hooks.cb_init {
            if let Err(e) = hook(init(&mut ccv, &mut self.ctx.tp)) {
                entry.release();
                return Err(fault(e));
            }
        }
        self.detach_cc();
        self.ctx.cc.hooks = entry.hooks;
        self.ctx.cc.ccv = ccv;
        let rate_hook = entry.algo.cong_control().flatten();
        if std::mem::replace(&mut self.side.cc_rate_hook, rate_hook).is_some() {
            // The rate-based module being left set the pacing: it goes with it.
            if let Some(p) = self.side.pacer.as_mut() {
                p.stack_rate = 0;
                p.stack_quantum = 0;
            }
        }
        self.cc = Some(entry);
        if self.ctx.tp.t_state.have_established() {
            self.ctx.cc.conn_init(&mut self.ctx.tp);
            self.check(HookStatus::OK)?;
        }
        Ok(())
    }

    /// Runs the CC's cb_destroy and drops the user count (a panic there is ignored: the
    /// module is being left anyway, and the private state is lost either way).
    fn detach_cc(&mut self) {
        if let Some(old) = self.cc.take() {
            if let Some(d) = self.ctx.cc.hooks.cb_destroy {
                let _ = d(&mut self.ctx.cc.ccv);
            }
            self.ctx.cc.ccv.cc_data = std::ptr::null_mut();
            old.release();
        }
    }

    /// Switches a live connection to another stack (TCP_FUNCTION_BLK), or attaches the first
    /// one. Make-before-break as FreeBSD does: the block already in use is a no-op; a
    /// departing block is ENOENT; the target's handoff_ok (its errno returned as is); the old
    /// stack's timers stopped; the new stack's init in switch mode with a query handle on the
    /// old one; on failure whatever the new init armed is cancelled, the old stack's timers
    /// come back and its switch_failed runs, and it keeps the connection; on success the old
    /// stack's fini (which cannot touch the new stack's timers). Standard timers the new
    /// stack arms never fire later than the old stack's would have.
    pub fn switch_stack(
        &mut self,
        w: &mut Worker,
        entry: Arc<BlockEntry>,
    ) -> Result<(), ConnFault> {
        self.switch_stack_via(w, entry, None)
    }

    /// As [`Conn::switch_stack`], remembering the name the block was selected by (an alias
    /// is what TCP_FUNCTION_ALIAS reports).
    pub fn switch_stack_via(
        &mut self,
        w: &mut Worker,
        entry: Arc<BlockEntry>,
        via: Option<&str>,
    ) -> Result<(), ConnFault> {
        self.attribute();
        let fault = |error| ConnFault {
            culprit: Culprit::Stack(entry.name.clone()),
            error,
        };
        let via = via.filter(|n| *n != entry.name).map(str::to_owned);
        if self
            .stack
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.entry, &entry))
        {
            // FreeBSD: "You already have this".
            if via.is_some() {
                self.selected_as = via;
            }
            return Ok(());
        }
        entry.acquire().map_err(|e| fault(HookError::Errno(e)))?;
        let mode = if self.stack.is_some() {
            InitMode::Switch
        } else {
            InitMode::Fresh
        };
        if mode == InitMode::Switch {
            let handoff = self.with_call(w, |_, cx| (entry.hooks.handoff_ok)(cx));
            if let Err(e) = hook(handoff) {
                entry.release();
                return Err(fault(e));
            }
        }
        let saved = self.side.stop_timers(w);
        let old_counters = self.ctx.counters;
        self.ctx.counters = entry.counters.into();
        let old_params = std::mem::replace(&mut self.side.stack_params, entry.params);
        let mut state = std::ptr::null_mut();
        let r = self.with_call(w, |old, cx| {
            let oldq = old.as_ref().map_or(OldStack::NONE, |o| OldStack {
                state: o.state,
                chg_query: o.entry.hooks.chg_query,
            });
            match entry.hooks.init {
                Some(init) => hook(init(cx, mode, oldq, &mut state)),
                None => Ok(()),
            }
        });
        if let Err(e) = r {
            entry.release();
            self.ctx.counters = old_counters;
            self.side.stack_params = old_params;
            // What the failed init armed is not the old stack's.
            self.side.stop_timers(w);
            self.side.restore_timers(w, saved);
            self.with_call(w, |old, cx| {
                if let Some(o) = old {
                    if let Some(sf) = o.entry.hooks.switch_failed {
                        let _ = sf(o.state, cx);
                    }
                }
            });
            return Err(fault(e));
        }
        // A switch does not postpone what was due: a standard timer (REXMT, PERSIST, KEEP,
        // 2MSL, DELACK: the same meaning in every stack) that the new stack armed keeps the
        // old stack's deadline when that was sooner. Otherwise switching more often than
        // one RTO would restart the retransmit timer forever and a lost tail would never be
        // sent again. Timers the new stack did not arm stay off, and private ones are its own.
        for (i, old_deadline) in saved.iter().enumerate().take(tt::PRIV0 as usize) {
            let (Some(old_deadline), Some(id)) = (*old_deadline, self.side.timers[i]) else {
                continue;
            };
            if w.wheel.get(id).is_some_and(|(d, _)| old_deadline < d) {
                w.wheel.reschedule(id, old_deadline);
            }
        }
        if let Some(old) = self.stack.take() {
            // The old stack's fini runs with its own counters and without the new stack's
            // timers: whatever it stops or starts is its own business and is undone.
            let new_counters = self.ctx.counters;
            self.ctx.counters = old_counters;
            let new_params = std::mem::replace(&mut self.side.stack_params, old_params);
            let new_timers = std::mem::take(&mut self.side.timers);
            self.with_call(w, |_, cx| {
                if let Some(fini) = old.entry.hooks.fini {
                    let _ = fini(old.state, cx, false);
                }
            });
            self.side.stop_timers(w);
            self.side.timers = new_timers;
            self.ctx.counters = new_counters;
            self.side.stack_params = new_params;
            old.entry.release();
        }
        self.stack = Some(AttachedStack { entry, state });
        self.selected_as = via;
        Ok(())
    }

    /// Credits what the connection counted since the last change to its current (stack,
    /// CC), before either changes (a control-path call: it allocates once per connection
    /// that switches).
    fn attribute(&mut self) {
        let (Some(s), Some(c)) = (&self.stack, &self.cc) else {
            return;
        };
        let now = conn_totals(&self.ctx.tp);
        let mark = self.attributed.as_ref().map_or([0; 6], |a| a.mark);
        if now == mark {
            return;
        }
        let delta: ConnTotals = std::array::from_fn(|i| now[i].saturating_sub(mark[i]));
        let a = self.attributed.get_or_insert_with(Default::default);
        credit(&mut a.by, &s.entry, c, &delta);
        a.mark = now;
    }

    /// Calls `f` with what the connection counted under each (stack, CC) it ran on, the
    /// current pair included.
    pub fn for_each_attribution(
        &self,
        mut f: impl FnMut(&Arc<BlockEntry>, &Arc<CcEntry>, &ConnTotals),
    ) {
        let mut mark = [0; 6];
        if let Some(a) = &self.attributed {
            for (b, c, t) in &a.by {
                f(b, c, t);
            }
            mark = a.mark;
        }
        if let (Some(s), Some(c)) = (&self.stack, &self.cc) {
            let now = conn_totals(&self.ctx.tp);
            let delta: ConnTotals = std::array::from_fn(|i| now[i].saturating_sub(mark[i]));
            f(&s.entry, c, &delta);
        }
    }

    /// The name the connection's block was selected by when that was an alias
    /// (TCP_FUNCTION_ALIAS), else `None`.
    pub fn selected_alias(&self) -> Option<&str> {
        self.selected_as.as_deref()
    }

    /// Detaches stack and CC and frees the host side (the connection is going away):
    /// fini(purged), cb_destroy, timers cancelled, buffer chunks back to the pool.
    pub fn close(&mut self, w: &mut Worker) {
        self.for_each_attribution(|b, c, t| credit(&mut w.departed, b, c, t));
        self.attributed = None;
        if let Some(s) = self.stack.take() {
            self.with_call(w, |_, cx| {
                if let Some(fini) = s.entry.hooks.fini {
                    let _ = fini(s.state, cx, true);
                }
            });
            s.entry.release();
        }
        self.detach_cc();
        self.side.release(w);
    }

    fn call_stack(
        &mut self,
        w: &mut Worker,
        f: impl FnOnce(&AttachedStack, &mut StackCtx) -> HookStatus,
    ) -> Result<(), ConnFault> {
        let st = self.with_call(w, |s, cx| s.as_ref().map(|s| f(s, cx)));
        match st {
            Some(st) => self.check(st),
            None => Err(ConnFault {
                culprit: Culprit::Stack(String::new()),
                error: HookError::Errno(Errno::ENOTCONN),
            }),
        }
    }

    /// Hands an incoming segment to the stack.
    pub fn do_segment(&mut self, w: &mut Worker, seg: &SegIn<'_>) -> Result<(), ConnFault> {
        // Only an observed connection (or one a host-wide observer may want) pays for more
        // than this test.
        if self.side.observer.is_none() && w.observer.is_none() {
            return self.call_stack(w, |s, cx| (s.entry.hooks.do_segment)(s.state, cx, seg));
        }
        let una = self.ctx.tp.snd_una;
        let r = self.call_stack(w, |s, cx| (s.entry.hooks.do_segment)(s.state, cx, seg));
        self.show_segment(w, seg.flags, una);
        r
    }

    /// Shows the observers what the segment with `flags` did (`una`: snd_una before it).
    fn show_segment(&mut self, w: &mut Worker, flags: u16, una: u32) {
        let side = &mut self.side;
        let tp = &self.ctx.tp;
        let seen = SegmentSeen {
            now: w.now,
            local: side.local,
            remote: side.remote,
            tp,
            flags,
            acked: tp.snd_una.wrapping_sub(una),
            snd_queued: side.snd.len(),
            stack: self.stack.as_ref().map_or("", |s| s.entry.name.as_str()),
            cc: self.cc.as_ref().map_or("", |c| c.name.as_str()),
        };
        if let Some(o) = side.observer.as_mut() {
            o.segment(&seen);
        }
        if let Some(o) = w
            .observer
            .as_mut()
            .filter(|o| o.wants(&seen.local, &seen.remote))
        {
            o.segment(&seen);
        }
    }

    /// Lets the stack send what it can (tcp_output).
    pub fn output(&mut self, w: &mut Worker) -> Result<(), ConnFault> {
        self.call_stack(w, |s, cx| (s.entry.hooks.output)(s.state, cx))
    }

    /// The path MTU dropped to `mtu` (FreeBSD tfb_tcp_mtu_chg): the stack forgets what it
    /// knew about the data in flight, which goes out again in smaller segments.
    pub fn mtu_chg(&mut self, w: &mut Worker, mtu: u32) -> Result<(), ConnFault> {
        self.call_stack(w, |s, cx| match s.entry.hooks.mtu_chg {
            Some(h) => h(s.state, cx, mtu),
            None => HookStatus::OK,
        })
    }

    /// Timer `which`, armed as `id`, fired in the wheel. Nothing happens when the connection
    /// no longer holds `id` there (the stack stopped or re-armed the timer after the wheel
    /// gave it out, in an earlier delivery of the same pass).
    pub fn timer_fired(
        &mut self,
        w: &mut Worker,
        which: u32,
        id: TimerId,
    ) -> Result<(), ConnFault> {
        if which == PACE_TIMER {
            return self.pacing_fired(w, id);
        }
        if self.side.timers.get(which as usize) != Some(&Some(id)) {
            return Ok(());
        }
        self.timer(w, which)
    }

    /// The pacing wakeup: held packets whose time has come go to the transmit queue, and a
    /// stack that waited for its turn gets its `output` call.
    fn pacing_fired(&mut self, w: &mut Worker, id: TimerId) -> Result<(), ConnFault> {
        let now = w.now;
        let Some(p) = self.side.pacer.as_mut() else {
            return Ok(());
        };
        if p.timer.map(|(t, _)| t) != Some(id) {
            return Ok(());
        }
        p.timer = None;
        while let Some(h) = p.held.pop_front() {
            if h.depart_ns > now {
                p.held.push_front(h);
                break;
            }
            w.tx.push_held(h);
        }
        let wake = p.wake_stack && p.wait_ns(now) == 0;
        if wake {
            p.wake_stack = false;
        }
        arm_pacer(&mut self.side, w);
        if wake {
            self.output(w)
        } else {
            Ok(())
        }
    }

    /// Timer `which` is due: the stack's timer hook runs, the timer no longer armed.
    pub fn timer(&mut self, w: &mut Worker, which: u32) -> Result<(), ConnFault> {
        if let Some(t) = self.side.timers.get_mut(which as usize) {
            *t = None;
        }
        self.call_stack(w, |s, cx| match s.entry.hooks.timer {
            Some(t) => t(s.state, cx, which),
            None => HookStatus::OK,
        })
    }

    /// A socket option for the stack (get or set).
    pub fn ctloutput(&mut self, w: &mut Worker, opt: &mut SockOpt<'_>) -> Result<(), ConnFault> {
        self.call_stack(w, |s, cx| (s.entry.hooks.ctloutput)(s.state, cx, opt))
    }

    /// A connection accepted from a listener: the stack's inherit hook.
    pub fn inherit(&mut self, w: &mut Worker, listener: &Tcpcb) -> Result<(), ConnFault> {
        self.call_stack(w, |s, cx| match s.entry.hooks.inherit {
            Some(i) => i(s.state, cx, listener),
            None => HookStatus::OK,
        })
    }

    /// TCP_CCALGOOPT to the CC module: ENOENT when it has no ctl_output.
    pub fn cc_ctl(&mut self, opt: &mut SockOpt<'_>) -> Result<(), ConnFault> {
        let name = self
            .cc
            .as_ref()
            .map_or_else(String::new, |c| c.name.clone());
        let fault = |error| ConnFault {
            culprit: Culprit::Cc(name.clone()),
            error,
        };
        let ctl = self
            .ctx
            .cc
            .hooks
            .ctl_output
            .ok_or(fault(HookError::Errno(Errno::ENOENT)))?;
        hook(ctl(&mut self.ctx.cc.ccv, &mut self.ctx.tp, opt)).map_err(fault)
    }

    /// TCP_INFO from the stack (or from the tcpcb when the stack has no info hook).
    pub fn info(&mut self, w: &mut Worker) -> Result<TcpInfo, ConnFault> {
        let mut out = TcpInfo::from_tcpcb(&self.ctx.tp);
        self.call_stack(w, |s, cx| match s.entry.hooks.info {
            Some(i) => i(s.state, cx, &mut out),
            None => HookStatus::OK,
        })?;
        Ok(out)
    }

    pub fn state(&self) -> TcpState {
        self.ctx.tp.t_state
    }
}

// SAFETY: a connection moves between threads as a whole (a host runs on one driver thread
// at a time). Its raw pointers are the plugins' private states, boxes whose types the
// framework's traits require to be Send and which nothing outside this connection holds, and
// the host and tunables pointers of `StackCtx`, which are null outside a stack call.
unsafe impl Send for Conn {}

impl Drop for Conn {
    /// The host frees connections with [`Conn::close`] on its worker. A connection dropped
    /// without it (a host being torn down) still gets its fini and cb_destroy and releases
    /// its user counts; the stack's host ops are detached (null host) and do nothing.
    fn drop(&mut self) {
        if let Some(s) = self.stack.take() {
            if let Some(fini) = s.entry.hooks.fini {
                let _ = fini(s.state, &mut self.ctx, true);
            }
            s.entry.release();
        }
        self.detach_cc();
    }
}
