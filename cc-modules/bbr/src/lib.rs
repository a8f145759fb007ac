//! BBR version 3, the rate-based congestion control of draft-ietf-ccwg-bbr ("BBR Congestion
//! Control", N. Cardwell, I. Swett, J. Beshay), as a plugtcp CC module.
//!
//! # Which text
//!
//! The module follows **draft-ietf-ccwg-bbr-04** (20 October 2025), and its names: the
//! long-term and short-term model of section 2.8 are `inflight_longterm`, `bw_shortterm`
//! and `inflight_shortterm` (Linux's `inflight_hi`, `bw_lo` and `inflight_lo`). Where -04 is
//! silent, inconsistent or in error, the module takes the later text (draft-ietf-ccwg-bbr-06 as
//! the working group's repository has it; it also changes Drain's pacing gain to 0.5, which
//! `drain_pacing_gain = 500` follows, and -04's own table already says 0.5) or Linux's BBRv3 (`net/ipv4/tcp_bbr.c` of
//! github.com/google/bbr, branch v3), and says so below.
//!
//! # What is implemented
//!
//! - **The model** (section 5.5): packet-timed rounds counted from the rate sample
//!   (`rs.prior_delivered` against the `rs.tot_delivered` recorded when the round began);
//!   `max_bw`, the windowed maximum delivery rate over the current and the previous ProbeBW
//!   cycle (MaxBwFilterLen = 2 cycles, kept as Linux does in two slots, the window
//!   advancing one round after each ProbeBW_UP ends); `min_rtt` over `min_rtt_filter_len_ms`
//!   and `probe_rtt_min_delay` over `probe_rtt_interval_ms` (5.3.4.3); `extra_acked`, the
//!   ACK-aggregation estimate, a windowed maximum over `extra_acked_win_rounds` rounds (one
//!   in Startup) added to the cwnd target; the offload budget (3 send quanta, 5.5.8.1);
//!   `bw_latest`/`inflight_latest`; the short-term bounds `bw_shortterm` and
//!   `inflight_shortterm`, cut once per loss round (`max(latest, beta * bound)`, 5.5.10.3)
//!   when not probing; the long-term bound `inflight_longterm`, set when a bandwidth probe
//!   sees a loss rate above `loss_thresh` (`max(tx_in_flight, beta * min(bdp, cwnd))`,
//!   5.5.10.2), raised by ProbeBW_UP (1, 2, 4, ... segments a round) and whenever a higher
//!   inflight proves safe.
//! - **The state machine** (5.3): Startup (pacing gain 2.77, cwnd gain 2), left when the
//!   bandwidth plateaus (three non-app-limited rounds each growing less than 25 %), on high
//!   loss (a loss round in fast recovery with at least `full_loss_cnt` loss events and a
//!   loss rate above `loss_thresh`; `inflight_longterm = max(bdp, inflight_latest)`) or on
//!   high ECN (below); Drain (pacing gain 0.35) until in flight is at most one BDP (or, as
//!   the later text adds, after three rounds); the ProbeBW cycle DOWN (0.90) -> CRUISE
//!   (1.0) -> REFILL (1.0, one round, short-term model reset) -> UP (1.25, cwnd gain 2.25)
//!   with the time to the next probe randomized (2-3 s, or the Reno-coexistence bound of
//!   `min(bdp in segments, 63)` rounds, starting at 0 or 1), CRUISE capping inflight at
//!   `(1 - headroom) * inflight_longterm`, UP ending on a plateau or on high loss/ECN;
//!   ProbeRTT (pacing gain 1, cwnd `max(0.5 * BDP, 4 segments)`) when `probe_rtt_min_delay`
//!   was not refreshed for 5 s, held for 200 ms and a round, then back to ProbeBW (CRUISE)
//!   or Startup with the cwnd from before.
//! - **Control** (5.6): pacing rate `pacing_gain * bw * (1 - pacing_margin)`, lowered only
//!   once the pipe was filled; the initial rate `2.77 * initial cwnd / srtt` (1 ms without
//!   an RTT yet), taken again from the first RTT sample (as Linux); send quantum
//!   `pacing rate * 1 ms` within `[2 segments, 64 KB]`; cwnd grown by the data each ACK
//!   delivers up to `max_inflight` (`cwnd_gain * BDP + extra_acked`, at least the offload
//!   budget and 4 segments, 2 more in ProbeBW_UP), capped in ProbeRTT and by the state's
//!   volume cap (5.6.4.7).
//! - **Losses and recovery** (5.6.4.4): entering fast recovery saves the cwnd and the model
//!   bounds (for undo); the exit restores `max(cwnd, prior_cwnd)`; with
//!   `recovery_conservation` (default off, as -04 and Linux) each ACK in fast recovery takes what it marks
//!   lost out of cwnd, and for the first round cwnd is at least in flight plus what the
//!   ACK delivered and does not grow (packet conservation), as BBRv1 and
//!   draft-cardwell-iccrg-bbr-congestion-control specified it. An RTO saves the cwnd
//!   and the bounds and sets `cwnd = in flight + 1 segment`; when everything outstanding
//!   at the RTO is acknowledged (RTO recovery is over, Linux's leaving TCP_CA_Loss) the
//!   cwnd comes back as after fast recovery. A spurious RTO ([`CC_RTO_ERR`]) undoes the
//!   loss response as the later text's HandleSpuriousLossDetection (5.5.11.2).
//! - **ECN** (Linux BBRv3; -04 section 3.7 only requires treating CE as congestion): on an
//!   ECN connection (`tf2::ECN_PERMIT`) with `ecn_enable`, the fraction of delivered bytes
//!   that ACKs with ECE acknowledged is taken each round into an EWMA `ecn_alpha` (gain
//!   1/16, starting at 1); a round with ECE cuts `inflight_shortterm` by
//!   `1 - ecn_alpha * ecn_factor` when not probing; a sample with a CE fraction above
//!   `ecn_thresh` counts as "inflight too high" like a loss rate above `loss_thresh`;
//!   `full_ecn_cnt` consecutive rounds above `ecn_thresh` end Startup.
//! - **Idle restart** (5.4): an ACK that leaves nothing in flight after app-limited data
//!   marks an idle restart: in ProbeBW the pacing rate becomes exactly `bw` for the restart,
//!   ProbeRTT ends if its time is up, the first ACK after it neither enters ProbeRTT nor
//!   counts the idle time as aggregation. `after_idle` (idle for an RTO or more) does the
//!   same with the time the stack can vouch for. BBR never cuts cwnd for idleness.
//!
//! # Parameters
//!
//! `net.inet.tcp.cc.bbr.<name>`, integers. Gains and fractions are **permille** (1000 =
//! 1.0: the draft's value times 1000), times are in the unit their name says.
//!
//! | name | default | range | meaning |
//! | --- | --- | --- | --- |
//! | `startup_pacing_gain` | 2770 | 1..=10000 | BBR.StartupPacingGain, permille |
//! | `startup_cwnd_gain` | 2000 | 1..=10000 | cwnd gain in Startup (BBR.DefaultCwndGain), permille |
//! | `drain_pacing_gain` | 350 | 1..=1000 | BBR.DrainPacingGain, permille (-04: 0.35) |
//! | `cwnd_gain` | 2000 | 1..=10000 | BBR.DefaultCwndGain: Drain, ProbeBW DOWN/CRUISE/REFILL, permille |
//! | `probe_up_cwnd_gain` | 2250 | 1..=10000 | cwnd gain in ProbeBW_UP, permille |
//! | `probe_down_pacing_gain` | 900 | 1..=1000 | pacing gain in ProbeBW_DOWN, permille |
//! | `probe_up_pacing_gain` | 1250 | 1000..=10000 | pacing gain in ProbeBW_UP, permille |
//! | `probe_rtt_cwnd_gain` | 500 | 1..=1000 | BBR.ProbeRTTCwndGain, permille of the BDP |
//! | `probe_rtt_interval_ms` | 5000 | 1..=3600000 | BBR.ProbeRTTInterval, ms (at most `min_rtt_filter_len_ms`) |
//! | `probe_rtt_duration_ms` | 200 | 0..=60000 | BBR.ProbeRTTDuration, ms; 0: never enter ProbeRTT (Linux) |
//! | `min_rtt_filter_len_ms` | 10000 | 1..=3600000 | BBR.MinRTTFilterLen, ms |
//! | `loss_thresh` | 20 | 0..=1000 | BBR.LossThresh, permille of `tx_in_flight` lost |
//! | `beta` | 700 | 0..=1000 | BBR.Beta, permille kept on a loss response |
//! | `headroom` | 150 | 0..=999 | BBR.Headroom, permille of `inflight_longterm` left free |
//! | `full_bw_thresh` | 250 | 0..=10000 | growth per round that counts as "still growing", permille |
//! | `full_bw_cnt` | 3 | 1..=255 | rounds without that growth that fill the pipe |
//! | `full_loss_cnt` | 6 | 0..=255 | BBRStartupFullLossCnt, loss events in a round to leave Startup; 0: off |
//! | `ecn_enable` | 1 | 0..=1 | react to ECE at all |
//! | `ecn_thresh` | 500 | 0..=1000 | CE fraction of a sample or round that is "too high", permille; 0: off |
//! | `ecn_factor` | 333 | 0..=1000 | inflight_shortterm cut per ECN round, times ecn_alpha, permille; 0: off |
//! | `full_ecn_cnt` | 2 | 0..=255 | consecutive high-CE rounds that end Startup; 0: off |
//! | `ecn_max_rtt_us` | 0 | 0..=4294967295 | use ECN only while min_rtt is at most this, us; 0: at any RTT (Linux: 5000) |
//! | `extra_acked_win_rounds` | 10 | 0..=255 | BBR.ExtraAckedFilterLen, rounds; 0: no aggregation allowance |
//! | `pacing_margin` | 10 | 0..=999 | BBR.PacingMarginPercent, permille (10 = 1 %) |
//! | `recovery_conservation` | 0 | 0..=1 | packet conservation in the first round of fast recovery |
//! | `bw_probe_max_rounds` | 63 | 1..=10000 | Reno-coexistence bound on rounds between probes |
//! | `bw_probe_base_ms` | 2000 | 1..=3600000 | shortest wall-clock wait between probes, ms |
//! | `bw_probe_rand_ms` | 1000 | 0..=3600000 | random extra wait between probes, ms |
//! | `shortterm_loss_thresh` | 0 | 0..=1000 | not in the draft: cut the short-term model only after a round that lost more than this, permille; 0: after any loss (the draft) |
//!
//! # Counters
//!
//! `startup_exits` (Startup left, any reason), `startup_loss_exits`, `startup_ecn_exits`,
//! `probe_bw_refills` (bandwidth probes begun), `probe_rtt_entries`, `inflight_too_high`
//! (a probe saw too much loss or CE: inflight_longterm cut), `loss_responses` and
//! `ecn_responses` (rounds whose loss or ECE cut the short-term model), `recoveries` (fast
//! recoveries entered), `rtos` (first RTO of each episode), `rto_undos` (CC_RTO_ERR).
//!
//! # The plugtcp interface
//!
//! The module is rate-based ([`CcAlgorithm::WANTS_RATE_SAMPLE`]): the stack calls
//! [`CcAlgorithm::cong_control`] last on every ACK that acknowledges or SACKs data, once
//! with `rs_flags::INIT` after `conn_init` (the initial pacing rate is set there), and
//! after an RTO with `rs_flags::RTO`. All the work is there; `ack_received` does nothing.
//! Byte counts are payload bytes; the pacing rate handed to the host counts IP packets
//! with their headers: `rate * (mss + hdr) / mss` with `mss = tp.maxseg()` and `hdr` 40
//! (IPv4 and TCP), 52 with timestamps, 20 more over IPv6. Time is the rate sample's
//! `now_ns` (the host clock); hooks without a sample use what the control block vouches
//! for.
//!
//! `cong_signal(CC_NDUPACK)` enters recovery (`tf::FASTRECOVERY | tf::CONGRECOVERY`) and
//! sets `snd_ssthresh` to the current cwnd: BBR does not cut cwnd when recovery begins, and
//! a stack that sets cwnd to ssthresh there keeps it. `cong_signal(CC_ECN)` only sets
//! `tf::CONGRECOVERY` (the reaction to CE comes from the rate samples). `CC_RTO` sets cwnd
//! to one segment until the RTO's `cong_control` makes it in flight plus one; ssthresh is
//! left alone. After Startup `snd_ssthresh` reports the estimated BDP, as Linux does, for
//! monitoring only.
//!
//! # Differences from the draft
//!
//! - Losses are judged per ACK from the rate sample's `lost` and `tx_in_flight` (Linux's
//!   `bbr_adapt_upper_bounds`), not per lost packet: the ABI has no per-packet loss hook,
//!   so InflightAtLoss's refinement of `tx_in_flight` within a burst is not done.
//! - MarkConnectionAppLimited (ProbeRTT) cannot mark the stack's packets; the module
//!   treats samples of data sent from ProbeRTT entry until the delivered count passes
//!   `delivered + in flight` of the last ProbeRTT ACK as app-limited itself, which is what
//!   the stack's marking would have made of them.
//! - `C.is_cwnd_limited` is estimated: in flight before an ACK within a segment of cwnd,
//!   at some ACK of this or the previous round.
//! - From the later text: the units fix of ProbeInflightLongtermUpward (bytes, at least a
//!   segment per increment), Drain's three-round limit, the undo of 5.5.11 (only reachable
//!   through CC_RTO_ERR: the ABI signals no spurious fast recovery), and precautionary
//!   bandwidth probing (also Linux's `stopped_risky_probe`).
//! - Packet conservation in the first round of fast recovery (`recovery_conservation`) is
//!   not in -04 nor in Linux's BBRv3 (which run fast recovery on the model alone), and off
//!   by default: with random loss a flow is in recovery most of the time, and conservation
//!   then holds it at the rate it had (1 % loss at 100 Mbit/s, 40 ms: 77 % utilisation with
//!   it, see the note of issue 15).
//! - The idle-restart pacing at `bw` is applied on the ACK that leaves nothing in flight
//!   (`after_idle` has no pacing to set).
//! - The per-sample CE check reads `rs.delivered_ce` as the ABI defines it (CE-echoed bytes
//!   over the sample's interval); the per-round CE fraction behind `ecn_alpha` and
//!   Startup's ECN exit comes from the totals (`tot_delivered_ce`).
//!
//! # Differences from Linux's BBRv3
//!
//! Gains are the draft's (Linux: startup 2.77+1/256, drain 1/2.885, down 0.91, ProbeRTT
//! cwnd gain 1 with the 0.5 BDP cap); `extra_acked` uses the draft's window of 10 rounds
//! and is not capped at 100 ms of bandwidth (Linux: 5-10 rounds, capped); the full-pipe
//! check looks only at the sample that starts a round (draft) where Linux looks at every
//! sample; ECN is used at any RTT by default (Linux: min_rtt at most 5 ms, precise ECE
//! ACKs); there is no ECN "reprobe", no PLB, no fast path, no TSO autosizing from min_rtt;
//! no reaction to TLP-repaired losses beyond what the stack signals as `CC_NDUPACK`.

