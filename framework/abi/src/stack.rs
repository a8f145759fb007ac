//! TCP function blocks (whole TCP stacks), after FreeBSD's `struct tcp_function_block`
//! (tcp_functions(9)), and the sans-IO interface through which a stack asks the host for
//! things: transmit, socket-buffer bytes, timers, the clock, connection events.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use abi_stable::{
    prefix_type::WithMetadata,
    std_types::{RSlice, RSliceMut, RStr},
    StableAbi,
};

use crate::cc::CcConn;
use crate::errno::{guard, Errno, HookStatus};
use crate::segment::{SegIn, SegOut};
use crate::sockopt::SockOpt;
use crate::tcpcb::{TcpState, Tcpcb};

/// Function block flags (FreeBSD TCP_FUNC_*).
pub mod tcp_func {
    /// The block may be made the system default.
    pub const DEFAULT_OK: u32 = 0x0001;
    /// Set by the host while the block is being deregistered: no new users.
    pub const BEING_REMOVED: u32 = 0x0002;
    /// The block wants segments before the host's own checks (unused by the host today).
    pub const OUTPUT_CANDROP: u32 = 0x0004;
}

/// Per-connection timers the host runs for a stack (FreeBSD TT_*), plus private ones.
pub mod tt {
    pub const REXMT: u32 = 0;
    pub const PERSIST: u32 = 1;
    pub const KEEP: u32 = 2;
    pub const TWO_MSL: u32 = 3;
    pub const DELACK: u32 = 4;
    /// First timer a stack may use for its own purposes (RACK's TLP, pacing...).
    pub const PRIV0: u32 = 5;
    /// Number of timers per connection.
    pub const COUNT: u32 = 8;
}

/// Events a stack reports to the host (socket wakeups and state changes).
#[repr(u8)]
#[derive(Copy, Clone, PartialEq, Eq, Debug, StableAbi)]
pub enum ConnEvent {
    /// The handshake completed (soisconnected).
    Connected = 0,
    /// New bytes are readable or the peer's FIN arrived (sorwakeup).
    Readable = 1,
    /// Send-buffer space was freed (sowwakeup).
    Writable = 2,
    /// The connection is closed and may be freed (tcp_close); `t_softerror` says why.
    Closed = 3,
    /// The connection entered TIME_WAIT (the host may keep a compact record).
    TimeWait = 4,
    /// The peer's urgent pointer moved (`tp.rcv_up`): out-of-band data (SIGURG).
    Urgent = 5,
}

