//! Socket options (FreeBSD tcp_ctloutput and sosetopt/sogetopt): what the host keeps
//! itself (SOL_SOCKET options, TCP_FUNCTION_BLK, TCP_CONGESTION, sticky options), what it
//! passes to the stack or the CC module, and what a listener passes on to its connections.

use plugtcp_abi::sockopt::{self, SockOpt, SockOptDir};
use plugtcp_abi::stack::TcpInfo;
use plugtcp_abi::tcpcb::{tf, tf2};
use std::sync::Arc;

use plugtcp_abi::sockopt::{SO_KEEPALIVE, SO_LINGER, SO_OOBINLINE, SO_RCVBUF, SO_SNDBUF};
use plugtcp_abi::{Errno, TcpState, Tcpcb};

use crate::conn_table::ConnId;
use crate::socket::sticky::{check_listener_option, StickyOpts};
use crate::Host;

impl Host {
    /// setsockopt on a listener: what its connections inherit (SO_KEEPALIVE, TCP_NODELAY,
    /// TCP_NOPUSH, TCP_KEEP*, TCP_FUNCTION_BLK, TCP_CONGESTION) and TCP_DEFER_ACCEPT.
    pub fn listener_setsockopt(
        &mut self,
        lid: usize,
        level: i32,
        name: i32,
        val: &[u8],
    ) -> Result<(), Errno> {
        let int = || -> Result<i32, Errno> {
            let b: [u8; 4] = val.try_into().map_err(|_| Errno::EINVAL)?;
            Ok(i32::from_ne_bytes(b))
        };
        let text = || {
            std::str::from_utf8(val)
                .map(|s| s.trim_end_matches('\0'))
                .map_err(|_| Errno::EINVAL)
        };
        match (level, name) {
            (sockopt::IPPROTO_TCP, sockopt::TCP_FUNCTION_BLK) => {
                return self.set_listener_stack(lid, function_set_name(val)?)
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_CONGESTION) => {
                return self.set_listener_cc(lid, text()?)
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_FASTOPEN) => {
                return self.set_listener_fastopen(lid, val)
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_MD5SIG) => {
                let on = self.md5_sockopt_keys(val)?;
                let l = self
                    .listeners
                    .get_mut(lid)
                    .and_then(Option::as_mut)
                    .ok_or(Errno::EBADF)?;
                if on {
                    l.tcpcb.t_flags |= plugtcp_abi::tcpcb::tf::SIGNATURE;
                } else {
                    l.tcpcb.t_flags &= !plugtcp_abi::tcpcb::tf::SIGNATURE;
                }
                return Ok(());
            }
            _ => {}
        }
        let minmss = self.tunables.minmss as i32;
        let l = self
            .listeners
            .get_mut(lid)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?;
        let tp = &mut l.tcpcb;
        let flag = |tp: &mut Tcpcb, bit: u32, on: bool| {
            if on {
                tp.t_flags |= bit;
            } else {
                tp.t_flags &= !bit;
            }
        };
        let flag2 = |tp: &mut Tcpcb, bit: u32, on: bool| {
            if on {
                tp.t_flags2 |= bit;
            } else {
                tp.t_flags2 &= !bit;
            }
        };
        match (level, name) {
            (sockopt::IPPROTO_TCP, sockopt::TCP_DEFER_ACCEPT) => {
                let v = int()?;
                if v < 0 {
                    return Err(Errno::EINVAL);
                }
                l.defer_accept = v as u32;
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_USER_TIMEOUT) => {
                let v = int()?;
                if v < 0 {
                    return Err(Errno::EINVAL);
                }
                tp.t_user_timeout = v as u32;
            }
            // Options a block keeps: checked here, set on each connection when it attaches.
            (
                sockopt::IPPROTO_TCP,
                sockopt::TCP_NODELAY
                | sockopt::TCP_NOPUSH
                | sockopt::TCP_CORK
                | sockopt::TCP_NOOPT
                | sockopt::TCP_QUICKACK
                | sockopt::TCP_MAXSEG
                | sockopt::TCP_WINDOW_CLAMP
                | sockopt::TCP_SYNCNT
                | sockopt::TCP_LINGER2,
            ) => {
                let v = int()?;
                check_listener_option(name, v, minmss)?;
                match name {
                    sockopt::TCP_NODELAY => flag(tp, tf::NODELAY, v != 0),
                    sockopt::TCP_NOOPT => flag(tp, tf::NOOPT, v != 0),
                    sockopt::TCP_NOPUSH | sockopt::TCP_CORK => {
                        flag(tp, tf::NOPUSH, v != 0);
                        flag2(tp, tf2::CORK, v != 0 && name == sockopt::TCP_CORK);
                    }
                    sockopt::TCP_QUICKACK => flag2(tp, tf2::QUICKACK, v != 0),
                    sockopt::TCP_MAXSEG => l.inherit.maxseg = Some(v as u32),
                    _ => l.inherit.sticky.remember(name, val),
                }
            }
            (sockopt::SOL_SOCKET, SO_SNDBUF | SO_RCVBUF) => {
                let v = int()?;
                if v <= 0 {
                    return Err(Errno::EINVAL);
                }
                if name == SO_SNDBUF {
                    l.inherit.sndbuf = Some(v as usize);
                } else {
                    l.inherit.rcvbuf = Some(v as usize);
                }
            }
            (sockopt::SOL_SOCKET, SO_LINGER) => {
                let (on, secs) = parse_linger(val)?;
                l.inherit.linger = on.then_some(secs);
                l.inherit.linger_time = secs;
            }
            (sockopt::SOL_SOCKET, SO_OOBINLINE) => l.inherit.oobinline = int()? != 0,
            (sockopt::SOL_SOCKET, sockopt::SO_MAX_PACING_RATE) => {
                l.inherit.max_pacing_rate = Some(parse_pacing_rate(val)?);
            }
            (
                sockopt::IPPROTO_TCP,
                sockopt::TCP_KEEPINIT
                | sockopt::TCP_KEEPIDLE
                | sockopt::TCP_KEEPINTVL
                | sockopt::TCP_KEEPCNT,
            ) => {
                // 0 means the system default, as in FreeBSD.
                let v = int()?;
                if v < 0 {
                    return Err(Errno::EINVAL);
                }
                let ms = (v as u32).saturating_mul(1000);
                match name {
                    sockopt::TCP_KEEPINIT => tp.t_keepinit = ms,
                    sockopt::TCP_KEEPIDLE => tp.t_keepidle = ms,
                    sockopt::TCP_KEEPINTVL => tp.t_keepintvl = ms,
                    _ => tp.t_keepcnt = v as u32,
                }
            }
            (sockopt::SOL_SOCKET, SO_KEEPALIVE) => {
                if int()? != 0 {
                    tp.t_flags2 |= tf2::KEEPALIVE;
                } else {
                    tp.t_flags2 &= !tf2::KEEPALIVE;
                }
            }
            _ => return Err(Errno::ENOPROTOOPT),
        }
        Ok(())
    }