#![deny(missing_docs)]

use std::sync::atomic::AtomicIsize;

use abi_stable::std_types::RStr;
use plugtcp_abi::cc::{
    param_value, rs_flags, CcAlgorithm, CcGlobals, CcPacing, CcParamDesc, CcVar, RateSample,
    CC_ECN, CC_NDUPACK, CC_RTO, CC_RTO_ERR,
};
use plugtcp_abi::seq::{seq_geq, seq_max};
use plugtcp_abi::tcpcb::{tf, tf2};
use plugtcp_abi::{Errno, Tcpcb};
use plugtcp_tcpkit::cc::delay::connection_seed;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Gains and fractions are in permille: this is 1.0.
pub const UNIT: u64 = 1000;
/// "Infinity" for the bounds and the RTT estimates (`u64::MAX`).
pub const INF: u64 = u64::MAX;
/// BBR.MinPipeCwnd, in segments.
pub const MIN_PIPE_CWND_SEGS: u64 = 4;
/// The largest send quantum (5.6.3), bytes.
pub const SEND_QUANTUM_MAX: u64 = 64 * 1024;
/// The most rounds ProbeBW_UP doubles its inflight_longterm growth (5.3.3.6).
pub const BW_PROBE_UP_ROUNDS_MAX: u32 = 30;
/// The largest cwnd the module sets (FreeBSD keeps cwnd within INT_MAX).
pub const CWND_MAX: u64 = i32::MAX as u64;
/// Bytes of IPv4 and TCP headers in a segment without options.
pub const HDR_BASE: u64 = 40;
/// Bytes of the timestamp option (with its padding).
pub const HDR_TS: u64 = 12;
/// Extra bytes of an IPv6 header over IPv4's.
pub const HDR_INET6: u64 = 20;
/// The EWMA gain of `ecn_alpha` (Linux's bbr_ecn_alpha_gain): 1/16.
pub const ECN_ALPHA_GAIN_SHIFT: u32 = 4;
/// Rounds after which Drain ends even with too much in flight (the later text's 5.3.2).
pub const DRAIN_MAX_ROUNDS: u64 = 3;

/// Parameter indices in [`Bbr::PARAMS`].
pub mod param {
    /// `startup_pacing_gain`.
    pub const STARTUP_PACING_GAIN: usize = 0;
    /// `startup_cwnd_gain`.
    pub const STARTUP_CWND_GAIN: usize = 1;
    /// `drain_pacing_gain`.
    pub const DRAIN_PACING_GAIN: usize = 2;
    /// `cwnd_gain`.
    pub const CWND_GAIN: usize = 3;
    /// `probe_up_cwnd_gain`.
    pub const PROBE_UP_CWND_GAIN: usize = 4;
    /// `probe_down_pacing_gain`.
    pub const PROBE_DOWN_PACING_GAIN: usize = 5;
    /// `probe_up_pacing_gain`.
    pub const PROBE_UP_PACING_GAIN: usize = 6;
    /// `probe_rtt_cwnd_gain`.
    pub const PROBE_RTT_CWND_GAIN: usize = 7;
    /// `probe_rtt_interval_ms`.
    pub const PROBE_RTT_INTERVAL_MS: usize = 8;
    /// `probe_rtt_duration_ms`.
    pub const PROBE_RTT_DURATION_MS: usize = 9;
    /// `min_rtt_filter_len_ms`.
    pub const MIN_RTT_FILTER_LEN_MS: usize = 10;
    /// `loss_thresh`.
    pub const LOSS_THRESH: usize = 11;
    /// `beta`.
    pub const BETA: usize = 12;
    /// `headroom`.
    pub const HEADROOM: usize = 13;
    /// `full_bw_thresh`.
    pub const FULL_BW_THRESH: usize = 14;
    /// `full_bw_cnt`.
    pub const FULL_BW_CNT: usize = 15;
    /// `full_loss_cnt`.
    pub const FULL_LOSS_CNT: usize = 16;
    /// `ecn_enable`.
    pub const ECN_ENABLE: usize = 17;
    /// `ecn_thresh`.
    pub const ECN_THRESH: usize = 18;
    /// `ecn_factor`.
    pub const ECN_FACTOR: usize = 19;
    /// `full_ecn_cnt`.
    pub const FULL_ECN_CNT: usize = 20;
    /// `ecn_max_rtt_us`.
    pub const ECN_MAX_RTT_US: usize = 21;
    /// `extra_acked_win_rounds`.
    pub const EXTRA_ACKED_WIN_ROUNDS: usize = 22;
    /// `pacing_margin`.
    pub const PACING_MARGIN: usize = 23;
    /// `recovery_conservation`.
    pub const RECOVERY_CONSERVATION: usize = 24;
    /// `bw_probe_max_rounds`.
    pub const BW_PROBE_MAX_ROUNDS: usize = 25;
    /// `bw_probe_base_ms`.
    pub const BW_PROBE_BASE_MS: usize = 26;
    /// `bw_probe_rand_ms`.
    pub const BW_PROBE_RAND_MS: usize = 27;
    /// `shortterm_loss_thresh`.
    pub const SHORTTERM_LOSS_THRESH: usize = 28;
}

/// Counter indices in [`Bbr::COUNTERS`].
pub mod counter {
    /// Startup left (for Drain), for any reason.
    pub const STARTUP_EXITS: usize = 0;
    /// Startup left because of high loss.
    pub const STARTUP_LOSS_EXITS: usize = 1;
    /// Startup left because of high ECN marking.
    pub const STARTUP_ECN_EXITS: usize = 2;
    /// Bandwidth probes begun (ProbeBW_REFILL entered).
    pub const PROBE_BW_REFILLS: usize = 3;
    /// ProbeRTT entered.
    pub const PROBE_RTT_ENTRIES: usize = 4;
    /// A bandwidth probe saw too much loss or ECN: inflight_longterm set (HandleInflightTooHigh).
    pub const INFLIGHT_TOO_HIGH: usize = 5;
    /// Rounds with loss that cut the short-term model.
    pub const LOSS_RESPONSES: usize = 6;
    /// Rounds with ECE that cut inflight_shortterm.
    pub const ECN_RESPONSES: usize = 7;
    /// Fast recoveries entered.
    pub const RECOVERIES: usize = 8;
    /// Retransmission timeouts seen (the first of each episode).
    pub const RTOS: usize = 9;
    /// Spurious RTOs undone.
    pub const RTO_UNDOS: usize = 10;
}

const U32_MAX: i64 = u32::MAX as i64;

/// BBR.state (5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Startup: exponential search for the bandwidth.
    Startup,
    /// Drain: empty the queue Startup built.
    Drain,
    /// ProbeBW_DOWN: send below the bandwidth to drain and leave headroom.
    ProbeBwDown,
    /// ProbeBW_CRUISE: send at the bandwidth.
    ProbeBwCruise,
    /// ProbeBW_REFILL: refill the pipe for a round before probing.
    ProbeBwRefill,
    /// ProbeBW_UP: probe for more bandwidth.
    ProbeBwUp,
    /// ProbeRTT: cut inflight to measure min_rtt.
    ProbeRtt,
}

impl State {
    /// IsInAProbeBWState().
    pub fn is_probe_bw(self) -> bool {
        matches!(
            self,
            State::ProbeBwDown | State::ProbeBwCruise | State::ProbeBwRefill | State::ProbeBwUp
        )
    }

    /// IsProbingBW(): the accelerating states.
    pub fn is_probing_bw(self) -> bool {
        matches!(
            self,
            State::Startup | State::ProbeBwRefill | State::ProbeBwUp
        )
    }
}

/// BBR.ack_phase (2.14 of the later text): what the ACKs say about bandwidth probing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckPhase {
    /// ACKS_INIT: not probing, no probe feedback.
    Init,
    /// ACKS_REFILLING: sending at the estimated bandwidth to fill the pipe.
    Refilling,
    /// ACKS_PROBE_STARTING: inflight rising to probe.
    ProbeStarting,
    /// ACKS_PROBE_FEEDBACK: feedback from the probe arriving.
    ProbeFeedback,
    /// ACKS_PROBE_STOPPING: probing stopped, feedback still arriving.
    ProbeStopping,
}

/// A windowed maximum (Kathleen Nichols' algorithm as Linux's win_minmax): the best, second
/// best and third best samples of the window, each with its time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowedMax {
    /// (time, value), best first.
    pub s: [(u64, u64); 3],
}

impl WindowedMax {
    /// The maximum within the window.
    pub fn get(&self) -> u64 {
        self.s[0].1
    }

    /// Forgets everything but `(t, v)`.
    pub fn reset(&mut self, t: u64, v: u64) {
        self.s = [(t, v); 3];
    }

