//! The receive path: parse and check a packet, find its connection (O(1) on the 4-tuple) or
//! listener, run the SYN cache and SYN cookies for listeners (FreeBSD tcp_syncache.c), and
//! answer segments for no socket with a RST (RFC 9293 3.10.7.1).

use std::net::SocketAddr;
use std::sync::Arc;

use plugtcp_abi::segment::{th, to, SegOut, TcpOpts};
use plugtcp_abi::stack::ConnEvent;
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::{Errno, TcpState};

use crate::conn::Conn;
use crate::lro;
use crate::socket::buffer::CHUNK;
use crate::socket::syncache::{InsertOutcome, SynCacheEntry, SynCacheEvent};
use crate::socket::table::{ConnKey, ListenerId};
use crate::wire::{self, Parsed, Unverified};
use crate::Host;
use plugtcp_abi::seq::seq_lt;

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

    /// The UDP port the packet being received came from (0: plain TCP or not said).
    fn arrival_port(&self) -> u16 {
        self.rx_port.unwrap_or(0)
    }

    /// One received IP packet.
    pub fn input(&mut self, pkt: &[u8]) {
        // Inside a batch the tunables were refreshed once at its start.
        if self.batch.is_none() {
            self.refresh_tunables();
        }
        let u = match wire::parse_unverified(pkt) {
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
        let mut u = u;
        if let Some(slot) = found {
            if let Some(batch) = self.batch.as_mut() {
                if let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) {
                    let tp = &mut c.ctx.tp;
                    if tp.t_flags2 & plugtcp_abi::tcpcb::tf2::INPUT_BATCH == 0 {
                        tp.t_flags2 |= plugtcp_abi::tcpcb::tf2::INPUT_BATCH;
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
                let seg = p.seg();
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
            self.listener_input(lid, key, &p);
            return;
        }
        self.respond_rst(&key, &p);
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
    fn rst_for_ack(&mut self, key: &ConnKey, p: &Parsed<'_>) {
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
    fn send_raw(&mut self, key: &ConnKey, seg: &SegOut, udp_port: u16) {
        let (local, remote, ttl) = (key.local, key.remote, self.worker.ttl);
        let _ = self
            .worker
            .tx
            .push_tagged(wire::MAX_HEADER, udp_port, |buf| {
                wire::build(buf, local, remote, seg, &[], ttl)
            });
    }

    fn listener_input(&mut self, lid: ListenerId, key: ConnKey, p: &Parsed<'_>) {
        let now = self.worker.now;
        let f = p.flags;
        if f & th::RST != 0 {
            // FreeBSD syncache_chkrst (RFC 5961 3.2): a RST at exactly IRS+1 removes the
            // pending handshake; elsewhere in the window it earns a challenge ACK.
            if let Some(e) = self.syncache.get(&key).copied() {
                let rcv_nxt = e.irs.wrapping_add(1);
                let wnd = self.synack_window(lid);
                let off = p.seq.wrapping_sub(rcv_nxt);
                let in_window = off < wnd || (wnd == 0 && off == 0);
                if in_window && (off == 0 || self.tunables.insecure_rst != 0) {
                    self.syncache.remove(&key);
                    self.syncache.stats_mut().reset += 1;
                } else if in_window {
                    self.syncache_challenge_ack(&e);
                }
            }
            return;
        }
        if f & th::SYN != 0 && f & th::ACK == 0 {
            if f & th::FIN != 0 && self.tunables.drop_synfin != 0 {
                return;
            }
            self.syn_received(lid, key, p, now);
            return;
        }
        if f & th::SYN != 0 {
            // FreeBSD: a SYN-ACK to a listening socket is bogus, and answered by a RST.
            self.rst_for_ack(&key, p);
            return;
        }
        if f & th::ACK == 0 {
            return;
        }
        // The third segment of the handshake (FreeBSD syncache_expand).
        let Some(entry) = self.expand(lid, &key, p, now) else {
            return;
        };
        let Some(l) = self.listener_at(lid.0 as usize) else {
            return;
        };
        // Connections not yet accepted count against the backlog, the half-open ones (made,
        // but not through the handshake in their stack yet) included; FreeBSD's
        // sonewconn takes up to one and a half times the backlog.
        if l.accept_q.len() + l.embryonic > 3 * l.backlog / 2 {
            self.stats.listen_overflows += 1;
            self.rst_for_ack(&key, p);
            return;
        }
        match self.conn_from_syncache(&entry) {
            Ok(slot) => {
                let seg = p.seg();
                let _ = self.with_slot(slot, |c, w| c.do_segment(w, &seg));
                self.after_call(slot);
            }
            Err(_) => {
                self.syncache.stats_mut().aborted += 1;
                self.rst_for_ack(&key, p);
            }
        }
    }

    /// Validates the ACK that completes a handshake against its SYN cache entry or, when
    /// there is none, as a returning SYN cookie; answers or drops it when invalid (then
    /// `None`). Returns the entry.
    fn expand(
        &mut self,
        lid: ListenerId,
        key: &ConnKey,
        p: &Parsed<'_>,
        now: u64,
    ) -> Option<SynCacheEntry> {
        let ts_negotiated;
        let (entry, from_cache) = match self.syncache.get(key).copied() {
            Some(e) => {
                if p.ack != e.iss.wrapping_add(1) {
                    // RFC 9293 3.10.7.4: an unacceptable ACK in SYN-RECEIVED draws a RST,
                    // and FreeBSD's syncache_expand has taken the entry out already.
                    self.syncache.remove(key);
                    self.syncache.stats_mut().badack += 1;
                    self.rst_for_ack(key, p);
                    return None;
                }
                ts_negotiated = e.ts_recent.is_some();
                if let Some(recent) = e.ts_recent {
                    // RFC 7323 PAWS on the ACK: an old timestamp is an old duplicate.
                    if p.opts.has(to::TSTAMP) && seq_lt(p.opts.tsval, recent) {
                        return None;
                    }
                }
                (e, true)
            }
            None => {
                let t = &self.tunables;
                // A cookie is believed only while this bucket is losing entries (or when
                // the cache is off): otherwise every handshake has its entry, and an ACK
                // without one is forged, replayed or for a connection long gone.
                let window_start = now.saturating_sub(crate::socket::syncache::SYNCOOKIE_LIFETIME);
                let believable = t.syncookies != 0
                    && (t.syncookies_only != 0
                        || self.syncache.overflowed_since(key, window_start));
                if !believable {
                    self.rst_for_ack(key, p);
                    return None;
                }
                self.cookies.maybe_rotate(now, &mut self.rng);
                let irs = p.seq.wrapping_sub(1);
                let iss = p.ack.wrapping_sub(1);
                let Some(info) = self.cookies.check(key, irs, iss) else {
                    self.rst_for_ack(key, p);
                    return None;
                };
                self.stats.syncookies_recvd += 1;
                self.syncache.stats_mut().cookiesrecvd += 1;
                let mut e = SynCacheEntry::new(*key, irs, iss, lid);
                e.port = self.arrival_port();
                e.peer_mss = info.mss;
                e.snd_wscale = info.wscale;
                e.rcv_wscale = self.rcv_wscale();
                e.sack_ok = info.sack_ok;
                // The cookie does not say whether timestamps were agreed, the ACK does: RFC
                // 7323 3.2 lets a host send them after the SYNs only if both SYNs carried
                // them (FreeBSD syncookie_lookup). Our offset is a keyed hash of the tuple,
                // the same as the SYN-ACK used, so the peer sees one clock.
                if crate::usrreq::rfc1323_ts(self.tunables.rfc1323) && p.opts.has(to::TSTAMP) {
                    e.ts_recent = Some(p.opts.tsval);
                    e.ts_offset = self.ts_offset(key);
                }
                ts_negotiated = e.ts_recent.is_some();
                (e, false)
            }
        };
        // RFC 7323 3.2: once timestamps are agreed, a segment without one is dropped
        // (unless tolerate_missing_ts, FreeBSD's default).
        if ts_negotiated && !p.opts.has(to::TSTAMP) && self.tunables.tolerate_missing_ts == 0 {
            return None;
        }
        // The sequence number must fall in the window the SYN-ACK offered, or the segment
        // is not the third of this handshake; FreeBSD answers with a RST and forgets it.
        let wnd = self.synack_window(lid);
        let off = p.seq.wrapping_sub(entry.irs);
        if off == 0 || off > wnd {
            if from_cache {
                self.syncache.remove(key);
            }
            self.syncache.stats_mut().badack += 1;
            self.rst_for_ack(key, p);
            return None;
        }
        if from_cache {
            self.syncache.take(key);
        }
        Some(entry)
    }

    /// The window a SYN-ACK offers: the listener's receive buffer, never scaled (RFC 7323
    /// 2.2).
    fn synack_window(&self, lid: ListenerId) -> u32 {
        let rcvbuf = self
            .listener_at(lid.0 as usize)
            .and_then(|l| l.inherit.rcvbuf)
            .unwrap_or(self.tunables.recvspace as usize);
        rcvbuf.min(65535) as u32
    }

    /// The MSS a listener's SYN-ACKs offer: the link's, lowered by TCP_MAXSEG on the
    /// listener and, over UDP (`udp_port` not 0), by udp_tunneling_overhead.
    fn synack_mss(&self, local: SocketAddr, maxseg: Option<u32>, udp_port: u16) -> u32 {
        let mss = self.tunneled_mss(self.mss_for(local), udp_port);
        maxseg.map_or(mss, |m| mss.min(m))
    }

    /// `mss` less udp_tunneling_overhead for a connection over UDP (`udp_port` not 0),
    /// never below minmss (FreeBSD syncache_respond, tcp_mss_update).
    pub(crate) fn tunneled_mss(&self, mss: u32, udp_port: u16) -> u32 {
        if udp_port == 0 {
            return mss;
        }
        let overhead = self.tunables.udp_tunneling_overhead.max(0) as u32;
        mss.saturating_sub(overhead)
            .max(self.tunables.minmss.max(0) as u32)
    }

    /// The MSS assumed for a peer that sent none (RFC 9293 3.7.1): `mssdflt` over IPv4,
    /// `v6mssdflt` over IPv6.
    pub(crate) fn default_peer_mss(&self, key: &ConnKey) -> u16 {
        let t = &self.tunables;
        let v = if key.remote.is_ipv4() {
            t.mssdflt
        } else {
            t.v6mssdflt
        };
        v.clamp(0, 65535) as u16
    }

    /// Our window-scale shift: enough for the largest receive buffer we may grow to
    /// (FreeBSD: TCP_MAXWIN << scale covers sb_max).
    pub(crate) fn rcv_wscale(&self) -> u8 {
        let t = &self.tunables;
        let max = (t.recvbuf_max as u64).max(t.recvspace as u64);
        let mut s = 0u8;
        while s < 14 && (65535u64 << s) < max {
            s += 1;
        }
        s
    }

    fn syn_received(&mut self, lid: ListenerId, key: ConnKey, p: &Parsed<'_>, now: u64) {
        // TCP_NOOPT on the listener: a SYN-ACK without options, and none agreed (FreeBSD
        // SCF_NOOPT).
        let noopt = self
            .listener_at(lid.0 as usize)
            .is_some_and(|l| l.tcpcb.t_flags & tf::NOOPT != 0);
        let scale_ok = crate::usrreq::rfc1323_scale(self.tunables.rfc1323) && !noopt;
        let ts_ok = crate::usrreq::rfc1323_ts(self.tunables.rfc1323) && !noopt;
        let mut e = SynCacheEntry::new(key, p.seq, self.isn(&key), lid);
        e.port = self.arrival_port();
        e.peer_mss = if p.opts.has(to::MSS) {
            p.opts.mss
        } else {
            self.default_peer_mss(&key)
        };
        if scale_ok && p.opts.has(to::WSCALE) {
            e.snd_wscale = Some(p.opts.wscale.min(14));
            e.rcv_wscale = self.rcv_wscale();
        }
        if ts_ok && p.opts.has(to::TSTAMP) {
            e.ts_recent = Some(p.opts.tsval);
            e.ts_offset = self.ts_offset(&key);
        }
        e.sack_ok = self.tunables.sack_enable != 0 && p.opts.has(to::SACKPERM) && !noopt;
        e.noopt = noopt;
        // RFC 3168 6.1.1: an ECN-setup SYN (ECE and CWR) gets an ECN-setup SYN-ACK (ECE) when
        // ecn.enable is 1 or 2.
        e.ecn = self.tunables.ecn_enable != 0 && p.flags & (th::ECE | th::CWR) == th::ECE | th::CWR;
        let cookies = self.tunables.syncookies != 0;
        let cookies_only = cookies && self.tunables.syncookies_only != 0;
        let duplicate = !cookies_only && self.syncache.get(&key).is_some();
        if cookies && !duplicate {
            // As FreeBSD: with cookies on, every SYN-ACK's ISS is a cookie, so a handshake
            // whose cache entry was evicted (bucket overflow) still completes on the ACK.
            self.cookies.maybe_rotate(now, &mut self.rng);
            e.iss = self
                .cookies
                .generate(&key, e.irs, e.peer_mss, e.snd_wscale, e.sack_ok);
            self.stats.syncookies_sent += 1;
            self.syncache.stats_mut().cookiessent += 1;
        }
        if !cookies_only {
            match self.syncache.insert(now, e) {
                InsertOutcome::Inserted => {}
                InsertOutcome::BucketOverflow { .. } => self.stats.listen_overflows += 1,
                InsertOutcome::ReplacedDuplicate => {
                    // A retransmitted SYN: answer as before.
                    if let Some(old) = self.syncache.get(&key) {
                        e = *old;
                    }
                }
                InsertOutcome::CacheFull => {
                    self.stats.listen_overflows += 1;
                    if !cookies {
                        return; // cache full and no cookies: drop the SYN
                    }
                    // Stateless from here: the cookie carries MSS, window scale and SACK,
                    // and the ACK will say whether timestamps were agreed.
                }
            }
        }
        self.send_synack(&e);
    }

    /// FreeBSD syncache_respond(sc, TH_ACK): a challenge ACK for a pending handshake (the
    /// SYN-ACK's numbers, no SYN options).
    fn syncache_challenge_ack(&mut self, e: &SynCacheEntry) {
        let mut o = TcpOpts::default();
        if let Some(tsecr) = e.ts_recent {
            o.flags |= to::TSTAMP;
            o.tsval = ((self.worker.now / 1_000_000) as u32).wrapping_add(e.ts_offset);
            o.tsecr = tsecr;
        }
        let seg = SegOut {
            seq: e.iss.wrapping_add(1),
            ack: e.irs.wrapping_add(1),
            flags: th::ACK,
            win: self.synack_window(e.listener) as u16,
            opts: o,
            ..Default::default()
        };
        self.send_raw(&e.key, &seg, e.port);
    }

    fn send_synack(&mut self, e: &SynCacheEntry) {
        let maxseg = self
            .listener_at(e.listener.0 as usize)
            .and_then(|l| l.inherit.maxseg);
        let mut o = TcpOpts {
            flags: if e.noopt { 0 } else { to::MSS },
            mss: self.synack_mss(e.key.local, maxseg, e.port) as u16,
            ..Default::default()
        };
        if e.snd_wscale.is_some() {
            o.flags |= to::WSCALE;
            o.wscale = e.rcv_wscale;
        }
        if e.sack_ok {
            o.flags |= to::SACKPERM;
        }
        if let Some(tsecr) = e.ts_recent {
            o.flags |= to::TSTAMP;
            o.tsval = ((self.worker.now / 1_000_000) as u32).wrapping_add(e.ts_offset);
            o.tsecr = tsecr;
        }
        let seg = SegOut {
            seq: e.iss,
            ack: e.irs.wrapping_add(1),
            flags: th::SYN | th::ACK | if e.ecn { th::ECE } else { 0 },
            win: self.synack_window(e.listener) as u16,
            opts: o,
            ..Default::default()
        };
        // The listener's IP_TOS and IP_TTL (FreeBSD sc_ip_tos, sc_ip_ttl).
        let (tos, ttl) = self
            .listener_at(e.listener.0 as usize)
            .map_or((0, 0), |l| (l.inherit.ip_tos, l.inherit.ip_ttl));
        let ttl = if ttl == 0 { self.worker.ttl } else { ttl };
        let (local, remote) = (e.key.local, e.key.remote);
        let _ = self.worker.tx.push_tagged(wire::MAX_HEADER, e.port, |buf| {
            wire::build_with_tos(buf, local, remote, &seg, &[], ttl, tos)
        });
    }

    /// The connection a completed handshake makes (syncache_socket): SYN_RECEIVED with the
    /// negotiated options, on the listener's stack and CC; its stack then processes the ACK.
    fn conn_from_syncache(&mut self, e: &SynCacheEntry) -> Result<usize, Errno> {
        let l = self.listeners[e.listener.0 as usize]
            .as_ref()
            .ok_or(Errno::ECONNABORTED)?;
        let (stack, cc, listener_tp) = (l.stack.clone(), l.cc.clone(), l.tcpcb.clone());
        let inherit = l.inherit.clone();
        let slot = self.alloc_conn(e.key)?;
        let mss = self.synack_mss(e.key.local, inherit.maxseg, e.port);
        let synack_wnd = self.synack_window(e.listener);
        let c = self.conns[slot].as_mut().ok_or(Errno::ENOMEM)?;
        c.side.listener = Some(e.listener.0);
        c.side.embryonic = true;
        c.side.udp_port = e.port;
        if let Some(l) = self.listeners[e.listener.0 as usize].as_mut() {
            l.embryonic += 1;
        }
        let c = self.conns[slot].as_mut().ok_or(Errno::ENOMEM)?;
        let tp = &mut c.ctx.tp;
        tp.t_state = TcpState::SynReceived;
        tp.iss = e.iss;
        tp.irs = e.irs;
        tp.snd_una = e.iss;
        tp.snd_nxt = e.iss.wrapping_add(1);
        tp.snd_max = tp.snd_nxt;
        tp.rcv_nxt = e.irs.wrapping_add(1);
        tp.rcv_up = tp.rcv_nxt;
        tp.snd_up = e.iss.wrapping_add(1);
        tp.rcv_adv = tp.rcv_nxt.wrapping_add(synack_wnd);
        tp.snd_wl1 = e.irs;
        tp.t_peer_mss = e.peer_mss as u32;
        tp.t_maxseg = mss.min(e.peer_mss as u32).max(self.tunables.minmss as u32);
        if let Some(ws) = e.snd_wscale {
            tp.t_flags |= tf::REQ_SCALE | tf::RCVD_SCALE;
            tp.snd_scale = ws;
            tp.rcv_scale = e.rcv_wscale;
            tp.request_r_scale = e.rcv_wscale;
        }
        if let Some(ts) = e.ts_recent {
            tp.t_flags |= tf::REQ_TSTMP | tf::RCVD_TSTMP;
            tp.ts_recent = ts;
            tp.ts_recent_age = self.worker.now;
            tp.ts_offset = e.ts_offset;
        }
        if e.sack_ok {
            tp.t_flags |= tf::SACK_PERMIT;
        }
        // No RTT sample from the SYN cache (FreeBSD times no SYN-ACK): with timestamps the
        // handshake's ACK gives one through its TS ecr, without them the first data does.
        if e.ecn {
            tp.t_flags2 |= plugtcp_abi::tcpcb::tf2::ECN_PERMIT;
        }
        // FreeBSD syncache_socket: a retransmitted SYN-ACK means one segment to start with
        // (cc_conn_init reads snd_cwnd == 1).
        if e.rexmits > 0 {
            tp.snd_cwnd = 1;
        }
        // Socket options set on the listener carry over (keepalive, nodelay, ...).
        {
            use plugtcp_abi::tcpcb::tf2;
            tp.t_flags |= listener_tp.t_flags & (tf::NODELAY | tf::NOPUSH | tf::NOOPT);
            tp.t_flags2 |= listener_tp.t_flags2 & (tf2::KEEPALIVE | tf2::QUICKACK | tf2::CORK);
        }
        tp.t_keepinit = listener_tp.t_keepinit;
        tp.t_keepidle = listener_tp.t_keepidle;
        tp.t_keepintvl = listener_tp.t_keepintvl;
        tp.t_keepcnt = listener_tp.t_keepcnt;
        tp.t_user_timeout = listener_tp.t_user_timeout;
        let side = &mut c.side;
        if let Some(n) = inherit.sndbuf {
            side.snd.set_hiwat(n);
            side.snd_auto = false;
        }
        if let Some(n) = inherit.rcvbuf {
            side.rcv.set_hiwat(n);
            side.rcv_auto = false;
        }
        side.linger = inherit.linger;
        side.linger_time = inherit.linger_time;
        side.ip_tos = inherit.ip_tos;
        side.ip_ttl = inherit.ip_ttl;
        side.oobinline = inherit.oobinline;
        if !inherit.sticky.is_empty() {
            side.sticky = Some(Box::new(inherit.sticky.clone()));
        }
        self.attach_plugins(slot, stack, cc, Some(&listener_tp))?;
        self.replay_sticky(slot);
        self.stats.passive_opens += 1;
        Ok(slot)
    }

    /// Puts a new connection in the table and a slot.
    pub(crate) fn alloc_conn(&mut self, key: ConnKey) -> Result<usize, Errno> {
        let slot = self.conns.vacant();
        self.table.insert_conn(key, self.conns.vacant_id(slot))?;
        let t = &self.tunables;
        let mut c = Conn::new(
            slot,
            self.mss_for(key.local),
            t.sendspace as usize,
            t.recvspace as usize,
            self.registry.cc_globals,
        );
        c.side.local = key.local;
        c.side.remote = key.remote;
        if self.addrs.contains(&key.remote.ip()) {
            c.ctx.tp.t_flags2 |= plugtcp_abi::tcpcb::tf2::LOCAL_PEER;
        }
        if key.remote.is_ipv6() {
            c.ctx.tp.t_flags2 |= plugtcp_abi::tcpcb::tf2::INET6;
        }
        self.conns.put(slot, Box::new(c));
        Ok(slot)
    }

    /// Attaches CC and stack to a new connection (the stack's `inherit` runs for accepted
    /// connections).
    pub(crate) fn attach_plugins(
        &mut self,
        slot: usize,
        stack: Option<Arc<crate::registry::BlockEntry>>,
        cc: Option<Arc<crate::registry::CcEntry>>,
        listener: Option<&plugtcp_abi::Tcpcb>,
    ) -> Result<(), Errno> {
        let snap = self.registry.load_full();
        let stack = stack
            .filter(|s| !s.being_removed())
            .or_else(|| snap.default_block.clone())
            .ok_or(Errno::ENOENT)?;
        let cc = cc
            .filter(|c| !c.being_removed())
            .or_else(|| snap.default_cc.clone());
        let r = self.with_slot(slot, |c, w| {
            if let Some(cc) = cc {
                c.set_cc(cc)?;
            }
            c.switch_stack(w, stack)?;
            if let Some(ltp) = listener {
                c.inherit(w, ltp)?;
            }
            Ok(())
        });
        if r.is_err() {
            self.free_conn(slot);
        }
        r
    }

    /// Handles what the stack reported during a call, and frees connections that are done.
    pub(crate) fn after_call(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let events = std::mem::take(&mut c.side.events);
        // FreeBSD: data for a socket that can receive no more (SBS_CANTRCVMORE, after
        // shutdown(SHUT_RD)) is acknowledged and thrown away; the window stays open.
        if c.side.rd_shut && c.side.rcv.readable() > 0 {
            let n = c.side.rcv.readable();
            c.side.rcv.consume(&mut self.worker.pool, n);
            c.side.read_pos += n as u64;
        }
        if events & (1 << ConnEvent::Urgent as u8) != 0 {
            // The urgent byte is the one before rcv_up; place it in the stream relative to
            // what is readable now (a pointer may run ahead of the data).
            let tp = &c.ctx.tp;
            let data_end = tp
                .rcv_nxt
                .wrapping_sub((tp.t_flags2 & plugtcp_abi::tcpcb::tf2::FIN_RCVD != 0) as u32);
            let behind = data_end.wrapping_sub(tp.rcv_up.wrapping_sub(1)) as i32 as i64;
            let off = (c.side.read_pos + c.side.rcv.readable() as u64) as i64 - behind;
            if off >= c.side.read_pos as i64 {
                c.side.urg = Some(crate::conn::UrgentMark {
                    off: off as u64,
                    byte: None,
                    taken: false,
                });
            }
        }
        let closed = events & (1 << ConnEvent::Closed as u8) != 0;
        let mut connected = events & (1 << ConnEvent::Connected as u8) != 0;
        let readable = events & (1 << ConnEvent::Readable as u8) != 0;
        // TCP_DEFER_ACCEPT: a deferred connection becomes acceptable when data (or a FIN)
        // arrives, or when the deferral runs out (see `defer_timers`).
        if c.side.deferred_until.is_some() && (readable || closed) {
            c.side.deferred_until = None;
            connected = true;
        } else if connected {
            let defer = c
                .side
                .listener
                .and_then(|lid| self.listeners.get(lid as usize)?.as_ref())
                .map_or(0, |l| l.defer_accept);
            if defer > 0 && c.side.rcv.readable() == 0 && !readable {
                c.side.deferred_until = Some(self.worker.now + defer as u64 * 1_000_000_000);
                self.deferred.push(slot);
                connected = false;
            }
        }
        if connected {
            if let Some(lid) = c.side.listener {
                if let Some(l) = self
                    .listeners
                    .get_mut(lid as usize)
                    .and_then(Option::as_mut)
                {
                    l.accept_q.push_back(slot);
                    c.side.queued = true;
                    if std::mem::take(&mut c.side.embryonic) {
                        l.embryonic = l.embryonic.saturating_sub(1);
                    }
                }
            } else {
                self.stats.active_opens += 1;
            }
        }
        let c = self.conns[slot]
            .as_ref()
            .map(|c| (c.side.user_closed, c.side.listener, c.state()));
        if let Some((user_closed, listener, state)) = c {
            // Gone, and nobody will read its status: free it. An accepted connection that
            // dies in the accept queue is freed and taken out of the queue.
            // A half-open one nobody has seen yet goes the same way.
            let queued = self.conns[slot]
                .as_ref()
                .is_some_and(|c| c.side.queued || c.side.embryonic);
            if closed || state == TcpState::Closed {
                self.unhash(slot);
            }
            if (closed || state == TcpState::Closed) && (user_closed || queued) {
                if let Some(lid) = listener {
                    if let Some(l) = self
                        .listeners
                        .get_mut(lid as usize)
                        .and_then(Option::as_mut)
                    {
                        l.accept_q.retain(|&s| s != slot);
                    }
                }
                self.free_conn(slot);
            }
        }
    }

    /// A connection that closed leaves the lookup table (FreeBSD in_pcbdrop), so what
    /// arrives for its 4-tuple is treated as for no connection, although the application
    /// still holds the socket; a timeout it dies of reports the last ICMP soft error.
    fn unhash(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if c.ctx.tp.t_softerror == Errno::ETIMEDOUT.0 {
            if let Some(e) = c.side.soft_error.take() {
                c.ctx.tp.t_softerror = e.0;
            }
        }
        let key = ConnKey::new(c.side.local, c.side.remote);
        if self.table.lookup_conn(&key) == self.conns.id(slot) {
            self.table.remove_conn(&key);
            self.last_demux = None;
        }
    }

    /// Takes a connection out of the table and frees it.
    pub(crate) fn free_conn(&mut self, slot: usize) {
        self.last_demux = None;
        if let Some(c) = self.conns.get(slot).and_then(|c| c.as_deref()) {
            let key = ConnKey::new(c.side.local, c.side.remote);
            if self.table.lookup_conn(&key) == self.conns.id(slot) {
                self.table.remove_conn(&key);
            }
            if c.side.embryonic {
                if let Some(l) = c
                    .side
                    .listener
                    .and_then(|lid| self.listeners.get_mut(lid as usize)?.as_mut())
                {
                    l.embryonic = l.embryonic.saturating_sub(1);
                }
            }
        }
        self.close_conn(slot);
    }

    /// TCP_DEFER_ACCEPT deadlines: a connection that sent no data in time is queued for
    /// accept anyway.
    pub(crate) fn defer_timers(&mut self, now: u64) {
        if self.deferred.is_empty() {
            return;
        }
        let mut due = Vec::new();
        self.deferred.retain(|&slot| {
            let d = self
                .conns
                .get(slot)
                .and_then(|c| c.as_deref()?.side.deferred_until);
            match d {
                Some(t) if t <= now => {
                    due.push(slot);
                    false
                }
                Some(_) => true,
                None => false,
            }
        });
        for slot in due {
            let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            c.side.deferred_until = None;
            if let Some(l) = c
                .side
                .listener
                .and_then(|lid| self.listeners.get_mut(lid as usize)?.as_mut())
            {
                l.accept_q.push_back(slot);
                c.side.queued = true;
                if std::mem::take(&mut c.side.embryonic) {
                    l.embryonic = l.embryonic.saturating_sub(1);
                }
            }
        }
    }

    /// SYN cache timers: retransmit SYN-ACKs, expire stale entries.
    pub(crate) fn syncache_timers(&mut self, now: u64) {
        let mut evs = std::mem::take(&mut self.sc_events);
        self.syncache.expire(now, &mut evs);
        for ev in evs.drain(..) {
            if let SynCacheEvent::Retransmit(key) = ev {
                if let Some(e) = self.syncache.get(&key).copied() {
                    self.send_synack(&e);
                }
            }
        }
        self.sc_events = evs;
    }
}
