//! Step marking for DCTCP: CE-mark ECN-capable arrivals while the instantaneous queue is above a
//! threshold K (what Linux gets from RED with min = max = K and probability 1, or from fq's
//! `ce_threshold`); otherwise a drop-tail FIFO ([`super::droptail`] does both).

/// Parameters of [`super::QdiscConfig::Step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepConfig {
    /// K: an ECT packet arriving while the backlog (bytes waiting, not counting the packet on
    /// the wire) is strictly greater than this is marked CE. Default 30 000 bytes, about the
    /// DCTCP paper's K = 20 full-size packets for 1 Gbit/s.
    pub threshold_bytes: usize,
}

impl Default for StepConfig {
    fn default() -> Self {
        StepConfig {
            threshold_bytes: 30_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{build, ecn_codepoint, QdiscConfig, QueueLimit};
    use super::*;

    #[test]
    fn step_marks_exactly_above_threshold_and_only_ect() {
        let cfg = QdiscConfig::Step(StepConfig {
            threshold_bytes: 2000,
        });
        let mut q = build(&cfg, QueueLimit::bytes(8000), false, 0);
        // Backlog before each arrival: 0, 1000, 2000, 3000, 4000, 5000, 6000, 7000.
        let ecns = [0b10u8, 0b10, 0b10, 0b01, 0b00, 0b10, 0b11, 0b00];
        for (i, &e) in ecns.iter().enumerate() {
            assert!(q.enqueue(0, qp(udp4(1000, 1, i as u32, e), 0)).is_ok());
        }
        // Full: the next one is a tail drop, whatever its ECN field.
        assert!(q.enqueue(0, qp(udp4(1000, 1, 99, 0b10), 0)).is_err());
        let got: Vec<(u8, bool)> = std::iter::from_fn(|| q.dequeue(1))
            .map(|p| (ecn_codepoint(&p.data).unwrap(), ipv4_checksum_ok(&p.data)))
            .collect();
        let expect = [0b10, 0b10, 0b10, 0b11, 0b00, 0b11, 0b11, 0b00];
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), expect);
        assert!(got.iter().all(|g| g.1), "checksum broken");
        // ECT(1) at 3000, ECT(0) at 5000, and the already-CE one at 6000.
        assert_eq!(q.stats().ce_marked, 3);
        assert_eq!(q.stats().dropped_overlimit, 1);
        assert_eq!(q.stats().dropped_aqm, 0);
    }
}