    /// Takes sample `v` at time `t` (not before the last sample's) into a window of `win`
    /// time units, and returns the maximum.
    pub fn update(&mut self, win: u64, t: u64, v: u64) -> u64 {
        let sample = (t, v);
        if v >= self.s[0].1 || t.wrapping_sub(self.s[2].0) > win {
            self.reset(t, v);
            return v;
        }
        if v >= self.s[1].1 {
            self.s[2] = sample;
            self.s[1] = sample;
        } else if v >= self.s[2].1 {
            self.s[2] = sample;
        }
        let dt = t.wrapping_sub(self.s[0].0);
        if dt > win {
            // The best sample left the window: promote the others.
            self.s[0] = self.s[1];
            self.s[1] = self.s[2];
            self.s[2] = sample;
            if t.wrapping_sub(self.s[0].0) > win {
                self.s[0] = self.s[1];
                self.s[1] = self.s[2];
                self.s[2] = sample;
            }
        } else if self.s[1].0 == self.s[0].0 && dt > win / 4 {
            // A quarter of the window went by with no second choice: take one.
            self.s[2] = sample;
            self.s[1] = sample;
        } else if self.s[2].0 == self.s[1].0 && dt > win / 2 {
            self.s[2] = sample;
        }
        self.s[0].1
    }
}

/// The module's parameters as one ACK sees them (read once per hook, each clamped to its
/// declared range).
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// `startup_pacing_gain`, permille.
    pub startup_pacing_gain: u64,
    /// `startup_cwnd_gain`, permille.
    pub startup_cwnd_gain: u64,
    /// `drain_pacing_gain`, permille.
    pub drain_pacing_gain: u64,
    /// `cwnd_gain`, permille.
    pub cwnd_gain: u64,
    /// `probe_up_cwnd_gain`, permille.
    pub probe_up_cwnd_gain: u64,
    /// `probe_down_pacing_gain`, permille.
    pub probe_down_pacing_gain: u64,
    /// `probe_up_pacing_gain`, permille.
    pub probe_up_pacing_gain: u64,
    /// `probe_rtt_cwnd_gain`, permille.
    pub probe_rtt_cwnd_gain: u64,
    /// `probe_rtt_interval_ms`, in ns.
    pub probe_rtt_interval_ns: u64,
    /// `probe_rtt_duration_ms`, in ns.
    pub probe_rtt_duration_ns: u64,
    /// `min_rtt_filter_len_ms`, in ns.
    pub min_rtt_filter_len_ns: u64,
    /// `loss_thresh`, permille.
    pub loss_thresh: u64,
    /// `beta`, permille.
    pub beta: u64,
    /// `headroom`, permille.
    pub headroom: u64,
    /// `full_bw_thresh`, permille.
    pub full_bw_thresh: u64,
    /// `full_bw_cnt`, rounds.
    pub full_bw_cnt: u64,
    /// `full_loss_cnt`, loss events.
    pub full_loss_cnt: u64,
    /// `ecn_enable`.
    pub ecn_enable: bool,
    /// `ecn_thresh`, permille.
    pub ecn_thresh: u64,
    /// `ecn_factor`, permille.
    pub ecn_factor: u64,
    /// `full_ecn_cnt`, rounds.
    pub full_ecn_cnt: u64,
    /// `ecn_max_rtt_us`, us.
    pub ecn_max_rtt_us: u64,
    /// `extra_acked_win_rounds`, rounds.
    pub extra_acked_win_rounds: u64,
    /// `pacing_margin`, permille.
    pub pacing_margin: u64,
    /// `recovery_conservation`.
    pub recovery_conservation: bool,
    /// `bw_probe_max_rounds`, rounds.
    pub bw_probe_max_rounds: u64,
    /// `bw_probe_base_ms`, in ns.
    pub bw_probe_base_ns: u64,
    /// `bw_probe_rand_ms`, in ns.
    pub bw_probe_rand_ns: u64,
    /// `shortterm_loss_thresh`, permille (0: any loss).
    pub shortterm_loss_thresh: u64,
}

impl Params {
    /// Parameter `idx` of `values` (defaults where missing), clamped to its declared range.
    fn get(values: &[AtomicIsize], idx: usize) -> u64 {
        let d = &Bbr::PARAMS[idx];
        param_value(values, idx, d.default)
            .clamp(d.min, d.max)
            .max(0) as u64
    }

    /// The parameters from a module's values (in the order of [`Bbr::PARAMS`]).
    pub fn from_values(v: &[AtomicIsize]) -> Self {
        use param::*;
        let ms = |idx| Self::get(v, idx).saturating_mul(1_000_000);
        Params {
            startup_pacing_gain: Self::get(v, STARTUP_PACING_GAIN),
            startup_cwnd_gain: Self::get(v, STARTUP_CWND_GAIN),
            drain_pacing_gain: Self::get(v, DRAIN_PACING_GAIN),
            cwnd_gain: Self::get(v, CWND_GAIN),
            probe_up_cwnd_gain: Self::get(v, PROBE_UP_CWND_GAIN),
            probe_down_pacing_gain: Self::get(v, PROBE_DOWN_PACING_GAIN),
            probe_up_pacing_gain: Self::get(v, PROBE_UP_PACING_GAIN),
            probe_rtt_cwnd_gain: Self::get(v, PROBE_RTT_CWND_GAIN),
            probe_rtt_interval_ns: ms(PROBE_RTT_INTERVAL_MS),
            probe_rtt_duration_ns: ms(PROBE_RTT_DURATION_MS),
            min_rtt_filter_len_ns: ms(MIN_RTT_FILTER_LEN_MS),
            loss_thresh: Self::get(v, LOSS_THRESH),
            beta: Self::get(v, BETA),
            headroom: Self::get(v, HEADROOM),
            full_bw_thresh: Self::get(v, FULL_BW_THRESH),
            full_bw_cnt: Self::get(v, FULL_BW_CNT),
            full_loss_cnt: Self::get(v, FULL_LOSS_CNT),
            ecn_enable: Self::get(v, ECN_ENABLE) != 0,
            ecn_thresh: Self::get(v, ECN_THRESH),
            ecn_factor: Self::get(v, ECN_FACTOR),
            full_ecn_cnt: Self::get(v, FULL_ECN_CNT),
            ecn_max_rtt_us: Self::get(v, ECN_MAX_RTT_US),
            extra_acked_win_rounds: Self::get(v, EXTRA_ACKED_WIN_ROUNDS),
            pacing_margin: Self::get(v, PACING_MARGIN),
            recovery_conservation: Self::get(v, RECOVERY_CONSERVATION) != 0,
            bw_probe_max_rounds: Self::get(v, BW_PROBE_MAX_ROUNDS),
            bw_probe_base_ns: ms(BW_PROBE_BASE_MS),
            bw_probe_rand_ns: ms(BW_PROBE_RAND_MS),
            shortterm_loss_thresh: Self::get(v, SHORTTERM_LOSS_THRESH),
        }
    }

    /// The parameters of a connection.
    pub fn read(ccv: &CcVar) -> Self {
        Self::from_values(ccv.params.as_slice())
    }

    /// (pacing gain, cwnd gain) of a state, permille (the table of 5.6.1).
    pub fn gains(&self, state: State) -> (u64, u64) {
        match state {
            State::Startup => (self.startup_pacing_gain, self.startup_cwnd_gain),
            State::Drain => (self.drain_pacing_gain, self.cwnd_gain),
            State::ProbeBwDown => (self.probe_down_pacing_gain, self.cwnd_gain),
            State::ProbeBwCruise | State::ProbeBwRefill => (UNIT, self.cwnd_gain),
            State::ProbeBwUp => (self.probe_up_pacing_gain, self.probe_up_cwnd_gain),
            State::ProbeRtt => (UNIT, self.probe_rtt_cwnd_gain),
        }
    }
}

/// `a * b / c` without overflow (saturating at `u64::MAX`; 0 when `c` is 0).
#[inline]
pub fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    if c == 0 {
        return 0;
    }
    (a as u128 * b as u128 / c as u128).min(u64::MAX as u128) as u64
}

/// `a * b / c` rounded up, without overflow (saturating; 0 when `c` is 0).
#[inline]
pub fn mul_div_ceil(a: u64, b: u64, c: u64) -> u64 {
    if c == 0 {
        return 0;
    }
    (a as u128 * b as u128)
        .div_ceil(c as u128)
        .min(u64::MAX as u128) as u64
}

/// Bytes of IP and TCP headers in each of this connection's full segments.
pub fn header_bytes(tp: &Tcpcb) -> u64 {
    let ts = tf::REQ_TSTMP | tf::RCVD_TSTMP;
    let mut hdr = HDR_BASE;
    if tp.t_flags & ts == ts {
        hdr += HDR_TS;
    }
    if tp.t_flags2 & tf2::INET6 != 0 {
        hdr += HDR_INET6;
    }
    hdr
}

/// A payload rate (bytes/s) as the wire rate the host paces at: `rate * (mss + hdr) / mss`.
pub fn wire_rate(rate: u64, tp: &Tcpcb) -> u64 {
    let mss = tp.maxseg().max(1) as u64;
    mul_div(rate, mss + header_bytes(tp), mss)
}

/// What one ACK brings, with the derived values every step uses.
struct Ack<'a> {
    rs: &'a RateSample,
    ccv: &'a CcVar,
    /// The sample measured a rate.
    valid: bool,
    /// The sample is app-limited (the stack's word, or ProbeRTT's marking).
    app_limited: bool,
    /// The delivery rate, 0 unless valid.
    rate: u64,
    /// Bytes in flight after the ACK.
    in_flight: u64,
    /// tp.maxseg().
    mss: u64,
    /// The host clock, ns.
    now: u64,
}

/// Per-connection BBR state. Volumes are payload bytes, rates payload bytes per second,
/// RTTs microseconds, times nanoseconds of the host clock, gains permille; [`INF`] is the
/// draft's Infinity.
#[derive(Clone, Debug)]
pub struct Bbr {
    /// BBR.state.
    pub state: State,
    /// BBR.pacing_gain, permille (from the state, every ACK).
    pub pacing_gain: u64,
    /// BBR.cwnd_gain, permille (from the state, every ACK).
    pub cwnd_gain: u64,
    /// BBR.round_count.
    pub round_count: u64,
    /// BBR.round_start: this ACK began a round.
    pub round_start: bool,
    /// BBR.next_round_delivered.
    pub next_round_delivered: u64,
    /// BBR.idle_restart.
    pub idle_restart: bool,
    /// BBR.drain_start_round.
    pub drain_start_round: u64,

    /// BBR.max_bw_filter as two slots: [previous cycle, current cycle] (bytes/s).
    pub max_bw_filter: [u64; 2],
    /// BBR.cycle_count (the max_bw filter's virtual time).
    pub cycle_count: u64,
    /// BBR.bw_shortterm.
    pub bw_shortterm: u64,
    /// BBR.bw = min(max_bw, bw_shortterm).
    pub bw: u64,
    /// BBR.min_rtt, us.
    pub min_rtt_us: u64,
    /// BBR.min_rtt_stamp, ns.
    pub min_rtt_stamp: u64,
    /// BBR.probe_rtt_min_delay, us.
    pub probe_rtt_min_us: u64,
    /// BBR.probe_rtt_min_stamp, ns.
    pub probe_rtt_min_stamp: u64,
    /// BBR.probe_rtt_expired.
    pub probe_rtt_expired: bool,
    /// BBR.extra_acked.
    pub extra_acked: u64,
    /// BBR.extra_acked_filter (time: round_count).
    pub extra_acked_filter: WindowedMax,
    /// BBR.extra_acked_interval_start, ns.
    pub extra_acked_interval_start: u64,
    /// BBR.extra_acked_delivered.
    pub extra_acked_delivered: u64,
    /// The aggregation interval starts again with the next ACK (after an idle restart).
    pub extra_acked_restart: bool,
    /// BBR.max_inflight.
    pub max_inflight: u64,
    /// BBR.inflight_longterm.
    pub inflight_longterm: u64,
    /// BBR.inflight_shortterm.
    pub inflight_shortterm: u64,
    /// BBR.bw_latest.
    pub bw_latest: u64,
    /// BBR.inflight_latest.
    pub inflight_latest: u64,
    /// BBR.loss_round_delivered.
    pub loss_round_delivered: u64,
    /// BBR.loss_round_start.
    pub loss_round_start: bool,
    /// BBR.is_loss_in_round.
    pub is_loss_in_round: bool,
    /// The connection's lost total when the loss round began (for `shortterm_loss_thresh`).
    pub loss_round_tot_lost: u64,
    /// The connection's delivered total when the loss round began.
    pub loss_round_tot_delivered: u64,
    /// The loss round that just ended lost no more than `shortterm_loss_thresh`.
    pub loss_round_below_thresh: bool,
    /// ACKs that marked losses in this loss round (Startup's loss exit).
    pub loss_events_in_round: u64,

