//! RED (Floyd & Jacobson 1993) as Linux's sch_red/red.h implements it: an EWMA of the
//! backlog in bytes, decayed over idle periods as if packets of `avpkt` bytes had been
//! dequeued at `idle_bandwidth_bps`; between the thresholds a packet is marked when
//! `count * pb >= R` with R uniform, which spreads marks evenly (Floyd's count method);
//! above `max` every packet is marked. "Marked" means dropped, or CE-marked with `ecn` if the
//! packet is ECN-capable; with `harddrop`, packets above `max` are dropped even then.
//!
//! Linux has no "gentle" mode (ns-2 does); it is here as an option, off by default: the
//! probability then rises from `max_p` at `max` to 1 at `2 * max` instead of jumping to 1.
//! Linux tabulates the idle decay `(1 - wq)^m` coarsely; here it is computed exactly.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{count_dequeue, set_ce, Fifo, QPacket, Qdisc, QdiscStats, QueueLimit};

/// Parameters of [`super::QdiscConfig::Red`].
///
/// Thresholds follow tc-red(8)'s guidance when left `None`: `max` = limit / 4 and
/// `min` = max / 3, where the limit is [`QueueLimit::bytes`], else `packets * avpkt`, else
/// 400 000 bytes (tc-red's example).
#[derive(Clone, Debug, PartialEq)]
pub struct RedConfig {
    /// Average backlog (bytes) from which marking may start.
    pub min_bytes: Option<usize>,
    /// Average backlog (bytes) above which every packet is marked.
    pub max_bytes: Option<usize>,
    /// EWMA weight (0.002).
    pub wq: f64,
    /// Marking probability reached at `max` (0.02, tc's default `probability`).
    pub max_p: f64,
    /// Average packet size for the idle-time decay (1000, tc's `avpkt`).
    pub avpkt: usize,
    /// Link rate for the idle-time decay (10 Mbit/s, tc's `bandwidth` default); 0 makes any
    /// idle period reset the average.
    pub idle_bandwidth_bps: u64,
    pub gentle: bool,
    /// With `ecn`, still drop (not mark) above `max` (Linux's `harddrop`).
    pub harddrop: bool,
}

impl Default for RedConfig {
    fn default() -> Self {
        RedConfig {
            min_bytes: None,
            max_bytes: None,
            wq: 0.002,
            max_p: 0.02,
            avpkt: 1000,
            idle_bandwidth_bps: 10_000_000,
            gentle: false,
            harddrop: false,
        }
    }
}

pub(crate) struct Red {
    q: Fifo,
    limit: QueueLimit,
    ecn: bool,
    min: f64,
    max: f64,
    wq: f64,
    max_p: f64,
    gentle: bool,
    harddrop: bool,
    /// Time to send one `avpkt` at the idle bandwidth (ns); 0 for infinite bandwidth.
    idle_pkt_ns: f64,
    avg: f64,
    /// Packets since the last mark while between the thresholds; -1 outside.
    qcount: i64,
    /// The uniform draw the next mark waits for.
    qr: f64,
    idle_since: Option<u64>,
    rng: Xoshiro256PlusPlus,
    stats: QdiscStats,
}

enum Action {
    None,
    Prob,
    Hard,
}

impl Red {
    pub(crate) fn new(cfg: &RedConfig, limit: QueueLimit, ecn: bool, seed: u64) -> Self {
        let limit_bytes = limit
            .bytes
            .or(limit.packets.map(|p| p.saturating_mul(cfg.avpkt)))
            .unwrap_or(400_000);
        let max = cfg.max_bytes.unwrap_or(limit_bytes / 4);
        let min = cfg.min_bytes.unwrap_or(max / 3).min(max);
        let idle_pkt_ns = if cfg.idle_bandwidth_bps == 0 {
            0.0
        } else {
            cfg.avpkt as f64 * 8e9 / cfg.idle_bandwidth_bps as f64
        };
        let sane = |x: f64, lo: f64, hi: f64, dflt: f64| {
            if x.is_finite() {
                x.clamp(lo, hi)
            } else {
                dflt
            }
        };
        Red {
            q: Fifo::default(),
            limit,
            ecn,
            min: min as f64,
            max: max as f64,
            wq: sane(cfg.wq, 0.0, 1.0, 0.002),
            max_p: sane(cfg.max_p, 0.0, 1.0, 0.02),
            gentle: cfg.gentle,
            harddrop: cfg.harddrop,
            idle_pkt_ns,
            avg: 0.0,
            qcount: -1,
            qr: 0.0,
            idle_since: None,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            stats: QdiscStats::default(),
        }
    }

