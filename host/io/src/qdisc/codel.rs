//! CoDel (RFC 8289), following Linux's `codel_impl.h`: decisions at dequeue from the sojourn
//! time of the packet at the head, the `count`/`lastcount` re-entry rule and the control law
//! `drop_next = t + interval / sqrt(count)`.
//!
//! One deviation: Linux approximates `1/sqrt(count)` with a 16-bit Newton iteration; this
//! computes it exactly (in `f64`), which moves drop instants by well under 1%.

use super::{count_dequeue, set_ce, Fifo, QPacket, Qdisc, QdiscStats, QueueLimit, DEFAULT_MTU, MS};

/// Parameters of [`super::QdiscConfig::Codel`]; the defaults are Linux's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodelConfig {
    /// Acceptable standing queue delay (5 ms).
    pub target_ns: u64,
    /// Window over which the delay must stay above target before dropping starts (100 ms).
    pub interval_ns: u64,
    /// A backlog of at most this many bytes is never "too long" (Linux: the device MTU plus
    /// link header, 1514).
    pub mtu: usize,
}

impl Default for CodelConfig {
    fn default() -> Self {
        CodelConfig {
            target_ns: 5 * MS,
            interval_ns: 100 * MS,
            mtu: DEFAULT_MTU,
        }
    }
}

/// Parameters shared by all CoDel instances of a qdisc.
#[derive(Clone, Debug)]
pub(crate) struct CodelParams {
    pub target: u64,
    pub interval: u64,
    pub mtu: usize,
    pub ecn: bool,
}

/// The state of one CoDel instance (Linux's `struct codel_vars`).
#[derive(Clone, Debug, Default)]
pub(crate) struct CodelVars {
    /// Drops (or marks) since entering the dropping state; also raised by FQ-CoDel's
    /// overlimit drops.
    pub count: u32,
    lastcount: u32,
    dropping: bool,
    /// When the sojourn time will have been above target for a whole interval.
    first_above_time: Option<u64>,
    drop_next: u64,
}

/// What CoDel needs from a queue: dequeue the head (updating whatever backlog counters the
/// owner keeps) and the backlog the `mtu` test looks at.
pub(crate) trait CodelQueue {
    fn pop(&mut self) -> Option<QPacket>;
    /// Bytes left in the qdisc (Linux: `sch->qstats.backlog`, after the pop).
    fn backlog(&self) -> usize;
    /// Disposes of a packet CoDel dropped.
    fn drop_pkt(&mut self, pkt: QPacket);
}

fn control_law(t: u64, interval: u64, count: u32) -> u64 {
    let step = interval as f64 / f64::from(count.max(1)).sqrt();
    t.saturating_add(step as u64)
}

/// Linux's `codel_should_drop`: true once the sojourn time has stayed at or above target
/// (with more than one MTU queued) for a whole interval.
fn should_drop(
    pkt: Option<&QPacket>,
    p: &CodelParams,
    v: &mut CodelVars,
    backlog: usize,
    now: u64,
) -> bool {
    let Some(pkt) = pkt else {
        v.first_above_time = None;
        return false;
    };
    let sojourn = now.saturating_sub(pkt.enqueued_at);
    if sojourn < p.target || backlog <= p.mtu {
        v.first_above_time = None;
        return false;
    }
    match v.first_above_time {
        None => {
            v.first_above_time = Some(now.saturating_add(p.interval));
            false
        }
        Some(t) => now >= t,
    }
}

