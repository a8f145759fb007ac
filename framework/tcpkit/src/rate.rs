//! Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation), what Linux's
//! tcp_rate.c does: each transmission records the connection's delivery state, and each
//! ACK that delivers data (cumulatively or by SACK) compares the state then with the state
//! now, giving a [`RateSample`] for a rate-based CC module (`cong_control`).
//!
//! The send state is kept per run of data sent together (one burst: the same send time and
//! state), not per byte; SACKs and retransmissions split runs where they need to. Memory is
//! bounded by [`DeliveryRate::MAX_RUNS`]: beyond it new data joins the last run (coarser
//! samples, never a wrong total).
//!
//! What the caller does (plugtcp's engine):
//! - [`DeliveryRate::on_send`] for every transmission, new or retransmitted, with the bytes
//!   in flight before it;
//! - [`DeliveryRate::on_app_limited`] when it had room to send but no data;
//! - [`DeliveryRate::on_ack`] for every acceptable ACK, with its cumulative ACK and SACK
//!   blocks, before its own processing moves `snd_una`;
//! - [`DeliveryRate::mark_lost`] for bytes its loss detection gives up on;
//! - [`DeliveryRate::sample`] once the ACK is processed: the sample for `cong_control`.

use std::collections::VecDeque;

use plugtcp_abi::cc::{rs_flags, RateSample};
use plugtcp_abi::segment::SackBlock;
use plugtcp_abi::seq::{seq_gt, seq_leq, seq_lt};

/// The delivery state of a run of data when it was (last) sent.
#[derive(Clone, Copy, Debug)]
struct TxRun {
    start: u32,
    end: u32,
    /// When it was sent (ns).
    sent_ns: u64,
    /// The connection's `first_sent_ns`, `delivered_ns`, `delivered` and `lost` then.
    first_sent_ns: u64,
    delivered_ns: u64,
    delivered: u64,
    lost: u64,
    delivered_ce: u64,
    /// Bytes in flight once it was sent.
    tx_in_flight: u32,
    app_limited: bool,
    retrans: bool,
    /// Delivered by a SACK (not counted again by the cumulative ACK).
    sacked: bool,
}

/// The newest delivered run of the ACK being processed (the draft's rs fields).
#[derive(Clone, Copy, Debug, Default)]
struct Newest {
    prior_delivered: u64,
    sent_ns: u64,
    send_elapsed_ns: u64,
    ack_elapsed_ns: u64,
    tx_in_flight: u32,
    lost: u64,
    delivered_ce: u64,
    app_limited: bool,
    retrans: bool,
}

/// A connection's delivery-rate estimator (the draft's C.* and per-packet P.* state).
#[derive(Default)]
pub struct DeliveryRate {
    /// Bytes delivered so far (C.delivered), when the last delivery was seen
    /// (C.delivered_time), and the send time of the newest delivered data
    /// (C.first_sent_time), ns.
    delivered: u64,
    delivered_ns: u64,
    first_sent_ns: u64,
    /// Bytes marked lost so far, and delivered by ACKs with ECE.
    lost: u64,
    delivered_ce: u64,
    /// C.app_limited: the delivered count at which the current app-limited phase ends (0:
    /// not app-limited).
    app_limited_until: u64,
    /// Allocated on the first send: an idle connection keeps one pointer.
    #[allow(clippy::box_collection)]
    runs: Option<Box<VecDeque<TxRun>>>,
    /// The ACK being processed.
    newest: Option<Newest>,
    newly_acked: u32,
    newly_lost: u32,
    ece: bool,
}

impl DeliveryRate {
    /// Bound on tracked runs (each is one burst of data in flight).
    pub const MAX_RUNS: usize = 8192;

