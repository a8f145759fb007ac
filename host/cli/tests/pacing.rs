//! The host's pacer on the simulated link: a connection paced by SO_MAX_PACING_RATE sends
//! at its rate, measured where its packets enter the link, from 1 Mbit/s to 10 Gbit/s.

mod common;

use std::sync::{Arc, Mutex};

use plugtcp_abi::segment::{th, SegIn, SegOut};
use plugtcp_abi::seq::{seq_gt, seq_leq};
use plugtcp_abi::sockopt::{
    SockOpt, IPPROTO_TCP, SOL_SOCKET, SO_MAX_PACING_RATE, TCP_FUNCTION_BLK,
};
use plugtcp_abi::stack::{tcpi_off, InitMode, OldStack, StackCtx, StackVtable, TcpStack};
use plugtcp_abi::Errno;
use plugtcp_cli::builtins::BuiltinNet as _;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::SimNet;

const MS: u64 = 1_000_000;
/// The window the rate must hold over.
const WINDOW_NS: u64 = 10 * MS;

/// Data departures of A's connection: (time, IP packet bytes).
type Departures = Arc<Mutex<Vec<(u64, u64)>>>;

fn net() -> (SimNet, Departures) {
    // A fast link with a short path: neither the link nor cwnd holds the sender back, only
    // the pacer (the BDP at 10 Gbit/s is 125 KB, well within the buffers).
    let cfg = SimLinkConfig {
        bandwidth_bps: 0,
        delay_ns: 50_000,
        ..SimLinkConfig::default()
    };
    let mut net = SimNet::builtin(cfg, 7);
    let seen: Departures = Arc::default();
    let tap = seen.clone();
    net.tap = Some(Box::new(move |now, a_to_b, pkt: &[u8]| {
        // Data segments only: IPv4 header, then the TCP header's data offset.
        if a_to_b && pkt.len() > 20 {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let doff = pkt.get(ihl + 12).map_or(0, |b| usize::from(b >> 4) * 4);
            if pkt.len() > ihl + doff {
                tap.lock().unwrap().push((now, pkt.len() as u64));
            }
        }
    }));
    (net, seen)
}

/// The rate inside each `WINDOW_NS` window from `from` to `to`: the bytes departing from
/// its first departure up to (not including) its last, over the time between them (every
/// burst leaves at one instant, so this is the rate the departures were spaced at). Where
/// a window holds fewer than two departure instants (packets further apart than the
/// window), it is widened to the next instant.
fn window_rates(deps: &[(u64, u64)], from: u64, to: u64) -> Vec<f64> {
    let mut rates = Vec::new();
    let mut start = from;
    while start + WINDOW_NS <= to {
        let mut end = start + WINDOW_NS;
        let first = deps.partition_point(|&(t, _)| t < start);
        loop {
            let inside: Vec<_> = deps[first..]
                .iter()
                .take_while(|&&(t, _)| t < end)
                .collect();
            let (Some(a), Some(b)) = (inside.first(), inside.last()) else {
                end += WINDOW_NS;
                continue;
            };
            if b.0 == a.0 {
                match deps[first + inside.len()..].first() {
                    Some(&(t, _)) => {
                        end = t + 1;
                        continue;
                    }
                    None => return rates,
                }
            }
            let bytes: u64 = inside.iter().filter(|d| d.0 < b.0).map(|d| d.1).sum();
            rates.push(bytes as f64 * 1e9 / (b.0 - a.0) as f64);
            break;
        }
        start = end.max(start + WINDOW_NS);
    }
    rates
}