    fn update_avg(&mut self, now: u64) {
        match self.idle_since.take() {
            Some(start) => {
                // As if `m` packets had been dequeued from an empty queue while idle.
                let idle = now.saturating_sub(start) as f64;
                if self.idle_pkt_ns <= 0.0 {
                    self.avg = 0.0;
                } else {
                    let m = idle / self.idle_pkt_ns;
                    self.avg *= (1.0 - self.wq).powf(m);
                }
            }
            None => {
                self.avg += self.wq * (self.q.bytes() as f64 - self.avg);
            }
        }
    }

    /// The marking probability pb for the current average, for the region where marking is
    /// probabilistic; None below `min` and in the forced region.
    fn action(&mut self) -> Action {
        let avg = self.avg;
        if avg < self.min {
            self.qcount = -1;
            return Action::None;
        }
        let pb = if avg < self.max {
            let span = self.max - self.min;
            if span > 0.0 {
                self.max_p * (avg - self.min) / span
            } else {
                self.max_p
            }
        } else if self.gentle && avg < 2.0 * self.max && self.max > 0.0 {
            self.max_p + (1.0 - self.max_p) * (avg - self.max) / self.max
        } else {
            self.qcount = -1;
            return Action::Hard;
        };
        self.qcount += 1;
        if self.qcount == 0 {
            // Entering the region: draw R and start counting.
            self.qr = self.rng.random::<f64>();
            return Action::None;
        }
        if pb * self.qcount as f64 >= self.qr {
            self.qcount = 0;
            self.qr = self.rng.random::<f64>();
            return Action::Prob;
        }
        Action::None
    }
}

impl Qdisc for Red {
    fn enqueue(&mut self, now: u64, mut pkt: QPacket) -> Result<(), QPacket> {
        self.update_avg(now);
        let mut marked = false;
        match self.action() {
            Action::None => {}
            Action::Prob => {
                if !(self.ecn && set_ce(&mut pkt.data)) {
                    self.stats.dropped_aqm += 1;
                    return Err(pkt);
                }
                marked = true;
            }
            Action::Hard => {
                if self.harddrop || !(self.ecn && set_ce(&mut pkt.data)) {
                    self.stats.dropped_aqm += 1;
                    return Err(pkt);
                }
                marked = true;
            }
        }
        if !self
            .limit
            .admits(self.q.len(), self.q.bytes(), pkt.data.len())
        {
            self.stats.dropped_overlimit += 1;
            return Err(pkt);
        }
        if marked {
            self.stats.ce_marked += 1;
        }
        pkt.enqueued_at = now;
        self.q.push(pkt);
        self.stats.enqueued += 1;
        Ok(())
    }

