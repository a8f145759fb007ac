//! Host-wide counts that read-only sysctls report (FreeBSD's `net.inet.tcp.pcbcount` and
//! `net.inet.tcp.syncache.count`): atomics every shard of a host adds to as it goes, so a
//! read sums all shards without locking any of them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::kld::HostNode;
use crate::sysctl::SysctlValue;
use crate::Host;

#[derive(Default, Debug)]
pub struct Gauges {
    /// Protocol control blocks: connections (TIME_WAIT included) and listeners.
    pub pcbs: AtomicI64,
    /// Half-open connections in the SYN caches.
    pub syncache: AtomicI64,
}

/// The gauges a host's shards share.
pub type SharedGauges = Arc<Gauges>;

impl Gauges {
    pub(crate) fn add_pcbs(&self, n: i64) {
        self.pcbs.fetch_add(n, Ordering::Relaxed);
    }
}

impl Host {
    /// `net.inet.tcp.pcbcount` and `net.inet.tcp.syncache.count`, read from the gauges.
    pub(crate) fn register_gauge_sysctls(&self) {
        type Read = fn(&Gauges) -> i64;
        let nodes: [(&str, &'static str, Read); 2] = [
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
            let ok = self.sysctl.register_dynamic(name, Arc::new(node)).is_ok();
            debug_assert!(ok, "{name} registered twice");
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