/// Paces A's connection at `rate` bytes/s, sends for `warmup + measure`, and returns the
/// window rates over the measured part.
fn paced_run(rate: u64, warmup: u64, measure: u64) -> Vec<f64> {
    let (mut net, seen) = net();
    let (c, s) = common::established(&mut net);
    net.a
        .setsockopt(c, SOL_SOCKET, SO_MAX_PACING_RATE, &rate.to_ne_bytes())
        .unwrap();
    let t0 = net.now;
    // The sender never runs dry: it refills its buffer from one chunk, over and over.
    let chunk = vec![0x5au8; 1 << 20];
    let mut buf = vec![0u8; 1 << 20];
    net.run_until(t0 + warmup + measure, |n| {
        while let Ok(k) = n.a.send(c, &chunk) {
            if k == 0 {
                break;
            }
        }
        while let Ok(k) = n.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
        }
        false
    });
    // TCP_INFO shows the pacing rate in force.
    let mut info = [0u8; plugtcp_abi::stack::TCP_INFO_LEN];
    net.a
        .getsockopt(
            c,
            plugtcp_abi::sockopt::IPPROTO_TCP,
            plugtcp_abi::sockopt::TCP_INFO,
            &mut info,
        )
        .unwrap();
    let shown = u64::from_ne_bytes(info[tcpi_off::PACING_RATE..][..8].try_into().unwrap());
    let cap = u64::from_ne_bytes(info[tcpi_off::MAX_PACING_RATE..][..8].try_into().unwrap());
    assert_eq!((shown, cap), (rate, rate));
    let deps = seen.lock().unwrap();
    window_rates(&deps, t0 + warmup, t0 + warmup + measure)
}

#[test]
fn departures_hold_the_rate_in_every_10ms_window_from_1_mbit_to_10_gbit() {
    for (mbit, measure_ms) in [
        (1u64, 400u64),
        (10, 200),
        (100, 100),
        (1000, 100),
        (10_000, 60),
    ] {
        let rate = mbit * 1_000_000 / 8;
        let rates = window_rates_for(rate, measure_ms);
        assert!(
            rates.len() >= 3,
            "{mbit} Mbit/s: only {} windows",
            rates.len()
        );
        for (i, r) in rates.iter().enumerate() {
            let err = (r / rate as f64 - 1.0).abs();
            assert!(
                err <= 0.05,
                "{mbit} Mbit/s: window {i} at {:.0} B/s, {:.2}% off (all: {rates:?})",
                r,
                err * 100.0
            );
        }
        eprintln!(
            "{mbit} Mbit/s: {} windows, worst {:.3}% off",
            rates.len(),
            rates
                .iter()
                .map(|r| (r / rate as f64 - 1.0).abs() * 100.0)
                .fold(0.0, f64::max)
        );
    }
}

fn window_rates_for(rate: u64, measure_ms: u64) -> Vec<f64> {
    paced_run(rate, 20 * MS, measure_ms * MS)
}

#[test]
fn so_max_pacing_rate_reads_back_and_refuses_bad_sizes() {
    let (mut net, _) = net();
    let (c, _) = common::established(&mut net);
    let get = |net: &mut SimNet, len: usize| {
        let mut b = vec![0u8; len];
        let n = net
            .a
            .getsockopt(c, SOL_SOCKET, SO_MAX_PACING_RATE, &mut b)
            .unwrap();
        b.truncate(n);
        b
    };
    assert_eq!(get(&mut net, 8), u64::MAX.to_ne_bytes());
    assert_eq!(get(&mut net, 4), u32::MAX.to_ne_bytes());
    net.a
        .setsockopt(
            c,
            SOL_SOCKET,
            SO_MAX_PACING_RATE,
            &1_000_000u32.to_ne_bytes(),
        )
        .unwrap();
    assert_eq!(get(&mut net, 8), 1_000_000u64.to_ne_bytes());
    assert_eq!(
        net.a.setsockopt(c, SOL_SOCKET, SO_MAX_PACING_RATE, &[1, 2]),
        Err(plugtcp_abi::Errno::EINVAL)
    );
    // ~0U turns the cap off again.
    net.a
        .setsockopt(c, SOL_SOCKET, SO_MAX_PACING_RATE, &u32::MAX.to_ne_bytes())
        .unwrap();
    assert_eq!(get(&mut net, 8), u64::MAX.to_ne_bytes());
}

