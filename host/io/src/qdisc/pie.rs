//! PIE (RFC 8033), following Linux's sch_pie/pie.c with its default timestamp-based delay
//! estimate (`dq_rate_estimator` off): the queue delay is the sojourn time of the packet last
//! dequeued (0 if it left the queue empty), the drop probability is updated every `tupdate`
//! from that delay, and arrivals are dropped (or CE-marked) at enqueue with that probability.
//!
//! Linux runs the update from a timer; here updates are driven lazily by `enqueue`/`dequeue`
//! calls, which first run every update instant `k * tupdate <= now` they missed. Nothing else
//! changes the inputs between calls, so this gives the same result as a timer. (Linux arms its
//! first update 500 ms after creation; here the first is at `tupdate`.)

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{count_dequeue, set_ce, Fifo, QPacket, Qdisc, QdiscStats, QueueLimit, DEFAULT_MTU, MS};

const NS_PER_SEC: f64 = 1e9;

/// Parameters of [`super::QdiscConfig::Pie`]; the defaults are Linux's.
#[derive(Clone, Debug, PartialEq)]
pub struct PieConfig {
    /// Target queue delay (15 ms).
    pub target_ns: u64,
    /// Interval between drop-probability updates (15 ms); 0 disables updates.
    pub tupdate_ns: u64,
    /// Gain on the delay error, per second (0.125; Linux's `alpha 2`, in 1/16 units).
    pub alpha: f64,
    /// Gain on the delay trend, per second (1.25; Linux's `beta 20`).
    pub beta: f64,
    /// Burst allowance after the queue was quiet (150 ms).
    pub max_burst_ns: u64,
    /// No early drops while fewer than two of these are queued (1514).
    pub mtu: usize,
    /// Scale the probability by packet size / mtu (off).
    pub bytemode: bool,
    /// RFC 8033's derandomization: drop only once the accumulated probability reaches 0.85,
    /// always once it reaches 8.5. Linux always does this, so the default is on.
    pub derandomize: bool,
}

impl Default for PieConfig {
    fn default() -> Self {
        PieConfig {
            target_ns: 15 * MS,
            tupdate_ns: 15 * MS,
            alpha: 0.125,
            beta: 1.25,
            max_burst_ns: 150 * MS,
            mtu: DEFAULT_MTU,
            bytemode: false,
            derandomize: true,
        }
    }
}

pub(crate) struct Pie {
    cfg: PieConfig,
    ecn: bool,
    limit: QueueLimit,
    q: Fifo,
    rng: Xoshiro256PlusPlus,
    vars: Vars,
    next_update: u64,
    stats: QdiscStats,
}

#[derive(Clone, Debug, PartialEq)]
struct Vars {
    prob: f64,
    accu_prob: f64,
    qdelay: u64,
    qdelay_old: u64,
    burst_time: u64,
    dq_tstamp: Option<u64>,
}

impl Pie {
    pub(crate) fn new(cfg: &PieConfig, limit: QueueLimit, ecn: bool, seed: u64) -> Self {
        let mut pie = Pie {
            cfg: cfg.clone(),
            ecn,
            limit,
            q: Fifo::default(),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            vars: Vars {
                prob: 0.0,
                accu_prob: 0.0,
                qdelay: 0,
                qdelay_old: 0,
                burst_time: 0,
                dq_tstamp: None,
            },
            next_update: cfg.tupdate_ns,
            stats: QdiscStats::default(),
        };
        pie.vars_init();
        pie
    }

    /// The current drop probability, in [0, 1].
    #[cfg(test)]
    pub(crate) fn prob(&self) -> f64 {
        self.vars.prob
    }

    /// Linux's `pie_vars_init` (the measurement restart; prob and delays are kept).
    fn vars_init(&mut self) {
        self.vars.dq_tstamp = None;
        self.vars.accu_prob = 0.0;
        self.vars.burst_time = self.cfg.max_burst_ns;
    }