    /// setsockopt: the host's own options (keepalive, timeouts, buffers, stack and CC
    /// choice), the rest to the stack.
    pub fn setsockopt(
        &mut self,
        id: ConnId,
        level: i32,
        name: i32,
        val: &[u8],
    ) -> Result<(), Errno> {
        let slot = self.conns.resolve(id);
        let mut buf = val.to_vec();
        let len = buf.len() as u32;
        let mut opt = SockOpt {
            level,
            name,
            dir: SockOptDir::Set,
            val: (&mut buf[..]).into(),
            len,
        };
        match (level, name) {
            (sockopt::IPPROTO_TCP, sockopt::TCP_SIFTR) => self.siftr_setsockopt(slot, val),
            (sockopt::IPPROTO_TCP, sockopt::TCP_MD5SIG) => {
                let on = self.md5_sockopt_keys(val)?;
                self.set_conn_md5(slot, on)
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_FASTOPEN) => self.set_conn_fastopen(slot, val),
            (sockopt::IPPROTO_TCP, sockopt::TCP_FASTOPEN_CONNECT) => {
                self.set_fastopen_connect(slot, val)
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_CONGESTION) => {
                let name = std::str::from_utf8(val)
                    .map_err(|_| Errno::EINVAL)?
                    .trim_end_matches('\0');
                let cc = self.registry.snapshot().cc(name).map_err(cc_errno)?.clone();
                self.with_slot(slot, |c, _| c.set_cc(cc))
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_FUNCTION_BLK) => {
                self.set_function_blk(id, function_set_name(val)?)
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_CCALGOOPT) => {
                if val.len() > sockopt::TCP_CCALGOOPT_MAX {
                    return Err(Errno::EINVAL);
                }
                self.with_slot(slot, |c, _| c.cc_ctl(&mut opt))
            }
            (
                sockopt::IPPROTO_TCP,
                sockopt::TCP_KEEPINIT
                | sockopt::TCP_KEEPIDLE
                | sockopt::TCP_KEEPINTVL
                | sockopt::TCP_KEEPCNT
                | sockopt::TCP_USER_TIMEOUT,
            ) => {
                // 0 means the system default (FreeBSD: TP_KEEPIDLE and friends fall back
                // to the sysctl when the per-connection value is 0); for TCP_USER_TIMEOUT,
                // off.
                let v = opt.int()?;
                if v < 0 {
                    return Err(Errno::EINVAL);
                }
                let c = self.conn_mut(slot)?;
                let tp = &mut c.ctx.tp;
                // Seconds, as tcp(4) takes them, except TCP_KEEPCNT (a count) and
                // TCP_USER_TIMEOUT (milliseconds, Linux).
                let ms = (v as u32).saturating_mul(1000);
                match name {
                    sockopt::TCP_KEEPINIT => tp.t_keepinit = ms,
                    sockopt::TCP_KEEPIDLE => tp.t_keepidle = ms,
                    sockopt::TCP_KEEPINTVL => tp.t_keepintvl = ms,
                    sockopt::TCP_KEEPCNT => tp.t_keepcnt = v as u32,
                    _ => tp.t_user_timeout = v as u32,
                }
                self.notify_stack(slot, &mut opt);
                Ok(())
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_REMOTE_UDP_ENCAPS_PORT) => {
                let v = opt.int()?;
                if v != 0 && self.tunables.udp_tunneling_port == 0 {
                    return Err(Errno::EINVAL);
                }
                let c = self.conn_mut(slot)?;
                // tcp(4): "It can only be set on a closed TCP socket", and FreeBSD wants
                // the tunnel (net.inet.tcp.udp_tunneling_port) there first.
                if c.ctx.tp.t_state != TcpState::Closed || !(0..=65535).contains(&v) {
                    return Err(Errno::EINVAL);
                }

                c.side.udp_port = v as u16;
                Ok(())
            }
            (sockopt::SOL_SOCKET, SO_KEEPALIVE) => {
                let on = opt.int()? != 0;
                let c = self.conn_mut(slot)?;
                if on {
                    c.ctx.tp.t_flags2 |= tf2::KEEPALIVE;
                } else {
                    c.ctx.tp.t_flags2 &= !tf2::KEEPALIVE;
                }
                self.notify_stack(slot, &mut opt);
                Ok(())
            }
            (sockopt::SOL_SOCKET, SO_OOBINLINE) => {
                let on = opt.int()? != 0;
                let c = self.conn_mut(slot)?;
                c.side.oobinline = on;
                Ok(())
            }
            (sockopt::SOL_SOCKET, sockopt::SO_MAX_PACING_RATE) => {
                let rate = parse_pacing_rate(val)?;
                let c = self.conn_mut(slot)?;
                c.side.set_max_pacing_rate(rate);
                // Sending may have waited on the old rate.
                let _ = self.with_slot(slot, |c, w| {
                    crate::conn::arm_pacer(&mut c.side, w);
                    Ok(())
                });
                Ok(())
            }
            (sockopt::SOL_SOCKET, SO_LINGER) => {
                let (on, secs) = parse_linger(val)?;
                let side = &mut self.conn_mut(slot)?.side;
                side.linger = on.then_some(secs);
                side.linger_time = secs;
                Ok(())
            }
            (sockopt::SOL_SOCKET, SO_SNDBUF | SO_RCVBUF) => {
                let v = opt.int()?;
                if v <= 0 {
                    return Err(Errno::EINVAL);
                }
                let c = self.conn_mut(slot)?;
                // A size the application chose is kept: no auto-sizing (FreeBSD SB_AUTOSIZE).
                if name == SO_SNDBUF {
                    c.side.snd.set_hiwat(v as usize);
                    c.side.snd_auto = false;
                } else {
                    c.side.rcv.set_hiwat(v as usize);
                    c.side.rcv_auto = false;
                }
                Ok(())
            }
            _ => {
                self.with_slot(slot, |c, w| c.ctloutput(w, &mut opt))?;
                if StickyOpts::keeps(level, name) {
                    let c = self.conn_mut(slot)?;
                    c.side
                        .sticky
                        .get_or_insert_with(Default::default)
                        .remember(name, val);
                }
                Ok(())
            }
        }
    }

