//! ICMP and ICMPv6 errors about TCP segments this host sent (FreeBSD tcp_ctlinput and
//! tcp6_ctlinput): the quoted header names the connection, and only a quote of a sequence
//! number in flight (snd_una <= seq < snd_max, RFC 5927) is believed.
//!
//! - "fragmentation needed" / "packet too big": path MTU discovery (RFC 1191, RFC 8201):
//!   a smaller MSS and everything in flight sent again in smaller segments;
//! - port or protocol unreachable, administratively prohibited, TTL exceeded in transit:
//!   with net.inet.tcp.icmp_may_rst, a connection still in SYN_SENT is dropped
//!   (ECONNREFUSED, EHOSTUNREACH); otherwise a soft error;
//! - other unreachables, parameter problems: a soft error, reported instead of ETIMEDOUT if
//!   the connection then times out (FreeBSD tcp_notify, tcp_drop);
//! - source quench and anything else: ignored.
//!
//! Everything here comes from the wire: lengths are checked, checksums verified, and what
//! does not parse is counted and dropped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use plugtcp_abi::seq::{seq_geq, seq_lt};
use plugtcp_abi::stack::ConnEvent;
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::{Errno, TcpState};

use crate::socket::table::ConnKey;
use crate::{wire, Host};

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_ICMPV6: u8 = 58;
/// IPv6's minimum link MTU (RFC 8200).
const IPV6_MMTU: u32 = 1280;

/// What an ICMP error asks of TCP (FreeBSD's PRC_* command with its errno).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpCmd {
    /// The path takes packets of at most this many bytes (0: the router did not say).
    MsgSize(u32),
    /// Drops a connection in SYN_SENT when icmp_may_rst is on; else a soft error.
    HardUnreach(Errno),
    /// A soft error.
    SoftUnreach(Errno),
}

/// An ICMP error about one of our TCP segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    pub cmd: IcmpCmd,
    /// The quoted segment's source (our end) and destination (the peer).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The quoted segment's sequence number.
    pub seq: u32,
    /// The quoted IP packet's total length (IPv4), for guessing an MTU.
    pub quoted_len: u16,
}

/// Whether `pkt` is an IPv4 ICMP or an IPv6 ICMPv6 packet (without extension headers).
pub fn is_icmp(pkt: &[u8]) -> bool {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => pkt.len() >= 20 && pkt[9] == IPPROTO_ICMP,
        Some(6) => pkt.len() >= 40 && pkt[6] == IPPROTO_ICMPV6,
        _ => false,
    }
}

/// Reads an ICMP error quoting a TCP segment; `None` for anything else (informational
/// messages, bad checksums, quotes too short to name a connection).
pub fn parse(pkt: &[u8]) -> Option<IcmpError> {
    match pkt.first()? >> 4 {
        4 => parse_v4(pkt),
        6 => parse_v6(pkt),
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn parse_v4(pkt: &[u8]) -> Option<IcmpError> {
    let hlen = usize::from(pkt[0] & 0xf) * 4;
    let total = usize::from(be16(pkt, 2)?);
    if hlen < 20 || total < hlen + 8 || total > pkt.len() || !wire::ip_header_sum_ok(&pkt[..hlen]) {
        return None;
    }
    let icmp = &pkt[hlen..total];
    if !wire::inet_checksum_ok(&[icmp]) {
        return None;
    }
    let (ty, code) = (icmp[0], icmp[1]);
    let cmd = match (ty, code) {
        // Destination unreachable.
        (3, 4) => IcmpCmd::MsgSize(u32::from(be16(icmp, 6)?)),
        (3, 2 | 3) => IcmpCmd::HardUnreach(Errno::ECONNREFUSED),
        (3, 9 | 10 | 13) => IcmpCmd::HardUnreach(Errno::EHOSTUNREACH),
        (3, 0..=15) => IcmpCmd::SoftUnreach(Errno::EHOSTUNREACH),
        // Time exceeded in transit.
        (11, 0) => IcmpCmd::HardUnreach(Errno::EHOSTUNREACH),
        // Parameter problem.
        (12, _) => IcmpCmd::SoftUnreach(Errno::ENOPROTOOPT),
        // Source quench (RFC 6633), reassembly time exceeded, the rest.
        _ => return None,
    };
    let inner = &icmp[8..];
    if inner.len() < 20 || inner[0] >> 4 != 4 || inner[9] != IPPROTO_TCP {
        return None;
    }
    let ihl = usize::from(inner[0] & 0xf) * 4;
    let tcp = inner.get(ihl..ihl + 8)?;
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(&inner[12..16]).ok()?);
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&inner[16..20]).ok()?);
    Some(IcmpError {
        cmd,
        local: SocketAddr::new(IpAddr::V4(src), be16(tcp, 0)?),
        remote: SocketAddr::new(IpAddr::V4(dst), be16(tcp, 2)?),
        seq: be32(tcp, 4)?,
        quoted_len: be16(inner, 2)?,
    })
}

