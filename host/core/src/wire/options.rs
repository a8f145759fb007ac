//! TCP options: parsed with FreeBSD `tcp_dooptions` semantics and written in FreeBSD
//! `tcp_addoptions` order.

use super::*;

pub(super) const TCPOPT_EOL: u8 = 0;
pub(super) const TCPOPT_NOP: u8 = 1;
pub(super) const TCPOPT_MAXSEG: u8 = 2;
pub(super) const TCPOPT_WINDOW: u8 = 3;
pub(super) const TCPOPT_SACK_PERMITTED: u8 = 4;
pub(super) const TCPOPT_SACK: u8 = 5;
pub(super) const TCPOPT_TIMESTAMP: u8 = 8;
pub(super) const TCPOPT_SIGNATURE: u8 = 19;
pub(super) const TCPOPT_FAST_OPEN: u8 = 34;

pub(super) const TCPOLEN_MAXSEG: usize = 4;
pub(super) const TCPOLEN_WINDOW: usize = 3;
pub(super) const TCPOLEN_SACK_PERMITTED: usize = 2;
pub(super) const TCPOLEN_SACKHDR: usize = 2;
pub(super) const TCPOLEN_SACK: usize = 8;
pub(super) const TCPOLEN_TIMESTAMP: usize = 10;
pub(super) const TCPOLEN_SIGNATURE: usize = 18;
pub(super) const TCPOLEN_FAST_OPEN_EMPTY: usize = 2;
/// Cookie of 4..16 bytes (RFC 7413 4.1.1), as FreeBSD checks it.
pub(super) const TCPOLEN_FAST_OPEN_MIN: usize = 2 + 4;
pub(super) const TCPOLEN_FAST_OPEN_MAX: usize = 2 + 16;

/// RFC 7323 2.3: larger shift counts are treated as 14.
pub(super) const TCP_MAX_WINSHIFT: u8 = 14;

/// FreeBSD `tcp_dooptions`: a malformed length ends option processing but keeps the
/// segment; options with a wrong length for their kind are skipped. Whether an option is
/// legal on this segment (SYN-only ones) is left to the stack.
pub(super) fn parse_options(mut cp: &[u8]) -> TcpOpts {
    let mut o = TcpOpts::default();
    while let Some(&kind) = cp.first() {
        let optlen = match kind {
            TCPOPT_EOL => break,
            TCPOPT_NOP => 1,
            _ => match cp.get(1) {
                Some(&l) if l >= 2 && usize::from(l) <= cp.len() => usize::from(l),
                _ => break,
            },
        };
        let body = &cp[2.min(optlen)..optlen];
        match kind {
            TCPOPT_MAXSEG if optlen == TCPOLEN_MAXSEG => {
                o.flags |= to::MSS;
                o.mss = u16::from_be_bytes([body[0], body[1]]);
            }
            TCPOPT_WINDOW if optlen == TCPOLEN_WINDOW => {
                o.flags |= to::WSCALE;
                o.wscale = body[0].min(TCP_MAX_WINSHIFT);
            }
            TCPOPT_SACK_PERMITTED if optlen == TCPOLEN_SACK_PERMITTED => {
                o.flags |= to::SACKPERM;
            }
            TCPOPT_TIMESTAMP if optlen == TCPOLEN_TIMESTAMP => {
                o.flags |= to::TSTAMP;
                o.tsval = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                o.tsecr = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
            }
            TCPOPT_SACK
                if optlen > TCPOLEN_SACKHDR
                    && (optlen - TCPOLEN_SACKHDR).is_multiple_of(TCPOLEN_SACK) =>
            {
                o.flags |= to::SACK;
                let mut n = 0;
                for (slot, b) in o.sacks.iter_mut().zip(body.chunks_exact(TCPOLEN_SACK)) {
                    *slot = SackBlock {
                        start: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                        end: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                    };
                    n += 1;
                }
                o.nsacks = n;
            }
            TCPOPT_SIGNATURE if optlen == TCPOLEN_SIGNATURE => o.flags |= to::SIGNATURE,
            TCPOPT_FAST_OPEN
                if optlen == TCPOLEN_FAST_OPEN_EMPTY
                    || (TCPOLEN_FAST_OPEN_MIN..=TCPOLEN_FAST_OPEN_MAX).contains(&optlen) =>
            {
                o.flags |= to::FASTOPEN;
                o.tfo_len = body.len() as u8;
                o.tfo_cookie[..body.len()].copy_from_slice(body);
            }
            _ => {}
        }
        cp = &cp[optlen..];
    }
    o
}

/// Option bytes `build` writes for `opts` on a SYN or non-SYN segment, padding included,
/// so a stack can take them off its payload size (FreeBSD's t_maxseg excludes options).
pub fn options_len(opts: &TcpOpts, syn: bool) -> usize {
    let mut scratch = [0u8; TCP_MAXOLEN];
    add_options(opts, syn, &mut scratch)
}

