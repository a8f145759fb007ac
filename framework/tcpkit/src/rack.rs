//! RACK-TLP loss detection (RFC 8985) over a per-segment send map, sans-IO.
//!
//! [`RackTlp`] keeps one entry ([`Rsm`], FreeBSD's `struct rack_sendmap`) per transmitted
//! segment, each with its latest transmission time, and infers losses from *time*: a segment
//! is lost when a segment sent after it has been delivered and more than `RACK.rtt +
//! RACK.reo_wnd` has passed since it was (re)sent (RFC 8985 section 6.2). The tail loss probe
//! (section 7) turns a tail drop into SACK feedback instead of an RTO.
//!
//! # Naming
//! FreeBSD's where they exist (`rsm`, `r_start`, `r_end`, `r_rtr_cnt`, `r_flags`,
//! `rack_rtt`, `reorder_thresh`, `tlpminto`, `tlp_limit`, `map_limit`), RFC 8985's otherwise
//! (`RACK.xmit_ts` = [`RackTlp::rack_xmit_ts`], `RACK.end_seq`, `RACK.rtt`, `RACK.min_RTT`,
//! `RACK.reo_wnd`, `RACK.reo_wnd_mult`, `RACK.reo_wnd_persist`, `RACK.dsack_round`,
//! `RACK.fack`, `RACK.reordering_seen`, `TLP.end_seq`, `TLP.is_retrans`).
//!
//! # Clock
//! Every time is a `u64` in microseconds from one monotonic clock chosen by the caller.
//!
//! # How a stack drives it ("rack" mode)
//! - **Sending.** After every transmission call [`on_transmit`](RackTlp::on_transmit)`(start,
//!   end, now, retransmit)`, one call per segment (a TSO burst may be one call; it then counts
//!   as one segment for the DupThresh test of step 4). New data must start at `snd_max`.
//!   A range that lies below the map's `snd_max` is a retransmission whatever the flag says.
//! - **ACK.** For every acceptable ACK call [`on_ack`](RackTlp::on_ack) (or
//!   [`on_ack_ts`](RackTlp::on_ack_ts) with the send time the ACK's TSecr echoes), then
//!   [`detect_loss`](RackTlp::detect_loss). Feed [`AckOutcome::rtt_sample_us`] (Karn-safe) to
//!   the RFC 6298 estimator and pass the resulting SRTT back with
//!   [`set_srtt`](RackTlp::set_srtt) (it caps `reo_wnd`; without it an internal 1/8 EWMA of the
//!   samples is used). If `newly_lost_bytes > 0` and the connection is not in recovery, enter
//!   fast recovery (cwnd reduction); RACK itself notes recovery until `snd_una` passes the
//!   `snd_max` of that moment ([`in_recovery`](RackTlp::in_recovery)). Arm the RACK reordering
//!   timer for `reo_timer_us` if given; when it fires, call `detect_loss` again. If
//!   [`AckOutcome::tlp_loss_repaired`] the TLP plugged a real hole: reduce cwnd (RFC 8985 7.4).
//! - **Retransmitting.** While [`next_to_retransmit`](RackTlp::next_to_retransmit) returns a
//!   range and congestion control allows ([`pipe`](RackTlp::pipe) < cwnd), send (part of) it
//!   and report it with `on_transmit(.., retransmit = true)`; the entry is then in flight
//!   again and no longer returned, until RACK finds that retransmission lost too.
//! - **Timers.** When sending new data or on an ACK that advances `snd_una`, with data
//!   outstanding: if [`tlp_armable`](RackTlp::tlp_armable) and not in recovery, arm the PTO
//!   for [`pto_us`](RackTlp::pto_us), else the RTO. On PTO expiry call
//!   [`on_pto`](RackTlp::on_pto) and do what the [`TlpAction`] says (a new segment, or the
//!   retransmission of the returned range), reporting it with `on_transmit`; then arm the RTO.
//!   On RTO expiry call [`on_rto`](RackTlp::on_rto) (RFC 8985 6.3 marking) or
//!   [`mark_all_lost`](RackTlp::mark_all_lost) (go-back-N), then retransmit from
//!   `next_to_retransmit`.
//! - **Switching stacks.** A connection handed over from another stack starts with
//!   [`from_outstanding`](RackTlp::from_outstanding): everything outstanding as one entry "sent
//!   now" that yields no RTT samples.
//!
//! # Memory
//! Entries live in a `VecDeque`, sorted, disjoint and contiguous over `[snd_una, snd_max)`.
//! Splits caused by the peer's SACK blocks are refused once `map_limit` entries exist (the
//! block then just stays un-SACKed, which is safe), and at the limit new data is merged into
//! the last entry when possible (FreeBSD `net.inet.tcp.map_limit`); entries created by the
//! caller's own segmentation are otherwise kept. No allocation per ACK beyond the deque's
//! amortized growth.

use std::collections::VecDeque;

use plugtcp_abi::segment::SackBlock;
use plugtcp_abi::seq::{seq_geq, seq_gt, seq_leq, seq_lt, seq_max, seq_min};

/// Entry flag: delivered (SACKed); FreeBSD `RACK_ACKED`.
pub const RSM_SACKED: u8 = 0x01;
/// Entry flag: marked lost by RACK or on RTO (FreeBSD `RACK_WAS_LOST`). It stays set after a
/// retransmission so that `pipe` counts lost-and-retransmitted data once, like RFC 6675.
pub const RSM_LOST: u8 = 0x02;
/// Entry flag: retransmitted, and that retransmission is neither acked nor deemed lost.
pub const RSM_RXT: u8 = 0x04;
/// Entry flag: the send time is unknown (from [`RackTlp::from_outstanding`]); no RTT sample.
pub const RSM_UNKNOWN_TS: u8 = 0x08;
/// Scratch flag during `on_ack`: newly SACKed by the ACK being processed.
const RSM_NEW: u8 = 0x80;

/// RFC 8985 WCDelAckT: worst-case delayed-ACK timer (200 ms).
pub const WC_DEL_ACK_T_US: u64 = 200_000;
/// FreeBSD `net.inet.tcp.rack.tlpminto` default (10 ms).
pub const TLP_MIN_TO_US: u64 = 10_000;
/// PTO when no SRTT is known (RFC 8985 7.2: 1 s).
pub const TLP_PTO_NO_SRTT_US: u64 = 1_000_000;
/// Ceiling for `RACK.reo_wnd_mult` (the window is capped by SRTT anyway).
pub const REO_WND_MULT_MAX: u32 = 255;

/// Tunables. Defaults follow FreeBSD rack where it has a knob, RFC 8985 otherwise.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RackConfig {
    /// `reo_wnd = reo_wnd_mult * min_RTT >> reorder_thresh` (FreeBSD `rack.reorder_thresh`,
    /// default 2: RFC 8985's min_RTT / 4).
    pub reorder_thresh: u32,
    /// Recoveries without DSACK after which `reo_wnd_mult` falls back to 1 (RFC: 16).
    pub reo_wnd_persist: u8,
    /// RFC 6675 DupThresh, used by step 4 before reordering is seen (3).
    pub dupthresh: u32,
    /// Window of the `RACK.min_RTT` filter (300 s, like Linux `tcp_min_rtt_wlen`).
    pub min_rtt_win_us: u64,
    /// Whether tail loss probes are sent (FreeBSD: on).
    pub tlp_enabled: bool,
    /// Lower bound of the PTO (FreeBSD `rack.tlpminto`, 10 ms).
    pub tlp_min_us: u64,
    /// Probes allowed without new data being sent in between (FreeBSD `rack_tlp_limit`, 2).
    pub tlp_limit: u8,
    /// Added to the PTO when one segment is in flight (RFC 8985 WCDelAckT, 200 ms).
    pub wc_del_ack_us: u64,
    /// Entry count above which SACK splits are refused (FreeBSD `net.inet.tcp.map_limit`).
    pub map_limit: usize,
}

impl Default for RackConfig {
    fn default() -> Self {
        Self {
            reorder_thresh: 2,
            reo_wnd_persist: 16,
            dupthresh: 3,
            min_rtt_win_us: 300_000_000,
            tlp_enabled: true,
            tlp_min_us: TLP_MIN_TO_US,
            tlp_limit: 2,
            wc_del_ack_us: WC_DEL_ACK_T_US,
            map_limit: 1500,
        }
    }
}

