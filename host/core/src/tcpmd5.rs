//! TCP-MD5 (RFC 2385) in the host: the key store, which segments are signed, and the check
//! on input. FreeBSD keeps the keys in the IPsec SADB (setkey(8)) and a socket only says
//! that it signs (TCP_MD5SIG as an int); plugtcp keeps its own store, one for all shards,
//! filled through the control socket (`md5key`) or through Linux's `struct tcp_md5sig` on
//! TCP_MD5SIG. As tcp(4) says: a socket with TCP_MD5SIG signs every segment and drops every
//! segment without a correct digest; a listener with it accepts an unsigned handshake from
//! a peer that has no key, and that connection is not protected.
//!
//! The digest itself is in [`crate::wire::md5_signature`]; the stacks add the option
//! (`to::SIGNATURE`) to every segment of a connection with `tf::SIGNATURE` and leave room
//! for it.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::Errno;

use crate::Host;

/// Longest key (Linux's TCP_MD5SIG_MAXKEYLEN).
pub const MAX_KEY_LEN: usize = 80;
/// Most keys the store holds (one per BGP peer or prefix; bounded since requests may come
/// from anyone who may use the control socket).
pub const MAX_KEYS: usize = 4096;

/// One key: for `addr` and every address sharing its first `prefix` bits.
struct KeyEntry {
    addr: IpAddr,
    prefix: u8,
    key: Arc<[u8]>,
}

/// The keys, by peer address or prefix.
#[derive(Default)]
pub struct Md5Keys {
    entries: Vec<KeyEntry>,
}

/// The store shared by a host's shards.
pub type SharedMd5Keys = Arc<Mutex<Md5Keys>>;

fn full_prefix(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

/// Whether `peer` is in `addr`/`prefix`.
fn covers(addr: IpAddr, prefix: u8, peer: IpAddr) -> bool {
    let bits = |a: IpAddr| -> u128 {
        match a {
            IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
            IpAddr::V6(v) => u128::from(v),
        }
    };
    if addr.is_ipv4() != peer.is_ipv4() {
        return false;
    }
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    };
    bits(addr) & mask == bits(peer) & mask
}

impl Md5Keys {
    /// Sets the key for `addr`/`prefix` (`None`: the whole address), replacing one there.
    /// EINVAL for an empty or too long key or a prefix longer than the address.
    pub fn set(&mut self, addr: IpAddr, prefix: Option<u8>, key: &[u8]) -> Result<(), Errno> {
        let prefix = prefix.unwrap_or(full_prefix(addr));
        if key.is_empty() || key.len() > MAX_KEY_LEN || prefix > full_prefix(addr) {
            return Err(Errno::EINVAL);
        }
        let key: Arc<[u8]> = key.into();
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.addr == addr && e.prefix == prefix)
        {
            e.key = key;
            return Ok(());
        }
        if self.entries.len() >= MAX_KEYS {
            return Err(Errno::ENOBUFS);
        }
        self.entries.push(KeyEntry { addr, prefix, key });
        Ok(())
    }

    /// Removes the key for `addr`/`prefix`; ENOENT when there is none.
    pub fn remove(&mut self, addr: IpAddr, prefix: Option<u8>) -> Result<(), Errno> {
        let prefix = prefix.unwrap_or(full_prefix(addr));
        let n = self.entries.len();
        self.entries
            .retain(|e| !(e.addr == addr && e.prefix == prefix));
        if self.entries.len() == n {
            return Err(Errno::ENOENT);
        }
        Ok(())
    }

    /// The key for `peer`: the longest prefix covering it.
    pub fn lookup(&self, peer: IpAddr) -> Option<Arc<[u8]>> {
        self.entries
            .iter()
            .filter(|e| covers(e.addr, e.prefix, peer))
            .max_by_key(|e| e.prefix)
            .map(|e| e.key.clone())
    }

    /// What keys there are (never the keys themselves).
    pub fn list(&self) -> Vec<(IpAddr, u8)> {
        self.entries.iter().map(|e| (e.addr, e.prefix)).collect()
    }
}