/// Linux's `codel_dequeue`. Drops are counted in `stats.dropped_aqm`, marks in
/// `stats.ce_marked`; the returned packet is not counted as dequeued here.
pub(crate) fn codel_dequeue(
    q: &mut impl CodelQueue,
    p: &CodelParams,
    v: &mut CodelVars,
    stats: &mut QdiscStats,
    now: u64,
) -> Option<QPacket> {
    let Some(mut pkt) = q.pop() else {
        v.dropping = false;
        return None;
    };
    let drop = should_drop(Some(&pkt), p, v, q.backlog(), now);
    if v.dropping {
        if !drop {
            // Sojourn time below target: leave the dropping state.
            v.dropping = false;
        } else {
            // Time for the next drop? The control law may schedule several at once.
            while v.dropping && now >= v.drop_next {
                v.count = v.count.saturating_add(1);
                if p.ecn && set_ce(&mut pkt.data) {
                    stats.ce_marked += 1;
                    v.drop_next = control_law(v.drop_next, p.interval, v.count);
                    return Some(pkt);
                }
                stats.dropped_aqm += 1;
                q.drop_pkt(pkt);
                match q.pop() {
                    Some(next) => pkt = next,
                    None => {
                        v.dropping = false;
                        v.first_above_time = None;
                        return None;
                    }
                }
                if should_drop(Some(&pkt), p, v, q.backlog(), now) {
                    v.drop_next = control_law(v.drop_next, p.interval, v.count);
                } else {
                    v.dropping = false;
                }
            }
        }
    } else if drop {
        if p.ecn && set_ce(&mut pkt.data) {
            stats.ce_marked += 1;
        } else {
            stats.dropped_aqm += 1;
            q.drop_pkt(pkt);
            match q.pop() {
                Some(next) => pkt = next,
                None => {
                    // Linux enters the dropping state even with nothing left to send.
                    should_drop(None, p, v, 0, now);
                    enter_dropping(p, v, now);
                    return None;
                }
            }
            // Only for its effect on first_above_time, as in Linux.
            should_drop(Some(&pkt), p, v, q.backlog(), now);
        }
        enter_dropping(p, v, now);
    }
    Some(pkt)
}

/// Enters the dropping state. If it was left recently, resume near the old drop rate rather
/// than from count = 1 (RFC 8289's count decay, Linux's 16-interval window).
fn enter_dropping(p: &CodelParams, v: &mut CodelVars, now: u64) {
    v.dropping = true;
    let delta = v.count.wrapping_sub(v.lastcount);
    let recent = (now as i128) - (v.drop_next as i128) < 16 * i128::from(p.interval);
    v.count = if delta > 1 && recent { delta } else { 1 };
    v.lastcount = v.count;
    v.drop_next = control_law(now, p.interval, v.count);
}

/// Single-queue CoDel (Linux's sch_codel); arrivals over the limit are tail-dropped.
pub(crate) struct Codel {
    q: CodelFifo,
    limit: QueueLimit,
    params: CodelParams,
    vars: CodelVars,
    stats: QdiscStats,
}

#[derive(Default)]
struct CodelFifo {
    fifo: Fifo,
    dropped: Vec<Vec<u8>>,
}

impl CodelQueue for CodelFifo {
    fn pop(&mut self) -> Option<QPacket> {
        self.fifo.pop()
    }

    fn backlog(&self) -> usize {
        self.fifo.bytes()
    }

    fn drop_pkt(&mut self, pkt: QPacket) {
        self.dropped.push(pkt.data);
    }
}

impl Codel {
    pub(crate) fn new(cfg: &CodelConfig, limit: QueueLimit, ecn: bool) -> Self {
        Codel {
            q: CodelFifo::default(),
            limit,
            params: CodelParams {
                target: cfg.target_ns,
                interval: cfg.interval_ns,
                mtu: cfg.mtu,
                ecn,
            },
            vars: CodelVars::default(),
            stats: QdiscStats::default(),
        }
    }
}

impl Qdisc for Codel {
    fn enqueue(&mut self, now: u64, mut pkt: QPacket) -> Result<(), QPacket> {
        let f = &self.q.fifo;
        if !self.limit.admits(f.len(), f.bytes(), pkt.data.len()) {
            self.stats.dropped_overlimit += 1;
            return Err(pkt);
        }
        pkt.enqueued_at = now;
        self.q.fifo.push(pkt);
        self.stats.enqueued += 1;
        Ok(())
    }

    fn dequeue(&mut self, now: u64) -> Option<QPacket> {
        let pkt = codel_dequeue(
            &mut self.q,
            &self.params,
            &mut self.vars,
            &mut self.stats,
            now,
        )?;
        count_dequeue(&mut self.stats, &pkt);
        Some(pkt)
    }

    fn backlog_bytes(&self) -> usize {
        self.q.fifo.bytes()
    }

