//! Sequence-number arithmetic modulo 2^32 (RFC 9293 section 3.4; FreeBSD's SEQ_LT and kin).

#[inline]
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
#[inline]
pub fn seq_leq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}
#[inline]
pub fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}
#[inline]
pub fn seq_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}
#[inline]
pub fn seq_max(a: u32, b: u32) -> u32 {
    if seq_gt(a, b) {
        a
    } else {
        b
    }
}
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