/// Linux's `struct tcp_md5sig`: a sockaddr_storage (128 bytes), flags, prefix length, key
/// length, ifindex, 80 key bytes.
pub const TCP_MD5SIG_LEN: usize = 216;
/// `tcpm_flags`: the prefix length is meaningful.
const TCP_MD5SIG_FLAG_PREFIX: u8 = 1;

/// A `struct tcp_md5sig`: (peer address, prefix, key; an empty key deletes).
pub fn parse_tcp_md5sig(v: &[u8]) -> Result<(IpAddr, Option<u8>, Vec<u8>), Errno> {
    if v.len() < TCP_MD5SIG_LEN {
        return Err(Errno::EINVAL);
    }
    let family = u16::from_ne_bytes([v[0], v[1]]);
    let addr = match i32::from(family) {
        crate::posix::consts::AF_INET => {
            IpAddr::from(<[u8; 4]>::try_from(&v[4..8]).map_err(|_| Errno::EINVAL)?)
        }
        crate::posix::consts::AF_INET6 | crate::posix::consts::AF_INET6_LINUX => {
            IpAddr::from(<[u8; 16]>::try_from(&v[8..24]).map_err(|_| Errno::EINVAL)?)
        }
        _ => return Err(Errno::EINVAL),
    };
    let (flags, prefixlen) = (v[128], v[129]);
    let keylen = usize::from(u16::from_ne_bytes([v[130], v[131]]));
    if keylen > MAX_KEY_LEN {
        return Err(Errno::EINVAL);
    }
    let prefix = (flags & TCP_MD5SIG_FLAG_PREFIX != 0).then_some(prefixlen);
    Ok((addr, prefix, v[136..136 + keylen].to_vec()))
}

/// What TCP-MD5 did with segments (FreeBSD tcps_sig_*).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Md5Stats {
    /// Segments whose digest was right.
    pub rcv_goodsig: u64,
    /// Dropped: the digest was wrong.
    pub rcv_badsig: u64,
    /// Dropped: a signed connection's or handshake's segment carried no signature.
    pub err_nosigopt: u64,
}

impl Host {
    /// Sets the TCP-MD5 key for peer `addr` (or the `prefix` around it) in the store every
    /// shard uses (setkey(8)'s tcp-md5 SA).
    pub fn md5_key_set(
        &mut self,
        addr: IpAddr,
        prefix: Option<u8>,
        key: &[u8],
    ) -> Result<(), Errno> {
        self.md5_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(addr, prefix, key)
    }

    /// Removes the key for `addr`/`prefix` (ENOENT: none).
    pub fn md5_key_del(&mut self, addr: IpAddr, prefix: Option<u8>) -> Result<(), Errno> {
        self.md5_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(addr, prefix)
    }

    /// The peers and prefixes that have keys.
    pub fn md5_key_list(&self) -> Vec<(IpAddr, u8)> {
        self.md5_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .list()
    }

    /// The key for `peer`, if the store has one.
    pub fn md5_key_for(&self, peer: IpAddr) -> Option<Arc<[u8]>> {
        self.md5_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lookup(peer)
    }

    /// TCP_MD5SIG's value: FreeBSD's int (signing on or off, the key from the store) or
    /// Linux's `struct tcp_md5sig` (a key for a peer into the store, or out of it with an
    /// empty key; signing on while a key is set). Returns whether the socket signs.
    pub(crate) fn md5_sockopt_keys(&mut self, val: &[u8]) -> Result<bool, Errno> {
        if let Ok(b) = <[u8; 4]>::try_from(val) {
            return Ok(i32::from_ne_bytes(b) != 0);
        }
        let (addr, prefix, key) = parse_tcp_md5sig(val)?;
        if key.is_empty() {
            self.md5_key_del(addr, prefix)?;
            Ok(false)
        } else {
            self.md5_key_set(addr, prefix, &key)?;
            Ok(true)
        }
    }

