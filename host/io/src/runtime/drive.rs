//! The driver threads: one for the simulated network, one per shard of a real host.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::driver::PacketIo;
use plugtcp_host::steer;

use super::{host, lock, Net, Shared, Side, Steered};

pub(super) fn drive_sim(s: &Shared) {
    let shard = &s.shards[0];
    let mut net = lock(shard);
    let mut ready = (Vec::new(), Vec::new());
    while !s.stopped() {
        let Net::Sim(sim) = &mut *net else {
            return;
        };
        let progressed = sim.step();
        shard.changed.notify_all();
        if shard.wake_ready(&mut net, &mut ready) {
            s.ring_accepts();
        }
        if progressed {
            // Let application threads in between steps.
            drop(net);
            std::thread::yield_now();
            net = lock(shard);
        } else {
            // Nothing to do until an application call (or a bounded wait, in case of a lost
            // wakeup).
            net = shard
                .changed
                .wait_timeout(net, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

/// Most packets taken per wake-up as one receive batch.
const BATCH: usize = 64;

/// How long a shard with a service waits at most between turns.
const SERVICE_POLL_MS: i32 = 5;

/// The driver of shard `me` of a host on real backends: waits (without the lock) until its
/// backend has a packet, an application call or another shard kicks, or the next timer is
/// due; then, under the shard's lock, takes the packets in as one batch (those that belong
/// to another shard's flows are handed to it), runs due timers and the shard's service,
/// sends what the host queued and wakes the tasks of the connections that moved.
pub(super) fn drive_real(s: &Shared, me: usize, mut io: Box<dyn PacketIo + Send>) {
    let shard = &s.shards[me];
    let shards = s.shards.len();
    let epoch = std::time::Instant::now();
    let now = || epoch.elapsed().as_nanos() as u64;
    let mut buf = vec![0u8; 65536];
    let mut ready = (Vec::new(), Vec::new());
    // Packets for other shards, gathered over one batch and handed over after it.
    let mut away: Vec<Vec<Steered>> = (0..shards).map(|_| Vec::new()).collect();
    let mut arrived: Vec<Steered> = Vec::new();
    let kick = shard.kick.as_ref().map(AsRawFd::as_raw_fd);
    // A backend without a descriptor is polled at this interval.
    let idle_poll = if io.poll_fd().is_some() { 50 } else { 1 };
    while !s.stopped() {
        let next = host(&mut lock(shard), Side::A).next_timeout();
        // A service may wait on things the driver cannot see (a kernel socket): it gets a
        // turn at least this often.
        let has_service = shard
            .service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        let idle_poll = if has_service {
            SERVICE_POLL_MS
        } else {
            idle_poll
        };
        let wait_ms = next.map_or(idle_poll, |t| {
            let ns = t.saturating_sub(now());
            ns.div_ceil(1_000_000).min(idle_poll as u64) as i32
        });
        let mut fds = [io.poll_fd(), kick].map(|fd| libc::pollfd {
            fd: fd.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: two valid pollfds (a negative fd is ignored by poll).
        unsafe { libc::poll(fds.as_mut_ptr(), 2, wait_ms) };
        if let Some(k) = kick.filter(|_| fds[1].revents != 0) {
            let mut b = [0u8; 8];
            // SAFETY: an 8-byte read into a live buffer from our nonblocking eventfd.
            let _ = unsafe { libc::read(k, b.as_mut_ptr().cast(), b.len()) };
        }
        std::mem::swap(
            &mut arrived,
            &mut *shard.inbox.lock().unwrap_or_else(|e| e.into_inner()),
        );
        let mut net = lock(shard);
        let h = host(&mut net, Side::A);
        h.advance(now());
        let mut batch = false;
        let mut failed = None;
        for (pkt, port) in arrived.drain(..) {
            if !batch {
                h.batch_begin();
                batch = true;
            }
            if let Some(p) = port {
                io.learn_port(&pkt, p);
            }
            h.input(&pkt);
        }
        for _ in 0..BATCH {
            let n = match io.recv(&mut buf, None) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let partial = io.rx_partial_checksum();
            if let Some(owner) = steer::packet_shard(&buf[..n], shards).filter(|&o| o != me) {
                // The backend steered it to the wrong queue (a new flow, or one whose
                // entry in the device's flow table expired): its owner takes it, whole.
                crate::driver::complete_partial(&mut buf[..n], partial);
                away[owner].push((buf[..n].to_vec(), io.arrival_port()));
                continue;
            }
            if !batch {
                h.batch_begin();
                batch = true;
            }
            crate::driver::input(h, &buf[..n], partial);
        }
        if batch {
            h.batch_end();
        }
        if let Some(svc) = shard
            .service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            svc(h);
        }
        h.transmit_gso(|pkt, port, gso_size| {
            if port != 0 {
                io.encapsulation_port(pkt, port);
            }
            if failed.is_none() {
                failed = crate::driver::send(&mut io, pkt, gso_size).err();
            }
        });
        if failed.is_none() {
            failed = io.flush().err();
        }
        if h.has_log() {
            // The operator's messages (log_in_vain), as the console shows the kernel's.
            for line in h.take_log() {
                eprintln!("plugtcp: {line}");
            }
        }
        let accept = shard.wake_ready(&mut net, &mut ready);
        drop(net);
        shard.changed.notify_all();
        if accept {
            s.ring_accepts();
        }
        for (owner, pkts) in away.iter_mut().enumerate() {
            if !pkts.is_empty() {
                shard
                    .handed_over
                    .fetch_add(pkts.len() as u64, Ordering::Relaxed);
                let to = &s.shards[owner];
                to.inbox
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .append(pkts);
                to.notify();
            }
        }
        if let Some(e) = failed {
            // The device went away (or refuses every packet): the stack cannot carry on.
            if !s.stop.swap(true, Ordering::AcqRel) {
                eprintln!("plugtcp: packet I/O failed: {e}; the network is down");
            }
            s.shut_down();
        }
    }
    shard.wake_all();
}