/// Which option bits go on the wire. SYN-only options (MSS, window scale, SACK-permitted,
/// TFO) are sent only on a SYN, SACK blocks only without it, as FreeBSD tcp_output
/// decides; an empty SACK list sends no SACK option.
pub(super) fn wire_flags(opts: &TcpOpts, syn: bool) -> u16 {
    let mut f = opts.flags & (to::TSTAMP | to::SIGNATURE);
    if syn {
        f |= opts.flags & (to::MSS | to::WSCALE | to::SACKPERM | to::FASTOPEN);
    } else if opts.has(to::SACK) && opts.nsacks > 0 {
        f |= to::SACK;
    }
    f
}

/// Pad with NOPs while `need(optlen)` holds.
pub(super) fn pad_nop(
    out: &mut [u8; TCP_MAXOLEN],
    optlen: &mut usize,
    need: impl Fn(usize) -> bool,
) {
    while need(*optlen) && *optlen < TCP_MAXOLEN {
        out[*optlen] = TCPOPT_NOP;
        *optlen += 1;
    }
}

/// FreeBSD `tcp_addoptions`: same order (MSS, WS, SACK-permitted, TS, signature, SACK,
/// TFO), same alignment NOPs, EOL then zero padding to 4 bytes. Returns the option length.
/// The signature's digest is left zero for the builder to fill in.
pub(super) fn add_options(opts: &TcpOpts, syn: bool, out: &mut [u8; TCP_MAXOLEN]) -> usize {
    let f = wire_flags(opts, syn);
    let mut n = 0usize;
    if f & to::MSS != 0 {
        pad_nop(out, &mut n, |l| l % 4 != 0);
        if TCP_MAXOLEN - n >= TCPOLEN_MAXSEG {
            let m = opts.mss.to_be_bytes();
            out[n..n + 4].copy_from_slice(&[TCPOPT_MAXSEG, TCPOLEN_MAXSEG as u8, m[0], m[1]]);
            n += TCPOLEN_MAXSEG;
        }
    }
    if f & to::WSCALE != 0 {
        pad_nop(out, &mut n, |l| l == 0 || l % 2 != 1);
        if TCP_MAXOLEN - n >= TCPOLEN_WINDOW {
            out[n..n + 3].copy_from_slice(&[TCPOPT_WINDOW, TCPOLEN_WINDOW as u8, opts.wscale]);
            n += TCPOLEN_WINDOW;
        }
    }
    if f & to::SACKPERM != 0 {
        pad_nop(out, &mut n, |l| l % 2 != 0);
        if TCP_MAXOLEN - n >= TCPOLEN_SACK_PERMITTED {
            out[n..n + 2].copy_from_slice(&[TCPOPT_SACK_PERMITTED, TCPOLEN_SACK_PERMITTED as u8]);
            n += TCPOLEN_SACK_PERMITTED;
        }
    }
    if f & to::TSTAMP != 0 {
        pad_nop(out, &mut n, |l| l == 0 || l % 4 != 2);
        if TCP_MAXOLEN - n >= TCPOLEN_TIMESTAMP {
            out[n] = TCPOPT_TIMESTAMP;
            out[n + 1] = TCPOLEN_TIMESTAMP as u8;
            out[n + 2..n + 6].copy_from_slice(&opts.tsval.to_be_bytes());
            out[n + 6..n + 10].copy_from_slice(&opts.tsecr.to_be_bytes());
            n += TCPOLEN_TIMESTAMP;
        }
    }
    if f & to::SIGNATURE != 0 {
        pad_nop(out, &mut n, |l| l == 0 || l % 4 != 2);
        if TCP_MAXOLEN - n >= TCPOLEN_SIGNATURE {
            out[n] = TCPOPT_SIGNATURE;
            out[n + 1] = TCPOLEN_SIGNATURE as u8;
            out[n + 2..n + TCPOLEN_SIGNATURE].fill(0);
            n += TCPOLEN_SIGNATURE;
        }
    }
    if f & to::SACK != 0 {
        pad_nop(out, &mut n, |l| l == 0 || l % 4 != 2);
        if TCP_MAXOLEN - n >= TCPOLEN_SACKHDR + TCPOLEN_SACK {
            let nblk = opts
                .sack_blocks()
                .len()
                .min((TCP_MAXOLEN - n - TCPOLEN_SACKHDR) / TCPOLEN_SACK);
            out[n] = TCPOPT_SACK;
            out[n + 1] = (TCPOLEN_SACKHDR + nblk * TCPOLEN_SACK) as u8;
            n += TCPOLEN_SACKHDR;
            for b in &opts.sack_blocks()[..nblk] {
                out[n..n + 4].copy_from_slice(&b.start.to_be_bytes());
                out[n + 4..n + 8].copy_from_slice(&b.end.to_be_bytes());
                n += TCPOLEN_SACK;
            }
        }
    }
    // FreeBSD writes it unaligned, and leaves it out when it does not fit.
    let cookie = opts.tfo_cookie();
    let fo_len = TCPOLEN_FAST_OPEN_EMPTY + cookie.len();
    if f & to::FASTOPEN != 0 && TCP_MAXOLEN - n >= fo_len {
        out[n..n + 2].copy_from_slice(&[TCPOPT_FAST_OPEN, fo_len as u8]);
        out[n + 2..n + fo_len].copy_from_slice(cookie);
        n += fo_len;
    }
    // EOL, then zero padding: both are zero bytes.
    while !n.is_multiple_of(4) {
        out[n] = TCPOPT_EOL;
        n += 1;
    }
    n
}
