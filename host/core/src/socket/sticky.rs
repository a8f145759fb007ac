//! Socket options the host remembers for a connection because a function block keeps them
//! in its private state (TCP_WINDOW_CLAMP, TCP_SYNCNT, TCP_LINGER2, ...): after a live
//! TCP_FUNCTION_BLK switch the host sets them again on the new block, and a listener passes
//! the ones set on it to every connection it accepts. Options whose state lives in the
//! shared tcpcb (TCP_NODELAY, TCP_MAXSEG, TCP_QUICKACK's mode, ...) survive a switch by
//! themselves; setting them again is harmless, so the rule is simple: every IPPROTO_TCP
//! option a block accepted is remembered, except TCP_QUICKACK, which is a one-shot switch
//! (Linux), not a setting.

use plugtcp_abi::sockopt::{self, IPPROTO_TCP};
use plugtcp_abi::Errno;

/// The options a block accepted, last value of each, in the order first set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StickyOpts {
    opts: Vec<(i32, Vec<u8>)>,
}

impl StickyOpts {
    /// Whether a set of `(level, name)` that a block accepted should be remembered.
    pub fn keeps(level: i32, name: i32) -> bool {
        level == IPPROTO_TCP && name != sockopt::TCP_QUICKACK
    }

    /// Remembers the value of an IPPROTO_TCP option (replacing an older one).
    pub fn remember(&mut self, name: i32, val: &[u8]) {
        match self.opts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.clear();
                v.extend_from_slice(val);
            }
            None => self.opts.push((name, val.to_vec())),
        }
    }

    /// The remembered value of `name`.
    pub fn get(&self, name: i32) -> Option<&[u8]> {
        self.opts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// (name, value) pairs in the order they were first set.
    pub fn iter(&self) -> impl Iterator<Item = (i32, &[u8])> {
        self.opts.iter().map(|(n, v)| (*n, v.as_slice()))
    }

    pub fn is_empty(&self) -> bool {
        self.opts.is_empty()
    }
}

/// The checks a function block makes on the stack options a listener may carry, made by
/// the host because a listener has no block instance (its connections get the values when
/// they attach): EINVAL as the block would answer, ENOPROTOOPT for what no block of ours
/// knows.
pub fn check_listener_option(name: i32, v: i32, minmss: i32) -> Result<(), Errno> {
    match name {
        sockopt::TCP_NODELAY
        | sockopt::TCP_NOPUSH
        | sockopt::TCP_CORK
        | sockopt::TCP_NOOPT
        | sockopt::TCP_QUICKACK
        | sockopt::TCP_LINGER2 => Ok(()),
        sockopt::TCP_MAXSEG if (minmss..=65535 - 40).contains(&v) => Ok(()),
        sockopt::TCP_WINDOW_CLAMP if v >= 0 => Ok(()),
        sockopt::TCP_SYNCNT if (1..=127).contains(&v) => Ok(()),
        sockopt::TCP_MAXSEG | sockopt::TCP_WINDOW_CLAMP | sockopt::TCP_SYNCNT => Err(Errno::EINVAL),
        _ => Err(Errno::ENOPROTOOPT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_value_wins_order_kept() {
        let mut s = StickyOpts::default();
        s.remember(sockopt::TCP_WINDOW_CLAMP, &5000i32.to_ne_bytes());
        s.remember(sockopt::TCP_SYNCNT, &3i32.to_ne_bytes());
        s.remember(sockopt::TCP_WINDOW_CLAMP, &7000i32.to_ne_bytes());
        let v: Vec<i32> = s.iter().map(|(n, _)| n).collect();
        assert_eq!(v, [sockopt::TCP_WINDOW_CLAMP, sockopt::TCP_SYNCNT]);
        assert_eq!(
            s.get(sockopt::TCP_WINDOW_CLAMP),
            Some(&7000i32.to_ne_bytes()[..])
        );
        assert!(!StickyOpts::keeps(IPPROTO_TCP, sockopt::TCP_QUICKACK));
        assert!(StickyOpts::keeps(IPPROTO_TCP, sockopt::TCP_LINGER2));
        assert!(!StickyOpts::keeps(
            sockopt::SOL_SOCKET,
            sockopt::TCP_LINGER2
        ));
    }

    #[test]
    fn listener_checks_match_the_engine() {
        assert_eq!(
            check_listener_option(sockopt::TCP_SYNCNT, 0, 216),
            Err(Errno::EINVAL)
        );
        assert_eq!(check_listener_option(sockopt::TCP_SYNCNT, 127, 216), Ok(()));
        assert_eq!(
            check_listener_option(sockopt::TCP_MAXSEG, 100, 216),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_listener_option(sockopt::TCP_WINDOW_CLAMP, -1, 216),
            Err(Errno::EINVAL)
        );
        assert_eq!(check_listener_option(9999, 1, 216), Err(Errno::ENOPROTOOPT));
    }
}