    /// Tells the stack about an option the host keeps in the tcpcb (SO_KEEPALIVE,
    /// TCP_KEEP*, TCP_USER_TIMEOUT), so that it can re-arm a timer (FreeBSD re-arms the
    /// keepalive timer when TCP_KEEPIDLE changes, Linux when SO_KEEPALIVE is set). A stack
    /// that has nothing to do answers ENOPROTOOPT, which is fine.
    fn notify_stack(&mut self, slot: usize, opt: &mut SockOpt<'_>) {
        let _ = self.with_slot(slot, |c, w| c.ctloutput(w, opt));
    }

    /// Sets the options the host remembers for `slot` on its (new) stack again; an option
    /// the stack does not know is left out (a switch must not fail for it).
    pub(crate) fn replay_sticky(&mut self, slot: usize) {
        let Some(sticky) = self.conn_at(slot).and_then(|c| c.side.sticky.clone()) else {
            return;
        };
        for (name, val) in sticky.iter() {
            let mut buf = val.to_vec();
            let len = buf.len() as u32;
            let mut opt = SockOpt {
                level: sockopt::IPPROTO_TCP,
                name,
                dir: SockOptDir::Set,
                val: (&mut buf[..]).into(),
                len,
            };
            let _ = self.with_slot(slot, |c, w| c.ctloutput(w, &mut opt));
        }
    }