    /// BBR.full_bw_reached.
    pub full_bw_reached: bool,
    /// BBR.full_bw_now.
    pub full_bw_now: bool,
    /// BBR.full_bw.
    pub full_bw: u64,
    /// BBR.full_bw_count.
    pub full_bw_count: u64,

    /// BBR.ack_phase.
    pub ack_phase: AckPhase,
    /// BBR.is_bw_probe_sample.
    pub is_bw_probe_sample: bool,
    /// BBR.bw_probe_up_acked.
    pub bw_probe_up_acked: u64,
    /// BBR.probe_up_acked_per_inc.
    pub probe_up_acked_per_inc: u64,
    /// BBR.bw_probe_up_rounds.
    pub bw_probe_up_rounds: u32,
    /// BBR.rounds_since_probe_up.
    pub rounds_since_probe_up: u64,
    /// BBR.bw_probe_wait, ns.
    pub bw_probe_wait_ns: u64,
    /// BBR.cycle_stamp, ns.
    pub cycle_stamp: u64,
    /// BBR.prev_probe_too_high.
    pub prev_probe_too_high: bool,
    /// BBR.prev_probe_precautionary.
    pub prev_probe_precautionary: bool,

    /// BBR.probe_rtt_done_stamp, ns (0: not set).
    pub probe_rtt_done_stamp: u64,
    /// BBR.probe_rtt_round_done.
    pub probe_rtt_round_done: bool,
    /// ProbeRTT's app-limited marking: samples whose `prior_delivered` is in this range
    /// count as app-limited.
    pub probe_rtt_app_limited: Option<(u64, u64)>,

    /// BBR.prior_cwnd.
    pub prior_cwnd: u64,
    /// C.InitialCwnd.
    pub initial_cwnd: u64,
    /// Fast recovery was entered by `cong_signal`; its first `cong_control` is pending.
    pub recovery_pending: bool,
    /// Packet conservation (the first round of fast recovery).
    pub conservation: bool,
    /// Conservation ends with a sample of data sent after `C.delivered` was this.
    pub conservation_end: u64,
    /// RTO recovery: `snd_max` at the last RTO; it ends when `snd_una` reaches it.
    pub rto_recover: Option<u32>,
    /// cwnd was fully used at some ACK of the previous round.
    pub cwnd_limited_prev_round: bool,
    /// cwnd was fully used at some ACK of this round.
    pub cwnd_limited_this_round: bool,

    /// BBR.undo_state.
    pub undo_state: Option<State>,
    /// BBR.undo_bw_shortterm.
    pub undo_bw_shortterm: u64,
    /// BBR.undo_inflight_shortterm.
    pub undo_inflight_shortterm: u64,
    /// BBR.undo_inflight_longterm.
    pub undo_inflight_longterm: u64,

    /// ECN is in use for this connection now (negotiated, enabled, min_rtt gate).
    pub ecn_eligible: bool,
    /// EWMA of the per-round CE fraction, permille.
    pub ecn_alpha: u64,
    /// C.delivered at the last `ecn_alpha` update.
    pub alpha_last_delivered: u64,
    /// The delivered-with-ECE total at the last `ecn_alpha` update.
    pub alpha_last_delivered_ce: u64,
    /// An ACK with ECE arrived in this loss round.
    pub ecn_in_round: bool,
    /// Consecutive Startup rounds with a CE fraction of at least `ecn_thresh`.
    pub startup_ecn_rounds: u64,

    /// C.pacing_rate, payload bytes/s (the host gets [`wire_rate`] of it).
    pub pacing_rate: u64,
    /// C.send_quantum, bytes.
    pub send_quantum: u64,
    /// The pacing rate was taken from a real RTT.
    pub has_seen_rtt: bool,

    /// The stamps were taken from the host clock (the first `cong_control`).
    pub clock_started: bool,
    /// C.delivered at the last `cong_control`.
    pub last_delivered: u64,
    /// The host clock at the last `cong_control`, ns.
    pub last_now: u64,
    /// The randomness of PickProbeWait, seeded from the connection.
    pub rng: Xoshiro256PlusPlus,
}

impl Bbr {
    /// BBR's initialization (OnInit, 5.2.1) for a connection with control block `tp`. The
    /// clock stamps wait for the first `cong_control`.
    pub fn new(ccv: &CcVar, tp: &Tcpcb) -> Self {
        let mss = tp.maxseg().max(1) as u64;
        let initial_cwnd = match tp.snd_cwnd {
            // Not set yet: what the stack will set (FreeBSD's tcp_compute_initwnd, as
            // `plugtcp_abi::cc::initial_window`, in u64).
            0 | 1 | u32::MAX => {
                let segs = CcGlobals::get(&ccv.globals.initcwnd_segments).clamp(0, 1000) as u64;
                if segs > 0 {
                    (segs * mss).min((2 * mss).max(segs * 1460))
                } else {
                    (4 * mss).min((2 * mss).max(4380))
                }
            }
            c => c as u64,
        };
        let min_rtt = if tp.t_srtt > 0 { tp.t_srtt as u64 } else { INF };
        let p = Params::read(ccv);
        let (pacing_gain, cwnd_gain) = p.gains(State::Startup);
        Bbr {
            state: State::Startup,
            pacing_gain,
            cwnd_gain,
            round_count: 0,
            round_start: false,
            next_round_delivered: 0,
            idle_restart: false,
            drain_start_round: 0,
            max_bw_filter: [0, 0],
            cycle_count: 0,
            bw_shortterm: INF,
            bw: 0,
            min_rtt_us: min_rtt,
            min_rtt_stamp: 0,
            probe_rtt_min_us: min_rtt,
            probe_rtt_min_stamp: 0,
            probe_rtt_expired: false,
            extra_acked: 0,
            extra_acked_filter: WindowedMax::default(),
            extra_acked_interval_start: 0,
            extra_acked_delivered: 0,
            extra_acked_restart: false,
            max_inflight: 0,
            inflight_longterm: INF,
            inflight_shortterm: INF,
            bw_latest: 0,
            inflight_latest: 0,
            loss_round_delivered: 0,
            loss_round_start: false,
            is_loss_in_round: false,
            loss_round_tot_lost: 0,
            loss_round_tot_delivered: 0,
            loss_round_below_thresh: false,
            loss_events_in_round: 0,
            full_bw_reached: false,
            full_bw_now: false,
            full_bw: 0,
            full_bw_count: 0,
            ack_phase: AckPhase::Init,
            is_bw_probe_sample: false,
            bw_probe_up_acked: 0,
            probe_up_acked_per_inc: INF,
            bw_probe_up_rounds: 0,
            rounds_since_probe_up: 0,
            bw_probe_wait_ns: 0,
            cycle_stamp: 0,
            prev_probe_too_high: false,
            prev_probe_precautionary: false,
            probe_rtt_done_stamp: 0,
            probe_rtt_round_done: false,
            probe_rtt_app_limited: None,
            prior_cwnd: 0,
            initial_cwnd,
            recovery_pending: false,
            conservation: false,
            conservation_end: 0,
            rto_recover: None,
            cwnd_limited_prev_round: false,
            cwnd_limited_this_round: false,
            undo_state: None,
            undo_bw_shortterm: 0,
            undo_inflight_shortterm: 0,
            undo_inflight_longterm: 0,
            ecn_eligible: false,
            ecn_alpha: UNIT,
            alpha_last_delivered: 0,
            alpha_last_delivered_ce: 0,
            ecn_in_round: false,
            startup_ecn_rounds: 0,
            pacing_rate: 0,
            send_quantum: 2 * mss,
            has_seen_rtt: tp.t_srtt > 0,
            clock_started: false,
            last_delivered: 0,
            last_now: 0,
            rng: Xoshiro256PlusPlus::seed_from_u64(connection_seed(tp)),
        }
    }

    /// BBR.max_bw.
    pub fn max_bw(&self) -> u64 {
        self.max_bw_filter[0].max(self.max_bw_filter[1])
    }

    /// BBR.bdp for `bw`: `bw * min_rtt` (C.InitialCwnd without an RTT), bytes.
    pub fn bdp(&self, bw: u64) -> u64 {
        self.bdp_multiple(bw, UNIT)
    }

    /// BDPMultiple(gain) for `bw`, rounded up: `gain * bw * min_rtt`, or C.InitialCwnd
    /// while there is no RTT sample.
    pub fn bdp_multiple(&self, bw: u64, gain: u64) -> u64 {
        if self.min_rtt_us == INF {
            return self.initial_cwnd;
        }
        let w = bw as u128 * self.min_rtt_us as u128 * gain as u128;
        w.div_ceil(1_000_000 * UNIT as u128).min(u64::MAX as u128) as u64
    }

    /// QuantizationBudget(): at least the offload budget (3 send quanta) and
    /// BBR.MinPipeCwnd, 2 segments more in ProbeBW_UP.
    fn quantization_budget(&self, cap: u64, mss: u64) -> u64 {
        let offload_budget = self.send_quantum.saturating_mul(3);
        let mut cap = cap.max(offload_budget).max(MIN_PIPE_CWND_SEGS * mss);
        if self.state == State::ProbeBwUp {
            cap = cap.saturating_add(2 * mss);
        }
        cap
    }

    /// Inflight(bw, gain): the quantized `gain * BDP`.
    pub fn inflight(&self, bw: u64, gain: u64, mss: u64) -> u64 {
        self.quantization_budget(self.bdp_multiple(bw, gain), mss)
    }

    /// TargetInflight(): the BDP, unless congestion cut cwnd below it.
    fn target_inflight(&self, cwnd: u64) -> u64 {
        self.bdp(self.bw).min(cwnd)
    }

    /// InflightWithHeadroom(): inflight_longterm less the headroom (at least a segment),
    /// at least MinPipeCwnd.
    pub fn inflight_with_headroom(&self, p: &Params, mss: u64) -> u64 {
        if self.inflight_longterm == INF {
            return INF;
        }
        let headroom = mul_div(self.inflight_longterm, p.headroom, UNIT).max(mss);
        self.inflight_longterm
            .saturating_sub(headroom)
            .max(MIN_PIPE_CWND_SEGS * mss)
    }

    /// ProbeRTTCwnd(): `probe_rtt_cwnd_gain * BDP`, at least MinPipeCwnd.
    pub fn probe_rtt_cwnd(&self, p: &Params, mss: u64) -> u64 {
        self.bdp_multiple(self.bw, p.probe_rtt_cwnd_gain)
            .max(MIN_PIPE_CWND_SEGS * mss)
    }

    /// The first clock reading: the stamps of OnInit.
    fn start_clock(&mut self, now: u64) {
        if !self.clock_started {
            self.clock_started = true;
            self.min_rtt_stamp = now;
            self.probe_rtt_min_stamp = now;
            self.extra_acked_interval_start = now;
            self.cycle_stamp = now;
            self.last_now = now;
        }
    }

    /// Sets the state and its gains.
    fn set_state(&mut self, state: State, p: &Params) {
        self.state = state;
        (self.pacing_gain, self.cwnd_gain) = p.gains(state);
    }

    /// InLossRecovery(): fast recovery or RTO recovery.
    fn in_loss_recovery(&self, tp: &Tcpcb) -> bool {
        tp.in_fastrecovery() || self.rto_recover.is_some()
    }

    /// SaveCwnd().
    fn save_cwnd(&mut self, tp: &Tcpcb) {
        let cwnd = tp.snd_cwnd as u64;
        if !self.in_loss_recovery(tp) && self.state != State::ProbeRtt {
            self.prior_cwnd = cwnd;
        } else {
            self.prior_cwnd = self.prior_cwnd.max(cwnd);
        }
    }