    fn backlog_packets(&self) -> usize {
        self.q.fifo.len()
    }

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }

    fn recycle(&mut self, pool: &mut Vec<Vec<u8>>) {
        pool.append(&mut self.q.dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{build, QdiscConfig};
    use super::*;

    fn tail_median(run: &[(u64, u64)], from: u64) -> u64 {
        let mut v: Vec<u64> = run.iter().filter(|r| r.0 >= from).map(|r| r.1).collect();
        median(&mut v)
    }

    #[test]
    fn codel_keeps_sojourn_near_target_where_droptail_does_not() {
        // 12 Mbit/s (1 ms per packet), 40 ms base RTT, a 1000-packet buffer (1 s): a Reno flow
        // in slow start overshoots to twice the link rate and then keeps the queue full.
        let limit = QueueLimit::packets(1000);
        let mut dt = build(&QdiscConfig::DropTail, limit, false, 0);
        let run = reno(&mut *dt, MS, 40 * MS, 4000 * MS, false);
        let dt_median = tail_median(&run, 1000 * MS);

        let mut cd = build(&QdiscConfig::Codel(CodelConfig::default()), limit, false, 0);
        let run = reno(&mut *cd, MS, 40 * MS, 4000 * MS, false);
        let cd_median = tail_median(&run, 1000 * MS);
        let served = run.iter().filter(|r| r.0 >= 1000 * MS).count();
        assert!(cd.stats().dropped_aqm > 0);
        assert!(cd_median < 15 * MS, "codel median sojourn {cd_median}");
        assert!(dt_median > 100 * MS, "drop-tail median sojourn {dt_median}");
        // CoDel must not get there by starving the link: at least 85% utilisation.
        assert!(served > 2550, "served {served}");
    }

    #[test]
    fn codel_marks_ect_instead_of_dropping() {
        let limit = QueueLimit::packets(1000);
        let mut cd = build(&QdiscConfig::Codel(CodelConfig::default()), limit, true, 0);
        let run = reno(&mut *cd, MS, 40 * MS, 4000 * MS, true);
        let s = cd.stats();
        assert!(s.ce_marked > 0);
        assert_eq!(s.dropped_aqm, 0);
        assert!(tail_median(&run, 1000 * MS) < 15 * MS);
    }

    #[test]
    fn codel_leaves_short_queues_alone_and_control_law_speeds_up() {
        // Sojourn above target but never more than one MTU queued: no drop, ever.
        let mut q = build(
            &QdiscConfig::Codel(CodelConfig::default()),
            QueueLimit::default(),
            false,
            0,
        );
        for i in 0..100u64 {
            q.enqueue(i * 50 * MS, qp(udp4(1500, 1, 0, 0), 0)).unwrap();
            assert!(q.dequeue(i * 50 * MS + 40 * MS).is_some());
        }
        assert_eq!(q.stats().dropped_aqm, 0);

        // A standing 100-packet queue: drops begin one interval after the sojourn time first
        // exceeded target, then come at interval/sqrt(count).
        let p = CodelParams {
            target: 5 * MS,
            interval: 100 * MS,
            mtu: 1514,
            ecn: false,
        };
        let mut v = CodelVars::default();
        let mut stats = QdiscStats::default();
        let mut fifo = CodelFifo::default();
        let mut drops = Vec::new();
        let t0 = 1000 * MS;
        for i in 0..2000u64 {
            let t = t0 + i * MS;
            // Every packet has waited at least 10 ms when it reaches the head.
            while fifo.fifo.len() < 100 {
                fifo.fifo.push(QPacket {
                    data: udp4(1500, 1, 0, 0),
                    tag: 0,
                    enqueued_at: t - 10 * MS,
                });
            }
            let before = stats.dropped_aqm;
            codel_dequeue(&mut fifo, &p, &mut v, &mut stats, t);
            if stats.dropped_aqm > before {
                drops.push(t);
            }
        }
        assert_eq!(
            drops[0],
            t0 + 100 * MS,
            "first drop one interval after first_above"
        );
        let gaps: Vec<u64> = drops.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps[0], 100 * MS);
        assert!((70 * MS..=71 * MS).contains(&gaps[1]), "{gaps:?}");
        assert!((57 * MS..=58 * MS).contains(&gaps[2]), "{gaps:?}");
        assert!(gaps.windows(2).all(|w| w[1] <= w[0] + MS), "{gaps:?}");
    }
}