    /// getsockopt: the option's value into `buf`, returning its length (EINVAL when `buf`
    /// is too small). Host options (keepalive, timeouts, buffers, linger, stack and CC
    /// names, TCP_REMOTE_UDP_ENCAPS_PORT) are answered here, TCP_CCALGOOPT by the CC module,
    /// the rest (TCP_NODELAY, TCP_MAXSEG, TCP_NOPUSH, ...) by the stack; ENOPROTOOPT for
    /// what nobody knows. TCP_INFO (FreeBSD's `struct tcp_info`, also typed as
    /// [`Host::tcp_info`]) and TCP_STATS ([`plugtcp_abi::stack::TcpStats`]) are cut to
    /// `buf`'s length, as FreeBSD's sooptcopyout does, and return the length copied.
    pub fn getsockopt(
        &mut self,
        id: ConnId,
        level: i32,
        name: i32,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        let slot = self.conns.resolve(id);
        let fixed = match (level, name) {
            (sockopt::IPPROTO_TCP, sockopt::TCP_INFO) => {
                let mut info = self.tcp_info(id)?.to_freebsd();
                // FreeBSD's spare words stay zero for a connection that is not paced.
                let (rate, max) = self.conns.get_by_id(id).map_or((0, 0), |c| {
                    c.side.pacer.as_ref().map_or((0, 0), |p| {
                        let max = p.max_rate;
                        (
                            p.rate(),
                            if max == crate::pacing::NO_MAX_RATE {
                                0
                            } else {
                                max
                            },
                        )
                    })
                });
                use plugtcp_abi::stack::tcpi_off;
                info[tcpi_off::PACING_RATE..tcpi_off::PACING_RATE + 8]
                    .copy_from_slice(&rate.to_ne_bytes());
                info[tcpi_off::MAX_PACING_RATE..tcpi_off::MAX_PACING_RATE + 8]
                    .copy_from_slice(&max.to_ne_bytes());
                Some(info.to_vec())
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_MD5SIG) => {
                let tp = self.tcpcb(id).ok_or(Errno::EBADF)?;
                let on = tp.t_flags & plugtcp_abi::tcpcb::tf::SIGNATURE != 0;
                Some(i32::from(on).to_ne_bytes().to_vec())
            }
            // Whether TFO is asked for (before connect) or the connection was opened by a
            // TFO SYN (tcp(4)).
            (sockopt::IPPROTO_TCP, sockopt::TCP_FASTOPEN) => {
                let tp = self.tcpcb(id).ok_or(Errno::EBADF)?;
                let on = tp.t_flags & tf::FASTOPEN != 0;
                Some(i32::from(on).to_ne_bytes().to_vec())
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_FASTOPEN_CONNECT) => {
                let c = self.conn_at(slot).ok_or(Errno::EBADF)?;
                Some(i32::from(c.side.tfo_connect).to_ne_bytes().to_vec())
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_SIFTR) => {
                let v = self.siftr_getsockopt(slot)?;
                let dst = buf.get_mut(..v.len()).ok_or(Errno::EINVAL)?;
                dst.copy_from_slice(&v);
                return Ok(v.len());
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_STATS) => {
                let tp = self.tcpcb(id).ok_or(Errno::EBADF)?;
                Some(
                    plugtcp_abi::stack::TcpStats::from_tcpcb(tp)
                        .to_bytes()
                        .to_vec(),
                )
            }
            _ => None,
        };
        if let Some(v) = fixed {
            let n = v.len().min(buf.len());
            buf[..n].copy_from_slice(&v[..n]);
            return Ok(n);
        }
        let t = self.tunables.clone();
        let c = self.conn_mut(slot)?;
        let int = |v: i64| {
            (v.clamp(i32::MIN as i64, i32::MAX as i64) as i32)
                .to_ne_bytes()
                .to_vec()
        };
        let tp = &c.ctx.tp;
        // Per-socket value in ms, else the sysctl default; tcp(4) reports seconds.
        let secs = |own: u32, dflt: i64| int(if own > 0 { own as i64 } else { dflt } / 1000);
        let out: Vec<u8> = match (level, name) {
            (sockopt::IPPROTO_TCP, sockopt::TCP_CONGESTION) => {
                c.cc().map_or_else(Vec::new, |cc| cc_name_bytes(&cc.name))
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_FUNCTION_BLK) => {
                let users = c.stack().map_or(0, |b| b.users());
                function_set(&c.stack_name(), users).to_vec()
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_FUNCTION_ALIAS) => {
                // The alias the block was selected by, else its first alias, else "" (FreeBSD
                // find_tcp_function_alias: a name of the block other than its primary one).
                let alias = c
                    .selected_alias()
                    .map(str::to_owned)
                    .or_else(|| c.stack().and_then(|b| b.aliases.first().cloned()));
                let users = c.stack().map_or(0, |b| b.users());
                function_set(alias.as_deref().unwrap_or(""), users).to_vec()
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_KEEPINIT) => secs(tp.t_keepinit, t.keepinit),
            (sockopt::IPPROTO_TCP, sockopt::TCP_KEEPIDLE) => secs(tp.t_keepidle, t.keepidle),
            (sockopt::IPPROTO_TCP, sockopt::TCP_KEEPINTVL) => secs(tp.t_keepintvl, t.keepintvl),
            (sockopt::IPPROTO_TCP, sockopt::TCP_KEEPCNT) => int(if tp.t_keepcnt > 0 {
                tp.t_keepcnt as i64
            } else {
                t.keepcnt
            }),
            (sockopt::IPPROTO_TCP, sockopt::TCP_USER_TIMEOUT) => int(tp.t_user_timeout as i64),
            (sockopt::IPPROTO_TCP, sockopt::TCP_REMOTE_UDP_ENCAPS_PORT) => {
                int(c.side.udp_port as i64)
            }
            (sockopt::SOL_SOCKET, SO_KEEPALIVE) => int((tp.t_flags2 & tf2::KEEPALIVE != 0) as i64),
            (sockopt::SOL_SOCKET, SO_OOBINLINE) => int(c.side.oobinline as i64),
            (sockopt::SOL_SOCKET, sockopt::SO_MAX_PACING_RATE) => {
                pacing_rate_bytes(c.side.max_pacing_rate(), buf.len())
            }
            (sockopt::SOL_SOCKET, SO_SNDBUF) => int(c.side.snd.hiwat() as i64),
            (sockopt::SOL_SOCKET, SO_RCVBUF) => int(c.side.rcv.hiwat() as i64),
            (sockopt::SOL_SOCKET, SO_LINGER) => {
                linger_bytes(c.side.linger.is_some(), c.side.linger_time)
            }
            _ => {
                let len = buf.len() as u32;
                let mut opt = SockOpt {
                    level,
                    name,
                    dir: SockOptDir::Get,
                    val: (&mut buf[..]).into(),
                    len,
                };
                if (level, name) == (sockopt::IPPROTO_TCP, sockopt::TCP_CCALGOOPT) {
                    self.with_slot(slot, |c, _| c.cc_ctl(&mut opt))?;
                } else {
                    self.with_slot(slot, |c, w| c.ctloutput(w, &mut opt))?;
                }
                return Ok(opt.len as usize);
            }
        };
        let dst = buf.get_mut(..out.len()).ok_or(Errno::EINVAL)?;
        dst.copy_from_slice(&out);
        Ok(out.len())
    }