    /// RestoreCwnd().
    fn restore_cwnd(&self, tp: &mut Tcpcb) {
        let cwnd = (tp.snd_cwnd as u64).max(self.prior_cwnd).min(CWND_MAX);
        tp.snd_cwnd = cwnd as u32;
    }

    /// SaveStateUponLoss() (the later text's 5.5.11.1; the cwnd is saved by the caller).
    fn save_state_upon_loss(&mut self) {
        self.undo_state = None;
        self.undo_bw_shortterm = self.bw_shortterm;
        self.undo_inflight_shortterm = self.inflight_shortterm;
        self.undo_inflight_longterm = self.inflight_longterm;
    }

    /// NoteLoss(): the first loss of a round starts a loss round.
    fn note_loss(&mut self, delivered: u64) {
        if !self.is_loss_in_round {
            self.loss_round_delivered = delivered;
        }
        self.is_loss_in_round = true;
    }

    /// StartRound().
    fn start_round(&mut self, delivered: u64) {
        self.next_round_delivered = delivered;
    }

    /// ResetFullBW().
    fn reset_full_bw(&mut self) {
        self.full_bw = 0;
        self.full_bw_count = 0;
        self.full_bw_now = false;
    }

    /// ResetShortTermModel().
    fn reset_short_term_model(&mut self) {
        self.bw_shortterm = INF;
        self.inflight_shortterm = INF;
    }

    /// ResetCongestionSignals().
    fn reset_congestion_signals(&mut self) {
        self.is_loss_in_round = false;
        self.ecn_in_round = false;
        self.bw_latest = 0;
        self.inflight_latest = 0;
    }

    /// EnterStartup().
    fn enter_startup(&mut self, p: &Params) {
        self.set_state(State::Startup, p);
    }

    /// Whether ProbeRTT's marking makes a sample of data sent when `C.delivered` was
    /// `prior_delivered` app-limited.
    fn probe_rtt_marked(&self, prior_delivered: u64) -> bool {
        self.probe_rtt_app_limited
            .is_some_and(|(from, until)| from <= prior_delivered && prior_delivered <= until)
    }

    /// The idle-restart handling of 5.4.1 at time `now` (HandleRestartFromIdle, less the
    /// pacing, which the caller sets).
    fn restart_from_idle(&mut self, p: &Params, tp: &mut Tcpcb, now: u64, delivered: u64) {
        self.idle_restart = true;
        self.extra_acked_restart = true;
        if self.state == State::ProbeRtt {
            self.check_probe_rtt_done(p, tp, now, delivered);
        }
    }

    // ---------------------------------------------------------------- per-ACK steps

    /// UpdateRound() (5.5.1), and what happens once per round besides.
    fn update_round(&mut self, a: &Ack, p: &Params) {
        self.round_start = false;
        if a.valid && a.rs.prior_delivered >= self.next_round_delivered {
            self.start_round(a.rs.tot_delivered);
            self.round_count = self.round_count.saturating_add(1);
            self.rounds_since_probe_up = self.rounds_since_probe_up.saturating_add(1);
            self.round_start = true;
            self.cwnd_limited_prev_round = self.cwnd_limited_this_round;
            self.cwnd_limited_this_round = false;
            self.update_ecn_alpha(a, p);
        }
    }

    /// C.is_cwnd_limited, as estimated.
    fn is_cwnd_limited(&self) -> bool {
        self.cwnd_limited_prev_round || self.cwnd_limited_this_round
    }

    /// Linux's bbr_update_ecn_alpha at a round start: the round's CE fraction into the
    /// EWMA, and Startup's ECN exit.
    fn update_ecn_alpha(&mut self, a: &Ack, p: &Params) {
        let delivered = a.rs.tot_delivered.saturating_sub(self.alpha_last_delivered);
        let delivered_ce =
            a.rs.tot_delivered_ce
                .saturating_sub(self.alpha_last_delivered_ce);
        self.alpha_last_delivered = a.rs.tot_delivered;
        self.alpha_last_delivered_ce = a.rs.tot_delivered_ce;
        if !self.ecn_eligible || delivered == 0 {
            return;
        }
        let ce_ratio = mul_div(delivered_ce, UNIT, delivered).min(UNIT);
        let keep = (1u64 << ECN_ALPHA_GAIN_SHIFT) - 1;
        self.ecn_alpha = ((self.ecn_alpha * keep + ce_ratio) >> ECN_ALPHA_GAIN_SHIFT).min(UNIT);
        // Startup ends after full_ecn_cnt rounds in a row with a high CE fraction.
        if self.full_bw_reached || p.full_ecn_cnt == 0 || p.ecn_thresh == 0 {
            return;
        }
        if ce_ratio >= p.ecn_thresh {
            self.startup_ecn_rounds = self.startup_ecn_rounds.saturating_add(1);
        } else {
            self.startup_ecn_rounds = 0;
        }
        if self.startup_ecn_rounds >= p.full_ecn_cnt {
            a.ccv.count(counter::STARTUP_ECN_EXITS, 1);
            self.handle_queue_too_high_in_startup();
        }
    }

    /// UpdateLatestDeliverySignals().
    fn update_latest_delivery_signals(&mut self, a: &Ack, p: &Params) {
        self.loss_round_start = false;
        if !a.valid {
            return;
        }
        self.bw_latest = self.bw_latest.max(a.rate);
        self.inflight_latest = self.inflight_latest.max(a.rs.delivered);
        if a.rs.prior_delivered >= self.loss_round_delivered {
            self.loss_round_delivered = a.rs.tot_delivered;
            self.loss_round_start = true;
            // The loss rate of the round that ends here (for `shortterm_loss_thresh`).
            let lost = a.rs.tot_lost.saturating_sub(self.loss_round_tot_lost);
            let delivered =
                a.rs.tot_delivered
                    .saturating_sub(self.loss_round_tot_delivered);
            self.loss_round_below_thresh = p.shortterm_loss_thresh > 0
                && lost.saturating_mul(UNIT)
                    <= p.shortterm_loss_thresh
                        .saturating_mul(lost.saturating_add(delivered));
            self.loss_round_tot_lost = a.rs.tot_lost;
            self.loss_round_tot_delivered = a.rs.tot_delivered;
        }
    }

    /// UpdateCongestionSignals(): UpdateMaxBw(), then once per loss round the lower bounds.
    fn update_congestion_signals(&mut self, a: &Ack, p: &Params, cwnd: u64) {
        if a.valid && a.rate > 0 && (a.rate >= self.max_bw() || !a.app_limited) {
            self.max_bw_filter[1] = self.max_bw_filter[1].max(a.rate);
        }
        if !self.loss_round_start {
            return;
        }
        self.adapt_lower_bounds_from_congestion(a, p, cwnd);
        self.is_loss_in_round = false;
        self.ecn_in_round = false;
    }

    /// AdvanceMaxBwFilter(): a new cycle slot (kept if the current one has no sample).
    fn advance_max_bw_filter(&mut self) {
        self.cycle_count = self.cycle_count.wrapping_add(1);
        if self.max_bw_filter[1] == 0 {
            return;
        }
        self.max_bw_filter[0] = self.max_bw_filter[1];
        self.max_bw_filter[1] = 0;
    }

    /// AdaptLowerBoundsFromCongestion(), with Linux's ECN response.
    fn adapt_lower_bounds_from_congestion(&mut self, a: &Ack, p: &Params, cwnd: u64) {
        if self.state.is_probing_bw() {
            return;
        }
        let mut ecn_inflight = INF;
        if self.ecn_in_round && self.ecn_eligible && p.ecn_factor > 0 {
            // InitLowerBounds() for the volume only.
            if self.inflight_shortterm == INF {
                self.inflight_shortterm = cwnd;
            }
            let cut = UNIT.saturating_sub(mul_div(self.ecn_alpha, p.ecn_factor, UNIT));
            ecn_inflight = mul_div(self.inflight_shortterm, cut, UNIT);
            a.ccv.count(counter::ECN_RESPONSES, 1);
        }
        // (`shortterm_loss_thresh`, not in the draft: a round whose losses stay below it is
        // taken as random loss, not congestion.)
        if self.is_loss_in_round && !self.loss_round_below_thresh {
            // InitLowerBounds(), LossLowerBounds().
            if self.bw_shortterm == INF {
                self.bw_shortterm = self.max_bw();
            }
            if self.inflight_shortterm == INF {
                self.inflight_shortterm = cwnd;
            }
            self.bw_shortterm = self.bw_latest.max(mul_div(self.bw_shortterm, p.beta, UNIT));
            self.inflight_shortterm =
                self.inflight_latest
                    .max(mul_div(self.inflight_shortterm, p.beta, UNIT));
            a.ccv.count(counter::LOSS_RESPONSES, 1);
        }
        self.inflight_shortterm = self.inflight_shortterm.min(ecn_inflight);
        self.bw_shortterm = self.bw_shortterm.max(1);
    }

    /// UpdateACKAggregation() (5.5.9).
    fn update_ack_aggregation(&mut self, a: &Ack, p: &Params, cwnd: u64) {
        if p.extra_acked_win_rounds == 0 {
            self.extra_acked = 0;
            return;
        }
        if a.rs.newly_acked == 0 {
            return;
        }
        if self.extra_acked_restart {
            // Restarting from idle: the interval begins when the restart's data left,
            // about a min_rtt ago.
            self.extra_acked_restart = false;
            let rtt_ns = if self.min_rtt_us == INF {
                0
            } else {
                self.min_rtt_us.saturating_mul(1000)
            };
            self.extra_acked_interval_start = a.now.saturating_sub(rtt_ns);
            self.extra_acked_delivered = 0;
        }
        let interval = a.now.saturating_sub(self.extra_acked_interval_start);
        let mut expected = mul_div(self.bw, interval, 1_000_000_000);
        if self.extra_acked_delivered <= expected {
            self.extra_acked_delivered = 0;
            self.extra_acked_interval_start = a.now;
            expected = 0;
        }
        self.extra_acked_delivered = self
            .extra_acked_delivered
            .saturating_add(a.rs.newly_acked as u64);
        let extra = self
            .extra_acked_delivered
            .saturating_sub(expected)
            .min(cwnd);
        let filter_len = if self.full_bw_reached {
            p.extra_acked_win_rounds
        } else {
            1
        };
        self.extra_acked = self
            .extra_acked_filter
            .update(filter_len, self.round_count, extra);
    }

    /// Startup's exit on loss (5.3.1.3, with Linux's per-ACK count of loss events).
    fn check_startup_high_loss(&mut self, a: &Ack, p: &Params, tp: &Tcpcb) {
        if !self.full_bw_reached
            && p.full_loss_cnt > 0
            && self.loss_round_start
            && tp.in_fastrecovery()
            && self.loss_events_in_round >= p.full_loss_cnt
            && self.is_inflight_too_high(a, p)
        {
            a.ccv.count(counter::STARTUP_LOSS_EXITS, 1);
            self.handle_queue_too_high_in_startup();
        }
        if self.loss_round_start {
            self.loss_events_in_round = 0;
        }
    }

    /// The pipe is full and overfull: leave Startup with inflight_longterm at
    /// max(BDP, inflight_latest).
    fn handle_queue_too_high_in_startup(&mut self) {
        self.full_bw_reached = true;
        self.undo_state = Some(State::Startup);
        self.inflight_longterm = self.bdp(self.max_bw()).max(self.inflight_latest);
    }

    /// CheckFullBWReached() (5.3.1.2).
    fn check_full_bw_reached(&mut self, a: &Ack, p: &Params) {
        if self.full_bw_now || !self.round_start || a.app_limited {
            return;
        }
        if a.rate >= mul_div(self.full_bw, UNIT + p.full_bw_thresh, UNIT) {
            self.reset_full_bw();
            self.full_bw = a.rate;
            return;
        }
        self.full_bw_count = self.full_bw_count.saturating_add(1);
        self.full_bw_now = self.full_bw_count >= p.full_bw_cnt;
        if self.full_bw_now {
            self.full_bw_reached = true;
        }
    }