/// One send map entry (FreeBSD `struct rack_sendmap`, "rsm"): `[r_start, r_end)`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Rsm {
    pub r_start: u32,
    pub r_end: u32,
    /// Time of the latest (re)transmission (RFC 8985 `Segment.xmit_ts`).
    pub r_xmit_ts: u64,
    /// Number of transmissions, 1 for the original only.
    pub r_rtr_cnt: u16,
    /// `RSM_*` bits.
    pub r_flags: u8,
}

impl Rsm {
    pub fn len(&self) -> u32 {
        self.r_end.wrapping_sub(self.r_start)
    }
    pub fn is_empty(&self) -> bool {
        self.r_start == self.r_end
    }
    pub fn is_sacked(&self) -> bool {
        self.r_flags & RSM_SACKED != 0
    }
    pub fn is_lost(&self) -> bool {
        self.r_flags & RSM_LOST != 0
    }
    /// Marked lost and not retransmitted since.
    pub fn awaits_retransmit(&self) -> bool {
        self.r_flags & (RSM_SACKED | RSM_LOST | RSM_RXT) == RSM_LOST
    }
    fn retransmitted(&self) -> bool {
        self.r_rtr_cnt > 1
    }
}

/// What one ACK did ([`RackTlp::on_ack`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct AckOutcome {
    /// Advance of the cumulative ACK (`snd_una`), in bytes.
    pub acked_bytes: u32,
    /// Bytes SACKed by this ACK that were not SACKed before.
    pub newly_sacked_bytes: u32,
    /// Newly delivered bytes: cumulatively acked but not SACKed before, plus newly SACKed.
    pub delivered_bytes: u32,
    /// RTT of the most recently sent newly delivered entry that was never retransmitted
    /// (Karn-safe), for the RFC 6298 estimator.
    pub rtt_sample_us: Option<u64>,
    /// The first SACK block was a D-SACK (RFC 2883: below the cumulative ACK, or inside
    /// another block of the same ACK).
    pub dsack: bool,
    /// This ACK delivered a never-retransmitted segment below RACK.fack (RFC 8985 6.2 step 3).
    pub reordering: bool,
    /// RFC 8985 7.4: a TLP retransmission repaired a loss; the caller must reduce cwnd.
    pub tlp_loss_repaired: bool,
    /// This ACK ended the recovery RACK was tracking (`snd_una` reached its recovery point).
    pub recovery_exited: bool,
}

/// What [`RackTlp::detect_loss`] found.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LossOutcome {
    /// Bytes newly marked lost (now awaiting retransmission).
    pub newly_lost_bytes: u32,
    /// Arm the RACK reordering timer this far from now (RFC 8985 6.2 step 5), if `Some`.
    pub reo_timer_us: Option<u64>,
}

/// What to send when the PTO fires ([`RackTlp::on_pto`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TlpAction {
    /// Send one new segment (up to SMSS) and report it with `on_transmit(.., false)`.
    SendNew,
    /// Retransmit `[start, end)` (the highest outstanding un-SACKed segment) and report it
    /// with `on_transmit(.., true)`.
    Retransmit(u32, u32),
    /// No probe: arm the RTO instead.
    None,
}

/// RACK-TLP state and the send map of one connection.
#[derive(Clone, Debug)]
pub struct RackTlp {
    cfg: RackConfig,
    map: VecDeque<Rsm>,
    started: bool,
    snd_una: u32,
    snd_max: u32,
    sacked_bytes: u32,
    lost_bytes: u32,
    rxt_bytes: u32,
    // RACK (RFC 8985 6.1).
    rack_xmit_ts: Option<u64>,
    rack_end_seq: u32,
    /// FreeBSD `rack_rtt`, RFC `RACK.rtt`.
    rack_rtt: Option<u64>,
    min_rtt: Option<u64>,
    min_rtt_stamp: u64,
    srtt_ext: Option<u64>,
    srtt_int: Option<u64>,
    fack: u32,
    reordering_seen: bool,
    reo_wnd_mult: u32,
    reo_wnd_persist: u8,
    dsack_round: Option<u32>,
    in_recovery: bool,
    recovery_point: u32,
    // TLP (RFC 8985 7.1).
    tlp_end_seq: Option<u32>,
    tlp_start: u32,
    tlp_is_retrans: bool,
    tlp_pending_new: bool,
    tlp_in_row: u8,
    rtt_since_probe: bool,
}

fn sent_after(t1: u64, seq1: u32, t2: u64, seq2: u32) -> bool {
    t1 > t2 || (t1 == t2 && seq_gt(seq1, seq2))
}

/// (sacked, lost, retransmitted-in-flight) bytes an entry contributes.
fn acct(flags: u8, len: u32) -> (u32, u32, u32) {
    if flags & RSM_SACKED != 0 {
        return (len, 0, 0);
    }
    let lost = if flags & RSM_LOST != 0 { len } else { 0 };
    let rxt = if flags & RSM_RXT != 0 { len } else { 0 };
    (0, lost, rxt)
}

impl Default for RackTlp {
    fn default() -> Self {
        Self::new(RackConfig::default())
    }
}

impl RackTlp {
    /// An empty map; sequence numbers are learnt from the first `on_transmit`.
    pub fn new(cfg: RackConfig) -> Self {
        Self {
            cfg,
            map: VecDeque::new(),
            started: false,
            snd_una: 0,
            snd_max: 0,
            sacked_bytes: 0,
            lost_bytes: 0,
            rxt_bytes: 0,
            rack_xmit_ts: None,
            rack_end_seq: 0,
            rack_rtt: None,
            min_rtt: None,
            min_rtt_stamp: 0,
            srtt_ext: None,
            srtt_int: None,
            fack: 0,
            reordering_seen: false,
            reo_wnd_mult: 1,
            reo_wnd_persist: 0,
            dsack_round: None,
            in_recovery: false,
            recovery_point: 0,
            tlp_end_seq: None,
            tlp_start: 0,
            tlp_is_retrans: false,
            tlp_pending_new: false,
            tlp_in_row: 0,
            rtt_since_probe: true,
        }
    }

    /// A map for a connection switched in from another stack: `[snd_una, snd_max)` as one
    /// entry sent at `now_us`, never retransmitted as far as we know, with no RTT samples to
    /// give (its real send time is unknown). RACK.xmit_ts, RACK.rtt and min_RTT are unset;
    /// pass the connection's SRTT with [`set_srtt`](Self::set_srtt).
    pub fn from_outstanding(cfg: RackConfig, snd_una: u32, snd_max: u32, now_us: u64) -> Self {
        let mut r = Self::new(cfg);
        r.started = true;
        r.snd_una = snd_una;
        r.snd_max = snd_una;
        r.fack = snd_una;
        if seq_lt(snd_una, snd_max) {
            r.map.push_back(Rsm {
                r_start: snd_una,
                r_end: snd_max,
                r_xmit_ts: now_us,
                r_rtr_cnt: 1,
                r_flags: RSM_UNKNOWN_TS,
            });
            r.snd_max = snd_max;
        }
        r
    }

    pub fn config(&self) -> &RackConfig {
        &self.cfg
    }

    /// The caller's smoothed RTT (caps `reo_wnd`, stands in for RACK.rtt before it exists).
    pub fn set_srtt(&mut self, srtt_us: u64) {
        self.srtt_ext = Some(srtt_us);
    }

    /// Records that the caller entered fast recovery for another reason (e.g. DupThresh).
    /// `detect_loss` and `on_rto` do this themselves.
    pub fn enter_recovery(&mut self) {
        if !self.in_recovery {
            self.in_recovery = true;
            self.recovery_point = self.snd_max;
        }
    }

    // ---- send map -------------------------------------------------------------------------

    /// Records the transmission of `[start, end)` at `now_us`. The part below the map's
    /// `snd_max` is a retransmission: its entries (split at `start`/`end` as needed) get
    /// `r_xmit_ts = now`, `r_rtr_cnt + 1` and are in flight again (no longer awaiting
    /// retransmission); SACKed entries are left alone. The part at or above `snd_max` is new
    /// data, appended as one entry. Bytes below `snd_una` are ignored.
    pub fn on_transmit(&mut self, start: u32, end: u32, now_us: u64, retransmit: bool) {
        if !seq_lt(start, end) {
            return;
        }
        if !self.started || (self.map.is_empty() && seq_gt(start, self.snd_max)) {
            self.started = true;
            self.snd_una = start;
            self.snd_max = start;
            self.fack = start;
        }
        let s = seq_max(start, self.snd_una);
        if !seq_lt(s, end) {
            return;
        }
        let rx_end = seq_min(end, self.snd_max);
        if seq_lt(s, rx_end) {
            self.mark_retransmitted(s, rx_end, now_us);
        }
        if seq_gt(end, self.snd_max) {
            // New data; a gap above snd_max (caller bug) is absorbed into this entry.
            let ns = self.snd_max;
            self.push_new(ns, end, now_us);
            self.snd_max = end;
            if self.tlp_pending_new {
                self.tlp_pending_new = false;
                self.tlp_end_seq = Some(end);
                self.tlp_start = ns;
                self.tlp_is_retrans = false;
            } else if !retransmit {
                self.tlp_in_row = 0;
            }
        }
    }