    /// setsockopt(TCP_FUNCTION_BLK) on a connection (FreeBSD tcp_ctloutput_set): ENOENT for
    /// an unknown or departing block, 0 for the block already in use, ECONNRESET in
    /// TIME_WAIT or once the connection was dropped, the target's handoff_ok errno as is,
    /// and the new stack's init errno (EIO if it panicked) with the old stack kept. A panic
    /// in the new stack's init is counted against it; the connection lives on.
    pub fn set_function_blk(&mut self, id: ConnId, name: &str) -> Result<(), Errno> {
        let slot = self.conns.resolve(id);
        let c = self
            .conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?;
        let tp = &c.ctx.tp;
        if tp.t_state == TcpState::TimeWait
            || (tp.t_state == TcpState::Closed && (tp.t_softerror != 0 || c.side.user_closed))
        {
            return Err(Errno::ECONNRESET);
        }
        let b = self.registry.snapshot().block(name)?.clone();
        // A switch to the block in use is a no-op, not a switch.
        let from = c.stack().filter(|s| !Arc::ptr_eq(s, &b)).cloned();
        let r = c.switch_stack_via(&mut self.worker, b.clone(), Some(name));
        if let Some(from) = from {
            let result = r.as_ref().map_or_else(|f| f.errno().name(), |_| "ok");
            self.metrics.note_switch(&from.name, &b.name, result);
        }
        match r {
            Ok(()) => {
                self.replay_sticky(slot);
                Ok(())
            }
            Err(f) => {
                self.note_fault(&f);
                Err(match f.error {
                    plugtcp_abi::HookError::Panicked => Errno::EIO,
                    _ => f.errno(),
                })
            }
        }
    }

