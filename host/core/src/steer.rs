//! Which shard owns a flow, when a host is split into shards (one `Host` per thread, each
//! with its part of the socket table). The owner of a TCP flow is a hash of `local port +
//! remote port`, mod N: symmetric, so a segment and its answer agree, and simple enough
//! for a classic BPF program to compute in the kernel (the UDP backend's `SO_REUSEPORT` group
//! steers with it). A shard opening a connection picks a local port it owns
//! ([`crate::socket::SockTable::set_shard`]), so the answers come back to it.
//!
//! The hash is not keyed: a peer choosing its ports can put its flows on one shard.
//! That costs balance, not correctness; the kernel's own RSS makes the same trade when a
//! NIC's key is known.

/// The shard of `shards` that owns a flow between these two ports.
#[inline]
pub fn shard_of(port_a: u16, port_b: u16, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    // The sum is symmetric; the multiply (Knuth's golden-ratio hash, 32-bit wrapping)
    // spreads it, because ports are not uniform: Linux gives connect(2) even ports only.
    let sum = u32::from(port_a) + u32::from(port_b);
    (sum.wrapping_mul(0x9e37_79b1) >> 16) as usize % shards
}

/// The owning shard of an IP packet: by its TCP ports, or for an ICMP error by the ports
/// of the segment it quotes. `None` for what has no ports to steer by (fragments after
/// the first, other protocols, truncated packets): the shard that received it keeps it.
pub fn packet_shard(pkt: &[u8], shards: usize) -> Option<usize> {
    if shards <= 1 {
        return Some(0);
    }
    let (proto, l4) = l4_of(pkt)?;
    let l4 = pkt.get(l4..)?;
    let ports = |t: &[u8]| -> Option<usize> {
        let p = t.get(..4)?;
        Some(shard_of(
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
            shards,
        ))
    };
    match proto {
        6 => ports(l4),
        // ICMP / ICMPv6 errors: 8 bytes of header, then the packet we sent.
        1 | 58 => {
            let inner = l4.get(8..)?;
            match l4_of(inner)? {
                (6, at) => ports(inner.get(at..)?),
                _ => None,
            }
        }
        _ => None,
    }
}

/// (protocol, offset of the transport header) of an unfragmented IPv4 or IPv6 packet, or
/// of a first fragment.
fn l4_of(pkt: &[u8]) -> Option<(u8, usize)> {
    match pkt.first()? >> 4 {
        4 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            if ihl < 20 || pkt.len() < ihl {
                return None;
            }
            let frag_offset = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff;
            (frag_offset == 0).then_some((pkt[9], ihl))
        }
        6 if pkt.len() >= 40 => Some((pkt[6], 40)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_tcp(sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    #[test]
    fn a_segment_and_its_answer_have_one_owner() {
        for (a, b) in [(80, 40000), (443, 1), (65535, 65535), (9, 50001)] {
            for n in 1..8 {
                assert_eq!(
                    packet_shard(&v4_tcp(a, b), n),
                    packet_shard(&v4_tcp(b, a), n)
                );
                assert_eq!(packet_shard(&v4_tcp(a, b), n), Some(shard_of(a, b, n)));
            }
        }
    }

    #[test]
    fn even_ports_spread_over_shards() {
        // Linux's connect(2) takes even ports: a plain sum mod 2 would put them all on one.
        let mut n = [0usize; 2];
        for p in (32768..33768u16).step_by(2) {
            n[shard_of(p, 7, 2)] += 1;
        }
        assert!(n.iter().all(|&k| k > 200), "{n:?}");
    }

    #[test]
    fn icmp_errors_go_to_the_quoted_flow() {
        let inner = v4_tcp(40000, 80);
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = 1;
        p.extend_from_slice(&inner);
        assert_eq!(packet_shard(&p, 3), Some(shard_of(80, 40000, 3)));
    }

    #[test]
    fn later_fragments_and_short_packets_stay_where_they_arrived() {
        let mut p = v4_tcp(1, 2);
        p[6] = 0x00;
        p[7] = 0x10;
        assert_eq!(packet_shard(&p, 2), None);
        assert_eq!(packet_shard(&[0x45, 0, 0], 2), None);
        assert_eq!(packet_shard(&[], 2), None);
    }
}