/// What the host offers a stack. A prefix type so that later ABI versions can append ops.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = HostOpsRef)))]
#[sabi(missing_field(panic))]
pub struct HostOps {
    /// Transmit one segment (the host adds IP and TCP headers and copies the payload).
    pub output: extern "C" fn(host: *mut c_void, seg: &SegOut) -> HookStatus,
    /// Bytes in the send buffer (from snd_una).
    pub snd_len: extern "C" fn(host: *mut c_void) -> u32,
    /// Copy send-buffer bytes at `off` into `dst`; returns the count copied.
    pub snd_read: extern "C" fn(host: *mut c_void, off: u32, dst: RSliceMut<'_, u8>) -> u32,
    /// Drop `n` acknowledged bytes from the front of the send buffer.
    pub snd_drop: extern "C" fn(host: *mut c_void, n: u32),
    /// Free space in the receive buffer.
    pub rcv_space: extern "C" fn(host: *mut c_void) -> u32,
    /// The receive buffer's size (so_rcv.sb_hiwat).
    pub rcv_hiwat: extern "C" fn(host: *mut c_void) -> u32,
    /// Grow a buffer; `which` is an [`autosize`] constant. RCV and SND auto-size: the host
    /// caps the size at recvbuf_max/sendbuf_max and ignores the request when the
    /// application fixed the size (SO_RCVBUF/SO_SNDBUF). RESERVE_RCV and RESERVE_SND grow it
    /// whatever the application set, capped at kern.ipc.maxsockbuf (FreeBSD's sbreserve in
    /// tcp_mss, which rounds both buffers up to whole segments). Never shrinks; returns the
    /// size in force.
    pub autosize: extern "C" fn(host: *mut c_void, which: u32, size: u32) -> u32,
    /// The send buffer's size (so_snd.sb_hiwat).
    pub snd_hiwat: extern "C" fn(host: *mut c_void) -> u32,
    /// Store bytes `off` bytes past the readable end of the receive buffer (0 = in order);
    /// returns the count stored.
    pub rcv_write: extern "C" fn(host: *mut c_void, off: u32, data: RSlice<'_, u8>) -> u32,
    /// Make `n` more stored bytes readable by the application.
    pub rcv_commit: extern "C" fn(host: *mut c_void, n: u32),
    /// Arm timer `which` (a `tt::*`) to fire `delay_ns` from now; re-arming replaces.
    pub timer_start: extern "C" fn(host: *mut c_void, which: u32, delay_ns: u64),
    pub timer_stop: extern "C" fn(host: *mut c_void, which: u32),
    /// Nanoseconds until timer `which` fires, or u64::MAX when it is not armed.
    pub timer_remaining: extern "C" fn(host: *mut c_void, which: u32) -> u64,
    /// The host clock, in nanoseconds.
    pub now: extern "C" fn(host: *mut c_void) -> u64,
    #[sabi(last_prefix_field)]
    pub event: extern "C" fn(host: *mut c_void, ev: ConnEvent),
}

/// `which` values of [`HostOps::autosize`].
pub mod autosize {
    pub const RCV: u32 = 0;
    pub const SND: u32 = 1;
    pub const RESERVE_RCV: u32 = 2;
    pub const RESERVE_SND: u32 = 3;
}

/// The host side of one stack call: its ops and the opaque handle they take.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostIf {
    pub ops: HostOpsRef,
    pub host: *mut c_void,
}

impl HostIf {
    #[inline]
    pub fn output(&self, seg: &SegOut) -> Result<(), Errno> {
        match (self.ops.output())(self.host, seg).into_result() {
            Ok(()) => Ok(()),
            Err(e) => Err(e.errno()),
        }
    }
    #[inline]
    pub fn snd_len(&self) -> u32 {
        (self.ops.snd_len())(self.host)
    }
    #[inline]
    pub fn snd_read(&self, off: u32, dst: &mut [u8]) -> u32 {
        (self.ops.snd_read())(self.host, off, dst.into())
    }
    #[inline]
    pub fn snd_drop(&self, n: u32) {
        (self.ops.snd_drop())(self.host, n)
    }
    #[inline]
    pub fn rcv_space(&self) -> u32 {
        (self.ops.rcv_space())(self.host)
    }
    #[inline]
    pub fn rcv_hiwat(&self) -> u32 {
        (self.ops.rcv_hiwat())(self.host)
    }
    #[inline]
    pub fn autosize(&self, which: u32, size: u32) -> u32 {
        (self.ops.autosize())(self.host, which, size)
    }
    #[inline]
    pub fn snd_hiwat(&self) -> u32 {
        (self.ops.snd_hiwat())(self.host)
    }
    #[inline]
    pub fn rcv_write(&self, off: u32, data: &[u8]) -> u32 {
        (self.ops.rcv_write())(self.host, off, data.into())
    }
    #[inline]
    pub fn rcv_commit(&self, n: u32) {
        (self.ops.rcv_commit())(self.host, n)
    }
    #[inline]
    pub fn timer_start(&self, which: u32, delay_ns: u64) {
        (self.ops.timer_start())(self.host, which, delay_ns)
    }
    #[inline]
    pub fn timer_stop(&self, which: u32) {
        (self.ops.timer_stop())(self.host, which)
    }
    #[inline]
    pub fn timer_remaining(&self, which: u32) -> Option<u64> {
        match (self.ops.timer_remaining())(self.host, which) {
            u64::MAX => None,
            r => Some(r),
        }
    }
    #[inline]
    pub fn now(&self) -> u64 {
        (self.ops.now())(self.host)
    }
    #[inline]
    pub fn event(&self, ev: ConnEvent) {
        (self.ops.event())(self.host, ev)
    }
}

/// The `net.inet.tcp.*` values a stack reads, copied by the host from its sysctl tree. Times
/// in milliseconds as the sysctls give them.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct StackTunables {
    pub mssdflt: u32,
    pub v6mssdflt: u32,
    pub minmss: u32,
    pub rfc1323: u32,
    pub sack_enable: u32,
    pub sack_maxholes: u32,
    pub delayed_ack: u32,
    pub delacktime: u32,
    pub rexmit_initial: u32,
    pub rexmit_min: u32,
    pub rexmit_slop: u32,
    pub persmin: u32,
    pub persmax: u32,
    pub keepinit: u32,
    pub keepidle: u32,
    pub keepintvl: u32,
    pub keepcnt: u32,
    pub always_keepalive: u32,
    pub msl: u32,
    pub nolocaltimewait: u32,
    pub initcwnd_segments: u32,
    pub ecn_enable: u32,
    pub ecn_maxretries: u32,
    pub do_prr: u32,
    pub do_prr_conservative: u32,
    pub do_lrd: u32,
    pub insecure_rst: u32,
    pub insecure_syn: u32,
    pub drop_synfin: u32,
    pub tolerate_missing_ts: u32,
    pub abc_l_var: u32,
    pub recvbuf_auto: u32,
    pub recvbuf_max: u32,
    pub sendbuf_auto: u32,
    pub sendbuf_inc: u32,
    pub sendbuf_max: u32,
    pub ack_war_timewindow: u32,
    pub ack_war_cnt: u32,
    pub finwait2_timeout: u32,
    pub fast_finwait2_recycle: u32,
    /// `net.inet.tcp.rack.*` (FreeBSD's rack stack): the reordering window is min_rtt >>
    /// reorder_thresh; reordering seen longer than reorder_fade (us) ago is forgotten;
    /// pktdelay (ms) is added to RACK's loss timer; at most tlp_limit tail loss probes in a
    /// row; the probe timeout is at least tlpminto (us).
    pub rack_reorder_thresh: u32,
    pub rack_reorder_fade: u32,
    pub rack_pktdelay: u32,
    pub rack_tlp_limit: u32,
    pub rack_tlpminto: u32,
}

impl Default for StackTunables {
    fn default() -> Self {
        StackTunables::FREEBSD
    }
}

