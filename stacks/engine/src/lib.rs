//! The TCP engine plugtcp's function blocks share: RFC 9293 with RFC 7323 window scaling,
//! timestamps and PAWS, RFC 2018 SACK, RFC 6298 retransmission timing, RFC 5961 blind-attack
//! mitigation, delayed ACKs and Nagle, calling the connection's CC module where FreeBSD's
//! tcp_input/tcp_output call mod_cc. Sans-IO: everything it does to the world goes through
//! `StackCtx::host`.
//!
//! A function block is a [`Personality`] on top of it: its name, flags, which connections it
//! takes over (`handoff_ok`), and its loss detection ([`LossDetection`]): `base` is RFC 6675's
//! duplicate-ACK recovery, `rack` RACK-TLP (RFC 8985). [`Stack<P>`] is the block.
//!
//! - `input.rs`: tcp_input (do_segment)
//! - `output.rs`: tcp_output (what to send next, and building segment descriptors)
//! - `timer.rs`: retransmit, delayed ACK, persist, keepalive, 2MSL

mod frto;
mod input;
mod output;
mod rack;
mod rate;
#[cfg(test)]
mod tests;
mod timer;

use abi_stable::std_types::RStr;
use plugtcp_abi::sockopt::{self, SockOpt, SockOptDir};
use plugtcp_abi::stack::{tcp_func, tt, InitMode, OldStack, StackCtx, TcpStack};
use plugtcp_abi::tcpcb::{tf, tf2};
use plugtcp_abi::{Errno, TcpState, Tcpcb};
use plugtcp_tcpkit::reass::ReassQueue;
use plugtcp_tcpkit::rtt::{RttEstimator, RttTimer, SendTimes};
use plugtcp_tcpkit::sack::SackScoreboard;

/// Counter indices (names in [`Engine::COUNTERS`]).
pub mod ctr {
    pub const RCVDUPACK: usize = 0;
    pub const SNDREXMITPACK: usize = 1;
    pub const RCVOOPACK: usize = 2;
    pub const CHALLENGE_ACK: usize = 3;
    pub const PAWSDROP: usize = 4;
    pub const RCVBADSACK: usize = 5;
    pub const SACK_RECOVERY: usize = 6;
    pub const RTO: usize = 7;
    pub const KEEPPROBE: usize = 8;
    pub const PERSISTTIMEO: usize = 9;
    pub const RCVAFTERWIN: usize = 10;
    pub const ECN_REDUCTIONS: usize = 11;
    pub const LOST_REXMIT: usize = 12;
    pub const TLP_PROBES: usize = 13;
    pub const RACK_LOST: usize = 14;
    pub const RACK_DSACK: usize = 15;
    pub const SNDREXMITBAD: usize = 16;
    pub const PMTUD_BLACKHOLE: usize = 17;
    pub const REASS_OVERFLOW: usize = 18;
}

/// Most retransmissions of one segment before the connection is dropped (FreeBSD
/// TCP_MAXRXTSHIFT).
pub const TCP_MAXRXTSHIFT: u32 = 12;
/// Out-of-order ranges the receiver tracks (and can SACK). FreeBSD bounds its reassembly
/// queue at 100 segments because it holds the data there; here the bytes sit in the host's
/// window-bounded receive buffer, so only the range list costs memory, and a lossy window
/// can hold hundreds of holes.
pub const REASS_MAXRANGES: usize = 1024;
/// Longest RTO (FreeBSD TCPTV_REXMTMAX, 64 s).
pub const TCPTV_REXMTMAX_US: u32 = 64_000_000;