    /// Runs every probability update due at or before `now`.
    fn catch_up(&mut self, now: u64) {
        let step = self.cfg.tupdate_ns;
        if step == 0 {
            return;
        }
        let mut rounds = 0u32;
        while self.next_update <= now {
            let before = self.vars.clone();
            self.calculate_probability();
            self.next_update = self.next_update.saturating_add(step);
            rounds += 1;
            // A fixed point (typically an idle queue) means the remaining updates change
            // nothing: skip to the first instant after `now`. The state reaches one within a
            // few hundred rounds; the cap only bounds the work on pathological input.
            if self.vars == before || rounds >= 100_000 {
                if self.next_update <= now {
                    let missed = (now - self.next_update) / step + 1;
                    self.next_update = self.next_update.saturating_add(missed.saturating_mul(step));
                }
                if self.next_update <= now {
                    // Saturated at the end of time.
                    self.next_update = now.saturating_add(1);
                }
                break;
            }
        }
    }

    /// Linux's `pie_calculate_probability` without the rate estimator.
    fn calculate_probability(&mut self) {
        let backlog = self.q.bytes();
        let v = &mut self.vars;
        let qdelay = v.qdelay;
        let qdelay_old = v.qdelay_old;
        let mut update_prob = !(qdelay == 0 && backlog != 0);

        let mut alpha = self.cfg.alpha;
        let mut beta = self.cfg.beta;
        // RFC 8033 section 5.2 / Linux: smaller steps while the probability is small.
        if v.prob < 0.1 {
            alpha /= 2.0;
            beta /= 2.0;
            let mut power = 100.0;
            while v.prob < 1.0 / power && power <= 1_000_000.0 {
                alpha /= 4.0;
                beta /= 4.0;
                power *= 10.0;
            }
        }
        let err = (qdelay as f64 - self.cfg.target_ns as f64) / NS_PER_SEC;
        let trend = (qdelay as f64 - qdelay_old as f64) / NS_PER_SEC;
        let mut delta = alpha * err + beta * trend;
        // Increase by at most 2% per update once the probability is high.
        if delta > 0.02 && v.prob >= 0.1 {
            delta = 0.02;
        }
        // Very high delay (> 250 ms): push harder.
        if qdelay > 250 * MS {
            delta += 0.02;
        }
        let mut prob = v.prob + delta;
        if prob >= 1.0 {
            prob = 1.0;
            update_prob = false;
        } else if prob < 0.0 || !prob.is_finite() {
            prob = 0.0;
        }
        // Two updates in a row with no delay: decay quickly.
        if qdelay == 0 && qdelay_old == 0 && update_prob {
            prob -= prob / 64.0;
        }
        v.prob = prob;
        let target = self.cfg.target_ns;
        if qdelay < target / 2 && qdelay_old < target / 2 && prob == 0.0 {
            self.vars_init();
        }
        self.vars.qdelay_old = qdelay;
    }

    /// Linux's `pie_drop_early`.
    fn drop_early(&mut self, backlog: usize, len: usize) -> bool {
        let v = &mut self.vars;
        if v.burst_time > 0 {
            return false;
        }
        if v.qdelay < self.cfg.target_ns / 2 && v.prob < 0.2 {
            return false;
        }
        let mtu = self.cfg.mtu;
        if backlog < mtu.saturating_mul(2) {
            return false;
        }
        let p = if self.cfg.bytemode && len <= mtu && mtu > 0 {
            v.prob * len as f64 / mtu as f64
        } else {
            v.prob
        };
        if self.cfg.derandomize {
            if p == 0.0 {
                v.accu_prob = 0.0;
            } else {
                v.accu_prob += p;
            }
            if v.accu_prob < 0.85 {
                return false;
            }
            if v.accu_prob >= 8.5 {
                return true;
            }
        }
        if self.rng.random::<f64>() < p {
            v.accu_prob = 0.0;
            return true;
        }
        false
    }
}

impl Qdisc for Pie {
    fn enqueue(&mut self, now: u64, mut pkt: QPacket) -> Result<(), QPacket> {
        self.catch_up(now);
        if !self
            .limit
            .admits(self.q.len(), self.q.bytes(), pkt.data.len())
        {
            self.stats.dropped_overlimit += 1;
            self.vars.accu_prob = 0.0;
            return Err(pkt);
        }
        if self.drop_early(self.q.bytes(), pkt.data.len()) {
            // Mark instead of dropping only while the probability is at most 10% (above
            // that, marking would let unresponsive ECN traffic fill the queue).
            if !(self.ecn && self.vars.prob <= 0.1 && set_ce(&mut pkt.data)) {
                self.stats.dropped_aqm += 1;
                self.vars.accu_prob = 0.0;
                return Err(pkt);
            }
            self.stats.ce_marked += 1;
        }
        pkt.enqueued_at = now;
        self.q.push(pkt);
        self.stats.enqueued += 1;
        Ok(())
    }

