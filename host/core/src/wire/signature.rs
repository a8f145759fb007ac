//! The TCP-MD5 signature option (RFC 2385): where it sits in a segment and the digest it
//! carries, MD5 over the pseudo-header, the TCP header without options (checksum zero),
//! the payload and the key. IPv6 uses the IPv6 pseudo-header (as Linux and FreeBSD do).

use core::net::IpAddr;

use md5::{Digest, Md5};

use super::options::{TCPOLEN_SIGNATURE, TCPOPT_SIGNATURE};
use super::IPPROTO_TCP;

/// The 16-byte digest.
pub type Signature = [u8; 16];

/// The digest for the TCP segment `tcp` (header, options, payload) from `src` to `dst`.
/// The signature option's own bytes and the checksum field are not covered.
pub fn md5_signature(src: IpAddr, dst: IpAddr, tcp: &[u8], key: &[u8]) -> Option<Signature> {
    let th_len = usize::from(*tcp.get(12)? >> 4) * 4;
    if th_len < 20 || th_len > tcp.len() {
        return None;
    }
    let mut h = Md5::new();
    let len = tcp.len();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            h.update(s.octets());
            h.update(d.octets());
            h.update([0, IPPROTO_TCP]);
            h.update(u16::try_from(len).ok()?.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            h.update(s.octets());
            h.update(d.octets());
            h.update(u32::try_from(len).ok()?.to_be_bytes());
            h.update([0, 0, 0, IPPROTO_TCP]);
        }
        _ => return None,
    }
    let mut hdr = [0u8; 20];
    hdr.copy_from_slice(&tcp[..20]);
    hdr[16..18].fill(0);
    h.update(hdr);
    h.update(&tcp[th_len..]);
    h.update(key);
    Some(h.finalize().into())
}

/// Where the signature option's digest sits in the TCP segment `tcp`, if it carries one.
pub fn signature_offset(tcp: &[u8]) -> Option<usize> {
    let th_len = usize::from(*tcp.get(12)? >> 4) * 4;
    let opts = tcp.get(20..th_len)?;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                if kind == TCPOPT_SIGNATURE && len == TCPOLEN_SIGNATURE {
                    return Some(20 + i + 2);
                }
                i += len;
            }
        }
    }
    None
}

/// Whether `tcp` carries a signature option whose digest is right for `key`; `None` when
/// it carries none.
pub fn md5_signature_ok(src: IpAddr, dst: IpAddr, tcp: &[u8], key: &[u8]) -> Option<bool> {
    let at = signature_offset(tcp)?;
    let want = md5_signature(src, dst, tcp, key)?;
    Some(tcp[at..at + 16] == want)
}

/// Writes the digest for `key` into `tcp`'s signature option (which must be there).
pub fn sign(src: IpAddr, dst: IpAddr, tcp: &mut [u8], key: &[u8]) -> bool {
    let Some(at) = signature_offset(tcp) else {
        return false;
    };
    let Some(d) = md5_signature(src, dst, tcp, key) else {
        return false;
    };
    tcp[at..at + 16].copy_from_slice(&d);
    true
}
