//! Sequence-number arithmetic modulo 2^32 (RFC 9293 section 3.4; FreeBSD's SEQ_LT and kin).

/// `a < b` in sequence space (FreeBSD SEQ_LT): `b` lies less than 2^31 ahead of `a`.
#[inline]
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
/// `a <= b` in sequence space (SEQ_LEQ).
#[inline]
pub fn seq_leq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}
/// `a > b` in sequence space (SEQ_GT).
#[inline]
pub fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}
/// `a >= b` in sequence space (SEQ_GEQ).
#[inline]
pub fn seq_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}
/// The later of `a` and `b` in sequence space (SEQ_MAX).
#[inline]
pub fn seq_max(a: u32, b: u32) -> u32 {
    if seq_gt(a, b) {
        a
    } else {
        b
    }
}
/// The earlier of `a` and `b` in sequence space (SEQ_MIN).
#[inline]
pub fn seq_min(a: u32, b: u32) -> u32 {
    if seq_lt(a, b) {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert!(seq_lt(u32::MAX - 10, 5));
        assert!(seq_gt(5, u32::MAX - 10));
        assert!(seq_leq(7, 7) && seq_geq(7, 7));
        assert_eq!(seq_max(u32::MAX, 1), 1);
        assert_eq!(seq_min(u32::MAX, 1), u32::MAX);
    }
}
