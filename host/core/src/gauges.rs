//! Host-wide counts that read-only sysctls report (FreeBSD's `net.inet.tcp.pcbcount` and
//! `net.inet.tcp.syncache.count`): atomics every shard of a host adds to as it goes, so a
//! read sums all shards without locking any of them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::kld::HostNode;
use crate::sysctl::SysctlValue;
use crate::Host;

#[derive(Debug)]
pub struct Gauges {
    /// Protocol control blocks: connections (TIME_WAIT included) and listeners.
    pub pcbs: AtomicI64,
    /// Half-open connections in the SYN caches.
    pub syncache: AtomicI64,
    /// `kern.ipc.maxsockets`: no new socket past this many PCBs.
    pub max_sockets: AtomicI64,
    /// New sockets refused at `max_sockets` (ENOBUFS to their callers).
    pub refused: AtomicI64,
    /// Bytes of socket-buffer storage the shards' chunk pools hold (lent or free).
    pub buf_bytes: AtomicI64,
    /// `kern.ipc.maxmbufmem`: no pool grows past this many bytes in all.
    pub max_buf_bytes: AtomicI64,
    /// Chunks refused at `max_buf_bytes` (a send got less or ENOBUFS; received data was
    /// not taken and is sent again by the peer).
    pub buf_refused: AtomicI64,
    /// Out-of-order segments held for reassembly by all connections (`reass.cursegments`).
    pub reass_segs: AtomicI64,
    /// SACK holes of all connections (`sack.globalholes`).
    pub sack_holes: AtomicI64,
    /// Out-of-order segments dropped at `reass.maxsegments`.
    pub reass_refused: AtomicI64,
}

/// `kern.ipc.maxsockets` by default. FreeBSD sizes it from memory (hundreds of thousands
/// on a machine of a few GiB); a power of two of that order here.
pub const MAXSOCKETS_DEFAULT: i64 = 1 << 20;

/// `kern.ipc.maxmbufmem` by default: FreeBSD takes half the machine's memory; a host that
/// does no I/O of its own cannot ask, so 2 GiB (set it to the deployment's budget).
pub const MAXBUFMEM_DEFAULT: i64 = 2 << 30;

impl Default for Gauges {
    fn default() -> Self {
        Gauges {
            pcbs: AtomicI64::new(0),
            syncache: AtomicI64::new(0),
            max_sockets: AtomicI64::new(MAXSOCKETS_DEFAULT),
            refused: AtomicI64::new(0),
            buf_bytes: AtomicI64::new(0),
            max_buf_bytes: AtomicI64::new(MAXBUFMEM_DEFAULT),
            buf_refused: AtomicI64::new(0),
            reass_segs: AtomicI64::new(0),
            sack_holes: AtomicI64::new(0),
            reass_refused: AtomicI64::new(0),
        }
    }
}

/// The gauges a host's shards share.
pub type SharedGauges = Arc<Gauges>;

impl Gauges {
    pub(crate) fn add_pcbs(&self, n: i64) {
        self.pcbs.fetch_add(n, Ordering::Relaxed);
    }

    /// Room for one more socket under `kern.ipc.maxsockets`; ENOBUFS (counted) when there
    /// is none, as FreeBSD's socket zone answers when it is full.
    /// Room for `bytes` more socket-buffer storage under `kern.ipc.maxmbufmem`, taken if
    /// there is; counted when there is not.
    pub(crate) fn take_buf(&self, bytes: usize) -> bool {
        let bytes = bytes as i64;
        let max = self.max_buf_bytes.load(Ordering::Relaxed);
        let before = self.buf_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > max {
            self.buf_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.buf_refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn release_buf(&self, bytes: usize) {
        self.buf_bytes.fetch_sub(bytes as i64, Ordering::Relaxed);
    }

    pub(crate) fn admit_socket(&self) -> Result<(), plugtcp_abi::Errno> {
        if self.pcbs.load(Ordering::Relaxed) >= self.max_sockets.load(Ordering::Relaxed) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(plugtcp_abi::Errno::ENOBUFS);
        }
        Ok(())
    }
}

impl Host {
    /// Reassembly segments and SACK holes of the connection in `slot` as its stack last
    /// reported them go into the host-wide sums (`reass.cursegments`, `sack.globalholes`);
    /// `gone`: it leaves, and takes its share out.
    pub(crate) fn account_queues(&mut self, slot: usize, gone: bool) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let (segq, holes) = if gone {
            (0, 0)
        } else {
            (c.ctx.tp.t_segqlen, c.ctx.tp.snd_numholes)
        };
        let g = &self.gauges;
        if segq != c.side.segq_seen {
            g.reass_segs.fetch_add(
                i64::from(segq) - i64::from(c.side.segq_seen),
                Ordering::Relaxed,
            );
            c.side.segq_seen = segq;
        }
        if holes != c.side.holes_seen {
            g.sack_holes.fetch_add(
                i64::from(holes) - i64::from(c.side.holes_seen),
                Ordering::Relaxed,
            );
            c.side.holes_seen = holes;
        }
    }