    /// getsockopt for an int-valued option.
    pub fn getsockopt_int(&mut self, id: ConnId, level: i32, name: i32) -> Result<i32, Errno> {
        let mut b = [0u8; 4];
        match self.getsockopt(id, level, name, &mut b)? {
            4 => Ok(i32::from_ne_bytes(b)),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// `struct linger { int l_onoff; int l_linger; }`: the seconds when on.
/// A `struct linger`: whether SO_LINGER is on, and the time, kept whether on or not
/// (FreeBSD sosetopt: EDOM outside 0..=65535 seconds).
fn parse_linger(val: &[u8]) -> Result<(bool, u32), Errno> {
    let b: [u8; 8] = val.try_into().map_err(|_| Errno::EINVAL)?;
    let on = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) != 0;
    let secs = i32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
    if !(0..=u16::MAX as i32).contains(&secs) {
        return Err(Errno::EDOM);
    }
    Ok((on, secs as u32))
}

/// A `struct linger` as FreeBSD's sogetopt fills it: `l_onoff` is the SO_LINGER bit.
pub(crate) fn linger_bytes(on: bool, secs: u32) -> Vec<u8> {
    let mut v = (if on { SO_LINGER } else { 0 }).to_ne_bytes().to_vec();
    v.extend_from_slice(&(secs as i32).to_ne_bytes());
    v
}

/// TCP_CONGESTION's value: the name and its NUL, as FreeBSD copies out `len + 1` bytes.
pub(crate) fn cc_name_bytes(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

/// FreeBSD answers ESRCH for a CC module it does not have (tcp_congestion()).
pub(crate) fn cc_errno(e: Errno) -> Errno {
    if e == Errno::ENOENT {
        Errno::ESRCH
    } else {
        e
    }
}

/// Bytes of FreeBSD's `struct tcp_function_set { char function_set_name[32]; uint32_t
/// pcbcnt; }`, the value of TCP_FUNCTION_BLK and TCP_FUNCTION_ALIAS.
pub const TCP_FUNCTION_SET_LEN: usize = sockopt::TCP_FUNCTION_NAME_LEN_MAX + 4;

/// The block name in a TCP_FUNCTION_BLK value: a `struct tcp_function_set` (36 bytes, the
/// name NUL-padded, pcbcnt ignored) or a bare name (NUL-terminated or not).
pub fn function_set_name(val: &[u8]) -> Result<&str, Errno> {
    let name = if val.len() == TCP_FUNCTION_SET_LEN {
        &val[..sockopt::TCP_FUNCTION_NAME_LEN_MAX]
    } else {
        val
    };
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    std::str::from_utf8(&name[..end]).map_err(|_| Errno::EINVAL)
}

/// A `struct tcp_function_set` (name truncated to 31 bytes and NUL-terminated, as FreeBSD
/// does; pcbcnt native-endian).
pub fn function_set(name: &str, pcbcnt: usize) -> [u8; TCP_FUNCTION_SET_LEN] {
    let mut b = [0u8; TCP_FUNCTION_SET_LEN];
    let n = name.len().min(sockopt::TCP_FUNCTION_NAME_LEN_MAX - 1);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b[sockopt::TCP_FUNCTION_NAME_LEN_MAX..]
        .copy_from_slice(&(pcbcnt.min(u32::MAX as usize) as u32).to_ne_bytes());
    b
}

/// Decodes a `struct tcp_function_set`: (name, pcbcnt); `None` when it is not 36 bytes.
pub fn parse_function_set(b: &[u8]) -> Option<(String, u32)> {
    if b.len() != TCP_FUNCTION_SET_LEN {
        return None;
    }
    let name = function_set_name(b).ok()?.to_owned();
    let cnt = b[sockopt::TCP_FUNCTION_NAME_LEN_MAX..].try_into().ok()?;
    Some((name, u32::from_ne_bytes(cnt)))
}

impl Host {
    /// getsockopt on a listener: what it would pass on to its connections, or the system
    /// default; TCP_INFO reports LISTEN. ENOPROTOOPT for what a listener does not know.
    pub fn listener_getsockopt(
        &mut self,
        lid: usize,
        level: i32,
        name: i32,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        let t = self.tunables.clone();
        let l = self.listener_at(lid).ok_or(Errno::EBADF)?;
        let tp = &l.tcpcb;
        let int = |v: i64| {
            (v.clamp(i32::MIN as i64, i32::MAX as i64) as i32)
                .to_ne_bytes()
                .to_vec()
        };
        let secs = |own: u32, dflt: i64| int(if own > 0 { own as i64 } else { dflt } / 1000);
        // FreeBSD reads these back as the t_flags bit itself (TF_NODELAY is 4).
        let flag = |bit: u32| int((tp.t_flags & bit) as i64);
        let sticky = |name: i32| {
            l.inherit
                .sticky
                .get(name)
                .map_or_else(|| int(0), <[u8]>::to_vec)
        };
        let out = match (level, name) {
            (sockopt::SOL_SOCKET, SO_KEEPALIVE) => int((tp.t_flags2 & tf2::KEEPALIVE != 0) as i64),
            (sockopt::SOL_SOCKET, SO_OOBINLINE) => int(l.inherit.oobinline as i64),
            (sockopt::SOL_SOCKET, sockopt::SO_MAX_PACING_RATE) => pacing_rate_bytes(
                l.inherit
                    .max_pacing_rate
                    .unwrap_or(crate::pacing::NO_MAX_RATE),
                buf.len(),
            ),
            (sockopt::SOL_SOCKET, SO_SNDBUF) => {
                int(l.inherit.sndbuf.unwrap_or(t.sendspace as usize) as i64)
            }
            (sockopt::SOL_SOCKET, SO_RCVBUF) => {
                int(l.inherit.rcvbuf.unwrap_or(t.recvspace as usize) as i64)
            }
            (sockopt::SOL_SOCKET, SO_LINGER) => {
                linger_bytes(l.inherit.linger.is_some(), l.inherit.linger_time)
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_NODELAY) => flag(tf::NODELAY),
            (sockopt::IPPROTO_TCP, sockopt::TCP_NOPUSH) => flag(tf::NOPUSH),
            (sockopt::IPPROTO_TCP, sockopt::TCP_CORK) => int((tp.t_flags2 & tf2::CORK != 0) as i64),
            (sockopt::IPPROTO_TCP, sockopt::TCP_NOOPT) => flag(tf::NOOPT),
            (sockopt::IPPROTO_TCP, sockopt::TCP_QUICKACK) => {
                int((tp.t_flags2 & tf2::QUICKACK != 0) as i64)
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_MAXSEG) => {
                let mss = self.mss_for(l.addr);
                int(l.inherit.maxseg.map_or(mss, |m| m.min(mss)) as i64)
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_KEEPINIT) => secs(tp.t_keepinit, t.keepinit),
            (sockopt::IPPROTO_TCP, sockopt::TCP_KEEPIDLE) => secs(tp.t_keepidle, t.keepidle),
            (sockopt::IPPROTO_TCP, sockopt::TCP_KEEPINTVL) => secs(tp.t_keepintvl, t.keepintvl),
            (sockopt::IPPROTO_TCP, sockopt::TCP_KEEPCNT) => int(if tp.t_keepcnt > 0 {
                tp.t_keepcnt as i64
            } else {
                t.keepcnt
            }),
            (sockopt::IPPROTO_TCP, sockopt::TCP_USER_TIMEOUT) => int(tp.t_user_timeout as i64),
            (sockopt::IPPROTO_TCP, sockopt::TCP_DEFER_ACCEPT) => int(l.defer_accept as i64),
            (sockopt::IPPROTO_TCP, sockopt::TCP_FASTOPEN) => int(l.tfo_qlen as i64),
            (
                sockopt::IPPROTO_TCP,
                sockopt::TCP_WINDOW_CLAMP | sockopt::TCP_SYNCNT | sockopt::TCP_LINGER2,
            ) => sticky(name),
            (sockopt::IPPROTO_TCP, sockopt::TCP_FUNCTION_BLK) => {
                let b = l
                    .stack
                    .clone()
                    .or_else(|| self.registry.snapshot().default_block.clone());
                let (n, users) = b.map_or((String::new(), 0), |b| (b.name.clone(), b.users()));
                function_set(&n, users).to_vec()
            }
            // A listener takes UDP-encapsulated SYNs through the tunnel; its own t_port is 0.
            (sockopt::IPPROTO_TCP, sockopt::TCP_REMOTE_UDP_ENCAPS_PORT) => int(0),
            (sockopt::IPPROTO_TCP, sockopt::TCP_CONGESTION) => {
                let c =
                    l.cc.clone()
                        .or_else(|| self.registry.snapshot().default_cc.clone());
                c.map_or_else(Vec::new, |c| cc_name_bytes(&c.name))
            }
            (sockopt::IPPROTO_TCP, sockopt::TCP_INFO) => {
                let v = TcpInfo::from_tcpcb(tp).to_freebsd().to_vec();
                let n = v.len().min(buf.len());
                buf[..n].copy_from_slice(&v[..n]);
                return Ok(n);
            }
            _ => return Err(Errno::ENOPROTOOPT),
        };
        let dst = buf.get_mut(..out.len()).ok_or(Errno::EINVAL)?;
        dst.copy_from_slice(&out);
        Ok(out.len())
    }
}

/// SO_MAX_PACING_RATE's value: a 32-bit int (FreeBSD, Linux) or 64-bit (Linux), bytes per
/// second; the all-ones value of either width is "no limit". Anything else is EINVAL.
fn parse_pacing_rate(val: &[u8]) -> Result<u64, Errno> {
    match val.len() {
        4 => {
            let v = u32::from_ne_bytes([val[0], val[1], val[2], val[3]]);
            Ok(if v == u32::MAX {
                crate::pacing::NO_MAX_RATE
            } else {
                v as u64
            })
        }
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(val);
            Ok(u64::from_ne_bytes(b))
        }
        _ => Err(Errno::EINVAL),
    }
}

/// SO_MAX_PACING_RATE read back: 64 bits when the caller's buffer holds them, else a 32-bit
/// value saturated at u32::MAX (Linux does the same).
fn pacing_rate_bytes(rate: u64, room: usize) -> Vec<u8> {
    if room >= 8 {
        rate.to_ne_bytes().to_vec()
    } else {
        (rate.min(u32::MAX as u64) as u32).to_ne_bytes().to_vec()
    }
}