    /// CheckStartupDone() (the loss check ran before).
    fn check_startup_done(&mut self, a: &Ack, p: &Params, tp: &mut Tcpcb) {
        if self.state == State::Startup && self.full_bw_reached {
            a.ccv.count(counter::STARTUP_EXITS, 1);
            self.enter_drain(p, a.mss, tp);
        }
    }

    /// EnterDrain(); ssthresh reports the BDP from now on (monitoring only, as Linux).
    fn enter_drain(&mut self, p: &Params, mss: u64, tp: &mut Tcpcb) {
        self.set_state(State::Drain, p);
        self.drain_start_round = self.round_count;
        tp.snd_ssthresh = self.inflight(self.max_bw(), UNIT, mss).min(CWND_MAX) as u32;
    }

    /// CheckDrainDone().
    fn check_drain_done(&mut self, a: &Ack, p: &Params) {
        if self.state == State::Drain
            && (a.in_flight <= self.inflight(self.bw, UNIT, a.mss)
                || self.round_count > self.drain_start_round.saturating_add(DRAIN_MAX_ROUNDS))
        {
            self.enter_probe_bw(a, p);
        }
    }

    /// EnterProbeBW().
    fn enter_probe_bw(&mut self, a: &Ack, p: &Params) {
        self.start_probe_bw_down(p, a.now, a.rs.tot_delivered);
    }

    /// PickProbeWait().
    fn pick_probe_wait(&mut self, p: &Params) {
        self.rounds_since_probe_up = self.rng.random_range(0..=1);
        let extra = if p.bw_probe_rand_ns > 0 {
            self.rng.random_range(0..p.bw_probe_rand_ns)
        } else {
            0
        };
        self.bw_probe_wait_ns = p.bw_probe_base_ns.saturating_add(extra);
    }

    /// StartProbeBW_DOWN().
    fn start_probe_bw_down(&mut self, p: &Params, now: u64, delivered: u64) {
        self.reset_congestion_signals();
        self.probe_up_acked_per_inc = INF;
        self.pick_probe_wait(p);
        self.cycle_stamp = now;
        self.ack_phase = AckPhase::ProbeStopping;
        self.start_round(delivered);
        self.set_state(State::ProbeBwDown, p);
    }

    /// StartProbeBW_CRUISE() (with Linux's clamp of inflight_shortterm to
    /// inflight_longterm).
    fn start_probe_bw_cruise(&mut self, p: &Params) {
        if self.inflight_shortterm != INF {
            self.inflight_shortterm = self.inflight_shortterm.min(self.inflight_longterm);
        }
        self.set_state(State::ProbeBwCruise, p);
    }

    /// StartProbeBW_REFILL().
    fn start_probe_bw_refill(&mut self, p: &Params, ccv: &CcVar, delivered: u64) {
        self.reset_short_term_model();
        self.bw_probe_up_rounds = 0;
        self.bw_probe_up_acked = 0;
        self.prev_probe_precautionary = false;
        self.ack_phase = AckPhase::Refilling;
        self.start_round(delivered);
        self.set_state(State::ProbeBwRefill, p);
        ccv.count(counter::PROBE_BW_REFILLS, 1);
    }

    /// StartProbeBW_UP().
    fn start_probe_bw_up(&mut self, a: &Ack, p: &Params, cwnd: u64) {
        self.ack_phase = AckPhase::ProbeStarting;
        self.start_round(a.rs.tot_delivered);
        self.reset_full_bw();
        self.full_bw = a.rate;
        self.set_state(State::ProbeBwUp, p);
        self.raise_inflight_longterm_slope(cwnd, a.mss);
    }

    /// UpdateProbeBWCyclePhase() (5.3.3.6).
    fn update_probe_bw_cycle_phase(&mut self, a: &Ack, p: &Params, cwnd: u64) {
        if !self.full_bw_reached {
            return;
        }
        if self.adapt_long_term_model(a, p, cwnd) {
            return;
        }
        let state = self.state;
        match state {
            State::ProbeBwDown => {
                if self.is_time_to_probe_bw(a, p, cwnd) {
                    return;
                }
                if self.is_time_to_cruise(a, p) {
                    self.start_probe_bw_cruise(p);
                }
            }
            State::ProbeBwCruise => {
                self.is_time_to_probe_bw(a, p, cwnd);
            }
            // After a round of REFILL, UP.
            State::ProbeBwRefill if self.round_start => {
                self.is_bw_probe_sample = true;
                self.start_probe_bw_up(a, p, cwnd);
            }
            State::ProbeBwUp if self.is_time_to_go_down(a, cwnd) => {
                self.prev_probe_too_high = false;
                self.start_probe_bw_down(p, a.now, a.rs.tot_delivered);
            }
            _ => {}
        }
    }

    /// AdaptLongTermModel(), with the per-ACK "inflight too high" check of Linux's
    /// bbr_adapt_upper_bounds. Returns whether it decided a state transition.
    fn adapt_long_term_model(&mut self, a: &Ack, p: &Params, cwnd: u64) -> bool {
        if self.ack_phase == AckPhase::ProbeStarting && self.round_start {
            self.ack_phase = AckPhase::ProbeFeedback;
        }
        if self.ack_phase == AckPhase::ProbeStopping && self.round_start {
            // The end of the samples from the probe.
            self.is_bw_probe_sample = false;
            self.ack_phase = AckPhase::Init;
            if self.state.is_probe_bw() && !a.app_limited {
                self.advance_max_bw_filter();
            }
            // Precautionary probing, acceleration: the cautious probe saw no high loss.
            if self.state.is_probe_bw()
                && self.prev_probe_precautionary
                && !self.prev_probe_too_high
            {
                self.start_probe_bw_refill(p, a.ccv, a.rs.tot_delivered);
                return true;
            }
        }
        if self.is_inflight_too_high(a, p) {
            if self.is_bw_probe_sample {
                self.handle_inflight_too_high(a, p, cwnd);
            }
            return false;
        }
        // The loss rate is safe: raise the upper bound.
        if self.inflight_longterm == INF {
            return false;
        }
        if a.valid && a.rs.tx_in_flight as u64 > self.inflight_longterm {
            self.inflight_longterm = a.rs.tx_in_flight as u64;
        }
        if self.state == State::ProbeBwUp {
            self.probe_inflight_longterm_upward(a, cwnd);
        }
        false
    }

    /// IsInflightTooHigh(): the sample's loss rate above loss_thresh, or (Linux) its CE
    /// fraction above ecn_thresh.
    fn is_inflight_too_high(&self, a: &Ack, p: &Params) -> bool {
        if !a.valid {
            return false;
        }
        let rs = a.rs;
        if rs.lost > 0
            && rs.tx_in_flight > 0
            && rs.lost as u64 * UNIT > rs.tx_in_flight as u64 * p.loss_thresh
        {
            return true;
        }
        self.ecn_eligible
            && p.ecn_thresh > 0
            && rs.delivered_ce > 0
            && rs.delivered > 0
            && rs.delivered_ce as u128 * UNIT as u128 > rs.delivered as u128 * p.ecn_thresh as u128
    }

    /// HandleInflightTooHigh().
    fn handle_inflight_too_high(&mut self, a: &Ack, p: &Params, cwnd: u64) {
        self.prev_probe_too_high = true;
        self.is_bw_probe_sample = false;
        if !a.app_limited {
            self.inflight_longterm =
                (a.rs.tx_in_flight as u64).max(mul_div(self.target_inflight(cwnd), p.beta, UNIT));
        }
        a.ccv.count(counter::INFLIGHT_TOO_HIGH, 1);
        if self.state == State::ProbeBwUp {
            self.undo_state = Some(State::ProbeBwUp);
            self.start_probe_bw_down(p, a.now, a.rs.tot_delivered);
        }
    }

    /// IsTimeToProbeBW(): if so, starts REFILL.
    fn is_time_to_probe_bw(&mut self, a: &Ack, p: &Params, cwnd: u64) -> bool {
        let elapsed = a.now > self.cycle_stamp.saturating_add(self.bw_probe_wait_ns);
        let reno_rounds = (self.target_inflight(cwnd) / a.mss).min(p.bw_probe_max_rounds);
        if elapsed || self.rounds_since_probe_up >= reno_rounds {
            self.start_probe_bw_refill(p, a.ccv, a.rs.tot_delivered);
            return true;
        }
        false
    }

    /// IsTimeToCruise().
    fn is_time_to_cruise(&self, a: &Ack, p: &Params) -> bool {
        a.in_flight <= self.inflight_with_headroom(p, a.mss)
            && a.in_flight <= self.inflight(self.max_bw(), UNIT, a.mss)
    }

    /// IsTimeToGoDown(), with precautionary probing's deceleration.
    fn is_time_to_go_down(&mut self, a: &Ack, cwnd: u64) -> bool {
        if self.prev_probe_too_high && a.in_flight >= self.inflight_longterm {
            self.prev_probe_precautionary = true;
            return true;
        }
        if self.is_cwnd_limited() && cwnd >= self.inflight_longterm {
            // inflight_longterm limits the probe: the plateau says nothing.
            self.reset_full_bw();
            self.full_bw = a.rate;
        } else if self.full_bw_now {
            return true;
        }
        false
    }

    /// RaiseInflightLongtermSlope() (in bytes, as the later text).
    fn raise_inflight_longterm_slope(&mut self, cwnd: u64, mss: u64) {
        let growth_this_round = 1u64 << self.bw_probe_up_rounds.min(BW_PROBE_UP_ROUNDS_MAX);
        self.bw_probe_up_rounds = (self.bw_probe_up_rounds + 1).min(BW_PROBE_UP_ROUNDS_MAX);
        self.probe_up_acked_per_inc = (cwnd / growth_this_round).max(mss);
    }

    /// ProbeInflightLongtermUpward().
    fn probe_inflight_longterm_upward(&mut self, a: &Ack, cwnd: u64) {
        if !self.is_cwnd_limited() || cwnd < self.inflight_longterm {
            return;
        }
        self.bw_probe_up_acked = self
            .bw_probe_up_acked
            .saturating_add(a.rs.newly_acked as u64);
        let per_inc = self.probe_up_acked_per_inc.max(1);
        if self.bw_probe_up_acked >= per_inc {
            let delta = self.bw_probe_up_acked / per_inc;
            self.bw_probe_up_acked -= delta * per_inc;
            self.inflight_longterm = self
                .inflight_longterm
                .saturating_add(delta.saturating_mul(a.mss));
        }
        if self.round_start {
            self.raise_inflight_longterm_slope(cwnd, a.mss);
        }
    }

    /// UpdateMinRTT() (5.3.4.3).
    fn update_min_rtt(&mut self, a: &Ack, p: &Params) {
        self.probe_rtt_expired = a.now
            > self
                .probe_rtt_min_stamp
                .saturating_add(p.probe_rtt_interval_ns);
        let rtt = a.rs.rtt_us as u64;
        if rtt > 0 && (rtt < self.probe_rtt_min_us || self.probe_rtt_expired) {
            self.probe_rtt_min_us = rtt;
            self.probe_rtt_min_stamp = a.now;
        }
        let min_rtt_expired = a.now > self.min_rtt_stamp.saturating_add(p.min_rtt_filter_len_ns);
        if self.probe_rtt_min_us < self.min_rtt_us || min_rtt_expired {
            self.min_rtt_us = self.probe_rtt_min_us;
            self.min_rtt_stamp = self.probe_rtt_min_stamp;
        }
    }

    /// CheckProbeRTT().
    fn check_probe_rtt(&mut self, a: &Ack, p: &Params, tp: &mut Tcpcb) {
        if self.state != State::ProbeRtt
            && self.probe_rtt_expired
            && !self.idle_restart
            && p.probe_rtt_duration_ns > 0
        {
            // EnterProbeRTT().
            self.set_state(State::ProbeRtt, p);
            self.save_cwnd(tp);
            self.probe_rtt_done_stamp = 0;
            self.ack_phase = AckPhase::ProbeStopping;
            self.start_round(a.rs.tot_delivered);
            self.probe_rtt_app_limited = Some((a.rs.tot_delivered, a.rs.tot_delivered));
            a.ccv.count(counter::PROBE_RTT_ENTRIES, 1);
        }
        if self.state == State::ProbeRtt {
            self.handle_probe_rtt(a, p, tp);
        }
        if a.rs.newly_acked > 0 {
            self.idle_restart = false;
        }
    }