/// Per-connection state of the engine (what FreeBSD keeps in struct tcpcb beyond the
/// shared part).
pub struct Engine {
    loss: LossDetection,
    /// RACK-TLP's send map and state (RackTlp mode only).
    /// Boxed: the engine's connections (most of them) pay one pointer, not the whole state.
    rack: Option<Box<plugtcp_tcpkit::rack::RackTlp>>,
    rtt: RttEstimator,
    rtt_timer: RttTimer,
    /// Send times of the data in flight: an RTT sample per ACK for the CC's `rttsample`.
    send_times: SendTimes,
    /// The end of the current round (snd_max when it began) and rounds so far, for the
    /// CC's `newround` (RFC 9406's windowEnd).
    round_end: u32,
    round_cnt: u32,
    reass: ReassQueue,
    sack: SackScoreboard,
    /// Highest sequence retransmitted during this recovery (RFC 6675 HighRxt).
    high_rxt: u32,
    /// The last ACK field we sent (for timestamps, RFC 7323 section 4.3).
    last_ack_sent: u32,
    /// Segments received since the last ACK we sent (delayed-ACK counting).
    unacked_segs: u32,
    /// Keepalive probes sent without an answer.
    keep_probes: u32,
    /// Persist timer backoff shift.
    /// RFC 5961 challenge ACK throttling: window start (ns) and count in it.
    ack_war_start: u64,
    ack_war_count: u32,
    /// Before the first retransmission timeout of a flight: cwnd, ssthresh, snd_recover
    /// and the recovery flags, to put back if the timeout proves spurious (FreeBSD
    /// TF_PREVVALID, snd_cwnd_prev, CC_RTO_ERR).
    prev_rto: Option<PrevRto>,
    /// F-RTO (RFC 5682) after a first timeout, without timestamps (see `frto.rs`).
    frto: Option<frto::Frto>,
    /// FreeBSD t_badrxtwin: an ACK echoing a timestamp older than this (our clock, no
    /// offset) acknowledges the original transmission, not the retransmission.
    badrxtwin_ts: Option<u32>,
    /// Without timestamps: an ACK before this time (ns) came too soon to be for the
    /// retransmission (half an RTT).
    badrxtwin_ns: Option<u64>,
    /// The FIN we received (its sequence number is rcv_nxt - 1 once processed).
    rcvd_fin: bool,
    /// Where the FIN of an out-of-order segment sits (FreeBSD keeps it with the segment in
    /// the reassembly queue): it takes effect when the data before it arrives.
    ooo_fin: Option<u32>,
    /// The MSS our first SYN offered (0 before it): what a SYN-ACK of ours offers too.
    syn_mss: u32,
    /// The CC's conn_init has run: at ESTABLISHED, or already at the SYN-ACK of a
    /// connection opened by TCP Fast Open (FreeBSD runs cc_conn_init for it there).
    pub(crate) cc_inited: bool,
    /// A duplicate segment to report in the next ACK (RFC 2883 D-SACK).
    dsack: Option<plugtcp_abi::segment::SackBlock>,
    /// RFC 6937 PRR: data delivered to the receiver and sent by us since recovery began, and
    /// the flight size when it began.
    prr_delivered: u32,
    prr_out: u32,
    recover_fs: u32,
    /// SACKed bytes before the ACK being processed (for PRR's DeliveredData).
    sacked_before: u32,
    /// LRD: the hole at snd_una we retransmitted, and snd_max when we did.
    lrd_mark: Option<(u32, u32)>,
    /// Send a short final segment now whatever Nagle says (TCP_CORK cleared, the cork's
    /// 200 ms ceiling, TCP_NODELAY set while corked).
    push_once: bool,
    /// When the oldest unacknowledged data was first sent (ns): TCP_USER_TIMEOUT counts
    /// from here.
    una_since: u64,
    /// When zero-window probing began (ns; 0: not probing): TCP_USER_TIMEOUT bounds it.
    persist_since: u64,
    /// TCP_WINDOW_CLAMP: the largest window we advertise (0: no clamp).
    window_clamp: u32,
    /// TCP_SYNCNT: SYN retransmissions before giving up (0: the usual limits).
    syncnt: u32,
    /// Receive auto-sizing (FreeBSD tcp_autorcvbuf): bytes received since `rfbuf_ts`.
    rfbuf_ts: u64,
    rfbuf_cnt: u32,
    /// TCP_LINGER2: seconds an orphaned connection may stay in FIN_WAIT_2 (0: the
    /// finwait2_timeout sysctl; negative: straight to closed, as Linux).
    linger2: i32,
    /// Rate-based CC (see `rate.rs`): the `cong_control` in force for the current call,
    /// the block's own one if it brings one (the `bbr` block), and the delivery-rate
    /// state once one was seen.
    rate_hook: Option<plugtcp_abi::cc::CongControlFn>,
    own_rate_hook: Option<plugtcp_abi::cc::CongControlFn>,
    rate: Option<Box<rate::RateState>>,
    /// rack's own pacing (`net.inet.tcp.rack.use_pacing`): the rate and quantum last set.
    rack_pacing: Option<(u64, u32)>,
    /// A tail loss probe is being sent (its retransmission is no loss repair).
    probing: bool,
    /// A rate-based CC module arrived on the running connection: its INIT call is due.
    rate_init_due: bool,
}

