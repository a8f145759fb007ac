//! Drop-tail FIFO (Linux's pfifo/bfifo, both limits at once), optionally with step marking
//! (see [`super::step`]).

use super::{count_dequeue, set_ce, Fifo, QPacket, Qdisc, QdiscStats, QueueLimit};

pub(crate) struct DropTail {
    q: Fifo,
    limit: QueueLimit,
    stats: QdiscStats,
    /// Step marking: CE on an ECT arrival while more than this many bytes wait.
    mark_above: Option<usize>,
}

impl DropTail {
    pub(crate) fn new(limit: QueueLimit) -> Self {
        DropTail {
            q: Fifo::default(),
            limit,
            stats: QdiscStats::default(),
            mark_above: None,
        }
    }

    /// DCTCP's step marking at `threshold` bytes over a drop-tail queue.
    pub(crate) fn marking_above(limit: QueueLimit, threshold: usize) -> Self {
        DropTail {
            mark_above: Some(threshold),
            ..DropTail::new(limit)
        }
    }
}

impl Qdisc for DropTail {
    fn enqueue(&mut self, now: u64, mut pkt: QPacket) -> Result<(), QPacket> {
        if !self
            .limit
            .admits(self.q.len(), self.q.bytes(), pkt.data.len())
        {
            self.stats.dropped_overlimit += 1;
            return Err(pkt);
        }
        if self.mark_above.is_some_and(|k| self.q.bytes() > k) && set_ce(&mut pkt.data) {
            self.stats.ce_marked += 1;
        }
        pkt.enqueued_at = now;
        self.q.push(pkt);
        self.stats.enqueued += 1;
        Ok(())
    }

    fn dequeue(&mut self, _now: u64) -> Option<QPacket> {
        let pkt = self.q.pop()?;
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
    use super::super::{build, QdiscConfig};
    use super::*;

    #[test]
    fn droptail_respects_both_limits() {
        // Packet limit binds.
        let mut q = build(
            &QdiscConfig::DropTail,
            QueueLimit {
                packets: Some(3),
                bytes: Some(10_000),
            },
            false,
            0,
        );
        let res: Vec<bool> = (0..5)
            .map(|i| q.enqueue(i, qp(udp4(100, 1, i as u32, 0), 0)).is_ok())
            .collect();
        assert_eq!(res, [true, true, true, false, false]);
        assert_eq!(q.backlog_packets(), 3);
        assert_eq!(q.backlog_bytes(), 300);
        assert_eq!(q.stats().dropped_overlimit, 2);

        // Byte limit binds: exactly filling it is fine, one byte more is not.
        let mut q = build(
            &QdiscConfig::DropTail,
            QueueLimit {
                packets: Some(100),
                bytes: Some(1000),
            },
            false,
            0,
        );
        assert!(q.enqueue(0, qp(udp4(600, 1, 0, 0), 0)).is_ok());
        assert!(q.enqueue(0, qp(udp4(401, 1, 1, 0), 0)).is_err());
        assert!(q.enqueue(0, qp(udp4(400, 1, 2, 0), 0)).is_ok());
        assert!(q.enqueue(0, qp(udp4(32, 1, 3, 0), 0)).is_err());
        assert_eq!(q.backlog_bytes(), 1000);
        // FIFO order, enqueue time stamped, room again after a dequeue.
        let p = q.dequeue(5).unwrap();
        assert_eq!(id_of(&p.data), 0);
        assert!(q.enqueue(7, qp(udp4(600, 1, 4, 0), 9)).is_ok());
        let ids: Vec<u32> = std::iter::from_fn(|| q.dequeue(8))
            .map(|p| id_of(&p.data))
            .collect();
        assert_eq!(ids, [2, 4]);
        let s = q.stats();
        assert_eq!((s.enqueued, s.dequeued, s.dropped_overlimit), (3, 3, 2));
        assert_eq!(s.bytes_dequeued, 1600);
    }
}