    /// HandleProbeRTT().
    fn handle_probe_rtt(&mut self, a: &Ack, p: &Params, tp: &mut Tcpcb) {
        // MarkConnectionAppLimited(): ignore the low rate samples of ProbeRTT.
        let until = a.rs.tot_delivered.saturating_add(a.in_flight);
        self.probe_rtt_app_limited = Some(match self.probe_rtt_app_limited {
            Some((from, u)) => (from, u.max(until)),
            None => (a.rs.tot_delivered, until),
        });
        if self.probe_rtt_done_stamp == 0 && a.in_flight <= self.probe_rtt_cwnd(p, a.mss) {
            // Hold for ProbeRTTDuration and a round.
            self.probe_rtt_done_stamp = a.now.saturating_add(p.probe_rtt_duration_ns).max(1);
            self.probe_rtt_round_done = false;
            self.start_round(a.rs.tot_delivered);
        } else if self.probe_rtt_done_stamp != 0 {
            if self.round_start {
                self.probe_rtt_round_done = true;
            }
            if self.probe_rtt_round_done {
                self.check_probe_rtt_done(p, tp, a.now, a.rs.tot_delivered);
            }
        }
    }

    /// CheckProbeRTTDone().
    fn check_probe_rtt_done(&mut self, p: &Params, tp: &mut Tcpcb, now: u64, delivered: u64) {
        if self.probe_rtt_done_stamp != 0 && now > self.probe_rtt_done_stamp {
            self.probe_rtt_min_stamp = now;
            self.restore_cwnd(tp);
            self.exit_probe_rtt(p, now, delivered);
        }
    }

    /// ExitProbeRTT().
    fn exit_probe_rtt(&mut self, p: &Params, now: u64, delivered: u64) {
        self.reset_short_term_model();
        if self.full_bw_reached {
            self.start_probe_bw_down(p, now, delivered);
            self.start_probe_bw_cruise(p);
        } else {
            self.enter_startup(p);
        }
    }

    /// AdvanceLatestDeliverySignals().
    fn advance_latest_delivery_signals(&mut self, a: &Ack) {
        if self.loss_round_start {
            self.bw_latest = a.rate;
            self.inflight_latest = a.rs.delivered;
        }
    }

    /// BoundBWForModel().
    fn bound_bw_for_model(&mut self) {
        self.bw = self.max_bw().min(self.bw_shortterm);
    }

    /// InitPacingRate(): `startup_pacing_gain * cwnd / srtt` (1 ms without an RTT).
    fn init_pacing_rate(&mut self, p: &Params, cwnd: u64, srtt_us: u32) {
        let rtt = if srtt_us > 0 { srtt_us as u64 } else { 1000 };
        let nominal = mul_div(cwnd, 1_000_000, rtt);
        self.pacing_rate = mul_div(nominal, p.startup_pacing_gain, UNIT);
    }

    /// SetPacingRateWithGain(gain).
    fn set_pacing_rate_with_gain(&mut self, p: &Params, gain: u64) {
        let rate = mul_div(
            mul_div(self.bw, gain, UNIT),
            UNIT.saturating_sub(p.pacing_margin),
            UNIT,
        );
        if self.full_bw_reached || rate > self.pacing_rate {
            self.pacing_rate = rate;
        }
    }

    /// SetSendQuantum(): 1 ms at the pacing rate, within [2 segments, 64 KB].
    fn set_send_quantum(&mut self, mss: u64) {
        self.send_quantum = (self.pacing_rate / 1000).min(SEND_QUANTUM_MAX).max(2 * mss);
    }

    /// UpdateMaxInflight().
    fn update_max_inflight(&mut self, mss: u64) {
        let cap = self
            .bdp_multiple(self.bw, self.cwnd_gain)
            .saturating_add(self.extra_acked);
        self.max_inflight = self.quantization_budget(cap, mss);
    }

    /// SetCwnd() (5.6.4.6) with the recovery modulation, BoundCwndForProbeRTT() and
    /// BoundCwndForModel(). `recovery_entry`: this ACK began fast recovery (its cwnd is
    /// already in flight plus what it delivered; its losses are not in flight).
    fn set_cwnd(&mut self, a: &Ack, p: &Params, tp: &mut Tcpcb, recovery_entry: bool) {
        let mss = a.mss;
        let mut cwnd = match tp.snd_cwnd {
            0 | u32::MAX => self.initial_cwnd,
            c => c as u64,
        };
        self.update_max_inflight(mss);
        let acked = a.rs.newly_acked as u64;
        let mut grow = true;
        if p.recovery_conservation && tp.in_fastrecovery() {
            // BBRv1's ModulateCwndForRecovery: what is lost leaves the window; in the first
            // round cwnd follows what is delivered (packet conservation).
            if !recovery_entry {
                cwnd = cwnd.saturating_sub(a.rs.newly_lost as u64).max(mss);
            }
            if self.conservation && a.valid && a.rs.prior_delivered >= self.conservation_end {
                self.conservation = false;
            }
            if self.conservation {
                cwnd = cwnd.max(a.in_flight.saturating_add(acked));
                grow = false;
            }
        }
        if grow {
            if self.full_bw_reached {
                cwnd = cwnd.saturating_add(acked).min(self.max_inflight);
            } else if cwnd < self.max_inflight || a.rs.tot_delivered < self.initial_cwnd {
                cwnd = cwnd.saturating_add(acked);
            }
            cwnd = cwnd.max(MIN_PIPE_CWND_SEGS * mss);
        }
        // BoundCwndForProbeRTT().
        if self.state == State::ProbeRtt {
            cwnd = cwnd.min(self.probe_rtt_cwnd(p, mss));
        }
        // BoundCwndForModel().
        let mut cap = INF;
        if self.state.is_probe_bw() && self.state != State::ProbeBwCruise {
            cap = self.inflight_longterm;
        } else if self.state == State::ProbeRtt || self.state == State::ProbeBwCruise {
            cap = self.inflight_with_headroom(p, mss);
        }
        cap = cap
            .min(self.inflight_shortterm)
            .max(MIN_PIPE_CWND_SEGS * mss);
        cwnd = cwnd.min(cap).max(mss);
        tp.snd_cwnd = cwnd.min(CWND_MAX) as u32;
    }

    /// The pacing the host gets: the wire rate and the send quantum.
    fn write_pacing(&self, tp: &Tcpcb, pacing: &mut CcPacing) {
        pacing.pacing_rate = wire_rate(self.pacing_rate, tp);
        pacing.send_quantum = self.send_quantum.min(u32::MAX as u64) as u32;
    }

    /// UpdateOnACK() (5.2.3) for an ACK's rate sample.
    fn on_ack(&mut self, ccv: &CcVar, tp: &mut Tcpcb, rs: &RateSample, pacing: &mut CcPacing) {
        let p = Params::read(ccv);
        let mss = tp.maxseg().max(1) as u64;
        let now = rs.now_ns;
        if !self.clock_started && self.pacing_rate == 0 {
            // A stack that made no INIT call: InitPacingRate() now.
            self.init_pacing_rate(&p, self.initial_cwnd, tp.t_srtt);
        }
        self.start_clock(now);
        let valid = rs.valid() && rs.interval_us > 0;
        let a = Ack {
            rs,
            ccv,
            valid,
            app_limited: rs.is_app_limited || self.probe_rtt_marked(rs.prior_delivered),
            rate: if valid { rs.delivery_rate } else { 0 },
            in_flight: rs.in_flight as u64,
            mss,
            now,
        };
        let cwnd_before = tp.snd_cwnd as u64;

        self.ecn_eligible = p.ecn_enable
            && tp.t_flags2 & tf2::ECN_PERMIT != 0
            && (p.ecn_max_rtt_us == 0
                || (self.min_rtt_us != INF && self.min_rtt_us <= p.ecn_max_rtt_us));
        if (rs.prior_in_flight as u64).saturating_add(mss) >= cwnd_before {
            self.cwnd_limited_this_round = true;
        }
        if rs.newly_lost > 0 {
            self.note_loss(rs.tot_delivered);
            self.loss_events_in_round = self.loss_events_in_round.saturating_add(1);
        }

        // Loss recovery's edges on this ACK.
        let mut recovery_entry = false;
        if !tp.in_fastrecovery() {
            self.recovery_pending = false;
            self.conservation = false;
        } else if self.recovery_pending {
            self.recovery_pending = false;
            if p.recovery_conservation {
                // Packet conservation for a round: in flight plus what this ACK delivered
                // (at least a segment, for the retransmission).
                recovery_entry = true;
                self.conservation = true;
                self.conservation_end = rs.tot_delivered;
                let cwnd = a
                    .in_flight
                    .saturating_add((rs.newly_acked as u64).max(mss))
                    .min(CWND_MAX);
                tp.snd_cwnd = cwnd as u32;
            }
        }
        if let Some(recover) = self.rto_recover {
            if seq_geq(tp.snd_una, recover) {
                // RTO recovery is over.
                self.rto_recover = None;
                self.restore_cwnd(tp);
            }
        }
        let cwnd = tp.snd_cwnd as u64;

        // UpdateModelAndState().
        self.update_round(&a, &p);
        if self.ecn_eligible && rs.flags & rs_flags::ECE != 0 {
            self.ecn_in_round = true;
        }
        self.update_latest_delivery_signals(&a, &p);
        self.update_congestion_signals(&a, &p, cwnd);
        self.update_ack_aggregation(&a, &p, cwnd);
        self.check_startup_high_loss(&a, &p, tp);
        self.check_full_bw_reached(&a, &p);
        self.check_startup_done(&a, &p, tp);
        self.check_drain_done(&a, &p);
        self.update_probe_bw_cycle_phase(&a, &p, cwnd);
        self.update_min_rtt(&a, &p);
        self.check_probe_rtt(&a, &p, tp);
        self.advance_latest_delivery_signals(&a);
        self.bound_bw_for_model();
        (self.pacing_gain, self.cwnd_gain) = p.gains(self.state);

        // UpdateControlParameters().
        if !self.has_seen_rtt && tp.t_srtt > 0 {
            // The first RTT: the initial pacing rate again, from it (as Linux).
            self.has_seen_rtt = true;
            self.init_pacing_rate(&p, cwnd, tp.t_srtt);
        }
        // Nothing left in flight after app-limited data: the next send restarts from idle.
        let idle = a.in_flight == 0 && rs.is_app_limited;
        if idle {
            self.restart_from_idle(&p, tp, now, rs.tot_delivered);
            (self.pacing_gain, self.cwnd_gain) = p.gains(self.state);
        }
        if idle && self.state.is_probe_bw() {
            self.set_pacing_rate_with_gain(&p, UNIT);
        } else {
            self.set_pacing_rate_with_gain(&p, self.pacing_gain);
        }
        self.set_send_quantum(mss);
        self.set_cwnd(&a, &p, tp, recovery_entry);

        self.last_delivered = rs.tot_delivered;
        self.last_now = now;
        self.write_pacing(tp, pacing);
    }
}