impl Engine {
    fn new(cx: &StackCtx) -> Self {
        let t = cx.tun();
        let mut rtt = RttEstimator::new(
            t.rexmit_initial * 1000,
            t.rexmit_min * 1000,
            t.rexmit_slop * 1000,
            TCPTV_REXMTMAX_US,
        );
        if cx.tp.t_srtt > 0 {
            // Switched to from another stack: keep its RTT estimate.
            rtt.seed(cx.tp.t_srtt, cx.tp.t_rttvar);
        }
        Engine {
            loss: LossDetection::Rfc6675,
            rack: None,
            rtt,
            rtt_timer: RttTimer::default(),
            send_times: SendTimes::default(),
            round_end: cx.tp.snd_max,
            round_cnt: 0,
            reass: ReassQueue::new(REASS_MAXRANGES),
            sack: SackScoreboard::new(t.sack_maxholes.max(1) as usize),
            high_rxt: cx.tp.snd_una,
            last_ack_sent: cx.tp.rcv_nxt,
            unacked_segs: 0,
            keep_probes: 0,
            ack_war_start: 0,
            ack_war_count: 0,
            prev_rto: None,
            frto: None,
            badrxtwin_ts: None,
            badrxtwin_ns: None,
            rcvd_fin: false,
            ooo_fin: None,
            syn_mss: 0,
            cc_inited: false,
            dsack: None,
            prr_delivered: 0,
            prr_out: 0,
            recover_fs: 0,
            sacked_before: 0,
            lrd_mark: None,
            push_once: false,
            una_since: cx.host.now(),
            persist_since: 0,
            window_clamp: 0,
            syncnt: 0,
            rfbuf_ts: 0,
            rfbuf_cnt: 0,
            linger2: 0,
            rate_hook: None,
            own_rate_hook: None,
            rate: None,
            rack_pacing: None,
            probing: false,
            rate_init_due: false,
        }
    }

    /// Switched in: the timers of the state the connection is in are ours now (FreeBSD's
    /// tcp_default_fb_init): retransmit while anything (a SYN included) is outstanding, a
    /// pending delayed ACK, keepalive, the persist timer for a closed window, and FIN_WAIT_2's
    /// or TIME_WAIT's end.
    fn rearm_timers(&self, cx: &mut StackCtx) {
        let tp = &cx.tp;
        let (outstanding, state) = (tp.snd_una != tp.snd_max, tp.t_state);
        if outstanding && tp.snd_wnd > 0 {
            cx.host.timer_start(tt::REXMT, self.rxt_ns(&cx.tp));
        }
        if cx.tp.t_flags & tf::DELACK != 0 {
            cx.host
                .timer_start(tt::DELACK, cx.tun().delacktime as u64 * 1_000_000);
        }
        if state.have_established() && input::keepalive_on(cx) {
            let idle = input::keepidle_ns(cx);
            cx.host.timer_start(tt::KEEP, idle);
        }
        if cx.tp.t_flags2 & tf2::CORK != 0 && cx.host.snd_len() > 0 {
            cx.host
                .timer_start(output::TT_CORK, output::CORK_CEILING_NS);
        }
        if state == TcpState::Established && cx.tp.snd_wnd == 0 && cx.host.snd_len() > 0 {
            cx.host
                .timer_start(tt::PERSIST, output::persist_ns(self, cx));
        }
        match state {
            TcpState::SynSent | TcpState::SynReceived => {
                cx.host.timer_start(tt::KEEP, output::keepinit_ns(cx));
            }
            TcpState::TimeWait => {
                cx.host
                    .timer_start(tt::TWO_MSL, 2 * cx.tun().msl as u64 * 1_000_000);
            }
            TcpState::FinWait2 => input::finwait2_timer(self, cx),
            _ => {}
        }
    }