    /// Whether the host-wide `reass.maxsegments` leaves room for one more out-of-order
    /// segment (counted when it does not).
    pub(crate) fn reass_room(&self) -> bool {
        let g = &self.gauges;
        if g.reass_segs.load(Ordering::Relaxed) >= self.tunables.reass_maxsegments {
            g.reass_refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Socket-buffer storage held by all shards' pools, bytes, and the chunks refused at
    /// `kern.ipc.maxmbufmem`.
    pub fn buffer_memory(&self) -> (u64, u64) {
        let g = &self.gauges;
        (
            g.buf_bytes.load(Ordering::Relaxed).max(0) as u64,
            g.buf_refused.load(Ordering::Relaxed).max(0) as u64,
        )
    }

    /// New sockets refused because `kern.ipc.maxsockets` was reached.
    pub fn sockets_refused(&self) -> u64 {
        self.gauges.refused.load(Ordering::Relaxed).max(0) as u64
    }

    /// `net.inet.tcp.pcbcount` and `net.inet.tcp.syncache.count`, read from the gauges, and
    /// `kern.ipc.maxsockets`.
    pub(crate) fn register_gauge_sysctls(&self) {
        let (g, w) = (self.gauges.clone(), self.gauges.clone());
        let max = HostNode {
            get: Box::new(move || SysctlValue::Int(g.max_sockets.load(Ordering::Relaxed))),
            // FreeBSD only lets it grow (its zones are sized already); a userspace host can
            // lower it too: only new sockets are refused.
            set: Some(Box::new(move |v| {
                let n = crate::sysctl::parse_int(v)?;
                if n < 1 {
                    return Err(plugtcp_abi::Errno::EINVAL);
                }
                w.max_sockets.store(n, Ordering::Relaxed);
                Ok(())
            })),
            description: "Maximum number of sockets available",
        };
        self.register_host_node("kern.ipc.maxsockets", max);
        let (g, w) = (self.gauges.clone(), self.gauges.clone());
        let maxmem = HostNode {
            get: Box::new(move || SysctlValue::Int(g.max_buf_bytes.load(Ordering::Relaxed))),
            // FreeBSD takes it at boot only; here it can change at run time (lowering it
            // refuses new storage, what is held stays).
            set: Some(Box::new(move |v| {
                let n = crate::sysctl::parse_int(v)?;
                if n < crate::socket::buffer::CHUNK as i64 {
                    return Err(plugtcp_abi::Errno::EINVAL);
                }
                w.max_buf_bytes.store(n, Ordering::Relaxed);
                Ok(())
            })),
            description: "Maximum real memory allocatable to various mbuf types",
        };
        self.register_host_node("kern.ipc.maxmbufmem", maxmem);
        type Read = fn(&Gauges) -> i64;
        let nodes: [(&str, &'static str, Read); 4] = [
            (
                "net.inet.tcp.reass.cursegments",
                "Global number of TCP Segments currently in Reassembly Queue",
                |g| g.reass_segs.load(Ordering::Relaxed),
            ),
            (
                "net.inet.tcp.sack.globalholes",
                "Global number of TCP SACK holes currently allocated",
                |g| g.sack_holes.load(Ordering::Relaxed),
            ),
            ("net.inet.tcp.pcbcount", "Number of active PCBs", |g| {
                g.pcbs.load(Ordering::Relaxed)
            }),
            (
                "net.inet.tcp.syncache.count",
                "Current number of entries in syncache",
                |g| g.syncache.load(Ordering::Relaxed),
            ),
        ];
        for (name, description, read) in nodes {
            let g = self.gauges.clone();
            let node = HostNode {
                get: Box::new(move || SysctlValue::Int(read(&g).max(0))),
                set: None,
                description,
            };
            self.register_host_node(name, node);
        }
    }
}

impl Drop for Host {
    /// A shard that goes takes its share out of the gauges the others keep.
    fn drop(&mut self) {
        let pcbs = self.conns.ids().count() + self.listeners.iter().flatten().count();
        self.gauges.add_pcbs(-(pcbs as i64));
        self.gauges
            .syncache
            .fetch_sub(self.syncache.len() as i64, Ordering::Relaxed);
    }
}