    fn push_new(&mut self, start: u32, end: u32, now_us: u64) {
        if self.map.len() >= self.cfg.map_limit {
            if let Some(last) = self.map.back_mut() {
                if last.r_end == start && last.r_flags == 0 && last.r_rtr_cnt == 1 {
                    last.r_end = end;
                    last.r_xmit_ts = now_us;
                    return;
                }
            }
        }
        self.map.push_back(Rsm {
            r_start: start,
            r_end: end,
            r_xmit_ts: now_us,
            r_rtr_cnt: 1,
            r_flags: 0,
        });
    }

    fn mark_retransmitted(&mut self, s: u32, e: u32, now_us: u64) {
        self.split_unsacked(s, false);
        self.split_unsacked(e, false);
        let mut i = self.index_of(s);
        while i < self.map.len() && seq_leq(self.map[i].r_end, e) {
            let r = self.map[i];
            if !r.is_sacked() {
                let f = (r.r_flags | RSM_RXT) & !RSM_UNKNOWN_TS;
                self.set_flags(i, f);
                let r = &mut self.map[i];
                r.r_xmit_ts = now_us;
                r.r_rtr_cnt = r.r_rtr_cnt.saturating_add(1);
            }
            i += 1;
        }
    }

    /// Index of the first entry with `r_end > seq`.
    fn index_of(&self, seq: u32) -> usize {
        self.map.partition_point(|r| seq_leq(r.r_end, seq))
    }

    /// Splits the un-SACKed entry strictly containing `at`. With `limited`, refuses when the
    /// map holds `map_limit` entries; returns whether `at` is now an entry boundary (or
    /// outside the map, or inside a SACKed entry).
    fn split_unsacked(&mut self, at: u32, limited: bool) -> bool {
        self.split(at, limited, false)
    }

    fn split(&mut self, at: u32, limited: bool, sacked_too: bool) -> bool {
        let i = self.index_of(at);
        let Some(r) = self.map.get(i).copied() else {
            return true;
        };
        if !(seq_lt(r.r_start, at) && seq_lt(at, r.r_end)) || (r.is_sacked() && !sacked_too) {
            return true;
        }
        if limited && self.map.len() >= self.cfg.map_limit {
            return false;
        }
        self.map[i].r_end = at;
        let mut tail = r;
        tail.r_start = at;
        self.map.insert(i + 1, tail);
        true
    }

    fn set_flags(&mut self, i: usize, flags: u8) {
        let r = self.map[i];
        let (s0, l0, x0) = acct(r.r_flags, r.len());
        let (s1, l1, x1) = acct(flags, r.len());
        self.sacked_bytes = self.sacked_bytes.wrapping_sub(s0).wrapping_add(s1);
        self.lost_bytes = self.lost_bytes.wrapping_sub(l0).wrapping_add(l1);
        self.rxt_bytes = self.rxt_bytes.wrapping_sub(x0).wrapping_add(x1);
        self.map[i].r_flags = flags;
    }

    fn pop_front_entry(&mut self) {
        if let Some(r) = self.map.pop_front() {
            let (s, l, x) = acct(r.r_flags, r.len());
            self.sacked_bytes = self.sacked_bytes.wrapping_sub(s);
            self.lost_bytes = self.lost_bytes.wrapping_sub(l);
            self.rxt_bytes = self.rxt_bytes.wrapping_sub(x);
        }
    }

    // ---- ACK processing ---------------------------------------------------------------------

    /// [`on_ack_ts`](Self::on_ack_ts) without timestamps.
    pub fn on_ack(&mut self, cum_ack: u32, sacks: &[SackBlock], now_us: u64) -> AckOutcome {
        self.on_ack_ts(cum_ack, sacks, now_us, None)
    }

    /// Processes one ACK: cumulative ACK `cum_ack`, SACK blocks as received (the first may be
    /// a D-SACK), at `now_us`. `tsecr_xmit_us` is the latest send time, in this clock, the
    /// ACK's TSecr can stand for (e.g. `(tsecr_ms + 1) * 1000 - 1` for a ms TS clock derived
    /// from it); it rejects ACKs of an original transmission as evidence about a
    /// retransmission (RFC 8985 6.2 step 2, first check).
    ///
    /// Implements RFC 8985 6.2 steps 1-4 and the TLP episode check of 7.4. A `cum_ack` above
    /// `snd_max` is clamped; one below `snd_una` (an old ACK) advances nothing and its D-SACK
    /// is ignored. SACK blocks outside `[cum_ack, snd_max]` are clipped or ignored.
    pub fn on_ack_ts(
        &mut self,
        cum_ack: u32,
        sacks: &[SackBlock],
        now_us: u64,
        tsecr_xmit_us: Option<u64>,
    ) -> AckOutcome {
        let mut out = AckOutcome::default();
        self.tlp_pending_new = false; // a SendNew probe that was never sent
        if !self.started {
            return out;
        }
        let stale = seq_lt(cum_ack, self.snd_una);
        let una = if seq_gt(cum_ack, self.snd_max) {
            self.snd_max
        } else if stale {
            self.snd_una
        } else {
            cum_ack
        };
        let advanced = seq_gt(una, self.snd_una);
        out.acked_bytes = una.wrapping_sub(self.snd_una);

        // D-SACK (RFC 2883): the first block, below the cumulative ACK or inside another.
        let dsack = match sacks.split_first() {
            Some((b, rest)) if !stale && seq_lt(b.start, b.end) && seq_leq(b.end, self.snd_max) => {
                (seq_lt(b.start, una)
                    || rest.iter().any(|o| {
                        seq_lt(o.start, o.end) && seq_leq(o.start, b.start) && seq_geq(o.end, b.end)
                    }))
                .then_some(*b)
            }
            _ => None,
        };
        out.dsack = dsack.is_some();

        // Cumulative ACK inside an entry: split there (the front part goes away below).
        self.split(una, false, true);
        // Mark newly SACKed entries (splitting at block edges within map_limit).
        for (k, b) in sacks.iter().enumerate() {
            if k == 0 && dsack.is_some() {
                continue;
            }
            let s = seq_max(b.start, una);
            let e = b.end;
            if !seq_lt(s, e) || seq_gt(e, self.snd_max) {
                continue;
            }
            self.split_unsacked(s, true);
            self.split_unsacked(e, true);
            let mut i = self.index_of(s);
            while i < self.map.len() && seq_leq(self.map[i].r_end, e) {
                let r = self.map[i];
                if seq_geq(r.r_start, s) && !r.is_sacked() {
                    let f = (r.r_flags & !(RSM_LOST | RSM_RXT)) | RSM_SACKED | RSM_NEW;
                    self.set_flags(i, f);
                    out.newly_sacked_bytes = out.newly_sacked_bytes.wrapping_add(r.len());
                }
                i += 1;
            }
        }

        // Pass 1 over newly delivered entries (ascending sequence): Karn sample, delivered
        // bytes, RACK.fack and reordering (step 3).
        let n_prefix = self.index_of(una);
        let delivered =
            |i: usize, r: &Rsm| (i < n_prefix && !r.is_sacked()) || r.r_flags & RSM_NEW != 0;
        let mut karn: Option<u64> = None; // xmit_ts of the most recent clean entry
        let mut reorder = false;
        let mut cum_new = 0u32;
        for (i, r) in self.map.iter().enumerate() {
            if !delivered(i, r) {
                continue;
            }
            if i < n_prefix {
                cum_new = cum_new.wrapping_add(r.len());
            }
            let clean = !r.retransmitted() && r.r_flags & RSM_UNKNOWN_TS == 0;
            if clean && karn.is_none_or(|t| r.r_xmit_ts >= t) {
                karn = Some(r.r_xmit_ts);
            }
            if seq_gt(r.r_end, self.fack) {
                self.fack = r.r_end;
            } else if seq_lt(r.r_end, self.fack) && clean {
                reorder = true;
            }
        }
        out.delivered_bytes = cum_new.wrapping_add(out.newly_sacked_bytes);
        out.reordering = reorder;
        self.reordering_seen |= reorder;

        // Step 1: RACK.min_RTT (windowed min) and the internal SRTT fallback.
        if let Some(t) = karn {
            let rtt = now_us.saturating_sub(t);
            out.rtt_sample_us = Some(rtt);
            self.rtt_since_probe = true;
            let expired = now_us.saturating_sub(self.min_rtt_stamp) > self.cfg.min_rtt_win_us;
            if self.min_rtt.is_none_or(|m| rtt <= m) || expired {
                self.min_rtt = Some(rtt);
                self.min_rtt_stamp = now_us;
            }
            self.srtt_int = Some(match self.srtt_int {
                None => rtt,
                Some(s) => s - s / 8 + rtt / 8,
            });
        }

        // Step 2: the most recently sent delivered segment that passes the checks.
        let mut best: Option<(u64, u32)> = None; // (xmit_ts, end) for RACK.xmit_ts/end_seq
        let mut best_rtt: Option<u64> = None; // xmit_ts of the newest valid known-ts entry
        for (i, r) in self.map.iter().enumerate() {
            if !delivered(i, r) {
                continue;
            }
            let rtt = now_us.saturating_sub(r.r_xmit_ts);
            if r.retransmitted() {
                if tsecr_xmit_us.is_some_and(|t| t < r.r_xmit_ts) {
                    continue;
                }
                // Without a min_RTT only a TSecr can vouch for the retransmission.
                if self.min_rtt.map_or(tsecr_xmit_us.is_none(), |m| rtt < m) {
                    continue;
                }
            }
            if best.is_none_or(|(t, e)| sent_after(r.r_xmit_ts, r.r_end, t, e)) {
                best = Some((r.r_xmit_ts, r.r_end));
            }
            if r.r_flags & RSM_UNKNOWN_TS == 0 && best_rtt.is_none_or(|t| r.r_xmit_ts >= t) {
                best_rtt = Some(r.r_xmit_ts);
            }
        }
        if let Some(t) = best_rtt {
            self.rack_rtt = Some(now_us.saturating_sub(t));
        }
        if let Some((t, e)) = best {
            if self
                .rack_xmit_ts
                .is_none_or(|rt| sent_after(t, e, rt, self.rack_end_seq))
            {
                self.rack_xmit_ts = Some(t);
                self.rack_end_seq = e;
            }
        }

        // Drop what the cumulative ACK covers; clear the scratch flag.
        for _ in 0..n_prefix {
            self.pop_front_entry();
        }
        for r in self.map.iter_mut() {
            r.r_flags &= !RSM_NEW;
        }
        self.snd_una = una;
        self.fack = seq_max(self.fack, una);

        // Step 4: DSACK rounds and reo_wnd_mult persistence.
        if self.dsack_round.is_some_and(|r| seq_geq(una, r)) {
            self.dsack_round = None;
        }
        let mut exiting = false;
        if self.in_recovery
            && seq_geq(una, self.recovery_point)
            && (advanced || self.map.is_empty())
        {
            self.in_recovery = false;
            exiting = true;
            out.recovery_exited = true;
        }
        if self.dsack_round.is_none() && dsack.is_some() {
            self.dsack_round = Some(self.snd_max);
            self.reo_wnd_mult = (self.reo_wnd_mult + 1).min(REO_WND_MULT_MAX);
            self.reo_wnd_persist = self.cfg.reo_wnd_persist;
        } else if exiting {
            self.reo_wnd_persist = self.reo_wnd_persist.saturating_sub(1);
            if self.reo_wnd_persist == 0 {
                self.reo_wnd_mult = 1;
            }
        }

        // RFC 8985 7.4: end of a TLP episode.
        if let Some(end) = self.tlp_end_seq {
            if seq_geq(una, end) {
                if !self.tlp_is_retrans {
                    self.tlp_end_seq = None; // TLP of new data delivered
                } else if dsack.is_some_and(|b| {
                    b.end == end || (seq_lt(b.start, end) && seq_gt(b.end, self.tlp_start))
                }) {
                    self.tlp_end_seq = None; // the retransmission was spurious
                } else if seq_gt(una, end) {
                    self.tlp_end_seq = None; // it repaired a single loss
                    out.tlp_loss_repaired = true;
                } else if !advanced && sacks.is_empty() {
                    self.tlp_end_seq = None; // duplicate ACK from the probe: spurious
                }
            }
        }
        out
    }