    /// The current retransmission timeout in ns, with the exponential backoff applied.
    fn rxt_ns(&self, tp: &Tcpcb) -> u64 {
        self.rxtcur_us(tp) as u64 * 1000
    }

    /// FreeBSD t_rxtcur: a SYN or SYN-ACK backs off from the initial RTO, anything else
    /// from the estimate.
    fn rxtcur_us(&self, tp: &Tcpcb) -> u32 {
        if matches!(tp.t_state, TcpState::SynSent | TcpState::SynReceived) {
            self.rtt.syn_backoff(tp.t_rxtshift)
        } else {
            self.rtt.backoff(tp.t_rxtshift)
        }
    }

    /// Copies the estimator into the shared tcpcb (TCP_INFO, stack switches).
    fn publish_rtt(&self, tp: &mut Tcpcb) {
        tp.t_srtt = self.rtt.srtt();
        tp.t_rttvar = self.rtt.rttvar();
        tp.t_rxtcur = self.rxtcur_us(tp);
    }
}

/// What a first retransmission timeout changes, to undo it when it proves spurious.
#[derive(Copy, Clone, Debug)]
pub(crate) struct PrevRto {
    cwnd: u32,
    ssthresh: u32,
    recover: u32,
    /// The tf::FASTRECOVERY | tf::CONGRECOVERY bits.
    recovery: u32,
}

/// FreeBSD tcp_timer_rexmt on the first timeout: remember what the CC is about to change.
pub(crate) fn save_prev_rto(eng: &mut Engine, cx: &StackCtx) {
    let tp = &cx.tp;
    eng.prev_rto = Some(PrevRto {
        cwnd: tp.snd_cwnd,
        ssthresh: tp.snd_ssthresh,
        recover: tp.snd_recover,
        recovery: tp.t_flags & (tf::FASTRECOVERY | tf::CONGRECOVERY),
    });
    eng.badrxtwin_ts = None;
    eng.badrxtwin_ns = (tp.t_flags & tf::RCVD_TSTMP == 0)
        .then(|| cx.host.now() + eng.rtt.srtt() as u64 * 1000 / 2);
}

/// FreeBSD CC_RTO_ERR: the timeout was spurious (the ACK is for the original
/// transmission): cwnd, ssthresh and recovery as they were, and no go-back-N.
pub(crate) fn undo_rto(eng: &mut Engine, cx: &mut StackCtx) {
    let Some(p) = eng.prev_rto.take() else {
        return;
    };
    let tp = &mut cx.tp;
    tp.snd_cwnd = p.cwnd;
    tp.snd_ssthresh = p.ssthresh;
    tp.snd_recover = p.recover;
    tp.t_flags |= p.recovery;
    tp.snd_nxt = tp.snd_max;
    tp.t_rxtshift = 0;
    eng.badrxtwin_ts = None;
    eng.badrxtwin_ns = None;
    cx.count(ctr::SNDREXMITBAD, 1);
    cx.cc
        .on_cong_signal(&mut cx.tp, plugtcp_abi::cc::CC_RTO_ERR);
}

/// FreeBSD tcp_compute_pipe(): bytes in flight as snd_max - snd_una, plus what was
/// retransmitted into SACK holes, less what the peer SACKed.
pub(crate) fn compute_pipe(eng: &Engine, tp: &Tcpcb) -> u32 {
    let rexmit: u32 = eng
        .sack
        .holes()
        .map(|h| {
            let end = if plugtcp_abi::seq::seq_lt(eng.high_rxt, h.end) {
                eng.high_rxt
            } else {
                h.end
            };
            let n = end.wrapping_sub(h.start);
            if (n as i32) > 0 {
                n
            } else {
                0
            }
        })
        .sum();
    tp.snd_max
        .wrapping_sub(tp.snd_una)
        .saturating_add(rexmit)
        .saturating_sub(eng.sack.sacked_bytes())
}

