//! The receive path: parse and check a packet, find its connection (O(1) on the 4-tuple) or
//! listener, run the SYN cache and SYN cookies for listeners (FreeBSD tcp_syncache.c), and
//! answer segments for no socket with a RST (RFC 9293 3.10.7.1).

use std::net::SocketAddr;

use plugtcp_abi::segment::{th, SegOut};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::TcpState;

use crate::lro;
use crate::socket::buffer::CHUNK;
use crate::socket::table::ConnKey;
use crate::wire::{self, Parsed, Unverified};
use crate::Host;

impl Host {
    /// One IP packet on a host that runs FreeBSD's TCP-over-UDP tunnel beside plain TCP
    /// (tcp_input_with_port): it came over UDP from the peer's port `udp_port` (the tunnel
    /// on net.inet.tcp.udp_tunneling_port took the UDP header off), or as plain TCP when
    /// `udp_port` is 0. A SYN over UDP makes a connection that answers over UDP to that
    /// port with a smaller MSS; a connection keeps the encapsulation it began with, and a
    /// segment that arrives otherwise draws a RST.
    ///
    /// [`Host::input`] is for backends that make no such distinction (the `udp` backend
    /// carries every packet over UDP and keeps the ports itself).
    pub fn input_with_port(&mut self, pkt: &[u8], udp_port: u16) {
        self.rx_port = Some(udp_port);
        self.input(pkt);
        self.rx_port = None;
    }

    /// One received IP packet whose TCP checksum its device left partial and vouches for
    /// (a TUN device with IFF_VNET_HDR hands over the local kernel's packets with virtio's
    /// NEEDS_CSUM): its checksum is not verified. Only for such a device.
    pub fn input_checksum_offloaded(&mut self, pkt: &[u8]) {
        self.rx_checksum_offloaded = true;
        self.input(pkt);
        self.rx_checksum_offloaded = false;
    }

    /// The UDP port the packet being received came from (0: plain TCP or not said).
    pub(crate) fn arrival_port(&self) -> u16 {
        self.rx_port.unwrap_or(0)
    }

