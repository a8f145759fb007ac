//! Two hosts joined by a simulated link, driven on the link's virtual clock: the harness
//! for the demo, the deterministic tests and the benchmarks.

use std::net::{IpAddr, Ipv4Addr};

use crate::pcap::PcapWriter;
use crate::sim::{SimLink, SimLinkConfig};
use plugtcp_host::kld::StaticPlugins;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::Host;

/// Host A's and host B's addresses.
pub const ADDR_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
pub const ADDR_B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

/// Two hosts and the link between them.
pub struct SimNet {
    pub a: Host,
    pub b: Host,
    pub link: SimLink,
    pub now: u64,
    pub pcap: Option<PcapWriter<std::io::BufWriter<std::fs::File>>>,
    /// Packets moved from the hosts onto the link so far.
    pub packets: u64,
    /// When set, every packet that enters the link is kept here (tests inspect segments).
    pub record: Option<Vec<Captured>>,
    /// When set, sees every packet that enters the link (time, direction: true for A to B,
    /// bytes) without keeping it: for measurements over many packets.
    pub tap: Option<Tap>,
    /// Fault injection: packets for which this returns true (given the direction, true for
    /// A to B) are lost on the link. Recorded and captured as sent.
    pub drop_if: Option<DropFilter>,
    /// The link computes and verifies TCP checksums (a device's checksum offload; see
    /// [`SimNet::set_checksum_offload`]).
    checksum_offload: bool,
}

/// See [`SimNet::drop_if`].
pub type DropFilter = Box<dyn FnMut(bool, &[u8]) -> bool + Send>;

/// See [`SimNet::tap`].
pub type Tap = Box<dyn FnMut(u64, bool, &[u8]) + Send>;

/// What sees packets enter the link: the pcap capture, the record, the tap.
type Observers<'a> = (
    &'a mut Option<PcapWriter<std::io::BufWriter<std::fs::File>>>,
    &'a mut Option<Vec<Captured>>,
    &'a mut Option<Tap>,
);

/// Capture and counting for a packet entering the link.
fn observe(
    (pcap, record, tap): Observers<'_>,
    packets: &mut u64,
    now: u64,
    a_to_b: bool,
    pkt: &[u8],
) {
    if let Some(t) = tap.as_mut() {
        t(now, a_to_b, pkt);
    }
    if let Some(w) = pcap.as_mut() {
        let _ = w.write_packet(now, pkt);
    }
    if let Some(r) = record.as_mut() {
        r.push(Captured {
            time: now,
            a_to_b,
            bytes: pkt.to_vec(),
        });
    }
    *packets += 1;
}

/// A packet as it entered the link.
#[derive(Clone, Debug)]
pub struct Captured {
    pub time: u64,
    /// true: from A to B.
    pub a_to_b: bool,
    pub bytes: Vec<u8>,
}

impl SimNet {
    /// Two hosts with `statics` (and any plugin files found on `search_path`), seeded from
    /// `seed`, over a link with `cfg`.
    pub fn new(
        cfg: SimLinkConfig,
        seed: u64,
        search_path: SearchPath,
        statics: &StaticPlugins,
    ) -> Self {
        let mk = |s: u64, addr: IpAddr| {
            let (mut h, _) = Host::with_seed(search_path.clone(), s).autoload(statics);
            h.add_addr(addr);
            h
        };
        SimNet {
            a: mk(seed.wrapping_mul(2).wrapping_add(1), ADDR_A),
            b: mk(seed.wrapping_mul(2).wrapping_add(2), ADDR_B),
            link: SimLink::new(cfg),
            now: 0,
            pcap: None,
            packets: 0,
            record: None,
            tap: None,
            drop_if: None,
            checksum_offload: false,
        }
    }

    /// Writes every packet that enters the link to a pcap file.
    pub fn capture(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        let f = std::io::BufWriter::new(std::fs::File::create(path)?);
        self.pcap = Some(PcapWriter::new(f)?);
        Ok(())
    }

    /// Moves what the hosts queued onto the link. On a perfect link (zero delay, nothing
    /// lost or changed) packets go straight from one host's transmit queue to the other's
    /// input, with no copy into the link and no delivery queue, until both are quiet.
    /// Returns whether any packet moved.
    fn perfect(&self) -> bool {
        self.link.a_to_b.config().is_perfect() && self.link.b_to_a.config().is_perfect()
    }