impl StackTunables {
    /// FreeBSD's defaults (tcp(4)).
    pub const FREEBSD: StackTunables = StackTunables {
        mssdflt: 536,
        v6mssdflt: 1220,
        minmss: 216,
        rfc1323: 1,
        sack_enable: 1,
        sack_maxholes: 128,
        delayed_ack: 1,
        delacktime: 40,
        rexmit_initial: 1000,
        rexmit_min: 30,
        rexmit_slop: 200,
        persmin: 5000,
        persmax: 60000,
        keepinit: 75000,
        keepidle: 7_200_000,
        keepintvl: 75000,
        keepcnt: 8,
        always_keepalive: 1,
        msl: 30000,
        nolocaltimewait: 1,
        initcwnd_segments: 10,
        ecn_enable: 2,
        ecn_maxretries: 1,
        do_prr: 1,
        do_prr_conservative: 0,
        do_lrd: 0,
        insecure_rst: 0,
        insecure_syn: 0,
        drop_synfin: 1,
        tolerate_missing_ts: 1,
        abc_l_var: 2,
        recvbuf_auto: 1,
        recvbuf_max: 2 * 1024 * 1024,
        sendbuf_auto: 1,
        sendbuf_inc: 8192,
        sendbuf_max: 2 * 1024 * 1024,
        ack_war_timewindow: 1000,
        ack_war_cnt: 5,
        finwait2_timeout: 60000,
        fast_finwait2_recycle: 0,
        rack_reorder_thresh: 2,
        rack_reorder_fade: 60_000_000,
        rack_pktdelay: 1,
        rack_tlp_limit: 2,
        rack_tlpminto: 10_000,
    };
}

/// Everything a stack hook works on for one connection: the shared control block, the
/// connection's CC, the host interface and the stack's counters. The host keeps it inline in
/// the connection slot, so a stack switch hands it over untouched.
#[repr(C)]
#[derive(StableAbi)]
pub struct StackCtx {
    pub tp: Tcpcb,
    pub cc: CcConn,
    pub host: HostIf,
    /// The stack's counters, in the order of [`TcpFunctionBlock::counters`]; host-owned.
    pub counters: RSlice<'static, AtomicUsize>,
    /// The host's current tunables; valid for the duration of a hook call (see [`Self::tun`]).
    pub tunables: *const StackTunables,
}

impl StackCtx {
    /// The tunables in force for this call (FreeBSD defaults if the host gave none).
    #[inline]
    pub fn tun(&self) -> &StackTunables {
        // SAFETY: the host points `tunables` at a StackTunables it keeps alive for the whole
        // hook call, or leaves it null.
        unsafe { self.tunables.as_ref() }.unwrap_or(&StackTunables::FREEBSD)
    }

    #[inline]
    pub fn count(&self, idx: usize, n: usize) {
        if let Some(c) = self.counters.get(idx) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Why `init` is called.
#[repr(u8)]
#[derive(Copy, Clone, PartialEq, Eq, Debug, StableAbi)]
pub enum InitMode {
    /// A new connection (or a listener) starts on this stack.
    Fresh = 0,
    /// A live connection is switched to this stack (make-before-break: the old stack still
    /// exists and can be queried through [`OldStack`]).
    Switch = 1,
}

/// Query kinds for `chg_query` (FreeBSD TCP_QUERY_*).
pub mod query {
    /// Describe the send-map entry that contains `seq` (or the first after it).
    pub const SENDMAP: u32 = 1;
    /// Which timers the old stack had running (bitmask of `1 << tt::*`).
    pub const TIMERS_UP: u32 = 2;
    /// RACK's reordering and time state.
    pub const RACK_TIMES: u32 = 3;
}

/// A `chg_query` request and its answer (FreeBSD `struct tcp_query_resp`).
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ChgQuery {
    pub req: u32,
    pub req_param: u32,
    /// Set by the answering stack: 1 if it answered.
    pub answered: u32,
    pub sendmap_start: u32,
    pub sendmap_end: u32,
    pub sendmap_send_cnt: u32,
    pub sendmap_flags: u32,
    pub sendmap_time_ns: u64,
    pub timers_up: u32,
    pub rack_reorder_ts: u64,
    pub rack_num_dsacks: u32,
    pub rack_rtt_us: u32,
}

/// Handle on the stack being switched away from, for `init` in switch mode.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct OldStack {
    pub state: *mut c_void,
    pub chg_query: Option<extern "C" fn(*mut c_void, &StackCtx, &mut ChgQuery) -> HookStatus>,
}

impl OldStack {
    pub const NONE: OldStack = OldStack {
        state: std::ptr::null_mut(),
        chg_query: None,
    };