    // ---- loss detection ---------------------------------------------------------------------

    fn srtt(&self) -> Option<u64> {
        self.srtt_ext.or(self.srtt_int)
    }

    fn segs_sacked(&self) -> u32 {
        self.map.iter().filter(|r| r.is_sacked()).count() as u32
    }

    /// RACK.reo_wnd (RFC 8985 6.2 step 4): 0 before any reordering was seen if in recovery
    /// or DupThresh segments are SACKed; else `reo_wnd_mult * min_RTT >> reorder_thresh`,
    /// capped by SRTT; 0 without a min_RTT.
    pub fn reo_wnd_us(&self) -> u64 {
        if !self.reordering_seen && (self.in_recovery || self.segs_sacked() >= self.cfg.dupthresh) {
            return 0;
        }
        let Some(min) = self.min_rtt else {
            return 0;
        };
        let w = (min.saturating_mul(self.reo_wnd_mult as u64)) >> self.cfg.reorder_thresh.min(63);
        match self.srtt() {
            Some(s) => w.min(s),
            None => w,
        }
    }

    fn loss_rtt(&self) -> Option<u64> {
        self.rack_rtt.or(self.srtt())
    }

    fn mark_lost(&mut self, i: usize) -> u32 {
        let r = self.map[i];
        if r.is_sacked() || r.awaits_retransmit() {
            return 0;
        }
        self.set_flags(i, (r.r_flags | RSM_LOST) & !RSM_RXT);
        r.len()
    }

    /// RFC 8985 6.2 step 5: marks lost every un-SACKed entry (not already awaiting
    /// retransmission) sent before RACK.xmit_ts/end_seq whose `xmit_ts + RACK.rtt + reo_wnd`
    /// has passed; for the others the largest remaining time is the reordering timer. Entering
    /// loss also enters recovery (see [`in_recovery`](Self::in_recovery)).
    pub fn detect_loss(&mut self, now_us: u64) -> LossOutcome {
        let mut out = LossOutcome::default();
        let (Some(rx_ts), Some(rtt)) = (self.rack_xmit_ts, self.loss_rtt()) else {
            return out;
        };
        let reo = self.reo_wnd_us();
        let mut timer = 0u64;
        for i in 0..self.map.len() {
            let r = self.map[i];
            if r.is_sacked() || r.awaits_retransmit() {
                continue;
            }
            if !sent_after(rx_ts, self.rack_end_seq, r.r_xmit_ts, r.r_end) {
                continue;
            }
            let deadline = r.r_xmit_ts.saturating_add(rtt).saturating_add(reo);
            if now_us >= deadline {
                out.newly_lost_bytes += self.mark_lost(i);
            } else {
                timer = timer.max(deadline - now_us);
            }
        }
        out.reo_timer_us = (timer > 0).then_some(timer);
        if out.newly_lost_bytes > 0 {
            self.enter_recovery();
        }
        out
    }

    /// RFC 8985 6.3, on RTO expiry: marks lost the first un-SACKed entry and every other
    /// un-SACKed one sent at least `RACK.rtt + reo_wnd` ago (all of them if no RTT is known).
    /// Enters (RTO) recovery and ends any TLP episode. Returns the newly lost bytes.
    pub fn on_rto(&mut self, now_us: u64) -> u32 {
        let reo = self.reo_wnd_us();
        let rtt = self.loss_rtt();
        let mut lost = 0;
        let mut first = true;
        for i in 0..self.map.len() {
            let r = self.map[i];
            if r.is_sacked() {
                continue;
            }
            let old =
                rtt.is_none_or(|rtt| r.r_xmit_ts.saturating_add(rtt).saturating_add(reo) <= now_us);
            if first || old {
                lost += self.mark_lost(i);
            }
            first = false;
        }
        self.tlp_end_seq = None;
        self.tlp_pending_new = false;
        self.enter_recovery();
        lost
    }

    /// Marks every un-SACKed entry lost (go-back-N RTO handling). Returns newly lost bytes.
    pub fn mark_all_lost(&mut self) -> u32 {
        (0..self.map.len()).map(|i| self.mark_lost(i)).sum()
    }

    /// The first (lowest) entry marked lost and not retransmitted since: `(start, end)`.
    pub fn next_to_retransmit(&self) -> Option<(u32, u32)> {
        self.map
            .iter()
            .find(|r| r.awaits_retransmit())
            .map(|r| (r.r_start, r.r_end))
    }

