//! An in-memory point-to-point link between two smoltcp interfaces: two FIFO queues of IP
//! packets with zero delay, unlimited bandwidth and no loss. Packet buffers are recycled
//! through per-direction free lists, so steady-state transfer does not allocate.

use std::collections::VecDeque;
use std::mem;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Which end of the link an interface sits on.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Side {
    A,
    B,
}

/// One queued IP packet: a recycled buffer and the number of valid bytes in it.
#[derive(Debug)]
struct Frame {
    buf: Vec<u8>,
    len: usize,
}

/// Packets and free buffers for one direction.
#[derive(Debug, Default)]
struct Direction {
    queue: VecDeque<Frame>,
    /// Buffers whose packet has been consumed, ready for the next transmit.
    free: Vec<Vec<u8>>,
    /// Packets transmitted in this direction (for reports).
    sent: u64,
    /// Test knob: flip the last byte of the first packet longer than the IPv4 and TCP
    /// headers once `sent` reaches this index.
    corrupt_from: Option<u64>,
}

/// The two directions of the link. Borrow one end as a `phy::Device` with [`Link::port`].
#[derive(Debug)]
pub struct Link {
    mtu: usize,
    a_to_b: Direction,
    b_to_a: Direction,
    /// Test knob: discard every transmitted packet (to exercise stall detection).
    drop_all: bool,
    /// The device computes and verifies checksums (smoltcp's `Checksum::None` for IPv4
    /// and TCP): the stack does neither.
    checksum_offload: bool,
}

impl Link {
    pub fn new(mtu: usize) -> Link {
        Link {
            mtu,
            a_to_b: Direction::default(),
            b_to_a: Direction::default(),
            drop_all: false,
            checksum_offload: false,
        }
    }

    /// Offer checksum offload to both interfaces (see [`Link::port`]).
    pub fn set_checksum_offload(&mut self, on: bool) {
        self.checksum_offload = on;
    }

    /// Make the link lose every packet from now on.
    pub fn set_drop_all(&mut self, drop_all: bool) {
        self.drop_all = drop_all;
    }

    /// Damage one A-to-B packet that carries TCP payload, at or after the `index`th
    /// transmitted packet; the receiver's checksum verification must discard it.
    pub fn corrupt_a_to_b(&mut self, index: u64) {
        self.a_to_b.corrupt_from = Some(index);
    }

    /// Packets transmitted so far: (A to B, B to A).
    pub fn packets(&self) -> (u64, u64) {
        (self.a_to_b.sent, self.b_to_a.sent)
    }

    /// Packets transmitted but not yet received, both directions together.
    pub fn in_flight(&self) -> usize {
        self.a_to_b.queue.len() + self.b_to_a.queue.len()
    }

    /// The device seen by the interface on `side`: it transmits into its own direction's
    /// queue and receives from the other one.
    pub fn port(&mut self, side: Side) -> Port<'_> {
        let (tx, rx) = match side {
            Side::A => (&mut self.a_to_b, &mut self.b_to_a),
            Side::B => (&mut self.b_to_a, &mut self.a_to_b),
        };
        Port {
            mtu: self.mtu,
            drop_all: self.drop_all,
            checksum_offload: self.checksum_offload,
            tx,
            rx,
        }
    }
}

/// One end of a [`Link`], borrowed for the duration of an `Interface::poll`.
#[derive(Debug)]
pub struct Port<'a> {
    mtu: usize,
    drop_all: bool,
    checksum_offload: bool,
    tx: &'a mut Direction,
    rx: &'a mut Direction,
}

impl Device for Port<'_> {
    type RxToken<'t>
        = RxToken<'t>
    where
        Self: 't;
    type TxToken<'t>
        = TxToken<'t>
    where
        Self: 't;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let frame = self.rx.queue.pop_front()?;
        Some((
            RxToken {
                buf: frame.buf,
                len: frame.len,
                free: &mut self.rx.free,
            },
            TxToken {
                mtu: self.mtu,
                drop_all: self.drop_all,
                dir: self.tx,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        // Unlimited bandwidth: the device always has room.
        Some(TxToken {
            mtu: self.mtu,
            drop_all: self.drop_all,
            dir: self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        // Default checksum capabilities: computed on transmit and verified on receive in
        // software, like a stack without offload (plugtcp does the same). With checksum
        // offload the device is said to do both, so smoltcp does neither.
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        if self.checksum_offload {
            caps.checksum.ipv4 = smoltcp::phy::Checksum::None;
            caps.checksum.tcp = smoltcp::phy::Checksum::None;
        }
        caps
    }
}

/// A received packet; its buffer goes back to the sender's free list when the token is
/// dropped (after `consume`, or unused).
pub struct RxToken<'a> {
    buf: Vec<u8>,
    len: usize,
    free: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.buf[..self.len])
    }
}