    /// Ask the old stack; `Ok(false)` when it has no answer (or no `chg_query` at all).
    pub fn query(&self, cx: &StackCtx, q: &mut ChgQuery) -> Result<bool, Errno> {
        let Some(h) = self.chg_query else {
            return Ok(false);
        };
        h(self.state, cx, q).into_result().map_err(|e| e.errno())?;
        Ok(q.answered != 0)
    }
}

/// FreeBSD `struct tcp_info` (netinet/tcp.h), the fields a stack fills through its `info`
/// hook, plus plugtcp's own (`tcpi_rxtshift`, `tcpi_flight`, the byte counts). What
/// getsockopt(TCP_INFO) returns is [`TcpInfo::to_freebsd`]: FreeBSD's 240-byte layout.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    pub tcpi_state: u8,
    pub tcpi_options: u8,
    pub tcpi_snd_wscale: u8,
    pub tcpi_rcv_wscale: u8,
    /// Microseconds, as FreeBSD reports them (rto, last_data_recv, rtt, rttvar).
    pub tcpi_rto: u32,
    pub tcpi_snd_mss: u32,
    pub tcpi_rcv_mss: u32,
    pub tcpi_last_data_recv: u32,
    pub tcpi_rtt: u32,
    pub tcpi_rttvar: u32,
    pub tcpi_snd_ssthresh: u32,
    pub tcpi_snd_cwnd: u32,
    pub tcpi_rcv_space: u32,
    pub tcpi_snd_wnd: u32,
    pub tcpi_snd_nxt: u32,
    pub tcpi_snd_una: u32,
    pub tcpi_snd_max: u32,
    pub tcpi_rcv_nxt: u32,
    pub tcpi_snd_rexmitpack: u32,
    pub tcpi_rcv_ooopack: u32,
    pub tcpi_snd_zerowin: u32,
    pub tcpi_rxtshift: u32,
    pub tcpi_dupacks: u32,
    pub tcpi_flight: u32,
    pub tcpi_snd_bytes: u64,
    pub tcpi_rcv_bytes: u64,
    pub tcpi_rexmit_bytes: u64,
    /// Accurate ECN counters: FreeBSD fills them only with AccECN, which plugtcp does not
    /// negotiate, so they stay 0 unless a stack does.
    pub tcpi_delivered_ce: u32,
    pub tcpi_received_ce: u32,
    pub tcpi_total_tlp: u32,
    pub tcpi_total_tlp_bytes: u64,
    /// SACK blocks the receiver holds to report (FreeBSD rcv_numsacks).
    pub tcpi_rcv_numsacks: u32,
    /// The right edge of the window last advertised (FreeBSD rcv_adv, a sequence number).
    pub tcpi_rcv_adv: u32,
}

/// TCP_INFO `tcpi_options` bits.
pub mod tcpi_opt {
    pub const TIMESTAMPS: u8 = 0x01;
    pub const SACK: u8 = 0x02;
    pub const WSCALE: u8 = 0x04;
    pub const ECN: u8 = 0x08;
    pub const TOE: u8 = 0x10;
    pub const TFO: u8 = 0x20;
    pub const ACE: u8 = 0x40;
}

/// `sizeof(struct tcp_info)` on FreeBSD (amd64 and arm64).
pub const TCP_INFO_LEN: usize = 240;

/// Byte offsets of the fields of FreeBSD's `struct tcp_info` (FreeBSD 14 netinet/tcp.h);
/// the `__tcpi_*` fields FreeBSD leaves unfilled are zero.
pub mod tcpi_off {
    pub const STATE: usize = 0;
    pub const OPTIONS: usize = 5;
    /// `tcpi_snd_wscale:4, tcpi_rcv_wscale:4`: one byte, send shift in the first bitfield.
    pub const WSCALE: usize = 6;
    pub const RTO: usize = 8;
    pub const SND_MSS: usize = 16;
    pub const RCV_MSS: usize = 20;
    pub const LAST_DATA_RECV: usize = 52;
    pub const RTT: usize = 68;
    pub const RTTVAR: usize = 72;
    pub const SND_SSTHRESH: usize = 76;
    pub const SND_CWND: usize = 80;
    pub const RCV_SPACE: usize = 96;
    pub const SND_WND: usize = 100;
    pub const SND_BWND: usize = 104;
    pub const SND_NXT: usize = 108;
    pub const RCV_NXT: usize = 112;
    pub const TOE_TID: usize = 116;
    pub const SND_REXMITPACK: usize = 120;
    pub const RCV_OOOPACK: usize = 124;
    pub const SND_ZEROWIN: usize = 128;
    pub const DELIVERED_CE: usize = 132;
    pub const RECEIVED_CE: usize = 136;
    pub const TOTAL_TLP: usize = 164;
    pub const TOTAL_TLP_BYTES: usize = 168;
    pub const SND_UNA: usize = 176;
    pub const SND_MAX: usize = 180;
    pub const RCV_NUMSACKS: usize = 184;
    pub const RCV_ADV: usize = 188;
    pub const DUPACKS: usize = 192;
}