    /// Bytes marked lost and not SACKed, including those retransmitted since.
    pub fn lost_bytes(&self) -> u32 {
        self.lost_bytes
    }

    /// Bytes marked lost and not retransmitted since.
    pub fn awaiting_retransmit_bytes(&self) -> u32 {
        self.map
            .iter()
            .filter(|r| r.awaits_retransmit())
            .map(|r| r.len())
            .sum()
    }

    /// Bytes retransmitted whose retransmission is neither acked nor deemed lost.
    pub fn retransmitted_bytes(&self) -> u32 {
        self.rxt_bytes
    }

    pub fn sacked_bytes(&self) -> u32 {
        self.sacked_bytes
    }

    /// RFC 6675-style flight: `snd_max - snd_una - sacked - lost + retransmitted`, where
    /// lost-and-retransmitted data counts once and a retransmission not preceded by a loss
    /// mark (a TLP) counts twice. Saturates at 0.
    pub fn pipe(&self, snd_una: u32, snd_max: u32) -> u32 {
        let out = if seq_lt(snd_una, snd_max) {
            snd_max.wrapping_sub(snd_una) as i64
        } else {
            0
        };
        (out - self.sacked_bytes as i64 - self.lost_bytes as i64 + self.rxt_bytes as i64)
            .clamp(0, u32::MAX as i64) as u32
    }

    // ---- TLP --------------------------------------------------------------------------------

    /// RFC 8985 7.2 PTO: `2 * SRTT`, plus WCDelAckT when one segment is in flight, 1 s
    /// without SRTT; at least `tlp_min_us`; never beyond the RTO deadline `rto_expire_us`
    /// (absolute: `now + RTO` when the RTO would be armed now).
    pub fn pto_us(
        &self,
        srtt_us: Option<u64>,
        rto_expire_us: u64,
        flight_segments: u32,
        now_us: u64,
    ) -> u64 {
        let mut pto = match srtt_us {
            Some(s) => {
                let p = s.saturating_mul(2);
                if flight_segments == 1 {
                    p.saturating_add(self.cfg.wc_del_ack_us)
                } else {
                    p
                }
            }
            None => TLP_PTO_NO_SRTT_US,
        };
        pto = pto.max(self.cfg.tlp_min_us);
        if now_us.saturating_add(pto) > rto_expire_us {
            pto = rto_expire_us.saturating_sub(now_us);
        }
        pto
    }

    /// Whether a PTO may be armed (or a probe sent): TLP enabled, not in recovery, no TLP
    /// episode open, a new RTT sample since the last probe (RFC 8985 7.3), and fewer than
    /// `tlp_limit` probes since new data was last sent (FreeBSD).
    pub fn tlp_armable(&self) -> bool {
        self.cfg.tlp_enabled
            && !self.in_recovery
            && self.tlp_end_seq.is_none()
            && self.rtt_since_probe
            && self.tlp_in_row < self.cfg.tlp_limit
    }

    /// PTO expiry (RFC 8985 7.3): with `have_new_data` (unsent data the peer's window
    /// admits) probe with a new segment; else retransmit the highest un-SACKed entry.
    /// Opens a TLP episode (`TLP.end_seq` = `snd_max` after the probe, `TLP.is_retrans`).
    /// `None` when [`tlp_armable`](Self::tlp_armable) is false or there is nothing to probe.
    pub fn on_pto(&mut self, have_new_data: bool) -> TlpAction {
        if !self.tlp_armable() {
            return TlpAction::None;
        }
        let action = if have_new_data {
            self.tlp_pending_new = true;
            TlpAction::SendNew
        } else {
            let Some(r) = self.map.iter().rev().find(|r| !r.is_sacked()) else {
                return TlpAction::None;
            };
            self.tlp_end_seq = Some(self.snd_max);
            self.tlp_start = r.r_start;
            self.tlp_is_retrans = true;
            TlpAction::Retransmit(r.r_start, r.r_end)
        };
        self.rtt_since_probe = false;
        self.tlp_in_row = self.tlp_in_row.saturating_add(1);
        action
    }

    // ---- accessors --------------------------------------------------------------------------