/// The connection is done: mark it closed and tell the host (tcp_close).
pub(crate) fn tcp_close(cx: &mut StackCtx) {
    cx.tp.t_state = TcpState::Closed;
    for t in 0..plugtcp_abi::stack::tt::COUNT {
        cx.host.timer_stop(t);
    }
    cx.host.event(plugtcp_abi::stack::ConnEvent::Closed);
}

/// Drops the connection with an error (tcp_drop): a RST if synchronized, then close.
pub(crate) fn tcp_drop(cx: &mut StackCtx, err: Errno) {
    if cx.tp.t_state.have_established() || cx.tp.t_state == TcpState::SynReceived {
        let persisting = cx.host.timer_remaining(tt::PERSIST).is_some();
        let seg = cx.tp.drop_rst(persisting, cx.host.now());
        let _ = cx.host.output(&seg);
    }
    cx.tp.t_softerror = err.0;
    tcp_close(cx);
}

/// How a block finds losses.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LossDetection {
    /// RFC 6675: three duplicate ACKs (or DupThresh segments SACKed above a hole), RFC 6937
    /// PRR when `do_prr`, NewReno partial ACKs without SACK, FreeBSD's `do_lrd`.
    Rfc6675,
    /// RFC 8985 RACK-TLP: time-based marking over a per-segment send map with a reordering
    /// window, tail loss probes, PRR always on.
    RackTlp,
}

/// What makes a function block of the engine: FreeBSD's `struct tcp_function_block` fields
/// that differ between blocks.
pub trait Personality: Send + 'static {
    const NAME: &'static str;
    const ALIASES: &'static [RStr<'static>] = &[];
    const FLAGS: u32 = tcp_func::DEFAULT_OK;
    const LOSS: LossDetection;
    /// The block's own tunables (`net.inet.tcp.<NAME>.*`, see [`TcpStack::PARAMS`]); rack's
    /// are [`RACK_PARAMS`].
    const PARAMS: &'static [plugtcp_abi::cc::CcParamDesc] = &[];
    /// Whether this block takes over the connection now (FreeBSD tfb_tcp_handoff_ok).
    fn handoff_ok(cx: &StackCtx) -> Result<(), Errno>;
}

/// Indices of [`RACK_PARAMS`].
pub mod rack_param {
    pub const USE_PACING: u32 = 0;
    pub const PACE_MAX_SEG: u32 = 1;
    pub const RATE_CAP: u32 = 2;
    pub const GP_PER_SS: u32 = 3;
    pub const GP_PER_CA: u32 = 4;
    pub const GP_PER_REC: u32 = 5;
}

/// The rack block's pacing tunables, FreeBSD's names and defaults
/// (`net.inet.tcp.rack.use_pacing` and `net.inet.tcp.rack.pacing.*`).
pub const RACK_PARAMS: &[plugtcp_abi::cc::CcParamDesc] = &[
    plugtcp_abi::cc::CcParamDesc::new(
        "use_pacing",
        "If set we use pacing, if clear we use only the original burst mitigation",
        0,
        0,
        1,
    ),
    plugtcp_abi::cc::CcParamDesc::new(
        "pacing.pace_max_seg",
        "What size is the max for TSO segments in pacing (segments)",
        40,
        1,
        1000,
    ),
    plugtcp_abi::cc::CcParamDesc::new(
        "pacing.rate_cap",
        "If set we apply this value to the absolute rate cap used by pacing (bytes/s)",
        0,
        0,
        i64::MAX,
    ),
    plugtcp_abi::cc::CcParamDesc::new(
        "pacing.gp_per_ss",
        "Percentage of the bandwidth estimate to pace at in slow start",
        250,
        10,
        1000,
    ),
    plugtcp_abi::cc::CcParamDesc::new(
        "pacing.gp_per_ca",
        "Percentage of the bandwidth estimate to pace at in congestion avoidance",
        200,
        10,
        1000,
    ),
    plugtcp_abi::cc::CcParamDesc::new(
        "pacing.gp_per_rec",
        "Percentage of the bandwidth estimate to pace at in recovery",
        200,
        10,
        1000,
    ),
];

/// A function block: the engine with a personality.
pub struct Stack<P: Personality> {
    engine: Engine,
    _p: std::marker::PhantomData<P>,
}