impl Drop for RxToken<'_> {
    fn drop(&mut self) {
        // `mem::take` leaves an empty Vec, which does not allocate.
        self.free.push(mem::take(&mut self.buf));
    }
}

/// Permission to queue one packet in a direction.
pub struct TxToken<'a> {
    mtu: usize,
    drop_all: bool,
    dir: &'a mut Direction,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // Buffers are MTU-sized and never shrunk, so a recycled one is always big enough;
        // the resize only runs when a new buffer is first made (warm-up).
        let mut buf = self.dir.free.pop().unwrap_or_default();
        if buf.len() < len {
            buf.resize(len.max(self.mtu), 0);
        }
        let result = f(&mut buf[..len]);
        if let Some(from) = self.dir.corrupt_from
            && self.dir.sent >= from
            && len > 40
        {
            buf[len - 1] ^= 0x5a;
            self.dir.corrupt_from = None;
        }
        self.dir.sent += 1;
        if self.drop_all {
            self.dir.free.push(buf);
        } else {
            self.dir.queue.push_back(Frame { buf, len });
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{RxToken as _, TxToken as _};

    fn send(link: &mut Link, side: Side, payload: &[u8]) {
        let mut port = link.port(side);
        let tx = port.transmit(Instant::ZERO).expect("link always has room");
        tx.consume(payload.len(), |buf| buf.copy_from_slice(payload));
    }

    fn recv(link: &mut Link, side: Side) -> Option<Vec<u8>> {
        let mut port = link.port(side);
        let (rx, _tx) = port.receive(Instant::ZERO)?;
        Some(rx.consume(|buf| buf.to_vec()))
    }

    #[test]
    fn packets_cross_in_fifo_order_and_buffers_are_recycled() {
        let mut link = Link::new(1500);
        send(&mut link, Side::A, b"one");
        send(&mut link, Side::A, b"two!");
        send(&mut link, Side::B, b"back");
        assert_eq!(link.in_flight(), 3);
        assert_eq!(link.packets(), (2, 1));
        // A does not receive its own packets.
        assert_eq!(recv(&mut link, Side::A).as_deref(), Some(&b"back"[..]));
        assert_eq!(recv(&mut link, Side::A), None);
        assert_eq!(recv(&mut link, Side::B).as_deref(), Some(&b"one"[..]));
        assert_eq!(recv(&mut link, Side::B).as_deref(), Some(&b"two!"[..]));
        assert_eq!(recv(&mut link, Side::B), None);
        assert_eq!(link.in_flight(), 0);
        assert_eq!(link.a_to_b.free.len(), 2);
        assert!(link.a_to_b.free.iter().all(|b| b.len() == 1500));
        // The next transmit reuses a free buffer instead of making one.
        send(&mut link, Side::A, b"again");
        assert_eq!(link.a_to_b.free.len(), 1);
        assert_eq!(recv(&mut link, Side::B).as_deref(), Some(&b"again"[..]));
    }

    #[test]
    fn drop_all_loses_packets() {
        let mut link = Link::new(1500);
        link.set_drop_all(true);
        send(&mut link, Side::A, b"lost");
        assert_eq!(link.in_flight(), 0);
        assert_eq!(recv(&mut link, Side::B), None);
    }

    #[test]
    fn capabilities_keep_software_checksums() {
        let mut link = Link::new(9000);
        let caps = link.port(Side::A).capabilities();
        assert_eq!(caps.max_transmission_unit, 9000);
        assert_eq!(caps.medium, Medium::Ip);
        for c in [caps.checksum.ipv4, caps.checksum.tcp] {
            assert!(c.tx() && c.rx(), "checksums must be computed and verified");
        }
    }
}