    fn dequeue(&mut self, now: u64) -> Option<QPacket> {
        self.catch_up(now);
        let pkt = self.q.pop()?;
        let v = &mut self.vars;
        v.qdelay = if self.q.bytes() > 0 {
            now.saturating_sub(pkt.enqueued_at)
        } else {
            0
        };
        let dtime = v.dq_tstamp.map_or(0, |t| now.saturating_sub(t));
        v.dq_tstamp = Some(now);
        if dtime > 0 {
            v.burst_time = v.burst_time.saturating_sub(dtime);
        }
        count_dequeue(&mut self.stats, &pkt);
        Some(pkt)
    }

    fn backlog_bytes(&self) -> usize {
        self.q.bytes()
    }

    fn backlog_packets(&self) -> usize {
        self.q.len()
    }

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn overload(cfg: &PieConfig, ecn: bool, ect: u8) -> (Pie, Vec<(u64, u64)>) {
        let mut q = Pie::new(cfg, QueueLimit::packets(10_000), ecn, 5);
        // One 1500-byte packet per ms served, offered every 0.5 ms: twice the link rate.
        let mut out = Vec::new();
        let mut busy_until = 0;
        for seq in 0..(8000 * 2) {
            let t = u64::from(seq) * MS / 2;
            let _ = q.enqueue(t, qp(udp4(1500, 1, seq, ect), 0));
            if t >= busy_until {
                if let Some(p) = q.dequeue(t) {
                    out.push((t, t - p.enqueued_at));
                    busy_until = t + MS;
                }
            }
        }
        (q, out)
    }

    #[test]
    fn pie_settles_near_target_under_overload() {
        let (q, out) = overload(&PieConfig::default(), false, 0);
        let half = &out[out.len() / 2..];
        let mean = half.iter().map(|o| o.1).sum::<u64>() / half.len() as u64;
        assert!((5 * MS..40 * MS).contains(&mean), "mean delay {mean}");
        // Dropping about half the arrivals is what holds an unresponsive 2x load.
        assert!(q.prob() > 0.3, "prob {}", q.prob());
        assert!(q.stats().dropped_aqm > 0);
        assert_eq!(q.stats().dropped_overlimit, 0);
        // The link stays busy.
        assert!(out.len() > 7900, "served {}", out.len());
    }

    #[test]
    fn pie_marks_only_while_prob_is_low() {
        // ECT traffic with ecn: marks while prob <= 10%, then drops (2x overload needs ~50%).
        let (q, _) = overload(&PieConfig::default(), true, 0b10);
        assert!(q.stats().ce_marked > 0);
        assert!(q.stats().dropped_aqm > 0);
        assert!(q.prob() > 0.1);
    }

    #[test]
    fn pie_burst_allowance_and_idle_decay() {
        let mut q = Pie::new(&PieConfig::default(), QueueLimit::default(), false, 1);
        // A 100-packet burst at t = 0 is accepted whole: burst allowance.
        for i in 0..100 {
            assert!(q.enqueue(0, qp(udp4(1500, 1, i, 0), 0)).is_ok());
        }
        let mut t = 0;
        while q.dequeue(t).is_some() {
            t += MS;
        }
        assert!(q.prob() > 0.0);
        // After a long idle period the probability has decayed to zero and the measurement
        // restarted (burst allowance back), cheaply despite many missed updates.
        t += 3_600_000 * MS;
        assert!(q.enqueue(t, qp(udp4(1500, 1, 0, 0), 0)).is_ok());
        assert_eq!(q.prob(), 0.0);
        assert_eq!(q.vars.burst_time, 150 * MS);
        assert!(q.next_update > t && q.next_update <= t + 15 * MS);
    }
}