impl<P: Personality> Stack<P> {
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A block that brings its own rate-based congestion control (the `bbr` block) hands
    /// the engine its `cong_control`: the engine then calls that one, not the CC module's.
    pub fn set_own_rate_hook(&mut self, hook: Option<plugtcp_abi::cc::CongControlFn>) {
        self.engine.own_rate_hook = hook;
    }

    /// The rate-based CC in force sets its first pacing rate (`cong_control` with
    /// `rs_flags::INIT`), for a block that attaches one mid-connection.
    pub fn start_rate_control(&mut self, cx: &mut StackCtx) {
        rate::on_conn_init(&mut self.engine, cx);
    }
}

impl<P: Personality> TcpStack for Stack<P> {
    const NAME: &'static str = P::NAME;
    const ALIASES: &'static [RStr<'static>] = P::ALIASES;
    const FLAGS: u32 = P::FLAGS;
    const COUNTERS: &'static [RStr<'static>] = COUNTERS;
    const PARAMS: &'static [plugtcp_abi::cc::CcParamDesc] = P::PARAMS;

    fn init(cx: &mut StackCtx, mode: InitMode, old: OldStack) -> Result<Self, Errno> {
        Ok(Stack {
            engine: Engine::init(cx, mode, old, P::LOSS)?,
            _p: std::marker::PhantomData,
        })
    }

    fn do_segment(
        &mut self,
        cx: &mut StackCtx,
        seg: &plugtcp_abi::segment::SegIn<'_>,
    ) -> Result<(), Errno> {
        input::do_segment(&mut self.engine, cx, seg);
        Ok(())
    }

    fn output(&mut self, cx: &mut StackCtx) -> Result<(), Errno> {
        output::tcp_output(&mut self.engine, cx);
        Ok(())
    }

    /// The host lowered t_maxseg and rewound snd_nxt (FreeBSD tcp_mtudisc): nothing in
    /// flight is timed or counted as SACKed any more, and RACK resends all of it.
    fn mtu_chg(&mut self, cx: &mut StackCtx, _mtu: u32) -> Result<(), Errno> {
        let eng = &mut self.engine;
        eng.rtt_timer.invalidate();
        eng.send_times.clear();
        eng.sack.clear();
        eng.high_rxt = cx.tp.snd_una;
        rack::on_rto(eng, cx);
        Ok(())
    }

    fn timer(&mut self, cx: &mut StackCtx, which: u32) -> Result<(), Errno> {
        timer::fire(&mut self.engine, cx, which);
        Ok(())
    }

    fn ctloutput(&mut self, cx: &mut StackCtx, opt: &mut SockOpt<'_>) -> Result<(), Errno> {
        self.engine.ctloutput(cx, opt)
    }

    fn handoff_ok(cx: &StackCtx) -> Result<(), Errno> {
        P::handoff_ok(cx)
    }

    fn info(&self, cx: &StackCtx, out: &mut plugtcp_abi::stack::TcpInfo) -> Result<(), Errno> {
        self.engine.info(cx, out);
        Ok(())
    }
}

/// The engine's counters (FreeBSD tcpstat names), shared by every block built on it.
pub const COUNTERS: &[RStr<'static>] = &[
    RStr::from_str("rcvdupack"),
    RStr::from_str("sndrexmitpack"),
    RStr::from_str("rcvoopack"),
    RStr::from_str("challenge_ack"),
    RStr::from_str("pawsdrop"),
    RStr::from_str("rcvbadsack"),
    RStr::from_str("sack_recovery_episode"),
    RStr::from_str("rexmttimeo"),
    RStr::from_str("keepprobe"),
    RStr::from_str("persisttimeo"),
    RStr::from_str("rcvpackafterwin"),
    RStr::from_str("ecn_reductions"),
    RStr::from_str("lost_rexmit"),
    RStr::from_str("tlp_probes"),
    RStr::from_str("rack_loss_marks"),
    RStr::from_str("rack_dsack"),
    RStr::from_str("sndrexmitbad"),
    // FreeBSD tcps_pmtud_blackhole_activated (+ _min_mss, _failed): MSS changes.
    RStr::from_str("pmtud_blackhole"),
    // FreeBSD tcps_rcvreassfull: out-of-order segments dropped at reass.maxqueuelen.
    RStr::from_str("rcvreassfull"),
];

