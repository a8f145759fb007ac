//! Where a host's randomness comes from. A real host (`Host::empty`, `plugtcp serve`) seeds a
//! ChaCha20 CSPRNG from the operating system (getrandom); only the simulator, benchmarks and
//! tests seed it from a number, so that their runs repeat. Every secret the host keeps (the
//! ISN key, the SYN-cookie secrets and their rotation, the socket table's and SYN cache's hash
//! keys, the ephemeral-port keys and bind(0) choices, the timestamp-offset key) is drawn from
//! this generator.
//!
//! A CSPRNG, not a fast one: its outputs are visible on the wire (ports, ISNs), and a
//! generator like xoshiro can be run backwards from a few outputs to the keys drawn before
//! them. It is drawn from per connection or per rotation, never per segment.

use rand::SeedableRng;
pub use rand_chacha::ChaCha20Rng as HostRng;

/// Where a host's secrets come from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Entropy {
    /// The operating system's CSPRNG: a real host.
    Os,
    /// A fixed seed: the simulator and tests, where a run must repeat.
    Seed(u64),
}

impl Entropy {
    /// The generator. Without OS entropy a real host must not start with guessable secrets,
    /// so that failure is fatal.
    pub fn rng(self) -> HostRng {
        match self {
            Entropy::Seed(s) => HostRng::seed_from_u64(s),
            Entropy::Os => {
                let mut seed = [0u8; 32];
                if let Err(e) = getrandom::fill(&mut seed) {
                    panic!("plugtcp: no entropy from the operating system: {e}");
                }
                HostRng::from_seed(seed)
            }
        }
    }
}

/// A 128-bit SipHash key from `rng`.
pub fn sip_key(rng: &mut HostRng) -> (u64, u64) {
    use rand::RngCore;
    (rng.next_u64(), rng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn os_entropy_differs_between_hosts_seeds_repeat() {
        let (a, b) = (Entropy::Os.rng().next_u64(), Entropy::Os.rng().next_u64());
        assert_ne!(a, b);
        let (c, d) = (
            Entropy::Seed(7).rng().next_u64(),
            Entropy::Seed(7).rng().next_u64(),
        );
        assert_eq!(c, d);
    }
}