/// A stack that knows nothing of pacing: it sends everything unsent at once, whatever cwnd
/// or the window say, on every call (a lossless link needs nothing more).
struct Blaster;

impl TcpStack for Blaster {
    const NAME: &'static str = "blaster";
    const FLAGS: u32 = 0;

    fn init(_cx: &mut StackCtx, _mode: InitMode, _old: OldStack) -> Result<Self, Errno> {
        Ok(Blaster)
    }
    fn do_segment(&mut self, cx: &mut StackCtx, seg: &SegIn<'_>) -> Result<(), Errno> {
        let tp = &mut cx.tp;
        if seg.flags & th::ACK != 0 && seq_gt(seg.ack, tp.snd_una) && seq_leq(seg.ack, tp.snd_max) {
            cx.host.snd_drop(seg.ack.wrapping_sub(tp.snd_una));
            tp.snd_una = seg.ack;
        }
        self.output(cx)
    }
    fn output(&mut self, cx: &mut StackCtx) -> Result<(), Errno> {
        let mss = cx.tp.maxseg();
        loop {
            let tp = &cx.tp;
            let off = tp.snd_nxt.wrapping_sub(tp.snd_una);
            let len = cx.host.snd_len().saturating_sub(off).min(mss);
            if len == 0 {
                return Ok(());
            }
            let seg = SegOut {
                seq: tp.snd_nxt,
                ack: tp.rcv_nxt,
                flags: th::ACK,
                win: 65535,
                data_off: off,
                data_len: len,
                ..Default::default()
            };
            if cx.host.output(&seg).is_err() {
                return Ok(());
            }
            cx.tp.snd_nxt = cx.tp.snd_nxt.wrapping_add(len);
            cx.tp.snd_max = cx.tp.snd_nxt;
        }
    }
    fn timer(&mut self, _cx: &mut StackCtx, _which: u32) -> Result<(), Errno> {
        Ok(())
    }
    fn ctloutput(&mut self, _cx: &mut StackCtx, _opt: &mut SockOpt<'_>) -> Result<(), Errno> {
        Err(Errno::ENOPROTOOPT)
    }
    fn handoff_ok(_cx: &StackCtx) -> Result<(), Errno> {
        Ok(())
    }
}

#[test]
fn a_stack_that_ignores_pacing_is_paced_by_the_host() {
    let (mut net, seen) = net();
    net.a
        .registry
        .register_block(<StackVtable<Blaster>>::BLOCK, common::info())
        .unwrap();
    let (c, s) = common::established(&mut net);
    net.a
        .setsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, b"blaster")
        .unwrap();
    let rate = 100_000_000 / 8;
    net.a
        .setsockopt(
            c,
            SOL_SOCKET,
            SO_MAX_PACING_RATE,
            &(rate as u64).to_ne_bytes(),
        )
        .unwrap();
    let data = common::payload(4 << 20, 3);
    let (mut sent, mut got, mut buf) = (0, Vec::new(), vec![0u8; 1 << 20]);
    let t0 = net.now;
    net.run_until(t0 + 2_000 * MS, |n| {
        while sent < data.len() {
            match n.a.send(c, &data[sent..]) {
                Ok(k) if k > 0 => sent += k,
                _ => break,
            }
        }
        while let Ok(k) = n.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
        got.len() == data.len()
    });
    assert!(got == data, "{} of {} bytes", got.len(), data.len());
    // Everything was handed over at once and held by the host: 4 MiB at 12.5 MB/s.
    let st = net.a.worker.pacing;
    assert!(st.held > 1000, "{st:?}");
    let deps = seen.lock().unwrap();
    let end = deps.last().unwrap().0;
    let rates = window_rates(&deps, t0 + 10 * MS, end - 10 * MS);
    assert!(rates.len() >= 20, "{}", rates.len());
    for r in &rates {
        assert!(
            (r / rate as f64 - 1.0).abs() <= 0.05,
            "{r} vs {rate}: {rates:?}"
        );
    }
}