impl TcpInfo {
    /// The fields every stack reports the same way, straight from the control block.
    pub fn from_tcpcb(tp: &Tcpcb) -> Self {
        use crate::tcpcb::{tf, tf2};
        let mut o = 0;
        if tp.t_flags & (tf::REQ_TSTMP | tf::RCVD_TSTMP) == tf::REQ_TSTMP | tf::RCVD_TSTMP {
            o |= tcpi_opt::TIMESTAMPS;
        }
        if tp.t_flags & tf::SACK_PERMIT != 0 {
            o |= tcpi_opt::SACK;
        }
        let scaled =
            tp.t_flags & (tf::REQ_SCALE | tf::RCVD_SCALE) == tf::REQ_SCALE | tf::RCVD_SCALE;
        if scaled {
            o |= tcpi_opt::WSCALE;
        }
        if tp.t_flags2 & tf2::ECN_PERMIT != 0 {
            o |= tcpi_opt::ECN;
        }
        // Counters saturate where FreeBSD's 32-bit fields would wrap.
        let c32 = |v: u64| v.min(u32::MAX as u64) as u32;
        TcpInfo {
            tcpi_state: tp.t_state as u8,
            tcpi_options: o,
            // FreeBSD reports the shifts only when scaling is in use.
            tcpi_snd_wscale: if scaled { tp.snd_scale } else { 0 },
            tcpi_rcv_wscale: if scaled { tp.rcv_scale } else { 0 },
            tcpi_rto: tp.t_rxtcur,
            tcpi_snd_mss: tp.t_maxseg,
            tcpi_rcv_mss: tp.t_maxseg,
            tcpi_last_data_recv: 0,
            tcpi_rtt: tp.t_srtt,
            tcpi_rttvar: tp.t_rttvar,
            tcpi_snd_ssthresh: tp.snd_ssthresh,
            tcpi_snd_cwnd: tp.snd_cwnd,
            tcpi_rcv_space: tp.rcv_wnd,
            tcpi_snd_wnd: tp.snd_wnd,
            tcpi_snd_nxt: tp.snd_nxt,
            tcpi_snd_una: tp.snd_una,
            tcpi_snd_max: tp.snd_max,
            tcpi_rcv_nxt: tp.rcv_nxt,
            tcpi_snd_rexmitpack: c32(tp.t_sndrexmitpack),
            tcpi_rcv_ooopack: c32(tp.t_rcvoopack),
            tcpi_snd_zerowin: c32(tp.t_sndzerowin),
            tcpi_rxtshift: tp.t_rxtshift,
            tcpi_dupacks: tp.t_dupacks,
            tcpi_flight: tp.flight_size(),
            tcpi_snd_bytes: tp.t_snd_bytes,
            tcpi_rcv_bytes: tp.t_rcv_bytes,
            tcpi_rexmit_bytes: tp.t_rexmit_bytes,
            tcpi_delivered_ce: 0,
            tcpi_received_ce: 0,
            tcpi_total_tlp: tp.t_sndtlppack,
            tcpi_total_tlp_bytes: tp.t_sndtlpbyte,
            tcpi_rcv_numsacks: 0,
            tcpi_rcv_adv: tp.rcv_adv,
        }
    }

    /// The bytes of FreeBSD's `struct tcp_info` (native byte order, [`TCP_INFO_LEN`] long),
    /// what getsockopt(TCP_INFO) copies out; plugtcp's own fields are not in it.
    pub fn to_freebsd(&self) -> [u8; TCP_INFO_LEN] {
        let mut b = [0u8; TCP_INFO_LEN];
        let mut put = |off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        use tcpi_off as o;
        put(o::RTO, self.tcpi_rto);
        put(o::SND_MSS, self.tcpi_snd_mss);
        put(o::RCV_MSS, self.tcpi_rcv_mss);
        put(o::LAST_DATA_RECV, self.tcpi_last_data_recv);
        put(o::RTT, self.tcpi_rtt);
        put(o::RTTVAR, self.tcpi_rttvar);
        put(o::SND_SSTHRESH, self.tcpi_snd_ssthresh);
        put(o::SND_CWND, self.tcpi_snd_cwnd);
        put(o::RCV_SPACE, self.tcpi_rcv_space);
        put(o::SND_WND, self.tcpi_snd_wnd);
        put(o::SND_NXT, self.tcpi_snd_nxt);
        put(o::RCV_NXT, self.tcpi_rcv_nxt);
        put(o::SND_REXMITPACK, self.tcpi_snd_rexmitpack);
        put(o::RCV_OOOPACK, self.tcpi_rcv_ooopack);
        put(o::SND_ZEROWIN, self.tcpi_snd_zerowin);
        put(o::DELIVERED_CE, self.tcpi_delivered_ce);
        put(o::RECEIVED_CE, self.tcpi_received_ce);
        put(o::TOTAL_TLP, self.tcpi_total_tlp);
        put(o::SND_UNA, self.tcpi_snd_una);
        put(o::SND_MAX, self.tcpi_snd_max);
        put(o::RCV_NUMSACKS, self.tcpi_rcv_numsacks);
        put(o::RCV_ADV, self.tcpi_rcv_adv);
        put(o::DUPACKS, self.tcpi_dupacks);
        b[o::TOTAL_TLP_BYTES..o::TOTAL_TLP_BYTES + 8]
            .copy_from_slice(&self.tcpi_total_tlp_bytes.to_ne_bytes());
        b[o::STATE] = self.tcpi_state;
        b[o::OPTIONS] = self.tcpi_options;
        // C bitfields fill a byte from its least significant bit on little-endian ABIs and
        // from its most significant bit on big-endian ones.
        let (snd, rcv) = (self.tcpi_snd_wscale & 0xf, self.tcpi_rcv_wscale & 0xf);
        b[o::WSCALE] = if cfg!(target_endian = "little") {
            snd | rcv << 4
        } else {
            snd << 4 | rcv
        };
        b
    }
}

/// TCP_STATS version this host writes ([`TcpStats::tcps_version`]).
pub const TCP_STATS_VERSION: u32 = 1;

