//! Out of memory for a new connection: the caller gets ENOBUFS and the host goes on. This
//! binary's allocator refuses allocations of exactly a connection's size while told to, as
//! an exhausted heap would.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use plugtcp_abi::{Errno, TcpState};
use plugtcp_cli::builtins::BuiltinHost as _;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::Host;

/// Allocation size refused (0: none).
static REFUSE_SIZE: AtomicUsize = AtomicUsize::new(0);

struct Refusing;

// SAFETY: forwards to the system allocator, or returns null (allowed: allocation failure).
unsafe impl GlobalAlloc for Refusing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() == REFUSE_SIZE.load(Ordering::Relaxed) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Refusing = Refusing;

#[test]
fn no_memory_for_a_connection_is_enobufs_to_that_caller_only() {
    let mut h = Host::with_seed(SearchPath::default(), 5);
    h.register_builtins();
    h.add_addr("10.0.0.1".parse().unwrap());
    let peer = "10.0.0.2:80".parse().unwrap();
    let first = h.connect(peer, None).unwrap();
    h.transmit(|_| {});
    REFUSE_SIZE.store(
        std::mem::size_of::<plugtcp_host::conn::Conn>(),
        Ordering::Relaxed,
    );
    let refused = h.connect(peer, None);
    REFUSE_SIZE.store(0, Ordering::Relaxed);
    assert_eq!(refused.err(), Some(Errno::ENOBUFS));
    // Nothing of the refused connection stays behind, and the host goes on.
    assert_eq!(h.state(first), Some(TcpState::SynSent));
    let mut sent = 0;
    h.transmit(|_| sent += 1);
    assert_eq!(sent, 0, "the refused connection sent no SYN");
    let second = h.connect(peer, None).unwrap();
    assert_eq!(h.state(second), Some(TcpState::SynSent));
    h.transmit(|_| sent += 1);
    assert_eq!(sent, 1);
}