    /// Data `[start, end)` left at `now` (ns), with `in_flight` bytes outstanding before it;
    /// `retrans` for a retransmission (its runs are stamped again).
    pub fn on_send(&mut self, start: u32, end: u32, now: u64, in_flight: u32, retrans: bool) {
        if !seq_lt(start, end) {
            return;
        }
        if in_flight == 0 {
            // Nothing in flight: the sample interval starts now (the draft's
            // "if no packets in flight").
            self.first_sent_ns = now;
            self.delivered_ns = now;
        }
        let runs = self.runs.get_or_insert_with(Default::default);
        let run = TxRun {
            start,
            end,
            sent_ns: now,
            first_sent_ns: self.first_sent_ns,
            delivered_ns: self.delivered_ns,
            delivered: self.delivered,
            lost: self.lost,
            delivered_ce: self.delivered_ce,
            tx_in_flight: in_flight.saturating_add(end.wrapping_sub(start)),
            app_limited: self.app_limited_until != 0,
            retrans,
            sacked: false,
        };
        let tail = runs.back().map(|r| r.end);
        if tail.is_none_or(|t| seq_leq(t, start)) {
            // New data at the tail (the usual case): joins the last run when sent in the
            // same burst with the same state, or when the list is full.
            let full = runs.len() >= Self::MAX_RUNS;
            if let Some(last) = runs.back_mut() {
                let same_burst = last.end == start
                    && last.sent_ns == now
                    && last.delivered == run.delivered
                    && last.app_limited == run.app_limited
                    && last.retrans == retrans
                    && !last.sacked;
                if same_burst || (full && last.end == start) {
                    last.end = end;
                    last.tx_in_flight = run.tx_in_flight;
                    return;
                }
            }
            if runs.len() < Self::MAX_RUNS || tail.is_none() {
                runs.push_back(run);
            } else if let Some(last) = runs.back_mut() {
                last.end = end;
            }
            return;
        }
        // Data sent again (or out of order within the map): restamp what it covers.
        split_at(runs, start);
        split_at(runs, end);
        let mut covered = start;
        let first = runs.partition_point(|r| seq_leq(r.end, start));
        for r in runs.iter_mut().skip(first) {
            if !seq_lt(r.start, end) {
                break;
            }
            if !r.sacked {
                let keep = (r.start, r.end);
                *r = TxRun {
                    start: keep.0,
                    end: keep.1,
                    ..run
                };
            }
            covered = r.end;
        }
        if seq_lt(covered, end) && runs.back().is_some_and(|r| seq_leq(r.end, covered)) {
            runs.push_back(TxRun {
                start: covered,
                ..run
            });
        }
    }

    /// The application, not the network, limits sending now: `in_flight` bytes are out and
    /// there was room for more (the draft's CheckIfApplicationLimited).
    pub fn on_app_limited(&mut self, in_flight: u32) {
        self.app_limited_until = (self.delivered + in_flight as u64).max(1);
    }

    /// Whether the estimator considers the connection application-limited.
    pub fn app_limited(&self) -> bool {
        self.app_limited_until != 0
    }

    /// An acceptable ACK at `now`: cumulative ACK `ack` (bytes before it are delivered) and
    /// its SACK blocks; `ece` when it carried ECN-Echo. Counts what it newly delivers.
    pub fn on_ack(&mut self, ack: u32, sacks: &[SackBlock], now: u64, ece: bool) {
        self.ece |= ece;
        let Some(runs) = self.runs.as_deref_mut() else {
            return;
        };
        // SACKed ranges first (they lie above the cumulative ACK).
        for b in sacks {
            if !seq_lt(b.start, b.end) || seq_leq(b.end, ack) {
                continue;
            }
            let start = if seq_lt(b.start, ack) { ack } else { b.start };
            split_at(runs, start);
            split_at(runs, b.end);
            let first = runs.partition_point(|r| seq_leq(r.end, start));
            let mut i = first;
            while i < runs.len() && seq_lt(runs[i].start, b.end) {
                if !runs[i].sacked {
                    runs[i].sacked = true;
                    let r = runs[i];
                    Self::deliver(
                        &mut self.delivered,
                        &mut self.delivered_ns,
                        &mut self.first_sent_ns,
                        &mut self.newest,
                        &r,
                        now,
                    );
                    self.newly_acked = self.newly_acked.saturating_add(r.end.wrapping_sub(r.start));
                }
                i += 1;
            }
        }
        // The cumulative ACK.
        while let Some(r) = runs.front_mut() {
            if !seq_lt(r.start, ack) {
                break;
            }
            let whole = seq_leq(r.end, ack);
            let upto = if whole { r.end } else { ack };
            if !r.sacked {
                let part = TxRun { end: upto, ..*r };
                Self::deliver(
                    &mut self.delivered,
                    &mut self.delivered_ns,
                    &mut self.first_sent_ns,
                    &mut self.newest,
                    &part,
                    now,
                );
                self.newly_acked = self
                    .newly_acked
                    .saturating_add(upto.wrapping_sub(part.start));
            }
            if whole {
                runs.pop_front();
            } else {
                r.start = ack;
            }
        }
    }