fn parse_v6(pkt: &[u8]) -> Option<IcmpError> {
    let plen = usize::from(be16(pkt, 4)?);
    let end = 40 + plen;
    if plen < 8 || end > pkt.len() {
        return None;
    }
    let icmp = &pkt[40..end];
    // The ICMPv6 checksum covers a pseudo-header (RFC 8200 8.1).
    let mut pseudo = [0u8; 40];
    pseudo[..32].copy_from_slice(&pkt[8..40]);
    pseudo[32..36].copy_from_slice(&(plen as u32).to_be_bytes());
    pseudo[39] = IPPROTO_ICMPV6;
    if !wire::inet_checksum_ok(&[&pseudo, icmp]) {
        return None;
    }
    let (ty, code) = (icmp[0], icmp[1]);
    let cmd = match (ty, code) {
        (2, _) => IcmpCmd::MsgSize(be32(icmp, 4)?),
        (1, 4) => IcmpCmd::HardUnreach(Errno::ECONNREFUSED),
        (1, 1) => IcmpCmd::HardUnreach(Errno::EHOSTUNREACH),
        (1, _) => IcmpCmd::SoftUnreach(Errno::EHOSTUNREACH),
        (3, 0) => IcmpCmd::HardUnreach(Errno::EHOSTUNREACH),
        (4, 1) => IcmpCmd::HardUnreach(Errno::ECONNREFUSED),
        (4, _) => IcmpCmd::SoftUnreach(Errno::ENOPROTOOPT),
        _ => return None,
    };
    let inner = &icmp[8..];
    if inner.len() < 48 || inner[0] >> 4 != 6 || inner[6] != IPPROTO_TCP {
        return None;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&inner[8..24]).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&inner[24..40]).ok()?);
    let tcp = &inner[40..48];
    Some(IcmpError {
        cmd,
        local: SocketAddr::new(IpAddr::V6(src), be16(tcp, 0)?),
        remote: SocketAddr::new(IpAddr::V6(dst), be16(tcp, 2)?),
        seq: be32(tcp, 4)?,
        quoted_len: 0,
    })
}

/// FreeBSD ip_next_mtu(): the next smaller of the common MTUs (RFC 1191's plateau table)
/// below `mtu`, for a router that did not say.
fn next_smaller_mtu(mtu: u32) -> u32 {
    const PLATEAUS: [u32; 11] = [
        65535, 32000, 17914, 8166, 4352, 2002, 1492, 1280, 1006, 508, 296,
    ];
    PLATEAUS.into_iter().find(|&p| p < mtu).unwrap_or(68)
}

impl Host {
    /// An ICMP or ICMPv6 packet: an error about one of our connections acts on it; anything
    /// else is dropped and counted.
    pub(crate) fn icmp_input(&mut self, pkt: &[u8]) {
        let Some(e) = parse(pkt) else {
            self.stats.icmp_ignored += 1;
            return;
        };
        let key = ConnKey::new(e.local, e.remote);
        let Some(id) = self.table.lookup_conn(&key) else {
            self.stats.icmp_ignored += 1;
            return;
        };
        let slot = id.slot();
        let Some(c) = self.conn_at(slot) else {
            return;
        };
        let tp = &c.ctx.tp;
        let in_flight = seq_geq(e.seq, tp.snd_una) && seq_lt(e.seq, tp.snd_max);
        let syn_sent = tp.t_state == TcpState::SynSent;
        if !in_flight {
            self.stats.icmp_ignored += 1;
            return;
        }
        self.stats.icmp_errors += 1;
        match e.cmd {
            IcmpCmd::MsgSize(mtu) => self.mtu_discovered(slot, &e, mtu),
            IcmpCmd::HardUnreach(err) if self.tunables.icmp_may_rst != 0 => {
                if syn_sent {
                    // FreeBSD tcp_drop_syn_sent: no TFO on this path for a while.
                    self.tfo_syn_failed(slot);
                    self.drop_conn(slot, err);
                }
            }
            IcmpCmd::HardUnreach(err) | IcmpCmd::SoftUnreach(err) => self.soft_error(slot, err),
        }
    }