/// What getsockopt(TCP_STATS) returns: plugtcp's own fixed structure of one connection's
/// statistics (FreeBSD's TCP_STATS is a stats(3) blob of VOI histograms, which needs
/// libstats to read; this is a plain C struct of counters instead). Native byte order,
/// `#[repr(C)]`, every counter 64 bits and counted since the connection began, through
/// stack switches. New fields are only ever appended, with `tcps_len` growing.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct TcpStats {
    /// [`TCP_STATS_VERSION`].
    pub tcps_version: u32,
    /// `size_of::<TcpStats>()`: how many bytes of this structure the host filled.
    pub tcps_len: u32,
    /// Bytes of new data sent (first transmissions only).
    pub tcps_snd_bytes: u64,
    /// Bytes of data received in order (delivered to the receive buffer).
    pub tcps_rcv_bytes: u64,
    /// Segments sent (a TSO descriptor counts as the packets it becomes) and received.
    pub tcps_snd_segs: u64,
    pub tcps_rcv_segs: u64,
    /// Retransmitted segments and bytes.
    pub tcps_snd_rexmitpack: u64,
    pub tcps_snd_rexmitbytes: u64,
    /// Retransmission timeouts.
    pub tcps_rexmttimeo: u64,
    /// Duplicate ACKs received.
    pub tcps_rcv_dupack: u64,
    /// Loss recovery episodes entered on duplicate ACKs, SACK or RACK (FreeBSD's
    /// sack_recovery_episode).
    pub tcps_sack_recovery_episode: u64,
    /// Tail loss probes sent and their bytes.
    pub tcps_tlp_probes: u64,
    pub tcps_tlp_bytes: u64,
    /// Retransmissions found lost again (lost retransmission detection).
    pub tcps_lost_rexmit: u64,
    /// D-SACK blocks received and the bytes they reported: spurious retransmissions.
    pub tcps_dsack_pack: u64,
    pub tcps_dsack_bytes: u64,
    /// Out-of-order segments received.
    pub tcps_rcv_ooopack: u64,
    /// Zero windows advertised to the peer.
    pub tcps_snd_zerowin: u64,
    /// Congestion window reductions on ECN-Echo.
    pub tcps_ecn_reductions: u64,
    /// Zero-window probes sent (persist timer expirations).
    pub tcps_persisttimeo: u64,
    /// Keepalive probes sent.
    pub tcps_keepprobe: u64,
}

/// `size_of::<TcpStats>()`.
pub const TCP_STATS_LEN: usize = std::mem::size_of::<TcpStats>();
// `to_bytes` writes the header and 19 counters, which must be the whole structure.
const _: () = assert!(TCP_STATS_LEN == 8 + 19 * 8);

impl TcpStats {
    pub fn from_tcpcb(tp: &Tcpcb) -> Self {
        TcpStats {
            tcps_version: TCP_STATS_VERSION,
            tcps_len: TCP_STATS_LEN as u32,
            tcps_snd_bytes: tp.t_snd_bytes,
            tcps_rcv_bytes: tp.t_rcv_bytes,
            tcps_snd_segs: tp.t_snd_segs,
            tcps_rcv_segs: tp.t_rcv_segs,
            tcps_snd_rexmitpack: tp.t_sndrexmitpack,
            tcps_snd_rexmitbytes: tp.t_rexmit_bytes,
            tcps_rexmttimeo: u64::from(tp.t_rexmttimeo),
            tcps_rcv_dupack: u64::from(tp.t_rcvdupack),
            tcps_sack_recovery_episode: u64::from(tp.t_sack_recovery_episode),
            tcps_tlp_probes: u64::from(tp.t_sndtlppack),
            tcps_tlp_bytes: tp.t_sndtlpbyte,
            tcps_lost_rexmit: u64::from(tp.t_lost_rexmit),
            tcps_dsack_pack: u64::from(tp.t_dsack_pack),
            tcps_dsack_bytes: tp.t_dsack_bytes,
            tcps_rcv_ooopack: tp.t_rcvoopack,
            tcps_snd_zerowin: tp.t_sndzerowin,
            tcps_ecn_reductions: u64::from(tp.t_ecn_reductions),
            tcps_persisttimeo: u64::from(tp.t_persisttimeo),
            tcps_keepprobe: u64::from(tp.t_keepprobe),
        }
    }

    /// The structure's bytes (native byte order, no padding: two u32 then u64s).
    pub fn to_bytes(&self) -> [u8; TCP_STATS_LEN] {
        let mut b = [0u8; TCP_STATS_LEN];
        b[0..4].copy_from_slice(&self.tcps_version.to_ne_bytes());
        b[4..8].copy_from_slice(&self.tcps_len.to_ne_bytes());
        let words = [
            self.tcps_snd_bytes,
            self.tcps_rcv_bytes,
            self.tcps_snd_segs,
            self.tcps_rcv_segs,
            self.tcps_snd_rexmitpack,
            self.tcps_snd_rexmitbytes,
            self.tcps_rexmttimeo,
            self.tcps_rcv_dupack,
            self.tcps_sack_recovery_episode,
            self.tcps_tlp_probes,
            self.tcps_tlp_bytes,
            self.tcps_lost_rexmit,
            self.tcps_dsack_pack,
            self.tcps_dsack_bytes,
            self.tcps_rcv_ooopack,
            self.tcps_snd_zerowin,
            self.tcps_ecn_reductions,
            self.tcps_persisttimeo,
            self.tcps_keepprobe,
        ];
        for (i, w) in words.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_ne_bytes());
        }
        b
    }
}

pub type InitHook =
    extern "C" fn(&mut StackCtx, InitMode, OldStack, &mut *mut c_void) -> HookStatus;