    /// One received IP packet.
    pub fn input(&mut self, pkt: &[u8]) {
        // Inside a batch the tunables were refreshed once at its start.
        if self.batch.is_none() {
            self.refresh_tunables();
        }
        let mut u = match wire::parse_unverified(pkt) {
            Ok(u) => u,
            Err(wire::DropReason::Fragment) => return self.fragment_input(pkt),
            Err(wire::DropReason::NotTcp) if crate::icmp::is_icmp(pkt) => {
                return self.icmp_input(pkt)
            }
            Err(reason) => {
                self.stats.in_errs[reason as usize] += 1;
                return;
            }
        };
        if self.rx_checksum_offloaded {
            u.checksum_offloaded();
        }
        let h = u.headers();
        let key = ConnKey::new(
            SocketAddr::new(h.dst, h.dst_port),
            SocketAddr::new(h.src, h.src_port),
        );
        // One-entry demux cache: a bulk flow hits the same connection segment after segment,
        // and this skips the keyed hash. Freeing a connection clears it.
        let found = match self.last_demux {
            Some((k, slot)) if k == key => Some(slot),
            _ => self.table.lookup_conn(&key).map(|id| {
                self.last_demux = Some((key, id.slot()));
                id.slot()
            }),
        };
        if let Some(slot) = found {
            // TCP-MD5: a signing connection takes only segments with a right digest.
            let signing = self.conns[slot]
                .as_ref()
                .filter(|c| c.ctx.tp.t_flags & tf::SIGNATURE != 0)
                .map(|c| c.side.md5_key.clone());
            if let Some(sig_key) = signing {
                let tcp = wire::tcp_segment(pkt).map_or(&[][..], |(_, _, t)| t);
                if !self.md5_check(key.local, key.remote, tcp, sig_key.as_deref()) {
                    return;
                }
            }
            if let Some(batch) = self.batch.as_mut() {
                if let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) {
                    if !c.side.in_batch {
                        c.side.in_batch = true;
                        batch.push(slot);
                    }
                }
                if self.lro_enabled && lro::candidate(u.headers()) {
                    match self.lro_input(slot, u) {
                        Some(back) => u = back,
                        None => return,
                    }
                }
            }
        }
        self.lro_flush();
        let p = match u.verify() {
            Ok(p) => p,
            Err(reason) => {
                self.stats.in_errs[reason as usize] += 1;
                return;
            }
        };
        self.stats.in_segs += 1;
        if let Some(slot) = found {
            let port = self.rx_port;
            if port.is_some_and(|p| {
                self.conns[slot]
                    .as_ref()
                    .is_some_and(|c| c.side.udp_port != p)
            }) {
                return self.respond_rst(&key, &p);
            }
            let time_wait = self.conns[slot]
                .as_ref()
                .is_some_and(|c| c.ctx.tp.t_state == TcpState::TimeWait);
            if !time_wait {
                // reass.maxsegments: out-of-order data beyond the host-wide bound is
                // dropped before the stack sees it (FreeBSD's reassembly zone is full).
                let out_of_order = !p.payload.is_empty()
                    && self.conns[slot].as_ref().is_some_and(|c| {
                        c.ctx.tp.t_state.have_established() && p.seq != c.ctx.tp.rcv_nxt
                    });
                // (Its ACK still counts: only the data goes, and the FIN with it.)
                let drop_data = out_of_order && !self.reass_room();
                if p.flags & (th::SYN | th::ACK | th::RST) == th::SYN | th::ACK {
                    self.tfo_synack(slot, p.ack, &p.opts);
                }
                let mut seg = p.seg();
                if drop_data {
                    seg.payload = Default::default();
                    seg.flags &= !th::FIN;
                }
                let _ = self.with_slot(slot, |c, w| c.do_segment(w, &seg));
                self.after_call(slot);
                return;
            }
            match self.time_wait_input(slot, &p) {
                crate::timewait::TimeWaitVerdict::Done => return,
                // TIME_WAIT gave way to a new connection: the listener takes the SYN.
                crate::timewait::TimeWaitVerdict::Recycle => {}
            }
        }
        if let Some(lid) = self.table.lookup_listener(key.local) {
            // TCP-MD5 on the listener, with a key for this peer: a signed handshake only.
            if let Some(sig_key) = self.listener_md5_key(lid.0 as usize, key.remote.ip()) {
                let tcp = wire::tcp_segment(pkt).map_or(&[][..], |(_, _, t)| t);
                if !self.md5_check(key.local, key.remote, tcp, Some(&sig_key)) {
                    return;
                }
            }
            self.listener_input(lid, key, &p);
            return;
        }
        self.closed_port_input(&key, &p);
    }

    /// A segment for a port no socket has: logged (`log_in_vain`), then answered with a RST
    /// unless `blackhole` says to drop it (blackhole(4): 1 for SYNs, 2 for every segment;
    /// from one of our own addresses only with `blackhole_local`).
    fn closed_port_input(&mut self, key: &ConnKey, p: &Parsed<'_>) {
        let syn = p.flags & th::SYN != 0;
        let t = &self.tunables;
        if t.log_in_vain == 2 || (t.log_in_vain == 1 && syn) {
            let line = format!(
                "TCP: [{}]:{} to [{}]:{} tcpflags 0x{:x}; tcp_input: Connection attempt to closed port",
                key.remote.ip(),
                key.remote.port(),
                key.local.ip(),
                key.local.port(),
                p.flags
            );
            self.log.push(line);
        }
        let blackholed = t.blackhole == 2 || (t.blackhole == 1 && syn);
        let local = self.addrs.contains(&key.remote.ip());
        if blackholed && (t.blackhole_local != 0 || !local) && p.flags & th::RST == 0 {
            self.stats.blackholed += 1;
            return;
        }
        self.respond_rst(key, p);
    }

    /// A fragment: held for reassembly, or the datagram it completes goes through the
    /// receive path (whole datagrams are never fragments, so this recurses once).
    fn fragment_input(&mut self, pkt: &[u8]) {
        match self.frags.input(self.worker.now, pkt) {
            crate::ipfrag::FragOutcome::Complete(whole) => self.input(&whole),
            crate::ipfrag::FragOutcome::Held => {}
            crate::ipfrag::FragOutcome::Dropped => {
                self.stats.in_errs[wire::DropReason::Fragment as usize] += 1;
            }
        }
    }

    /// LRO with direct data placement (see [`crate::lro`]) for a candidate packet of the
    /// connection in `slot`: its payload is verified while it is copied into the receive
    /// buffer, and it starts or extends the pending segment. Gives the packet back when it
    /// cannot be placed.
    fn lro_input<'a>(&mut self, slot: usize, u: Unverified<'a>) -> Option<Unverified<'a>> {
        let h = u.headers();
        let continues = self
            .lro
            .is_some_and(|pd| pd.slot == slot && pd.continued_by(h));
        if !continues {
            self.lro_flush();
        }
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return Some(u);
        };
        let (tp, rcv) = (&c.ctx.tp, &mut c.side.rcv);
        // Where the payload goes: right after the pending segment, or at rcv_nxt.
        let off = h.seq.wrapping_sub(tp.rcv_nxt) as usize;
        let len = h.payload.len();
        let placeable = (continues || off == 0)
            && matches!(
                tp.t_state,
                TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2
            )
            // Out-of-order data held: the stack reassembles, segment by segment.
            && rcv.written_end() == rcv.readable();
        if !placeable {
            return Some(u);
        }
        let room = rcv.chunk_room(off);
        let Some((head, tail)) = rcv.place(&mut self.worker.pool, off, len) else {
            return Some(u);
        };
        let p = match u.verify_into(head, tail) {
            Ok(p) => p,
            Err(reason) => {
                // What it wrote is past every written byte: nothing is spoiled.
                self.stats.in_errs[reason as usize] += 1;
                return None;
            }
        };
        self.stats.in_segs += 1;
        self.worker.offload.lro_queued += 1;
        let here = len.min(room);
        match self.lro.as_mut() {
            // (A pending segment that ends at a chunk's end is complete.)
            Some(pd) if continues && room < CHUNK => pd.extend(&p, here),
            _ => self.lro_replace(lro::Pending::first_part(slot, &p, here)),
        }
        if here < len {
            // The merged payload must be contiguous: the chunk ends the segment here.
            self.lro_replace(lro::Pending::rest_of(slot, &p, here));
        }
        None
    }

    /// Makes `next` (already placed) the pending segment, delivering the one it replaces.
    fn lro_replace(&mut self, next: lro::Pending) {
        if let Some(done) = self.lro.replace(next) {
            self.lro_deliver(done);
        }
    }

    /// Hands the segment LRO is building to its stack.
    pub(crate) fn lro_flush(&mut self) {
        if let Some(pd) = self.lro.take() {
            self.lro_deliver(pd);
        }
    }

    /// Hands a merged segment to its stack. Its connection's placement ends unless the
    /// next pending segment is that connection's too (its bytes are placed already).
    fn lro_deliver(&mut self, pd: lro::Pending) {
        self.worker.offload.lro_flushed += 1;
        let Some(c) = self.conns.get_mut(pd.slot).and_then(Option::as_mut) else {
            return;
        };
        // Normally at rcv_nxt; further on if the stack did not take all of what came
        // before (then it sees an out-of-order segment, its bytes still in place).
        let off = pd.seq.wrapping_sub(c.ctx.tp.rcv_nxt) as usize;
        let at = c.side.rcv.placed(off, pd.len);
        // Placed bytes stay until `end_placement`, which only this function calls.
        debug_assert!(at.is_some(), "LRO segment lost its placed bytes");
        if let Some(at) = at {
            // SAFETY: `placed` found `pd.len` placed bytes at `at`, in one chunk the receive
            // buffer keeps until `end_placement`; during the stack call the buffer frees no
            // chunk, and its only write to these bytes is the stack's own write of this
            // payload, which it recognises and skips.
            let payload = unsafe { std::slice::from_raw_parts(at, pd.len) };
            let seg = pd.seg(payload);
            let _ = self.with_slot(pd.slot, |c, w| c.do_segment(w, &seg));
        }
        let more = self.lro.is_some_and(|next| next.slot == pd.slot);
        if let Some(c) = self.conns.get_mut(pd.slot).and_then(Option::as_mut) {
            if !more {
                c.side.rcv.end_placement(&mut self.worker.pool);
            }
        }
        self.after_call(pd.slot);
    }

    /// RFC 9293 3.10.7.1: a segment for no connection gets a RST, unless it is one.
    fn respond_rst(&mut self, key: &ConnKey, p: &Parsed<'_>) {
        if p.flags & th::RST != 0 {
            return;
        }
        let seg = if p.flags & th::ACK != 0 {
            SegOut {
                seq: p.ack,
                flags: th::RST,
                ..Default::default()
            }
        } else {
            let len = p.payload.len() as u32
                + (p.flags & th::SYN != 0) as u32
                + (p.flags & th::FIN != 0) as u32;
            SegOut {
                seq: 0,
                ack: p.seq.wrapping_add(len),
                flags: th::RST | th::ACK,
                ..Default::default()
            }
        };
        self.stats.out_rsts += 1;
        self.send_raw(key, &seg, self.arrival_port());
    }

    /// A RST answering an ACK that matches no handshake: its sequence number is that ACK.
    pub(crate) fn rst_for_ack(&mut self, key: &ConnKey, p: &Parsed<'_>) {
        self.stats.out_rsts += 1;
        let seg = SegOut {
            seq: p.ack,
            flags: th::RST,
            ..Default::default()
        };
        self.send_raw(key, &seg, self.arrival_port());
    }

    /// Sends a host-made segment with no payload (RSTs, SYN-ACKs from the SYN cache), over
    /// UDP to `udp_port` unless it is 0.
    pub(crate) fn send_raw(&mut self, key: &ConnKey, seg: &SegOut, udp_port: u16) {
        let (local, remote, ttl) = (key.local, key.remote, self.worker.ttl);
        let _ = self
            .worker
            .tx
            .push_tagged(wire::MAX_HEADER, udp_port, |buf| {
                wire::build(buf, local, remote, seg, &[], ttl)
            });
    }
}