    fn dequeue(&mut self, now: u64) -> Option<QPacket> {
        match self.q.pop() {
            Some(pkt) => {
                count_dequeue(&mut self.stats, &pkt);
                Some(pkt)
            }
            None => {
                // Linux starts the idle period when a dequeue finds the queue empty.
                if self.idle_since.is_none() {
                    self.idle_since = Some(now);
                }
                None
            }
        }
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

    /// Holds the backlog at `level` packets of 1000 bytes and offers `n` more (one dequeue per
    /// arrival); with wq = 1 the average is the instantaneous backlog. Returns (drops, marks).
    fn at_level(level: usize, n: usize, ecn: bool, ect: u8, harddrop: bool) -> (u64, u64) {
        let cfg = RedConfig {
            min_bytes: Some(20_000),
            max_bytes: Some(60_000),
            wq: 1.0,
            max_p: 0.1,
            harddrop,
            ..Default::default()
        };
        let mut q = Red::new(&cfg, QueueLimit::bytes(1_000_000), ecn, 11);
        for id in 0..level {
            q.q.push(qp(udp4(1000, 1, id as u32, ect), 0));
        }
        for t in 0..n as u64 {
            if q.enqueue(t, qp(udp4(1000, 1, t as u32, ect), 0)).is_ok() {
                q.dequeue(t).unwrap();
            }
            assert_eq!(q.backlog_packets(), level);
        }
        (q.stats().dropped_aqm, q.stats().ce_marked)
    }

    #[test]
    fn red_fraction_grows_between_thresholds() {
        let n = 20_000;
        // Below min (19 packets = 19 000 bytes < 20 000): nothing.
        assert_eq!(at_level(19, n, false, 0, false), (0, 0));
        assert_eq!(at_level(19, n, true, 0b10, false), (0, 0));
        // Between: pb = 0.1 * (L - 20) / 40 at L packets; with the count method the marked
        // fraction is about 2 pb / (1 + pb).
        let mut last = 0.0;
        for level in [25, 40, 55] {
            let (d, m) = at_level(level, n, false, 0, false);
            assert_eq!(m, 0);
            let frac = d as f64 / n as f64;
            let pb = 0.1 * (level as f64 - 20.0) / 40.0;
            let expect = 2.0 * pb / (1.0 + pb);
            assert!(
                (frac - expect).abs() < 0.25 * expect,
                "level {level}: {frac} vs {expect}"
            );
            assert!(frac > last);
            last = frac;
        }
        // Above max: everything.
        assert_eq!(at_level(60, 1000, false, 0, false), (1000, 0));
    }

    #[test]
    fn red_ecn_marks_instead_of_dropping() {
        let n = 20_000;
        let (d, m) = at_level(40, n, true, 0b10, false);
        assert_eq!(d, 0);
        let frac = m as f64 / n as f64;
        assert!((0.07..0.12).contains(&frac), "marked {frac}");
        // Non-ECT packets are still dropped with ecn on.
        let (d, m) = at_level(40, n, true, 0, false);
        assert_eq!(m, 0);
        assert!(d > 0);
        // Above max: marked, unless harddrop.
        assert_eq!(at_level(61, 500, true, 0b01, false), (0, 500));
        assert_eq!(at_level(61, 500, true, 0b01, true), (500, 0));
    }

    #[test]
    fn red_average_follows_queue_and_decays_when_idle() {
        let mut q = Red::new(&RedConfig::default(), QueueLimit::bytes(400_000), false, 1);
        assert_eq!((q.min, q.max), (33_333.0, 100_000.0));
        // A standing queue of 50 kB: the average converges towards it (time constant
        // 1/wq = 500 arrivals).
        for i in 0..60 {
            q.q.push(qp(udp4(1000, 1, i, 0), 0));
        }
        for t in 0..3000 {
            let _ = q.enqueue(t, qp(udp4(1000, 1, 0, 0), 0));
            while q.backlog_bytes() > 50_000 {
                q.dequeue(t);
            }
        }
        assert!((45_000.0..50_001.0).contains(&q.avg), "avg {}", q.avg);
        // Idle for 80 ms at 10 Mbit/s and 1000-byte avpkt: m = 100, avg *= 0.998^100.
        while q.dequeue(MS).is_some() {}
        assert!(q.dequeue(2 * MS).is_none());
        let before = q.avg;
        let _ = q.enqueue(81 * MS, qp(udp4(1000, 1, 0, 0), 0));
        let expect = before * 0.998f64.powi(100);
        assert!((q.avg - expect).abs() < 1.0, "{} vs {expect}", q.avg);
    }
}
