//! Passive opens (FreeBSD tcp_input's LISTEN branch and syncache.c): a segment for a
//! listener, the SYN cache and its SYN-ACKs, SYN cookies, and the connection made when
//! the handshake completes.

use plugtcp_abi::segment::{th, to, SegOut, TcpOpts};
use plugtcp_abi::seq::seq_lt;
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::{Errno, TcpState};

use crate::fastopen::CookieCheck;
use crate::socket::syncache::{InsertOutcome, SynCacheEntry, SynCacheEvent};
use crate::socket::table::{ConnKey, ListenerId};
use crate::wire::{self, Parsed};
use crate::Host;

impl Host {
    pub(crate) fn listener_input(&mut self, lid: ListenerId, key: ConnKey, p: &Parsed<'_>) {
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
    fn synack_mss(&mut self, key: &ConnKey, maxseg: Option<u32>, udp_port: u16) -> u32 {
        let mss = self.tunneled_mss(self.mss_for(key.local), udp_port);
        // A path MTU the host cache remembers for the peer (FreeBSD tcp_mssopt).
        let mss = match self.hostcache_mtu_of(key.remote.ip()) {
            Some(mtu) => {
                let hdr = if key.remote.is_ipv4() { 40 } else { 60 };
                mss.min(
                    mtu.saturating_sub(hdr)
                        .max(self.tunables.minmss.max(0) as u32),
                )
            }
            None => mss,
        };
        maxseg.map_or(mss, |m| mss.min(m))
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
        if !noopt && p.opts.has(to::FASTOPEN) && self.tfo_syn(lid, &mut e, p) {
            return;
        }
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

    /// A SYN with the TCP Fast Open option (FreeBSD syncache_add): to a listener with
    /// TCP_FASTOPEN and fastopen.server_enable, with room in its queue of pending TFO
    /// connections, a valid cookie opens the connection at once with the SYN's data (true:
    /// done); a missing or invalid one gets a cookie in the SYN-ACK.
    fn tfo_syn(&mut self, lid: ListenerId, e: &mut SynCacheEntry, p: &Parsed<'_>) -> bool {
        if self.tunables.fastopen_server_enable == 0 {
            return false;
        }
        let Some((qlen, pending)) = self
            .listener_at(lid.0 as usize)
            .map(|l| (l.tfo_qlen, l.tfo_pending))
        else {
            return false;
        };
        if qlen == 0 {
            return false;
        }
        e.tfo = true;
        if pending >= qlen {
            // RFC 7413 5.1: past the limit, TFO SYNs are served as plain ones.
            self.with_fastopen(|f| f.stats.passive_overflow += 1);
            return false;
        }
        let acceptany = self.tunables.fastopen_acceptany != 0;
        let client = e.key.remote.ip();
        let cookie = p.opts.tfo_cookie();
        match self.with_fastopen(|f| f.check_cookie(client, cookie, acceptany)) {
            CookieCheck::Valid(latest) => match self.tfo_open(lid, e, p, latest) {
                Ok(()) => {
                    self.with_fastopen(|f| f.stats.passive += 1);
                    true
                }
                Err(_) => false,
            },
            CookieCheck::Invalid(c) => {
                e.tfo_cookie = Some(c);
                self.with_fastopen(|f| f.stats.passive_fail += 1);
                false
            }
            CookieCheck::NoKey => false,
        }
    }

    /// The connection a valid TFO cookie opens (FreeBSD syncache_tfo_expand): in
    /// SYN_RECEIVED with the SYN's data in its receive buffer and in the accept queue at
    /// once; its stack sends the SYN-ACK (acknowledging the data) and may send data before
    /// the handshake completes.
    fn tfo_open(
        &mut self,
        lid: ListenerId,
        e: &SynCacheEntry,
        p: &Parsed<'_>,
        cookie: [u8; crate::fastopen::COOKIE_LEN],
    ) -> Result<(), Errno> {
        let l = self
            .listener_at(lid.0 as usize)
            .ok_or(Errno::ECONNABORTED)?;
        if l.accept_q.len() + l.embryonic > 3 * l.backlog / 2 {
            return Err(Errno::ENOBUFS);
        }
        let slot = self.conn_from_syncache(e)?;
        let Some(c) = self.conns[slot].as_mut() else {
            return Err(Errno::ENOMEM);
        };
        // What does not fit in the receive buffer is not acknowledged; the client sends it
        // again.
        let n = c.side.rcv.write_at(&mut self.worker.pool, 0, p.payload);
        c.side.rcv.commit(n);
        let n = n as u32;
        let tp = &mut c.ctx.tp;
        tp.snd_nxt = e.iss;
        tp.snd_max = e.iss;
        tp.rcv_nxt = e.irs.wrapping_add(1).wrapping_add(n);
        tp.rcv_adv = tp.rcv_nxt;
        tp.rcv_up = tp.rcv_nxt;
        // The window in a SYN is never scaled (RFC 7323 2.2).
        tp.snd_wnd = u32::from(p.win);
        tp.max_sndwnd = tp.snd_wnd;
        tp.snd_wl1 = e.irs;
        tp.snd_wl2 = e.iss;
        tp.t_flags |= tf::FASTOPEN;
        // FreeBSD's TFO SYN-ACK hands out the newest cookie too (t_tfo_cookie.server).
        tp.t_tfo_client_cookie_len = cookie.len() as u8;
        tp.t_tfo_cookie[..cookie.len()].copy_from_slice(&cookie);
        c.side.tfo_passive = true;
        c.side.tfo_pending = true;
        c.side.embryonic = false;
        c.side.queued = true;
        if n > 0 {
            c.side.events |= 1 << plugtcp_abi::stack::ConnEvent::Readable as u8;
        }
        if let Some(l) = self.listeners[lid.0 as usize].as_mut() {
            l.embryonic = l.embryonic.saturating_sub(1);
            l.tfo_pending += 1;
            l.accept_q.push_back(slot);
        }
        if let Some(r) = self.ready.as_mut() {
            r.note_listener(lid.0 as usize);
        }
        let _ = self.with_slot(slot, |c, w| c.output(w));
        self.after_call(slot);
        Ok(())
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
            mss: self.synack_mss(&e.key, maxseg, e.port) as u16,
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
        if let Some(cookie) = e.tfo_cookie {
            o.flags |= to::FASTOPEN;
            o.tfo_len = cookie.len() as u8;
            o.tfo_cookie[..cookie.len()].copy_from_slice(&cookie);
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
        let sig_key = if e.noopt {
            None
        } else {
            self.listener_md5_key(e.listener.0 as usize, remote.ip())
        };
        let mut seg = seg;
        if sig_key.is_some() {
            seg.opts.flags |= to::SIGNATURE;
        }
        let _ = self
            .worker
            .tx
            .push_tagged(wire::MAX_HEADER, e.port, |buf| match &sig_key {
                Some(k) => wire::build_finished(
                    buf,
                    local,
                    remote,
                    &seg,
                    &[],
                    (ttl, tos),
                    wire::Finish::Signed(k),
                ),
                None => wire::build_with_tos(buf, local, remote, &seg, &[], ttl, tos),
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
        let sig_key = self.listener_md5_key(e.listener.0 as usize, e.key.remote.ip());
        let slot = self.alloc_conn(e.key)?;
        let mss = self.synack_mss(&e.key, inherit.maxseg, e.port);
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
        // Opened by a TFO SYN, even one that fell back: TCP_FASTOPEN says so (tcp(4)).
        if e.tfo {
            tp.t_flags |= tf::FASTOPEN;
        }
        // A signed handshake makes a signing connection.
        if sig_key.is_some() {
            tp.t_flags |= tf::SIGNATURE;
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
        side.md5_key = sig_key;
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
        if let Some(rate) = inherit.max_pacing_rate {
            side.set_max_pacing_rate(rate);
        }
        if !inherit.sticky.is_empty() {
            side.sticky = Some(Box::new(inherit.sticky.clone()));
        }
        self.hostcache_apply(slot);
        self.attach_plugins(slot, stack, cc, Some(&listener_tp))?;
        self.replay_sticky(slot);
        self.stats.passive_opens += 1;
        Ok(slot)
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