    fn flush_tx(&mut self) -> bool {
        let before = self.packets;
        if self.perfect() {
            self.hand_over();
            return self.packets != before;
        }
        let now = self.now;
        let (link, pcap, packets, record, tap, drop_if) = (
            &mut self.link,
            &mut self.pcap,
            &mut self.packets,
            &mut self.record,
            &mut self.tap,
            &mut self.drop_if,
        );
        let mut take = |a_to_b: bool, pkt: &[u8]| {
            observe(
                (&mut *pcap, &mut *record, &mut *tap),
                packets,
                now,
                a_to_b,
                pkt,
            );
            if drop_if.as_mut().is_some_and(|f| f(a_to_b, pkt)) {
                return;
            }
            if a_to_b {
                link.a_to_b.send(now, pkt);
            } else {
                link.b_to_a.send(now, pkt);
            }
        };
        self.a.transmit(|pkt| take(true, pkt));
        self.b.transmit(|pkt| take(false, pkt));
        self.packets != before
    }

    /// Checksum offload on both hosts' link: packets leave with partial checksums and
    /// arrive unverified, as over devices that compute and verify them (`bench bulk`
    /// compares stacks this way). A link that corrupts packets then corrupts data.
    pub fn set_checksum_offload(&mut self, on: bool) {
        self.checksum_offload = on;
        self.a.set_tx_checksum_offload(on);
        self.b.set_tx_checksum_offload(on);
    }

    fn hand_over(&mut self) {
        let now = self.now;
        let offload = self.checksum_offload;
        let (pcap, packets, record, tap, drop_if) = (
            &mut self.pcap,
            &mut self.packets,
            &mut self.record,
            &mut self.tap,
            &mut self.drop_if,
        );
        let mut deliver = |from: &mut Host, to: &mut Host, a_to_b: bool| {
            // Take the queue out while its packets go to the other host (whose replies land in
            // its own queue), then put it back to keep its recycled buffers.
            let mut tx = std::mem::take(&mut from.worker.tx);
            to.batch_begin();
            tx.drain(|pkt| {
                observe(
                    (&mut *pcap, &mut *record, &mut *tap),
                    packets,
                    now,
                    a_to_b,
                    pkt,
                );
                if !drop_if.as_mut().is_some_and(|f| f(a_to_b, pkt)) {
                    if offload {
                        to.input_checksum_offloaded(pkt);
                    } else {
                        to.input(pkt);
                    }
                }
            });
            to.batch_end();
            from.worker.tx = tx;
        };
        while self.a.tx_len() != 0 || self.b.tx_len() != 0 {
            deliver(&mut self.a, &mut self.b, true);
            deliver(&mut self.b, &mut self.a, false);
        }
    }

    /// When the next thing happens: a delivery or a timer on either host.
    pub fn next_event(&self) -> Option<u64> {
        [
            self.link.next_delivery(),
            self.a.next_timeout(),
            self.b.next_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs one step: flushes what the hosts sent, jumps the clock to the next event, and
    /// delivers packets and fires timers due then. False when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.step_until(u64::MAX)
    }

    /// As [`SimNet::step`], but never moves the clock past `deadline`: if the next event is
    /// later, the clock stops at `deadline` and this returns false.
    pub fn step_until(&mut self, deadline: u64) -> bool {
        let moved = self.flush_tx();
        if moved && self.perfect() {
            // The hosts answered each other at this instant: the applications act on that
            // before time moves on (a reader empties its buffer before the persist timer).
            return true;
        }
        let Some(t) = self.next_event() else {
            if deadline != u64::MAX && deadline > self.now {
                self.now = deadline;
                self.a.advance(self.now);
                self.b.advance(self.now);
            }
            return moved;
        };
        if t > deadline {
            // The hosts' clocks come along: a timer an application call arms next must count
            // from the time the caller sees.
            self.now = self.now.max(deadline);
            self.a.advance(self.now);
            self.b.advance(self.now);
            return moved;
        }
        self.now = self.now.max(t);
        let now = self.now;
        self.a.set_now(now);
        self.b.set_now(now);
        let (a, b) = (&mut self.a, &mut self.b);
        // What one poll delivers arrived together: a receive batch.
        let input = |h: &mut Host, pkt: &[u8]| {
            if self.checksum_offload {
                h.input_checksum_offloaded(pkt);
            } else {
                h.input(pkt);
            }
        };
        b.batch_begin();
        self.link.a_to_b.poll(now, |pkt| input(b, pkt));
        b.batch_end();
        a.batch_begin();
        self.link.b_to_a.poll(now, |pkt| input(a, pkt));
        a.batch_end();
        self.a.advance(now);
        self.b.advance(now);
        self.flush_tx();
        true
    }

    /// Steps until `done` holds (true), or until the clock would pass `deadline` or nothing is
    /// left to happen (false; the clock then rests at `deadline`).
    pub fn run_until(&mut self, deadline: u64, mut done: impl FnMut(&mut SimNet) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if !self.step_until(deadline) {
                return done(self);
            }
        }
    }

    /// Flushes the capture file.
    pub fn finish_capture(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.pcap.as_mut() {
            w.flush()?;
        }
        Ok(())
    }
}