    /// The send map, ascending.
    pub fn entries(&self) -> impl Iterator<Item = &Rsm> + '_ {
        self.map.iter()
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn snd_una(&self) -> u32 {
        self.snd_una
    }
    pub fn snd_max(&self) -> u32 {
        self.snd_max
    }
    /// RACK.xmit_ts.
    pub fn rack_xmit_ts(&self) -> Option<u64> {
        self.rack_xmit_ts
    }
    /// RACK.end_seq.
    pub fn rack_end_seq(&self) -> u32 {
        self.rack_end_seq
    }
    /// RACK.rtt (FreeBSD `rack_rtt`).
    pub fn rack_rtt_us(&self) -> Option<u64> {
        self.rack_rtt
    }
    /// RACK.min_RTT.
    pub fn min_rtt_us(&self) -> Option<u64> {
        self.min_rtt
    }
    pub fn reordering_seen(&self) -> bool {
        self.reordering_seen
    }
    pub fn reo_wnd_mult(&self) -> u32 {
        self.reo_wnd_mult
    }
    pub fn in_recovery(&self) -> bool {
        self.in_recovery
    }
    /// TLP.end_seq.
    pub fn tlp_end_seq(&self) -> Option<u32> {
        self.tlp_end_seq
    }
    /// TLP.is_retrans.
    pub fn tlp_is_retrans(&self) -> bool {
        self.tlp_is_retrans
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Base sequence just below 2^32 so the scenarios cross the wrap.
    const B: u32 = u32::MAX - 1500;

    fn at(k: u32) -> u32 {
        B.wrapping_add(k * 1000)
    }
    fn ms(x: u64) -> u64 {
        x * 1000
    }
    fn sb(start: u32, end: u32) -> SackBlock {
        SackBlock { start, end }
    }
    /// Sends segments `k` (1000 bytes at `at(k)`) at the given times (ms).
    fn send(r: &mut RackTlp, segs: &[(u32, u64)]) {
        for &(k, t) in segs {
            r.on_transmit(at(k), at(k + 1), ms(t), false);
        }
    }

    /// Recomputes the counters and checks the map's shape.
    fn check(r: &RackTlp) {
        let (mut s, mut l, mut x) = (0u32, 0u32, 0u32);
        let mut cursor = r.snd_una();
        for e in r.entries() {
            assert_eq!(e.r_start, cursor, "contiguous, sorted");
            assert!(seq_lt(e.r_start, e.r_end), "non-empty");
            assert_eq!(e.r_flags & RSM_NEW, 0);
            let (a, b, c) = acct(e.r_flags, e.len());
            s += a;
            l += b;
            x += c;
            cursor = e.r_end;
        }
        assert_eq!(cursor, r.snd_max());
        assert_eq!(
            (s, l, x),
            (r.sacked_bytes(), r.lost_bytes(), r.retransmitted_bytes())
        );
        let out = r.snd_max().wrapping_sub(r.snd_una());
        assert!(s as u64 + l as u64 <= out as u64);
        assert_eq!(r.pipe(r.snd_una(), r.snd_max()), out - s - l + x);
    }

    /// RFC 8985 6.2: a segment is lost only once RACK.rtt + reo_wnd has passed since it was
    /// sent, after a segment sent later was delivered; until then the remainder is the timer.
    #[test]
    fn time_based_marking() {
        let mut r = RackTlp::default();
        send(&mut r, &[(0, 0), (1, 10)]);
        let o = r.on_ack(at(0), &[sb(at(1), at(2))], ms(110));
        assert_eq!(o.newly_sacked_bytes, 1000);
        assert_eq!(o.delivered_bytes, 1000);
        assert_eq!(o.acked_bytes, 0);
        assert_eq!(o.rtt_sample_us, Some(ms(100)));
        assert!(!o.dsack && !o.reordering && !o.tlp_loss_repaired);
        assert_eq!(r.rack_xmit_ts(), Some(ms(10)));
        assert_eq!(r.rack_end_seq(), at(2));
        assert_eq!(r.rack_rtt_us(), Some(ms(100)));
        assert_eq!(r.min_rtt_us(), Some(ms(100)));
        // No reordering seen, not in recovery, 1 < DupThresh segments SACKed: min_RTT / 4.
        assert_eq!(r.reo_wnd_us(), ms(25));
        // A segment sent after RACK.xmit_ts is never suspected.
        send(&mut r, &[(2, 20)]);

        let l = r.detect_loss(ms(110));
        assert_eq!(l.newly_lost_bytes, 0);
        assert_eq!(l.reo_timer_us, Some(ms(15)));
        assert_eq!(r.detect_loss(ms(124)).reo_timer_us, Some(ms(1)));
        assert_eq!(r.next_to_retransmit(), None);
        assert!(!r.in_recovery());

        let l = r.detect_loss(ms(125));
        assert_eq!(
            l,
            LossOutcome {
                newly_lost_bytes: 1000,
                reo_timer_us: None
            }
        );
        assert!(r.in_recovery());
        assert_eq!(r.next_to_retransmit(), Some((at(0), at(1))));
        assert_eq!(r.lost_bytes(), 1000);
        assert_eq!(r.pipe(at(0), at(3)), 1000); // 3000 - 1000 SACKed - 1000 lost
        assert_eq!(r.detect_loss(ms(500)).newly_lost_bytes, 0); // not twice
        check(&r);

        r.on_transmit(at(0), at(1), ms(126), true);
        assert_eq!(r.next_to_retransmit(), None);
        assert_eq!(r.retransmitted_bytes(), 1000);
        assert_eq!(r.pipe(at(0), at(3)), 2000); // the lost-and-retransmitted one counts once
        check(&r);
        // Cumulative ACK of everything ends the recovery.
        let o = r.on_ack(at(3), &[], ms(240));
        assert_eq!(o.acked_bytes, 3000);
        assert_eq!(o.delivered_bytes, 2000);
        assert!(o.recovery_exited && !r.in_recovery());
        assert!(r.is_empty());
        check(&r);
    }

    /// RFC 8985 6.2 step 4: without reordering, reo_wnd is 0 once DupThresh segments are
    /// SACKed or while in recovery.
    #[test]
    fn reo_wnd_zero_without_reordering() {
        let mut r = RackTlp::default();
        send(&mut r, &[(0, 0), (1, 1), (2, 2), (3, 3)]);
        let mut two = r.clone();
        r.on_ack(at(0), &[sb(at(1), at(4))], ms(103));
        assert_eq!(r.reo_wnd_us(), 0);
        assert_eq!(r.detect_loss(ms(100)).reo_timer_us, None); // 0 + 100 + 0 <= now: lost
        assert_eq!(r.lost_bytes(), 1000);

        two.on_ack(at(0), &[sb(at(2), at(4))], ms(103));
        assert_eq!(two.reo_wnd_us(), ms(25));
        let l = two.detect_loss(ms(103));
        assert_eq!(l.newly_lost_bytes, 0);
        assert_eq!(l.reo_timer_us, Some(ms(23))); // max(0+125, 1+125) - 103
        two.enter_recovery();
        assert_eq!(two.reo_wnd_us(), 0);
        assert_eq!(two.detect_loss(ms(103)).newly_lost_bytes, 2000);
    }

    /// RFC 8985 6.2 step 3: a never-retransmitted segment delivered below RACK.fack is
    /// reordering; afterwards reo_wnd stays min_RTT / 4 even in recovery.
    #[test]
    fn reordering_detection() {
        let mut r = RackTlp::default();
        send(&mut r, &[(0, 0), (1, 1)]);
        assert!(!r.on_ack(at(0), &[sb(at(1), at(2))], ms(101)).reordering);
        let o = r.on_ack(at(2), &[], ms(102));
        assert!(o.reordering && r.reordering_seen());
        assert_eq!(o.delivered_bytes, 1000);
        assert_eq!(o.acked_bytes, 2000);
        r.enter_recovery();
        assert_eq!(r.reo_wnd_us(), ms(25));

        // A retransmitted segment filling the hole is not reordering.
        let mut r = RackTlp::default();
        send(&mut r, &[(0, 0), (1, 10)]);
        r.on_ack(at(0), &[sb(at(1), at(2))], ms(110));
        r.detect_loss(ms(200));
        r.on_transmit(at(0), at(1), ms(200), true);
        assert!(!r.on_ack(at(2), &[], ms(300)).reordering);
        assert!(!r.reordering_seen());
    }

    /// RFC 8985 6.2 step 4: one reo_wnd_mult step per DSACK round, capped by SRTT, back to 1
    /// after 16 recoveries without DSACK.
    #[test]
    fn dsack_widening_and_reset() {
        let mut r = RackTlp::default();
        r.set_srtt(ms(1000));
        send(&mut r, &[(0, 0), (1, 1)]);
        r.on_ack(at(0), &[sb(at(1), at(2))], ms(101));
        r.on_ack(at(2), &[], ms(102)); // reordering seen, min_RTT 100 ms
        assert_eq!(r.reo_wnd_us(), ms(25));

        send(&mut r, &[(2, 110), (3, 111)]);
        // D-SACK below the cumulative ACK.
        let o = r.on_ack(at(2), &[sb(at(0), at(1))], ms(150));
        assert!(o.dsack);
        assert_eq!(o.delivered_bytes, 0);
        assert_eq!(r.reo_wnd_mult(), 2);
        assert_eq!(r.reo_wnd_us(), ms(50));
        // A second one in the same round (snd_una < snd_max at the first): no step.
        assert!(r.on_ack(at(3), &[sb(at(1), at(2))], ms(211)).dsack);
        assert_eq!(r.reo_wnd_mult(), 2);
        // The round ends when snd_una reaches it; the next DSACK steps again. This one is
        // inside another block of the same ACK (RFC 2883, above the cumulative ACK).
        send(&mut r, &[(4, 220), (5, 221)]);
        let o = r.on_ack(at(4), &[sb(at(5), at(6)), sb(at(5), at(6))], ms(321));
        assert!(o.dsack);
        assert_eq!(o.newly_sacked_bytes, 1000); // the second block still counts
        assert_eq!(r.reo_wnd_mult(), 3);
        assert_eq!(r.reo_wnd_us(), ms(75));
        r.set_srtt(ms(60));
        assert_eq!(r.reo_wnd_us(), ms(60)); // capped by SRTT
        r.set_srtt(ms(1000));
        r.on_ack(at(6), &[], ms(322));

        // 16 recoveries without DSACK reset the multiplier.
        for n in 0..16u32 {
            assert_eq!(r.reo_wnd_mult(), 3, "after {n} recoveries");
            r.enter_recovery();
            let k = 6 + n;
            send(&mut r, &[(k, 400 + n as u64)]);
            assert!(r.on_ack(at(k + 1), &[], ms(500 + n as u64)).recovery_exited);
        }
        assert_eq!(r.reo_wnd_mult(), 1);
        assert_eq!(r.reo_wnd_us(), ms(25));
    }

    /// RFC 8985 6.2 step 2: an ACK of the original transmission must not move RACK state via
    /// the retransmission (min_RTT check, TSecr check), and gives no Karn sample.
    #[test]
    fn retransmitted_entries() {
        let mut r = RackTlp::default();
        send(&mut r, &[(0, 0), (1, 10)]);
        r.on_ack(at(0), &[sb(at(1), at(2))], ms(110));
        assert_eq!(r.detect_loss(ms(125)).newly_lost_bytes, 1000);
        r.on_transmit(at(0), at(1), ms(130), true);
        assert_eq!(r.entries().next().unwrap().r_rtr_cnt, 2);
        let base = r.clone();

        // ACK 10 ms after the retransmission: it acks the (delayed) original.
        let o = r.on_ack(at(2), &[], ms(140));
        assert_eq!(o.rtt_sample_us, None);
        assert_eq!(r.rack_xmit_ts(), Some(ms(10)));
        assert_eq!(r.rack_rtt_us(), Some(ms(100)));

        // TSecr older than the retransmission: ignored however late it comes.
        let mut r = base.clone();
        let o = r.on_ack_ts(at(2), &[], ms(240), Some(ms(5)));
        assert_eq!(o.rtt_sample_us, None);
        assert_eq!(r.rack_xmit_ts(), Some(ms(10)));

        // TSecr of the retransmission, after min_RTT: RACK moves, still no Karn sample.
        let mut r = base.clone();
        let o = r.on_ack_ts(at(2), &[], ms(240), Some(ms(130)));
        assert_eq!(o.rtt_sample_us, None);
        assert_eq!(r.rack_xmit_ts(), Some(ms(130)));
        assert_eq!(r.rack_end_seq(), at(1));
        assert_eq!(r.rack_rtt_us(), Some(ms(110)));

        // Without timestamps the min_RTT check alone lets a late ACK through.
        let mut r = base;
        r.on_ack(at(2), &[], ms(240));
        assert_eq!(r.rack_xmit_ts(), Some(ms(130)));
    }

    /// A lost retransmission is detected again by time (RFC 8985's main advantage).
    #[test]
    fn lost_retransmission() {
        let mut r = RackTlp::default();
        send(&mut r, &[(0, 0), (1, 10)]);
        r.on_ack(at(0), &[sb(at(1), at(2))], ms(110));
        r.detect_loss(ms(125));
        r.on_transmit(at(0), at(1), ms(130), true);
        send(&mut r, &[(2, 140)]);
        r.on_ack(at(0), &[sb(at(1), at(3))], ms(240));
        assert_eq!(r.rack_xmit_ts(), Some(ms(140)));
        // In recovery without reordering seen reo_wnd is 0: 130 + 100 <= 240.
        assert_eq!(r.reo_wnd_us(), 0);
        assert_eq!(r.detect_loss(ms(240)).newly_lost_bytes, 1000);
        assert_eq!(r.next_to_retransmit(), Some((at(0), at(1))));
        assert_eq!(r.retransmitted_bytes(), 0);
        check(&r);
    }

    /// RFC 8985 6.2 step 5 (as written): the timer covers the latest deadline.
    #[test]
    fn reorder_timer_value() {
        let mut r = RackTlp::default();
        send(&mut r, &[(0, 0), (1, 5), (2, 10)]);
        r.on_ack(at(0), &[sb(at(2), at(3))], ms(110));
        assert_eq!(r.detect_loss(ms(110)).reo_timer_us, Some(ms(20)));
        let l = r.detect_loss(ms(125));
        assert_eq!(l.newly_lost_bytes, 1000);
        assert_eq!(l.reo_timer_us, Some(ms(5)));
        let l = r.detect_loss(ms(130));
        assert_eq!(l.newly_lost_bytes, 1000);
        assert_eq!(l.reo_timer_us, None);
    }

    /// RFC 8985 7.2: PTO = 2 * SRTT (+ WCDelAckT for one segment), 1 s without SRTT, at
    /// least tlpminto, never past the RTO.
    #[test]
    fn pto_formula() {
        let r = RackTlp::default();
        let far = ms(100_000);
        assert_eq!(r.pto_us(Some(ms(50)), far, 2, 0), ms(100));
        assert_eq!(r.pto_us(Some(ms(50)), far, 1, 0), ms(300));
        assert_eq!(r.pto_us(None, far, 3, 0), ms(1000));
        assert_eq!(r.pto_us(Some(ms(1)), far, 2, 0), ms(10));
        assert_eq!(r.pto_us(Some(ms(50)), ms(1080), 2, ms(1000)), ms(80));
        assert_eq!(r.pto_us(Some(ms(50)), ms(900), 2, ms(1000)), 0);
    }

    /// RFC 8985 7.3: new data first, else the highest un-SACKed segment; one episode at a
    /// time; FreeBSD's limit of probes without new data.
    #[test]
    fn tlp_probe_choice() {
        let mut r = RackTlp::default();
        send(&mut r, &[(0, 0), (1, 1), (2, 2)]);
        assert!(r.tlp_armable());
        assert_eq!(r.on_pto(true), TlpAction::SendNew);
        assert_eq!(r.tlp_end_seq(), None);
        send(&mut r, &[(3, 300)]);
        assert_eq!(r.tlp_end_seq(), Some(at(4)));
        assert!(!r.tlp_is_retrans());
        assert!(!r.tlp_armable());
        assert_eq!(r.on_pto(false), TlpAction::None);
        // The probe is delivered: episode over, no cwnd reduction.
        let o = r.on_ack(at(4), &[], ms(400));
        assert!(!o.tlp_loss_repaired);
        assert_eq!(r.tlp_end_seq(), None);

        send(&mut r, &[(4, 500), (5, 501), (6, 502)]);
        r.on_ack(at(4), &[sb(at(6), at(7))], ms(600)); // tail SACKed
        assert_eq!(r.on_pto(false), TlpAction::Retransmit(at(5), at(6)));
        assert_eq!(r.tlp_end_seq(), Some(at(7)));
        assert!(r.tlp_is_retrans());
        r.on_transmit(at(5), at(6), ms(700), true);
        assert_eq!(r.pipe(at(4), at(7)), 3000); // 3000 - 1000 SACKed + 1000 TLP copy
        assert_eq!(r.on_pto(false), TlpAction::None);

        // A D-SACK for the probe ends the episode; the next probe needs an RTT sample.
        let mut r = RackTlp::default();
        send(&mut r, &[(0, 0)]);
        assert_eq!(r.on_pto(false), TlpAction::Retransmit(at(0), at(1)));
        r.on_transmit(at(0), at(1), ms(10), true);
        let o = r.on_ack(at(1), &[sb(at(0), at(1))], ms(20));
        assert!(o.dsack && !o.tlp_loss_repaired);
        assert_eq!(r.tlp_end_seq(), None);
        assert!(!r.tlp_armable()); // no RTT sample since the probe
        send(&mut r, &[(1, 30), (2, 31)]);
        assert!(r.on_ack(at(2), &[], ms(130)).rtt_sample_us.is_some());
        assert!(r.tlp_armable());

        // tlp_limit: probes without new data in between.
        let mut cfg = RackConfig::default();
        for (limit, armable) in [(1, false), (2, true)] {
            cfg.tlp_limit = limit;
            let mut r = RackTlp::new(cfg);
            send(&mut r, &[(0, 0)]);
            assert_eq!(r.on_pto(true), TlpAction::SendNew);
            send(&mut r, &[(1, 50)]); // the probe itself does not reset the count
            r.on_ack(at(2), &[], ms(150));
            assert_eq!(r.tlp_end_seq(), None);
            assert_eq!(r.tlp_armable(), armable);
        }
        cfg.tlp_enabled = false;
        let mut r = RackTlp::new(cfg);
        send(&mut r, &[(0, 0)]);
        assert_eq!(r.on_pto(true), TlpAction::None);
    }

    /// RFC 8985 7.4: a TLP retransmission that was needed (ACK beyond TLP.end_seq without a
    /// DSACK for it) must reduce cwnd; a spurious one (DSACK, or a plain duplicate ACK) not.
    #[test]
    fn tlp_loss_detection() {
        let mut r = RackTlp::default();
        send(&mut r, &[(0, 0), (1, 1), (2, 2)]);
        assert_eq!(r.on_pto(false), TlpAction::Retransmit(at(2), at(3)));
        r.on_transmit(at(2), at(3), ms(200), true);
        let base = r.clone();

        // Repaired: the cumulative ACK reaches TLP.end_seq, later passes it, no DSACK.
        let o = r.on_ack(at(3), &[], ms(300));
        assert!(!o.tlp_loss_repaired);
        assert_eq!(r.tlp_end_seq(), Some(at(3)));
        send(&mut r, &[(3, 310)]);
        let o = r.on_ack(at(4), &[], ms(410));
        assert!(o.tlp_loss_repaired);
        assert_eq!(r.tlp_end_seq(), None);

        // Spurious: DSACK for the probe.
        let mut r = base.clone();
        r.on_ack(at(3), &[], ms(300));
        let o = r.on_ack(at(3), &[sb(at(2), at(3))], ms(301));
        assert!(o.dsack && !o.tlp_loss_repaired);
        assert_eq!(r.tlp_end_seq(), None);

        // Spurious: duplicate ACK without SACK at TLP.end_seq.
        let mut r = base;
        r.on_ack(at(3), &[], ms(300));
        let o = r.on_ack(at(3), &[], ms(301));
        assert!(!o.tlp_loss_repaired);
        assert_eq!(r.tlp_end_seq(), None);
    }

    /// RFC 8985 6.3: on RTO the first outstanding segment is lost, others if sent at least
    /// RACK.rtt + reo_wnd ago; `mark_all_lost` is go-back-N.
    #[test]
    fn rto_marking() {
        let mut r = RackTlp::default();
        r.set_srtt(ms(100));
        send(&mut r, &[(0, 0), (1, 50), (2, 150), (3, 151)]);
        r.on_ack(at(0), &[sb(at(3), at(4))], ms(251)); // RACK.rtt 100, min_RTT 100
        let mut all = r.clone();
        assert_eq!(r.on_rto(ms(260)), 2000); // seg 2: 150 + 100 + 25 > 260
        assert!(r.in_recovery());
        assert_eq!(r.next_to_retransmit(), Some((at(0), at(1))));
        assert_eq!(r.awaiting_retransmit_bytes(), 2000);
        assert_eq!(r.sacked_bytes(), 1000);
        check(&r);
        assert_eq!(all.mark_all_lost(), 3000);
        assert_eq!(all.pipe(at(0), at(4)), 0);
        check(&all);
    }

    #[test]
    fn from_outstanding_switch_in() {
        let base = 4_000_000_000u32;
        let mut r = RackTlp::from_outstanding(RackConfig::default(), base, base + 10_000, 0);
        r.set_srtt(ms(100));
        assert_eq!(r.len(), 1);
        assert_eq!(r.pipe(base, base + 10_000), 10_000);
        assert_eq!(r.rack_xmit_ts(), None);
        let o = r.on_ack(base, &[sb(base + 5000, base + 6000)], ms(50));
        assert_eq!(o.rtt_sample_us, None); // the send time is unknown
        assert_eq!(r.len(), 3);
        assert_eq!(r.rack_xmit_ts(), Some(0));
        assert_eq!(r.rack_rtt_us(), None); // SRTT stands in
        assert_eq!(r.min_rtt_us(), None);
        let l = r.detect_loss(ms(60));
        assert_eq!(l.reo_timer_us, Some(ms(40)));
        assert_eq!(r.detect_loss(ms(100)).newly_lost_bytes, 5000);
        assert_eq!(r.pipe(base, base + 10_000), 4000);
        assert_eq!(r.next_to_retransmit(), Some((base, base + 5000)));
        r.on_transmit(base, base + 1000, ms(101), true);
        assert_eq!(r.next_to_retransmit(), Some((base + 1000, base + 5000)));
        r.on_transmit(base + 10_000, base + 11_000, ms(102), false);
        check(&r);
        let o = r.on_ack(base + 1000, &[], ms(202));
        assert_eq!(o.rtt_sample_us, None); // retransmitted
        assert_eq!(r.rack_xmit_ts(), Some(0)); // no min_RTT nor TSecr to vouch for it
        check(&r);
        let o = r.on_ack(base + 11_000, &[], ms(203));
        assert_eq!(o.rtt_sample_us, Some(ms(101)));
        assert!(r.is_empty());
        check(&r);
    }

    #[test]
    fn pipe_arithmetic() {
        let mut r = RackTlp::default();
        send(&mut r, &[(0, 0), (1, 1), (2, 20), (3, 21), (4, 22)]);
        r.on_ack(at(0), &[sb(at(3), at(4))], ms(121));
        let l = r.detect_loss(ms(127));
        assert_eq!(l.newly_lost_bytes, 2000);
        assert_eq!(l.reo_timer_us, Some(ms(18)));
        r.on_transmit(at(0), at(1), ms(128), true); // lost, retransmitted: counts once
        r.on_transmit(at(4), at(5), ms(128), true); // not lost, retransmitted: twice
        assert_eq!(r.lost_bytes(), 2000);
        assert_eq!(r.retransmitted_bytes(), 2000);
        assert_eq!(r.awaiting_retransmit_bytes(), 1000);
        assert_eq!(r.next_to_retransmit(), Some((at(1), at(2))));
        assert_eq!(r.pipe(at(0), at(5)), 5000 - 1000 - 2000 + 2000);
        check(&r);
        let o = r.on_ack(at(1), &[sb(at(3), at(4))], ms(240));
        assert_eq!(o.delivered_bytes, 1000);
        assert_eq!(r.pipe(at(1), at(5)), 4000 - 1000 - 1000 + 1000);
        check(&r);
    }

    #[test]
    fn splits_and_map_limit() {
        let mut r = RackTlp::default();
        r.on_transmit(at(0), at(2), 0, false);
        r.on_transmit(at(0) + 500, at(1), ms(1), true);
        let v: Vec<_> = r
            .entries()
            .map(|e| (e.r_start, e.r_end, e.r_rtr_cnt))
            .collect();
        assert_eq!(
            v,
            vec![
                (at(0), at(0) + 500, 1),
                (at(0) + 500, at(1), 2),
                (at(1), at(2), 1)
            ]
        );
        check(&r);

        let cfg = RackConfig {
            map_limit: 2,
            ..RackConfig::default()
        };
        let mut r = RackTlp::new(cfg);
        send(&mut r, &[(0, 0), (1, 1), (2, 2)]); // the third merges into the second
        assert_eq!(r.len(), 2);
        let o = r.on_ack(at(0), &[sb(at(1), at(2))], ms(100)); // split refused
        assert_eq!(o.newly_sacked_bytes, 0);
        let o = r.on_ack(at(0), &[sb(at(1), at(3))], ms(100));
        assert_eq!(o.newly_sacked_bytes, 2000);
        check(&r);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Send(u32),
        Rexmit(u32, u32),
        Ack(u32, Vec<(i32, u32)>),
        Detect,
        Rto,
        AllLost,
        Pto(bool),
        RexmitNext,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1u32..3000).prop_map(Op::Send),
            1 => (0u32..20_000, 1u32..3000).prop_map(|(o, l)| Op::Rexmit(o, l)),
            4 => (0u32..20_000, proptest::collection::vec((-3000i32..20_000, 0u32..4000), 0..5))
                .prop_map(|(c, b)| Op::Ack(c, b)),
            2 => Just(Op::Detect),
            1 => Just(Op::Rto),
            1 => Just(Op::AllLost),
            1 => any::<bool>().prop_map(Op::Pto),
            2 => Just(Op::RexmitNext),
        ]
    }

    proptest! {
        #[test]
        fn random_sequences(
            base in prop_oneof![Just(u32::MAX - 5000), any::<u32>()],
            limit in prop_oneof![Just(1500usize), 1usize..8],
            ops in proptest::collection::vec((op(), 0u64..50_000), 1..80),
        ) {
            let cfg = RackConfig { map_limit: limit, ..RackConfig::default() };
            let mut r = RackTlp::new(cfg);
            r.on_transmit(base, base.wrapping_add(1000), 0, false);
            let mut sent: u64 = 1000;
            let mut delivered: u64 = 0;
            let mut now = 0u64;
            for (o, dt) in ops {
                now += dt;
                let una = r.snd_una();
                let max0 = r.snd_max();
                let out = max0.wrapping_sub(una);
                match o {
                    Op::Send(len) => {
                        let s = r.snd_max();
                        r.on_transmit(s, s.wrapping_add(len), now, false);
                    }
                    Op::Rexmit(off, len) => {
                        let s = una.wrapping_add(off % out.max(1));
                        r.on_transmit(s, s.wrapping_add(len), now, true);
                    }
                    Op::Ack(c, blocks) => {
                        let cum = una.wrapping_add(c % (out + 1));
                        let sacks: Vec<SackBlock> = blocks.iter().map(|&(o, l)| {
                            let s = una.wrapping_add(o as u32);
                            sb(s, s.wrapping_add(l))
                        }).collect();
                        let res = r.on_ack(cum, &sacks, now);
                        prop_assert_eq!(res.acked_bytes, cum.wrapping_sub(una));
                        delivered += res.delivered_bytes as u64;
                    }
                    Op::Detect => {
                        let l = r.detect_loss(now);
                        prop_assert!(l.reo_timer_us.is_none_or(|t| t > 0));
                    }
                    Op::Rto => { r.on_rto(now); }
                    Op::AllLost => { r.mark_all_lost(); }
                    Op::Pto(new) => {
                        match r.on_pto(new) {
                            TlpAction::SendNew => {
                                let s = r.snd_max();
                                r.on_transmit(s, s.wrapping_add(1000), now, false);
                            }
                            TlpAction::Retransmit(s, e) => {
                                prop_assert!(seq_lt(s, e) && seq_leq(e, r.snd_max()));
                                r.on_transmit(s, e, now, true);
                            }
                            TlpAction::None => {}
                        }
                    }
                    Op::RexmitNext => {
                        if let Some((s, e)) = r.next_to_retransmit() {
                            prop_assert!(seq_geq(s, una) && seq_lt(s, e));
                            let e2 = seq_min(e, s.wrapping_add(700));
                            r.on_transmit(s, e2, now, true);
                        }
                    }
                }
                sent += r.snd_max().wrapping_sub(max0) as u64;
                check(&r);
                let unsacked: u64 = r.entries().filter(|e| !e.is_sacked()).map(|e| e.len() as u64).sum();
                prop_assert_eq!(sent, delivered + unsacked);
                if let Some((s, e)) = r.next_to_retransmit() {
                    let first = r.entries().find(|x| x.awaits_retransmit()).unwrap();
                    prop_assert_eq!((s, e), (first.r_start, first.r_end));
                    prop_assert!(r.lost_bytes() >= e.wrapping_sub(s));
                }
            }
        }
    }
}
