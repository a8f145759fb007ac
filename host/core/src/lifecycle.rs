//! A connection's life in the host: made (in the table, its plugins attached), called
//! (events after each stack call), and freed (unhashed, its listener told, its state
//! released).

use std::sync::Arc;

use plugtcp_abi::stack::ConnEvent;
use plugtcp_abi::{Errno, TcpState};

use crate::conn::{Conn, ConnFault, Culprit, Worker};
use crate::conn_table::{try_box, ConnId};
use crate::socket::table::ConnKey;
use crate::Host;

impl Host {
    /// Puts a new connection in the table and a slot.
    pub(crate) fn alloc_conn(&mut self, key: ConnKey) -> Result<usize, Errno> {
        self.gauges.admit_socket()?;
        let slot = self.conns.try_vacant()?;
        let t = &self.tunables;
        let mut c = try_box(Conn::new(
            slot,
            self.mss_for(key.local),
            t.sendspace as usize,
            t.recvspace as usize,
            self.registry.cc_globals,
        ))?;
        self.table.insert_conn(key, self.conns.vacant_id(slot))?;
        c.side.local = key.local;
        c.side.remote = key.remote;
        if self.addrs.contains(&key.remote.ip()) {
            c.ctx.tp.t_flags2 |= plugtcp_abi::tcpcb::tf2::LOCAL_PEER;
        }
        if key.remote.is_ipv6() {
            c.ctx.tp.t_flags2 |= plugtcp_abi::tcpcb::tf2::INET6;
        }
        self.put_conn(slot, c);
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
        self.mark_ready(slot);
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
        // A connection opened by TCP Fast Open was queued for accept at its SYN.
        if connected && c.side.tfo_passive {
            connected = false;
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
                    if let Some(r) = self.ready.as_mut() {
                        r.note_listener(lid as usize);
                    }
                }
            } else {
                self.stats.active_opens += 1;
            }
        }
        self.tfo_unpend(slot, false);
        self.account_queues(slot, false);
        // A TFO client's SYN timed out: the path may drop SYNs with data.
        if self.conns[slot].as_ref().is_some_and(|c| {
            c.side.tfo_active && c.state() == TcpState::SynSent && c.ctx.tp.t_rxtshift > 0
        }) {
            self.tfo_syn_failed(slot);
        }
        // Entered TIME_WAIT: counted against maxtcptw.
        let entered_tw = self.conns[slot].as_mut().is_some_and(|c| {
            let now_tw = c.state() == TcpState::TimeWait;
            let entered = now_tw && !c.side.tw_listed;
            c.side.tw_listed = now_tw;
            entered
        });
        if entered_tw {
            self.time_wait_entered(slot);
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
        self.tfo_unpend(slot, true);
        self.account_queues(slot, true);
        self.hostcache_learn(slot);
        self.close_conn(slot);
    }

    /// A connection opened by a TFO SYN that is no longer in SYN_RECEIVED (or is going,
    /// `gone`) leaves its listener's count of pending TFO connections.
    fn tfo_unpend(&mut self, slot: usize, gone: bool) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if !c.side.tfo_pending || (c.ctx.tp.t_state == TcpState::SynReceived && !gone) {
            return;
        }
        c.side.tfo_pending = false;
        if let Some(l) = c
            .side
            .listener
            .and_then(|lid| self.listeners.get_mut(lid as usize)?.as_mut())
        {
            l.tfo_pending = l.tfo_pending.saturating_sub(1);
        }
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
            let lid = c.side.listener;
            if let Some(l) = lid.and_then(|lid| self.listeners.get_mut(lid as usize)?.as_mut()) {
                l.accept_q.push_back(slot);
                c.side.queued = true;
                if std::mem::take(&mut c.side.embryonic) {
                    l.embryonic = l.embryonic.saturating_sub(1);
                }
                if let (Some(r), Some(lid)) = (self.ready.as_mut(), lid) {
                    r.note_listener(lid as usize);
                }
            }
        }
    }
}

impl Host {
    /// Counts a plugin fault (only panics count; an errno is an answer, not a fault).
    pub fn note_fault(&mut self, f: &ConnFault) {
        if f.error == plugtcp_abi::HookError::Panicked {
            let name = match &f.culprit {
                Culprit::Stack(n) | Culprit::Cc(n) => n.clone(),
            };
            *self.plugin_faults.entry(name).or_default() += 1;
        }
    }

    /// A new connection on the default stack and CC.
    pub fn new_conn(&mut self) -> Result<ConnId, Errno> {
        let snap = self.registry.load_full();
        let t = self.sysctl.load_full();
        self.gauges.admit_socket()?;
        let slot = self.conns.try_vacant()?;
        let mut c = try_box(Conn::new(
            slot,
            t.mssdflt as u32,
            t.sendspace as usize,
            t.recvspace as usize,
            self.registry.cc_globals,
        ))?;
        if let Some(cc) = &snap.default_cc {
            c.set_cc(cc.clone()).map_err(|f| f.errno())?;
        }
        if let Some(b) = &snap.default_block {
            if let Err(f) = c.switch_stack(&mut self.worker, b.clone()) {
                c.close(&mut self.worker);
                self.note_fault(&f);
                return Err(f.errno());
            }
        }
        Ok(self.put_conn(slot, c))
    }

    /// Puts a new connection in `slot` (from `try_vacant`), counted in `pcbcount`.
    pub(crate) fn put_conn(&mut self, slot: usize, c: Box<Conn>) -> ConnId {
        self.gauges.add_pcbs(1);
        self.conns.put(slot, c)
    }

    /// Frees connection `slot`: the stack's fini, the CC's cb_destroy, timers and buffers.
    pub(crate) fn close_conn(&mut self, slot: usize) {
        self.last_demux = None;
        // A task waiting on it learns it is gone (its handle is stale from now on).
        self.mark_ready(slot);
        if let Some(mut c) = self.conns.take(slot) {
            c.close(&mut self.worker);
            self.gauges.add_pcbs(-1);
        }
    }

    /// Runs `f` on connection `id`; a plugin panic resets (frees) that connection only,
    /// is counted, and comes back as ECONNABORTED. An errno is just returned; ENOTCONN when
    /// `id` names no connection.
    pub fn with_conn<R>(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut Conn, &mut Worker) -> Result<R, ConnFault>,
    ) -> Result<R, Errno> {
        self.with_slot(self.conns.resolve(id), f)
    }

    /// [`Host::with_conn`] by slot, for the host's own paths.
    pub(crate) fn with_slot<R>(
        &mut self,
        slot: usize,
        f: impl FnOnce(&mut Conn, &mut Worker) -> Result<R, ConnFault>,
    ) -> Result<R, Errno> {
        let holes_full = self
            .gauges
            .sack_holes
            .load(std::sync::atomic::Ordering::Relaxed)
            >= self.tunables.sack_globalmaxholes;
        let c = self
            .conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(Errno::ENOTCONN)?;
        // sack.globalmaxholes: the stack makes no new holes while the host is at it.
        if holes_full {
            c.ctx.tp.t_flags2 |= plugtcp_abi::tcpcb::tf2::SACK_HOLES_FULL;
        } else {
            c.ctx.tp.t_flags2 &= !plugtcp_abi::tcpcb::tf2::SACK_HOLES_FULL;
        }
        match f(c, &mut self.worker) {
            Ok(r) => Ok(r),
            Err(fault) => {
                if fault.error == plugtcp_abi::HookError::Panicked {
                    self.close_conn(slot);
                }
                self.note_fault(&fault);
                Err(fault.errno())
            }
        }
    }
}