    /// FreeBSD tcp_notify: an error the connection may outlive.
    fn soft_error(&mut self, slot: usize, err: Errno) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let tp = &c.ctx.tp;
        let routing = matches!(
            err,
            Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::EHOSTDOWN
        );
        if tp.t_state == TcpState::Established && routing {
            return;
        }
        if tp.t_state < TcpState::Established && tp.t_rxtshift > 3 && c.side.soft_error.is_some() {
            self.drop_conn(slot, err);
            return;
        }
        c.side.soft_error = Some(err);
    }

    /// FreeBSD tcp_mtudisc: a smaller MSS for the path, everything in flight sent again.
    fn mtu_discovered(&mut self, slot: usize, e: &IcmpError, mtu: u32) {
        let v6 = e.remote.is_ipv6();
        let hdr = if v6 { 60 } else { 40 };
        let floor = self.tunables.minmss.max(0) as u32 + hdr;
        let mtu = if v6 {
            if mtu < IPV6_MMTU {
                // RFC 8200 5: below the minimum, the sender adds a fragment header.
                IPV6_MMTU - 8
            } else {
                mtu
            }
        } else if mtu == 0 {
            next_smaller_mtu(u32::from(e.quoted_len))
        } else {
            mtu
        }
        .max(floor);
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let tp = &mut c.ctx.tp;
        // Only news of a smaller path counts.
        if mtu >= tp.t_maxseg + hdr {
            return;
        }
        tp.t_maxseg = (mtu - hdr).min(c.side.snd.hiwat().max(1) as u32);
        tp.snd_nxt = tp.snd_una;
        tp.snd_recover = tp.snd_max;
        if tp.t_flags & tf::SACK_PERMIT != 0 {
            tp.t_flags &= !tf::FASTRECOVERY;
        }
        // The next connection to this peer starts with the smaller MSS (tcp_hc_updatemtu).
        self.hostcache_mtu(e.remote.ip(), mtu);
        let _ = self.with_slot(slot, |c, w| c.mtu_chg(w, mtu));
        let _ = self.with_slot(slot, |c, w| c.output(w));
        self.after_call(slot);
    }

    /// FreeBSD tcp_drop(tp, err): a RST to a synchronized peer, timers stopped, the
    /// connection closed with `err` for the application.
    pub(crate) fn drop_conn(&mut self, slot: usize, err: Errno) {
        let Some(c) = self.conn_at(slot) else {
            return;
        };
        if matches!(c.ctx.tp.t_state, TcpState::Closed | TcpState::TimeWait) {
            return;
        }
        self.rst_peer(slot);
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        c.side.stop_timers(&mut self.worker);
        let tp = &mut c.ctx.tp;
        tp.t_state = TcpState::Closed;
        tp.t_softerror = err.0;
        c.side.events |= 1 << ConnEvent::Closed as u8;
        self.after_call(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_icmp(ty: u8, code: u8, mtu: u16, quoted: &[u8]) -> Vec<u8> {
        let mut icmp = vec![ty, code, 0, 0, 0, 0];
        icmp.extend_from_slice(&mtu.to_be_bytes());
        icmp.extend_from_slice(quoted);
        let c = wire::inet_checksum(&[&icmp]);
        icmp[2..4].copy_from_slice(&c);
        let total = (20 + icmp.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, IPPROTO_ICMP, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[10, 0, 0, 9, 10, 0, 0, 1]);
        let c = wire::ip_header_checksum(&ip);
        ip[10..12].copy_from_slice(&c);
        ip.extend_from_slice(&icmp);
        ip
    }

    fn quoted_v4(seq: u32) -> Vec<u8> {
        let mut q = vec![0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, IPPROTO_TCP, 0, 0];
        q.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        q.extend_from_slice(&1234u16.to_be_bytes());
        q.extend_from_slice(&80u16.to_be_bytes());
        q.extend_from_slice(&seq.to_be_bytes());
        q
    }

    #[test]
    fn frag_needed_names_the_connection_and_the_mtu() {
        let e = parse(&v4_icmp(3, 4, 1200, &quoted_v4(777))).unwrap();
        assert_eq!(e.cmd, IcmpCmd::MsgSize(1200));
        assert_eq!(e.local, "10.0.0.1:1234".parse().unwrap());
        assert_eq!(e.remote, "10.0.0.2:80".parse().unwrap());
        assert_eq!((e.seq, e.quoted_len), (777, 60));
    }

    #[test]
    fn unreachables_map_as_freebsd_maps_them() {
        let cmd = |ty, code| parse(&v4_icmp(ty, code, 0, &quoted_v4(1))).map(|e| e.cmd);
        assert_eq!(cmd(3, 3), Some(IcmpCmd::HardUnreach(Errno::ECONNREFUSED)));
        assert_eq!(cmd(3, 1), Some(IcmpCmd::SoftUnreach(Errno::EHOSTUNREACH)));
        assert_eq!(cmd(11, 0), Some(IcmpCmd::HardUnreach(Errno::EHOSTUNREACH)));
        assert_eq!(cmd(4, 0), None, "source quench is ignored");
        assert_eq!(cmd(0, 0), None, "echo reply is no error");
    }

    #[test]
    fn bad_checksums_and_short_quotes_are_dropped() {
        let mut p = v4_icmp(3, 3, 0, &quoted_v4(1));
        p[24] ^= 1;
        assert_eq!(parse(&p), None);
        let q = quoted_v4(1);
        assert_eq!(
            parse(&v4_icmp(3, 3, 0, &q[..26])),
            None,
            "no sequence number"
        );
        for n in 0..p.len() {
            let _ = parse(&p[..n]);
        }
    }

    #[test]
    fn next_smaller_mtu_follows_the_plateaus() {
        assert_eq!(next_smaller_mtu(1500), 1492);
        assert_eq!(next_smaller_mtu(1492), 1280);
        assert_eq!(next_smaller_mtu(60), 68);
    }
}