    /// Turns signing on or off for the connection in `slot` (TCP_MD5SIG): its segments
    /// carry the signature made with its peer's key, looked up now.
    pub(crate) fn set_conn_md5(&mut self, slot: usize, on: bool) -> Result<(), Errno> {
        let key = if on {
            let remote = self.conn_at(slot).ok_or(Errno::EINVAL)?.side.remote;
            self.md5_key_for(remote.ip())
        } else {
            None
        };
        let c = self.conns[slot].as_mut().ok_or(Errno::EINVAL)?;
        if on {
            c.ctx.tp.t_flags |= tf::SIGNATURE;
        } else {
            c.ctx.tp.t_flags &= !tf::SIGNATURE;
        }
        c.side.md5_key = key;
        Ok(())
    }

    /// Whether segment `tcp` (header and payload) from `remote` to `local` may go on for a
    /// signer with `key`: it carries a signature and the digest is right. Counted.
    pub(crate) fn md5_check(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        tcp: &[u8],
        key: Option<&[u8]>,
    ) -> bool {
        let verdict =
            key.and_then(|k| crate::wire::md5_signature_ok(remote.ip(), local.ip(), tcp, k));
        match verdict {
            Some(true) => {
                self.md5_stats.rcv_goodsig += 1;
                true
            }
            Some(false) => {
                self.md5_stats.rcv_badsig += 1;
                false
            }
            None if crate::wire::signature_offset(tcp).is_none() => {
                self.md5_stats.err_nosigopt += 1;
                false
            }
            // Signed, but no key here to check it with.
            None => {
                self.md5_stats.rcv_badsig += 1;
                false
            }
        }
    }

    /// Queues a host-made segment of the connection in `slot` (a RST, a TIME_WAIT ACK),
    /// signed when it carries the signature option; without a key for it, nothing is sent.
    pub(crate) fn send_conn_segment(&mut self, slot: usize, seg: &plugtcp_abi::segment::SegOut) {
        use plugtcp_abi::segment::to;
        let Some(c) = self.conn_at(slot) else {
            return;
        };
        let (local, remote, port) = (c.side.local, c.side.remote, c.side.udp_port);
        let key = c.side.md5_key.clone();
        let ttl = self.worker.ttl;
        let _ = self
            .worker
            .tx
            .push_tagged(crate::wire::MAX_HEADER, port, |buf| {
                let finish = match (&key, seg.opts.has(to::SIGNATURE)) {
                    (Some(k), true) => crate::wire::Finish::Signed(k),
                    _ => crate::wire::Finish::Checksum,
                };
                crate::wire::build_finished(buf, local, remote, seg, &[], (ttl, 0), finish)
            });
    }

    /// The key a handshake with `peer` on listener `lid` is signed with: the listener has
    /// TCP_MD5SIG and the store a key for the peer (without one, the handshake goes
    /// unsigned and the connection unprotected, as tcp(4) says).
    pub(crate) fn listener_md5_key(&self, lid: usize, peer: IpAddr) -> Option<Arc<[u8]>> {
        let l = self.listener_at(lid)?;
        if l.tcpcb.t_flags & tf::SIGNATURE == 0 {
            return None;
        }
        self.md5_key_for(peer)
    }

    /// What TCP-MD5 did with received segments.
    pub fn md5_stats(&self) -> Md5Stats {
        self.md5_stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_families_stay_apart() {
        let mut k = Md5Keys::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        k.set(ip("10.0.0.0"), Some(8), b"wide").unwrap();
        k.set(ip("10.1.2.3"), None, b"exact").unwrap();
        assert_eq!(&*k.lookup(ip("10.1.2.3")).unwrap(), b"exact");
        assert_eq!(&*k.lookup(ip("10.9.9.9")).unwrap(), b"wide");
        assert!(k.lookup(ip("11.0.0.1")).is_none());
        assert!(k.lookup(ip("::a00:1")).is_none());
        assert_eq!(k.set(ip("10.0.0.1"), Some(33), b"x"), Err(Errno::EINVAL));
        assert_eq!(k.set(ip("10.0.0.1"), None, b""), Err(Errno::EINVAL));
        assert_eq!(k.set(ip("10.0.0.1"), None, &[0; 81]), Err(Errno::EINVAL));
        k.remove(ip("10.1.2.3"), None).unwrap();
        assert_eq!(k.remove(ip("10.1.2.3"), None), Err(Errno::ENOENT));
        assert_eq!(&*k.lookup(ip("10.1.2.3")).unwrap(), b"wide");
    }
}