    /// The draft's UpdateRateSample for run `r` delivered at `now`.
    fn deliver(
        delivered: &mut u64,
        delivered_ns: &mut u64,
        first_sent_ns: &mut u64,
        newest: &mut Option<Newest>,
        r: &TxRun,
        now: u64,
    ) {
        *delivered += r.end.wrapping_sub(r.start) as u64;
        *delivered_ns = now;
        let newer = newest.is_none_or(|n| {
            r.delivered > n.prior_delivered
                || (r.delivered == n.prior_delivered && r.sent_ns > n.sent_ns)
        });
        if newer {
            *newest = Some(Newest {
                prior_delivered: r.delivered,
                sent_ns: r.sent_ns,
                send_elapsed_ns: r.sent_ns.saturating_sub(r.first_sent_ns),
                ack_elapsed_ns: now.saturating_sub(r.delivered_ns),
                tx_in_flight: r.tx_in_flight,
                lost: r.lost,
                delivered_ce: r.delivered_ce,
                app_limited: r.app_limited,
                retrans: r.retrans,
            });
            // The next sample's send interval starts at this data's send time.
            *first_sent_ns = r.sent_ns;
        }
    }

    /// `bytes` were marked lost (by RACK, the SACK scoreboard, or a timeout).
    pub fn mark_lost(&mut self, bytes: u32) {
        self.lost += bytes as u64;
        self.newly_lost = self.newly_lost.saturating_add(bytes);
    }

    /// The sample of the ACK just processed (the draft's GenerateRateSample), with the
    /// connection's `min_rtt_us` (0: unknown), its RTT sample `rtt_us` (0: none) and the
    /// bytes in flight before and after it. `None` when the ACK delivered nothing.
    pub fn sample(
        &mut self,
        now: u64,
        min_rtt_us: u32,
        rtt_us: u32,
        prior_in_flight: u32,
        in_flight: u32,
    ) -> Option<RateSample> {
        let newest = self.newest.take();
        let newly_acked = std::mem::take(&mut self.newly_acked);
        let newly_lost = std::mem::take(&mut self.newly_lost);
        let ece = std::mem::take(&mut self.ece);
        if newly_acked == 0 && newly_lost == 0 {
            return None;
        }
        if ece {
            self.delivered_ce += newly_acked as u64;
        }
        // The app-limited phase ends once what was in flight when it began is delivered.
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        let mut rs = RateSample {
            now_ns: now,
            flags: if ece { rs_flags::ECE } else { 0 },
            newly_acked,
            newly_lost,
            rtt_us,
            prior_in_flight,
            in_flight,
            tot_delivered: self.delivered,
            tot_lost: self.lost,
            tot_delivered_ce: self.delivered_ce,
            ..RateSample::default()
        };
        let Some(n) = newest else {
            return Some(rs);
        };
        rs.prior_delivered = n.prior_delivered;
        rs.delivered = self.delivered - n.prior_delivered;
        rs.tx_in_flight = n.tx_in_flight;
        rs.lost = (self.lost - n.lost).min(u32::MAX as u64) as u32;
        rs.is_app_limited = n.app_limited;
        if n.retrans {
            rs.flags |= rs_flags::RETRANS;
        }
        // The longer of the send and ACK intervals: ACK compression cannot make the rate
        // look higher than the sending was.
        let interval_ns = n.send_elapsed_ns.max(n.ack_elapsed_ns);
        rs.interval_us = interval_ns / 1000;
        // An interval shorter than the path's minimum RTT is a measurement artefact
        // (Linux: "rate would be too high").
        if interval_ns == 0 || (min_rtt_us > 0 && rs.interval_us < min_rtt_us as u64) {
            return Some(rs);
        }
        // ECE-acknowledged bytes over the same interval as `delivered`.
        rs.delivered_ce = (self.delivered_ce - n.delivered_ce).min(rs.delivered);
        rs.delivery_rate = (rs.delivered as u128 * 1_000_000_000 / interval_ns as u128) as u64;
        rs.flags |= rs_flags::VALID;
        Some(rs)
    }