impl Engine {
    fn init(
        cx: &mut StackCtx,
        mode: InitMode,
        _old: OldStack,
        loss: LossDetection,
    ) -> Result<Self, Errno> {
        let mut eng = Engine::new(cx);
        eng.loss = loss;
        if loss == LossDetection::RackTlp {
            eng.rack = Some(Box::new(rack::new_map(cx, mode)));
        }
        if mode == InitMode::Switch {
            eng.rearm_timers(cx);
        } else if cx.tp.t_state == TcpState::SynReceived {
            // Made by the host's SYN cache when the handshake's ACK came (FreeBSD
            // syncache_socket): a half-open connection gives up after keepinit, whatever
            // its first segment did.
            cx.host.timer_start(tt::KEEP, output::keepinit_ns(cx));
        }
        Ok(eng)
    }

    fn ctloutput(&mut self, cx: &mut StackCtx, opt: &mut SockOpt<'_>) -> Result<(), Errno> {
        // The host keeps these in the tcpcb and tells us after it stored them: the
        // keepalive timer follows (FreeBSD re-arms it on TCP_KEEPIDLE, Linux on SO_KEEPALIVE).
        let keepalive_change = matches!(
            (opt.level, opt.name),
            (sockopt::SOL_SOCKET, sockopt::SO_KEEPALIVE)
                | (sockopt::IPPROTO_TCP, sockopt::TCP_KEEPIDLE)
        );
        if keepalive_change && opt.dir == SockOptDir::Set {
            let state = cx.tp.t_state;
            if state.have_established() && state <= TcpState::Closing {
                if input::keepalive_on(cx) {
                    cx.host.timer_start(tt::KEEP, input::keepidle_ns(cx));
                } else {
                    cx.host.timer_stop(tt::KEEP);
                }
            }
            return Ok(());
        }
        if opt.level != sockopt::IPPROTO_TCP {
            return Err(Errno::ENOPROTOOPT);
        }
        let minmss = cx.tun().minmss as i32;
        let tp = &mut cx.tp;
        let flag_opt = |tp: &mut Tcpcb, opt: &mut SockOpt<'_>, bit: u32| -> Result<(), Errno> {
            match opt.dir {
                SockOptDir::Set => {
                    if opt.int()? != 0 {
                        tp.t_flags |= bit;
                    } else {
                        tp.t_flags &= !bit;
                    }
                    Ok(())
                }
                // FreeBSD reads the option back as the t_flags bit (TF_NODELAY is 4);
                // Linux's TCP_CORK as 1.
                SockOptDir::Get if opt.name == sockopt::TCP_CORK => {
                    opt.reply_int((tp.t_flags & bit != 0) as i32)
                }
                SockOptDir::Get => opt.reply_int((tp.t_flags & bit) as i32),
            }
        };
        match opt.name {
            sockopt::TCP_NODELAY => {
                flag_opt(tp, opt, tf::NODELAY)?;
                if opt.dir == SockOptDir::Set
                    && tp.t_flags & tf::NODELAY != 0
                    && tp.t_flags2 & tf2::CORK != 0
                {
                    // Linux: TCP_NODELAY set on a corked socket pushes what is held back.
                    self.push_now(cx);
                }
            }
            sockopt::TCP_NOPUSH | sockopt::TCP_CORK => {
                let was = tp.t_flags & tf::NOPUSH != 0;
                flag_opt(tp, opt, tf::NOPUSH)?;
                if opt.dir == SockOptDir::Set {
                    // The cork's flavour: Linux's has a 200 ms ceiling, FreeBSD's none.
                    if tp.t_flags & tf::NOPUSH != 0 && opt.name == sockopt::TCP_CORK {
                        tp.t_flags2 |= tf2::CORK;
                    } else {
                        tp.t_flags2 &= !tf2::CORK;
                    }
                }
                if was && tp.t_flags & tf::NOPUSH == 0 {
                    // Un-corking sends what was held back: FreeBSD's TCP_NOPUSH still
                    // under Nagle's rule, Linux's TCP_CORK at once, short segment included.
                    if opt.name == sockopt::TCP_CORK {
                        self.push_now(cx);
                    } else {
                        output::tcp_output(self, cx);
                    }
                }
            }
            sockopt::TCP_NOOPT => flag_opt(tp, opt, tf::NOOPT)?,
            sockopt::TCP_QUICKACK => match opt.dir {
                SockOptDir::Get => opt.reply_int((tp.t_flags2 & tf2::QUICKACK != 0) as i32)?,
                SockOptDir::Set => {
                    // Linux: not a permanent setting but a switch into (or out of) quick-ACK
                    // mode, which the stack leaves again by itself (see `delay_ack`).
                    if opt.int()? != 0 {
                        tp.t_flags2 |= tf2::QUICKACK;
                        if tp.t_flags & tf::DELACK != 0 {
                            // An ACK we were delaying goes now.
                            tp.t_flags |= tf::ACKNOW;
                            output::tcp_output(self, cx);
                        }
                    } else {
                        tp.t_flags2 &= !tf2::QUICKACK;
                    }
                }
            },
            sockopt::TCP_WINDOW_CLAMP => match opt.dir {
                SockOptDir::Get => opt.reply_int(self.window_clamp as i32)?,
                SockOptDir::Set => {
                    let v = opt.int()?;
                    if v < 0 {
                        return Err(Errno::EINVAL);
                    }
                    // Linux: a clamp below half the minimum buffer is raised to it.
                    self.window_clamp = if v == 0 { 0 } else { (v as u32).max(1152) };
                }
            },
            sockopt::TCP_SYNCNT => match opt.dir {
                SockOptDir::Get => opt.reply_int(self.syncnt as i32)?,
                SockOptDir::Set => {
                    let v = opt.int()?;
                    if !(1..=127).contains(&v) {
                        return Err(Errno::EINVAL);
                    }
                    self.syncnt = v as u32;
                }
            },
            sockopt::TCP_LINGER2 => match opt.dir {
                SockOptDir::Get => opt.reply_int(self.linger2)?,
                SockOptDir::Set => self.linger2 = opt.int()?,
            },
            sockopt::TCP_MAXSEG => match opt.dir {
                SockOptDir::Get => opt.reply_int(tp.t_maxseg as i32)?,
                SockOptDir::Set => {
                    let v = opt.int()?;
                    if v < minmss || v > 65535 - 40 {
                        return Err(Errno::EINVAL);
                    }
                    // Only lowers the MSS once established (FreeBSD: "can only be reduced").
                    if !tp.t_state.have_established() || (v as u32) < tp.t_maxseg {
                        tp.t_maxseg = v as u32;
                    }
                }
            },
            _ => return Err(Errno::ENOPROTOOPT),
        }
        Ok(())
    }

    /// Sends what Nagle or a cork holds back, short segment included, once.
    pub(crate) fn push_now(&mut self, cx: &mut StackCtx) {
        self.push_once = true;
        output::tcp_output(self, cx);
        self.push_once = false;
    }

    fn info(&self, cx: &StackCtx, out: &mut plugtcp_abi::stack::TcpInfo) {
        *out = plugtcp_abi::stack::TcpInfo::from_tcpcb(&cx.tp);
        out.tcpi_rtt = self.rtt.srtt();
        out.tcpi_rttvar = self.rtt.rttvar();
        out.tcpi_rto = self.rxtcur_us(&cx.tp);
        out.tcpi_rcv_space = cx.host.rcv_space();
        // FreeBSD: time since the last segment arrived (t_rcvtime), in microseconds.
        let idle_us = cx.host.now().saturating_sub(cx.tp.t_rcvtime) / 1000;
        out.tcpi_last_data_recv = idle_us.min(u32::MAX as u64) as u32;
        // The SACK blocks the next ACK would carry (FreeBSD rcv_numsacks, at most 6).
        let mut blocks = [plugtcp_abi::segment::SackBlock::default(); 6];
        out.tcpi_rcv_numsacks = if cx.tp.t_flags & tf::SACK_PERMIT != 0 {
            self.reass.sack_blocks(&mut blocks) as u32
        } else {
            0
        };
    }
}