impl CcAlgorithm for Bbr {
    const NAME: &'static str = "bbr";
    const WANTS_RATE_SAMPLE: bool = true;
    const PARAMS: &'static [CcParamDesc] = &[
        CcParamDesc::new(
            "startup_pacing_gain",
            "Pacing gain in Startup, permille (BBR.StartupPacingGain 2.77)",
            2770,
            1,
            10_000,
        ),
        CcParamDesc::new(
            "startup_cwnd_gain",
            "cwnd gain in Startup, permille (BBR.DefaultCwndGain 2)",
            2000,
            1,
            10_000,
        ),
        CcParamDesc::new(
            "drain_pacing_gain",
            "Pacing gain in Drain, permille (BBR.DrainPacingGain 0.35)",
            350,
            1,
            1000,
        ),
        CcParamDesc::new(
            "cwnd_gain",
            "cwnd gain in Drain and ProbeBW DOWN/CRUISE/REFILL, permille (BBR.DefaultCwndGain 2)",
            2000,
            1,
            10_000,
        ),
        CcParamDesc::new(
            "probe_up_cwnd_gain",
            "cwnd gain in ProbeBW_UP, permille (2.25)",
            2250,
            1,
            10_000,
        ),
        CcParamDesc::new(
            "probe_down_pacing_gain",
            "Pacing gain in ProbeBW_DOWN, permille (0.90)",
            900,
            1,
            1000,
        ),
        CcParamDesc::new(
            "probe_up_pacing_gain",
            "Pacing gain in ProbeBW_UP, permille (1.25)",
            1250,
            1000,
            10_000,
        ),
        CcParamDesc::new(
            "probe_rtt_cwnd_gain",
            "cwnd in ProbeRTT as a fraction of the BDP, permille (BBR.ProbeRTTCwndGain 0.5)",
            500,
            1,
            1000,
        ),
        CcParamDesc::new(
            "probe_rtt_interval_ms",
            "Time without a lower RTT sample before ProbeRTT, ms (BBR.ProbeRTTInterval); at most min_rtt_filter_len_ms",
            5000,
            1,
            3_600_000,
        ),
        CcParamDesc::new(
            "probe_rtt_duration_ms",
            "Time ProbeRTT holds inflight down, ms (BBR.ProbeRTTDuration); 0: never enter ProbeRTT",
            200,
            0,
            60_000,
        ),
        CcParamDesc::new(
            "min_rtt_filter_len_ms",
            "Window of the min_rtt filter, ms (BBR.MinRTTFilterLen)",
            10_000,
            1,
            3_600_000,
        ),
        CcParamDesc::new(
            "loss_thresh",
            "Loss rate of a round that is too high when probing, permille (BBR.LossThresh 2%)",
            20,
            0,
            1000,
        ),
        CcParamDesc::new(
            "beta",
            "Part of a bound kept on a loss response, permille (BBR.Beta 0.7)",
            700,
            0,
            1000,
        ),
        CcParamDesc::new(
            "headroom",
            "Part of inflight_longterm left free for other flows, permille (BBR.Headroom 0.15)",
            150,
            0,
            999,
        ),
        CcParamDesc::new(
            "full_bw_thresh",
            "Bandwidth growth per round that means the pipe is not full yet, permille (25%)",
            250,
            0,
            10_000,
        ),
        CcParamDesc::new(
            "full_bw_cnt",
            "Rounds without that growth that mean the pipe is full",
            3,
            1,
            255,
        ),
        CcParamDesc::new(
            "full_loss_cnt",
            "Loss events in a round of recovery that end Startup (BBRStartupFullLossCnt); 0: off",
            6,
            0,
            255,
        ),
        CcParamDesc::new(
            "ecn_enable",
            "React to ECN (CE marks echoed by ECE) on ECN connections, 0 or 1",
            1,
            0,
            1,
        ),
        CcParamDesc::new(
            "ecn_thresh",
            "CE-marked fraction of delivered data that is too high, permille; 0: off",
            500,
            0,
            1000,
        ),
        CcParamDesc::new(
            "ecn_factor",
            "inflight_shortterm cut per ECN round, times the CE EWMA, permille; 0: off",
            333,
            0,
            1000,
        ),
        CcParamDesc::new(
            "full_ecn_cnt",
            "Consecutive rounds with a CE fraction above ecn_thresh that end Startup; 0: off",
            2,
            0,
            255,
        ),
        CcParamDesc::new(
            "ecn_max_rtt_us",
            "Use ECN only while min_rtt is at most this, us; 0: at any RTT",
            0,
            0,
            U32_MAX,
        ),
        CcParamDesc::new(
            "extra_acked_win_rounds",
            "Window of the ACK aggregation estimate, rounds (BBR.ExtraAckedFilterLen); 0: none",
            10,
            0,
            255,
        ),
        CcParamDesc::new(
            "pacing_margin",
            "Pace this much below the estimated bandwidth, permille (BBR.PacingMarginPercent 1%)",
            10,
            0,
            999,
        ),
        CcParamDesc::new(
            "recovery_conservation",
            "Packet conservation in the first round of fast recovery, 0 or 1",
            0,
            0,
            1,
        ),
        CcParamDesc::new(
            "bw_probe_max_rounds",
            "Most rounds between bandwidth probes (Reno coexistence)",
            63,
            1,
            10_000,
        ),
        CcParamDesc::new(
            "bw_probe_base_ms",
            "Shortest wall-clock time between bandwidth probes, ms",
            2000,
            1,
            3_600_000,
        ),
        CcParamDesc::new(
            "bw_probe_rand_ms",
            "Random extra time between bandwidth probes, up to this, ms",
            1000,
            0,
            3_600_000,
        ),
        CcParamDesc::new(
            "shortterm_loss_thresh",
            "Cut the short-term model only after rounds losing more than this, permille; 0: any loss (the draft)",
            0,
            0,
            1000,
        ),
    ];
    const COUNTERS: &'static [RStr<'static>] = &[
        RStr::from_str("startup_exits"),
        RStr::from_str("startup_loss_exits"),
        RStr::from_str("startup_ecn_exits"),
        RStr::from_str("probe_bw_refills"),
        RStr::from_str("probe_rtt_entries"),
        RStr::from_str("inflight_too_high"),
        RStr::from_str("loss_responses"),
        RStr::from_str("ecn_responses"),
        RStr::from_str("recoveries"),
        RStr::from_str("rtos"),
        RStr::from_str("rto_undos"),
    ];

    fn cb_init(ccv: &CcVar, tp: &Tcpcb) -> Result<Self, Errno> {
        Ok(Bbr::new(ccv, tp))
    }

    /// OnInit(): the connection starts (or the module comes to an established one) in
    /// Startup with the window it has.
    fn conn_init(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        *self = Bbr::new(ccv, tp);
    }

    /// Nothing: `cong_control` does the work.
    fn ack_received(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb, _ack_type: u32) {}

    fn cong_signal(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
        match sig {
            CC_NDUPACK => {
                if !tp.in_fastrecovery() {
                    // OnEnterFastRecovery(): no cut; remember cwnd and the model.
                    self.save_cwnd(tp);
                    self.save_state_upon_loss();
                    tp.snd_ssthresh = tp.snd_cwnd;
                    tp.t_flags |= tf::FASTRECOVERY | tf::CONGRECOVERY;
                    self.recovery_pending = true;
                    ccv.count(counter::RECOVERIES, 1);
                }
                self.note_loss(self.last_delivered);
            }
            // The response to CE comes from the rate samples; only the episode here.
            CC_ECN if !tp.in_congrecovery() => {
                tp.t_flags |= tf::CONGRECOVERY;
            }
            CC_RTO => {
                // OnEnterRTO(); cwnd becomes in flight + 1 segment in the RTO's cong_control.
                self.save_cwnd(tp);
                if self.rto_recover.is_none() {
                    self.save_state_upon_loss();
                    ccv.count(counter::RTOS, 1);
                }
                self.rto_recover = Some(match self.rto_recover {
                    Some(r) => seq_max(r, tp.snd_max),
                    None => tp.snd_max,
                });
                self.recovery_pending = false;
                self.conservation = false;
                // Linux (bbr_set_state, TCP_CA_Loss): the path may have changed; remember
                // the cwnd before the RTO as the short-term volume when not probing.
                self.reset_full_bw();
                if !self.state.is_probing_bw() && self.inflight_shortterm == INF {
                    self.inflight_shortterm = (tp.snd_cwnd as u64).max(self.prior_cwnd);
                }
                self.note_loss(self.last_delivered);
                tp.snd_cwnd = tp.maxseg().max(1);
            }
            CC_RTO_ERR => {
                // HandleSpuriousLossDetection() (the later text's 5.5.11.2).
                let p = Params::read(ccv);
                self.rto_recover = None;
                self.restore_cwnd(tp);
                self.is_loss_in_round = false;
                self.reset_full_bw();
                self.bw_shortterm = self.bw_shortterm.max(self.undo_bw_shortterm);
                self.inflight_shortterm = self.inflight_shortterm.max(self.undo_inflight_shortterm);
                self.inflight_longterm = self.inflight_longterm.max(self.undo_inflight_longterm);
                match self.undo_state {
                    Some(State::Startup) if self.state != State::Startup => {
                        self.full_bw_reached = false;
                        if self.state != State::ProbeRtt {
                            self.enter_startup(&p);
                        }
                    }
                    Some(State::ProbeBwUp)
                        if self.state != State::ProbeBwUp && self.state != State::ProbeRtt =>
                    {
                        self.start_probe_bw_refill(&p, ccv, self.last_delivered);
                    }
                    _ => {}
                }
                self.undo_state = None;
                ccv.count(counter::RTO_UNDOS, 1);
            }
            _ => {}
        }
    }

    /// The end of fast recovery: RestoreCwnd() (cong_control bounds it by the model on the
    /// same ACK).
    fn post_recovery(&mut self, _ccv: &mut CcVar, tp: &mut Tcpcb) {
        self.recovery_pending = false;
        self.conservation = false;
        self.restore_cwnd(tp);
    }

    /// Idle for an RTO or more (HandleRestartFromIdle()): no cwnd cut. The time is at least
    /// the last receive plus the RTO, which is what ProbeRTT's end is checked against.
    fn after_idle(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        let p = Params::read(ccv);
        let now = tp
            .t_rcvtime
            .saturating_add(tp.t_rxtcur as u64 * 1000)
            .max(self.last_now);
        self.restart_from_idle(&p, tp, now, self.last_delivered);
    }

    fn cong_control(
        &mut self,
        ccv: &mut CcVar,
        tp: &mut Tcpcb,
        rs: &RateSample,
        pacing: &mut CcPacing,
    ) {
        if rs.flags & rs_flags::INIT != 0 {
            // InitPacingRate().
            let p = Params::read(ccv);
            self.start_clock(rs.now_ns);
            self.init_pacing_rate(&p, self.initial_cwnd, tp.t_srtt);
            self.set_send_quantum(tp.maxseg().max(1) as u64);
            self.last_delivered = rs.tot_delivered;
            self.write_pacing(tp, pacing);
        } else if rs.flags & rs_flags::RTO != 0 {
            // OnEnterRTO(): C.cwnd = C.inflight + 1 segment.
            self.start_clock(rs.now_ns);
            let mss = tp.maxseg().max(1) as u64;
            if rs.newly_lost > 0 {
                self.note_loss(rs.tot_delivered);
            }
            let cwnd = (rs.in_flight as u64).saturating_add(mss).min(CWND_MAX);
            tp.snd_cwnd = cwnd as u32;
            self.last_delivered = rs.tot_delivered;
            self.last_now = self.last_now.max(rs.now_ns);
            self.write_pacing(tp, pacing);
        } else {
            self.on_ack(ccv, tp, rs, pacing);
        }
    }

    /// `probe_rtt_interval_ms` must stay within `min_rtt_filter_len_ms` (so that the min_rtt
    /// window covers a ProbeRTT, 5.3.4.2).
    fn param_check(
        idx: u32,
        value: i64,
        _globals: &CcGlobals,
        current: &[AtomicIsize],
    ) -> Result<(), Errno> {
        let default = |i: usize| Bbr::PARAMS[i].default;
        match idx as usize {
            param::PROBE_RTT_INTERVAL_MS => {
                let len = param_value(
                    current,
                    param::MIN_RTT_FILTER_LEN_MS,
                    default(param::MIN_RTT_FILTER_LEN_MS),
                );
                if value > len {
                    return Err(Errno::EINVAL);
                }
            }
            param::MIN_RTT_FILTER_LEN_MS => {
                let interval = param_value(
                    current,
                    param::PROBE_RTT_INTERVAL_MS,
                    default(param::PROBE_RTT_INTERVAL_MS),
                );
                if value < interval {
                    return Err(Errno::EINVAL);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

plugtcp_abi::export_cc_module!(Bbr);

#[cfg(test)]
mod tests;