    /// Bytes delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Bytes marked lost so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Forgets the send state (after a timeout, everything in flight is lost and will be
    /// sent again; new transmissions record fresh state).
    pub fn clear_runs(&mut self) {
        if let Some(r) = self.runs.as_deref_mut() {
            r.clear();
        }
    }

    /// Runs tracked (memory check in tests).
    pub fn runs(&self) -> usize {
        self.runs.as_ref().map_or(0, |r| r.len())
    }
}

/// Splits the run containing `seq` (strictly inside it) in two.
///
/// Not once the list holds [`DeliveryRate::MAX_RUNS`]: SACK blocks come from the peer, and a
/// hostile one could otherwise split the map byte by byte. The run is then taken whole
/// (a SACK marks all of it; the totals stay right, the sample is coarser).
fn split_at(runs: &mut VecDeque<TxRun>, seq: u32) {
    if runs.len() >= DeliveryRate::MAX_RUNS {
        return;
    }
    let i = runs.partition_point(|r| seq_leq(r.end, seq));
    let Some(r) = runs.get(i).copied() else {
        return;
    };
    if seq_gt(seq, r.start) && seq_lt(seq, r.end) {
        runs[i].end = seq;
        runs.insert(i + 1, TxRun { start: seq, ..r });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn block(start: u32, end: u32) -> SackBlock {
        SackBlock { start, end }
    }

    #[test]
    fn an_ack_clocked_flow_measures_its_bottleneck_rate() {
        // 100 segments of 1000 bytes in flight over a 50 ms path whose bottleneck passes one
        // segment per ms (1 MB/s); every ACK clocks out one new segment.
        let mut d = DeliveryRate::default();
        let mut acks = std::collections::VecDeque::new();
        let (mut sent, mut acked, mut last_arrival) = (0u32, 0u32, 0u64);
        let mut send = |d: &mut DeliveryRate,
                        acks: &mut std::collections::VecDeque<(u64, u32)>,
                        now: u64,
                        acked: u32| {
            d.on_send(
                sent * 1000,
                (sent + 1) * 1000,
                now,
                (sent - acked) * 1000,
                false,
            );
            last_arrival = (now + 50 * MS).max(last_arrival + MS);
            acks.push_back((last_arrival, sent + 1));
            sent += 1;
        };
        for _ in 0..100 {
            send(&mut d, &mut acks, 0, acked);
        }
        let mut last = None;
        for _ in 0..1000 {
            let Some((now, end)) = acks.pop_front() else {
                break;
            };
            d.on_ack(end * 1000, &[], now, false);
            acked = end;
            last = d.sample(now, 50_000, 100_000, 100_000, 99_000);
            send(&mut d, &mut acks, now, acked);
        }
        let rs = last.unwrap();
        assert!(rs.valid(), "{rs:?}");
        assert!(!rs.is_app_limited);
        assert_eq!(rs.newly_acked, 1000);
        assert!(rs.delivery_rate.abs_diff(1_000_000) <= 10_000, "{rs:?}");
        assert_eq!(rs.tot_delivered, 1000 * 1000);
        assert!(d.runs() <= 101);
    }

    #[test]
    fn sacked_data_counts_once_and_retransmissions_sample_from_their_resend() {
        let mut d = DeliveryRate::default();
        d.on_send(0, 4000, 0, 0, false);
        // Bytes 1000..4000 SACKed at 10 ms: 3000 delivered, sampled from the burst.
        d.on_ack(0, &[block(1000, 4000)], 10 * MS, false);
        let rs = d.sample(10 * MS, 0, 0, 4000, 1000).unwrap();
        assert_eq!(rs.newly_acked, 3000);
        assert_eq!(rs.delivered, 3000);
        assert!(rs.valid());
        assert_eq!(rs.delivery_rate, 300_000);
        // The hole is lost and sent again at 12 ms.
        d.mark_lost(1000);
        d.on_send(0, 1000, 12 * MS, 0, true);
        // The cumulative ACK at 22 ms covers it all, but only the hole is new.
        d.on_ack(4000, &[], 22 * MS, false);
        let rs = d.sample(22 * MS, 0, 10_000, 1000, 0).unwrap();
        assert_eq!(rs.newly_acked, 1000);
        assert_eq!(rs.tot_delivered, 4000);
        assert_eq!(rs.prior_delivered, 3000);
        assert_eq!(rs.delivered, 1000);
        assert_eq!(rs.flags & rs_flags::RETRANS, rs_flags::RETRANS);
        assert_eq!(rs.tot_lost, 1000);
        // Lost before the retransmission was sent: not in this sample's `lost`.
        assert_eq!(rs.lost, 0);
        assert_eq!(d.runs(), 0);
    }

    #[test]
    fn app_limited_phases_mark_samples_until_their_data_is_delivered() {
        let mut d = DeliveryRate::default();
        d.on_app_limited(0);
        d.on_send(0, 1000, 0, 0, false);
        d.on_ack(1000, &[], 10 * MS, false);
        let rs = d.sample(10 * MS, 0, 10_000, 1000, 0).unwrap();
        assert!(rs.is_app_limited);
        assert!(!d.app_limited());
        d.on_send(1000, 2000, 20 * MS, 0, false);
        d.on_ack(2000, &[], 30 * MS, true);
        let rs = d.sample(30 * MS, 0, 10_000, 1000, 0).unwrap();
        assert!(!rs.is_app_limited);
        assert_eq!(rs.flags & rs_flags::ECE, rs_flags::ECE);
        assert_eq!(rs.delivered_ce, 1000);
        assert_eq!(rs.tot_delivered_ce, 1000);
    }

    #[test]
    fn intervals_shorter_than_min_rtt_are_not_rates() {
        let mut d = DeliveryRate::default();
        d.on_send(0, 1000, 0, 0, false);
        d.on_ack(1000, &[], MS, false);
        let rs = d.sample(MS, 5_000, 0, 1000, 0).unwrap();
        assert!(!rs.valid());
        assert_eq!(rs.delivery_rate, 0);
        assert_eq!(rs.newly_acked, 1000);
    }

    #[test]
    fn hostile_sack_blocks_cannot_grow_the_map() {
        // One 4 MB burst, then ACKs SACKing 4 one-byte ranges each, never the same.
        let mut d = DeliveryRate::default();
        d.on_send(0, 4_000_000, 0, 0, false);
        for k in 0..10_000u32 {
            let blocks: Vec<SackBlock> = (0..4)
                .map(|j| {
                    let s = 1 + (k * 4 + j) * 97 % 3_999_000;
                    block(s, s + 1)
                })
                .collect();
            d.on_ack(0, &blocks, k as u64 * MS, false);
            let _ = d.sample(k as u64 * MS, 0, 0, 0, 0);
            assert!(d.runs() <= DeliveryRate::MAX_RUNS + 1, "{}", d.runs());
        }
        // The cumulative ACK still accounts every byte exactly once.
        d.on_ack(4_000_000, &[], 20 * 1000 * MS, false);
        let _ = d.sample(20 * 1000 * MS, 0, 0, 0, 0);
        assert_eq!(d.delivered(), 4_000_000);
        assert_eq!(d.runs(), 0);
    }

    #[test]
    fn the_send_map_stays_bounded() {
        let mut d = DeliveryRate::default();
        for i in 0..20_000u32 {
            d.on_send(i * 100, i * 100 + 100, i as u64 * 1000, i * 100, false);
        }
        assert!(d.runs() <= DeliveryRate::MAX_RUNS);
        d.on_ack(2_000_000, &[], 40 * MS, false);
        let rs = d.sample(40 * MS, 0, 0, 0, 0).unwrap();
        assert_eq!(rs.newly_acked, 2_000_000);
        assert_eq!(d.runs(), 0);
    }
}
