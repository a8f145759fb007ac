//! `plugtcp bench cc-switch`: what a TCP_CONGESTION switch on a live connection costs, and
//! what the connection delivers in the RTT after it compared with the RTT before.
//!
//! The cost is wall-clock time of `setsockopt(TCP_CONGESTION)` on an established connection
//! with a full window in flight (registry lookup, the old module's cb_destroy, the new one's
//! cb_init and conn_init), cycling through the eight modules; the goodput is measured on the
//! simulated link's virtual clock, so it is exact and repeatable.

use std::time::Instant;

use plugtcp_abi::sockopt::{IPPROTO_TCP, TCP_CONGESTION};

use crate::ccsim::{BulkFlows, CcExperiment, FREEBSD_MODULES};

#[derive(Debug, serde::Serialize)]
pub struct SwitchGoodput {
    pub from: String,
    pub to: String,
    /// Goodput in the RTT before the switch and in the RTT after it (Mbit/s).
    pub before_mbps: f64,
    pub after_mbps: f64,
    /// cwnd right before the switch and one RTT after it (bytes): the switch keeps it, the
    /// new module moves it from there.
    pub cwnd_before: u32,
    pub cwnd_after_rtt: u32,
}

#[derive(Debug, serde::Serialize)]
pub struct CcSwitchReport {
    pub switches_per_sample: u64,
    /// Median over samples of the mean cost of one switch (ns), and every sample.
    pub ns_per_switch: f64,
    pub samples_ns: Vec<f64>,
    /// One switch per module along the cycle, each after a second of steady transfer.
    pub goodput: Vec<SwitchGoodput>,
    /// Mean of after/before over those switches (1.0: the switch costs no throughput).
    pub mean_goodput_ratio: f64,
    pub link: String,
}

pub fn run(switches: u64) -> Result<CcSwitchReport, String> {
    let exp = CcExperiment::standard("newreno", 1);
    let mut net = crate::ccsim::simnet(&exp)?;
    let mut flows = BulkFlows::start(&mut net, 1)?;
    let c = flows.senders[0];
    let mut t = 5_000_000_000;
    flows.run_until(&mut net, t);

    // Cost: a full cycle over the modules per iteration, timed as a whole.
    let names: Vec<&[u8]> = FREEBSD_MODULES.iter().map(|s| s.as_bytes()).collect();
    let mut samples_ns = Vec::new();
    for _ in 0..9 {
        let start = Instant::now();
        for i in 0..switches {
            let name = names[(i as usize + 1) % names.len()];
            net.a
                .setsockopt(c, IPPROTO_TCP, TCP_CONGESTION, name)
                .map_err(|e| format!("TCP_CONGESTION: {e}"))?;
        }
        samples_ns.push(start.elapsed().as_nanos() as f64 / switches.max(1) as f64);
    }
    let ns_per_switch = super::median(samples_ns.clone());
    net.a
        .setsockopt(c, IPPROTO_TCP, TCP_CONGESTION, b"newreno")
        .map_err(|e| format!("TCP_CONGESTION: {e}"))?;

    // Goodput around each switch, in steady state.
    let rtt = exp.rtt_ns;
    let mut goodput = Vec::new();
    let mut from = "newreno";
    for to in FREEBSD_MODULES
        .iter()
        .cycle()
        .skip(1)
        .take(FREEBSD_MODULES.len())
    {
        t += 1_000_000_000;
        flows.run_until(&mut net, t - rtt);
        let b0 = flows.bytes[0];
        flows.run_until(&mut net, t);
        let b1 = flows.bytes[0];
        let cwnd = |net: &plugtcp_io::simnet::SimNet| net.a.tcpcb(c).map_or(0, |tp| tp.snd_cwnd);
        let cwnd_before = cwnd(&net);
        net.a
            .setsockopt(c, IPPROTO_TCP, TCP_CONGESTION, to.as_bytes())
            .map_err(|e| format!("TCP_CONGESTION {to}: {e}"))?;
        flows.run_until(&mut net, t + rtt);
        let b2 = flows.bytes[0];
        let cwnd_after_rtt = cwnd(&net);
        let mbps = |b: u64| b as f64 * 8.0 / (rtt as f64 / 1e9) / 1e6;
        goodput.push(SwitchGoodput {
            from: from.to_string(),
            to: to.to_string(),
            before_mbps: mbps(b1 - b0),
            after_mbps: mbps(b2 - b1),
            cwnd_before,
            cwnd_after_rtt,
        });
        from = to;
    }
    let ratios: Vec<f64> = goodput
        .iter()
        .filter(|g| g.before_mbps > 0.0)
        .map(|g| g.after_mbps / g.before_mbps)
        .collect();
    Ok(CcSwitchReport {
        switches_per_sample: switches,
        ns_per_switch,
        samples_ns,
        mean_goodput_ratio: ratios.iter().sum::<f64>() / ratios.len().max(1) as f64,
        goodput,
        link: format!(
            "simulated {} Mbit/s, {} ms RTT, 1 BDP queue",
            exp.bandwidth_bps / 1_000_000,
            exp.rtt_ns / 1_000_000
        ),
    })
}