pub type FiniHook = extern "C" fn(*mut c_void, &mut StackCtx, bool) -> HookStatus;
pub type SegmentHook = extern "C" fn(*mut c_void, &mut StackCtx, &SegIn<'_>) -> HookStatus;
pub type StateHook = extern "C" fn(*mut c_void, &mut StackCtx) -> HookStatus;
pub type U32Hook = extern "C" fn(*mut c_void, &mut StackCtx, u32) -> HookStatus;
pub type CtlHook = extern "C" fn(*mut c_void, &mut StackCtx, &mut SockOpt<'_>) -> HookStatus;
pub type HandoffHook = extern "C" fn(&StackCtx) -> HookStatus;
pub type ChgQueryHook = extern "C" fn(*mut c_void, &StackCtx, &mut ChgQuery) -> HookStatus;
pub type InfoHook = extern "C" fn(*mut c_void, &StackCtx, &mut TcpInfo) -> HookStatus;
pub type InheritHook = extern "C" fn(*mut c_void, &mut StackCtx, &Tcpcb) -> HookStatus;

/// The function block descriptor (FreeBSD `struct tcp_function_block`). A prefix type.
///
/// Required hooks (FreeBSD's register_tcp_function_block checks the same): `output`,
/// `do_segment`, `ctloutput`, `handoff_ok`; and a non-empty name. The host refuses a block
/// without them with EINVAL.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = TcpFunctionBlockRef)))]
#[sabi(missing_field(option))]
pub struct TcpFunctionBlock {
    pub name: RStr<'static>,
    /// Further names the block registers under (at most 8 names in all, with `name`).
    pub aliases: RSlice<'static, RStr<'static>>,
    pub flags: u32,
    pub counters: RSlice<'static, RStr<'static>>,
    pub init:
        Option<extern "C" fn(&mut StackCtx, InitMode, OldStack, &mut *mut c_void) -> HookStatus>,
    pub fini: Option<extern "C" fn(*mut c_void, &mut StackCtx, bool) -> HookStatus>,
    pub do_segment: Option<extern "C" fn(*mut c_void, &mut StackCtx, &SegIn<'_>) -> HookStatus>,
    pub output: Option<extern "C" fn(*mut c_void, &mut StackCtx) -> HookStatus>,
    pub timer: Option<extern "C" fn(*mut c_void, &mut StackCtx, u32) -> HookStatus>,
    pub ctloutput:
        Option<extern "C" fn(*mut c_void, &mut StackCtx, &mut SockOpt<'_>) -> HookStatus>,
    pub handoff_ok: Option<extern "C" fn(&StackCtx) -> HookStatus>,
    pub mtu_chg: Option<extern "C" fn(*mut c_void, &mut StackCtx, u32) -> HookStatus>,
    pub switch_failed: Option<extern "C" fn(*mut c_void, &mut StackCtx) -> HookStatus>,
    pub chg_query: Option<extern "C" fn(*mut c_void, &StackCtx, &mut ChgQuery) -> HookStatus>,
    pub info: Option<extern "C" fn(*mut c_void, &StackCtx, &mut TcpInfo) -> HookStatus>,
    #[sabi(last_prefix_field)]
    pub inherit: Option<extern "C" fn(*mut c_void, &mut StackCtx, &Tcpcb) -> HookStatus>,
}

/// What a stack implements. [`crate::export_function_block!`] wraps it into the ABI.
pub trait TcpStack: Sized + Send + 'static {
    const NAME: &'static str;
    const ALIASES: &'static [RStr<'static>] = &[];
    const FLAGS: u32 = tcp_func::DEFAULT_OK;
    const COUNTERS: &'static [RStr<'static>] = &[];

    /// Builds the stack's per-connection state (FreeBSD tfb_tcp_fb_init).
    fn init(cx: &mut StackCtx, mode: InitMode, old: OldStack) -> Result<Self, Errno>;
    /// Tears it down (tfb_tcp_fb_fini); `purged` when the connection is going away.
    fn fini(self, _cx: &mut StackCtx, _purged: bool) {}
    fn do_segment(&mut self, cx: &mut StackCtx, seg: &SegIn<'_>) -> Result<(), Errno>;
    fn output(&mut self, cx: &mut StackCtx) -> Result<(), Errno>;
    fn timer(&mut self, cx: &mut StackCtx, which: u32) -> Result<(), Errno>;
    fn ctloutput(&mut self, cx: &mut StackCtx, opt: &mut SockOpt<'_>) -> Result<(), Errno>;
    /// May a live connection in this state be handed to this stack? (tfb_tcp_handoff_ok)
    fn handoff_ok(_cx: &StackCtx) -> Result<(), Errno> {
        Ok(())
    }
    fn mtu_chg(&mut self, _cx: &mut StackCtx, _mtu: u32) -> Result<(), Errno> {
        Ok(())
    }
    /// The switch away from this stack failed; it keeps the connection.
    fn switch_failed(&mut self, _cx: &mut StackCtx) -> Result<(), Errno> {
        Ok(())
    }
    fn chg_query(&self, _cx: &StackCtx, _q: &mut ChgQuery) -> Result<(), Errno> {
        Ok(())
    }
    fn info(&self, cx: &StackCtx, out: &mut TcpInfo) -> Result<(), Errno> {
        *out = TcpInfo::from_tcpcb(&cx.tp);
        Ok(())
    }
    /// A connection accepted on a listener of this stack (tfb_inherit).
    fn inherit(&mut self, _cx: &mut StackCtx, _listener: &Tcpcb) -> Result<(), Errno> {
        Ok(())
    }
}

/// # Safety
/// `st` is a `Box<T>` made by `stack_init::<T>`; the host passes each stack only its own.
#[inline]
unsafe fn stack_state<'a, T>(st: *mut c_void) -> Result<&'a mut T, Errno> {
    // SAFETY: see the function's contract.
    unsafe { (st as *mut T).as_mut() }.ok_or(Errno::EINVAL)
}

extern "C" fn stack_init<T: TcpStack>(
    cx: &mut StackCtx,
    mode: InitMode,
    old: OldStack,
    out: &mut *mut c_void,
) -> HookStatus {
    guard(|| {
        let st = T::init(cx, mode, old)?;
        *out = Box::into_raw(Box::new(st)) as *mut c_void;
        Ok(())
    })
}
extern "C" fn stack_fini<T: TcpStack>(
    st: *mut c_void,
    cx: &mut StackCtx,
    purged: bool,
) -> HookStatus {
    guard(|| {
        if !st.is_null() {
            // SAFETY: made by Box::into_raw in stack_init::<T>; the host calls fini once.
            unsafe { Box::from_raw(st as *mut T) }.fini(cx, purged);
        }
        Ok(())
    })
}
extern "C" fn stack_do_segment<T: TcpStack>(
    st: *mut c_void,
    cx: &mut StackCtx,
    seg: &SegIn<'_>,
) -> HookStatus {
    // SAFETY: as in `stack_state`.
    guard(|| unsafe { stack_state::<T>(st) }?.do_segment(cx, seg))
}
extern "C" fn stack_output<T: TcpStack>(st: *mut c_void, cx: &mut StackCtx) -> HookStatus {
    // SAFETY: as in `stack_state`.
    guard(|| unsafe { stack_state::<T>(st) }?.output(cx))
}
extern "C" fn stack_timer<T: TcpStack>(
    st: *mut c_void,
    cx: &mut StackCtx,
    which: u32,
) -> HookStatus {
    // SAFETY: as in `stack_state`.
    guard(|| unsafe { stack_state::<T>(st) }?.timer(cx, which))
}
extern "C" fn stack_ctloutput<T: TcpStack>(
    st: *mut c_void,
    cx: &mut StackCtx,
    opt: &mut SockOpt<'_>,
) -> HookStatus {
    // SAFETY: as in `stack_state`.
    guard(|| unsafe { stack_state::<T>(st) }?.ctloutput(cx, opt))
}
extern "C" fn stack_handoff_ok<T: TcpStack>(cx: &StackCtx) -> HookStatus {
    guard(|| T::handoff_ok(cx))
}
extern "C" fn stack_mtu_chg<T: TcpStack>(
    st: *mut c_void,
    cx: &mut StackCtx,
    mtu: u32,
) -> HookStatus {
    // SAFETY: as in `stack_state`.
    guard(|| unsafe { stack_state::<T>(st) }?.mtu_chg(cx, mtu))
}
extern "C" fn stack_switch_failed<T: TcpStack>(st: *mut c_void, cx: &mut StackCtx) -> HookStatus {
    // SAFETY: as in `stack_state`.
    guard(|| unsafe { stack_state::<T>(st) }?.switch_failed(cx))
}
extern "C" fn stack_chg_query<T: TcpStack>(
    st: *mut c_void,
    cx: &StackCtx,
    q: &mut ChgQuery,
) -> HookStatus {
    // SAFETY: as in `stack_state`.
    guard(|| unsafe { stack_state::<T>(st) }?.chg_query(cx, q))
}
extern "C" fn stack_info<T: TcpStack>(
    st: *mut c_void,
    cx: &StackCtx,
    out: &mut TcpInfo,
) -> HookStatus {
    // SAFETY: as in `stack_state`.
    guard(|| unsafe { stack_state::<T>(st) }?.info(cx, out))
}
extern "C" fn stack_inherit<T: TcpStack>(
    st: *mut c_void,
    cx: &mut StackCtx,
    listener: &Tcpcb,
) -> HookStatus {
    // SAFETY: as in `stack_state`.
    guard(|| unsafe { stack_state::<T>(st) }?.inherit(cx, listener))
}

/// Builds the ABI descriptor of `T`. Used by [`crate::export_function_block!`].
pub struct StackVtable<T>(PhantomData<T>);

impl<T: TcpStack> StackVtable<T> {
    abi_stable::staticref! {
        const WM: WithMetadata<TcpFunctionBlock> = WithMetadata::new(TcpFunctionBlock {
            name: RStr::from_str(T::NAME),
            aliases: RSlice::from_slice(T::ALIASES),
            flags: T::FLAGS,
            counters: RSlice::from_slice(T::COUNTERS),
            init: Some(stack_init::<T>),
            fini: Some(stack_fini::<T>),
            do_segment: Some(stack_do_segment::<T>),
            output: Some(stack_output::<T>),
            timer: Some(stack_timer::<T>),
            ctloutput: Some(stack_ctloutput::<T>),
            handoff_ok: Some(stack_handoff_ok::<T>),
            mtu_chg: Some(stack_mtu_chg::<T>),
            switch_failed: Some(stack_switch_failed::<T>),
            chg_query: Some(stack_chg_query::<T>),
            info: Some(stack_info::<T>),
            inherit: Some(stack_inherit::<T>),
        })
    }

    pub const BLOCK: TcpFunctionBlockRef = TcpFunctionBlockRef(Self::WM.as_prefix());
}

/// `true` in states where FreeBSD lets any stack take a connection over.
pub fn state_is_quiet(s: TcpState) -> bool {
    matches!(s, TcpState::Closed | TcpState::Listen)
}
