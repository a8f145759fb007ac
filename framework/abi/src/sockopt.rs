//! Socket options as they cross the ABI: the option id, the direction, and the value bytes.

use abi_stable::{std_types::RSliceMut, StableAbi};

/// `IPPROTO_TCP`, the level of every option below.
pub const IPPROTO_TCP: i32 = 6;
/// `SOL_SOCKET` options (SO_KEEPALIVE, SO_LINGER, ...) use this level.
pub const SOL_SOCKET: i32 = 0xffff;

/// SOL_SOCKET option names (FreeBSD values). The host handles them; a stack sees
/// SO_KEEPALIVE (after the host stored it in the tcpcb) to re-arm its keepalive timer.
pub const SO_KEEPALIVE: i32 = 0x0008;
pub const SO_LINGER: i32 = 0x0080;
pub const SO_OOBINLINE: i32 = 0x0100;
pub const SO_SNDBUF: i32 = 0x1001;
pub const SO_RCVBUF: i32 = 0x1002;

// FreeBSD <netinet/tcp.h> option names and values.
pub const TCP_NODELAY: i32 = 1;
pub const TCP_MAXSEG: i32 = 2;
pub const TCP_NOPUSH: i32 = 4;
pub const TCP_NOOPT: i32 = 8;
pub const TCP_MD5SIG: i32 = 16;
pub const TCP_INFO: i32 = 32;
pub const TCP_STATS: i32 = 33;
pub const TCP_LOG: i32 = 34;
pub const TCP_CONGESTION: i32 = 64;
pub const TCP_CCALGOOPT: i32 = 65;
pub const TCP_MAXUNACKTIME: i32 = 68;
pub const TCP_MAXPEAKRATE: i32 = 69;
pub const TCP_IDLE_REDUCE: i32 = 70;
pub const TCP_REMOTE_UDP_ENCAPS_PORT: i32 = 71;
pub const TCP_KEEPINIT: i32 = 128;
pub const TCP_KEEPIDLE: i32 = 256;
pub const TCP_KEEPINTVL: i32 = 512;
pub const TCP_KEEPCNT: i32 = 1024;
pub const TCP_FASTOPEN: i32 = 1025;
pub const TCP_FUNCTION_BLK: i32 = 8192;
pub const TCP_FUNCTION_ALIAS: i32 = 8193;

// Linux-only options plugtcp also accepts (tcp(7)); numbered above FreeBSD's range so the
// two sets never collide.
pub const TCP_CORK: i32 = 0x1_0003;
pub const TCP_SYNCNT: i32 = 0x1_0007;
pub const TCP_LINGER2: i32 = 0x1_0008;
pub const TCP_DEFER_ACCEPT: i32 = 0x1_0009;
pub const TCP_WINDOW_CLAMP: i32 = 0x1_000a;
pub const TCP_QUICKACK: i32 = 0x1_000c;
pub const TCP_USER_TIMEOUT: i32 = 0x1_0012;
pub const TCP_FASTOPEN_CONNECT: i32 = 0x1_001e;

// plugtcp's own options, numbered above Linux's.
/// A siftr(4)-style trace of the connection: one CSV line per ACK into the file whose path
/// is the value (an empty value stops it). The host handles it; stacks never see it.
pub const TCP_SIFTR: i32 = 0x2_0001;

/// Longest CC or stack name (FreeBSD TCP_CA_NAME_MAX / TCP_FUNCTION_NAME_LEN_MAX).
pub const TCP_CA_NAME_MAX: usize = 16;
pub const TCP_FUNCTION_NAME_LEN_MAX: usize = 32;
/// TCP_CCALGOOPT values are at most this long (issue: EINVAL above).
pub const TCP_CCALGOOPT_MAX: usize = 2048;

#[repr(u8)]
#[derive(Copy, Clone, PartialEq, Eq, Debug, StableAbi)]
pub enum SockOptDir {
    Get = 0,
    Set = 1,
}

/// One getsockopt/setsockopt call. For a set, `val[..len]` holds the value; for a get, the
/// hook writes into `val` and stores the length it wrote in `len`.
#[repr(C)]
#[derive(StableAbi)]
pub struct SockOpt<'a> {
    pub level: i32,
    pub name: i32,
    pub dir: SockOptDir,
    pub val: RSliceMut<'a, u8>,
    pub len: u32,
}

impl<'a> SockOpt<'a> {
    /// The value of a set call.
    pub fn value(&self) -> &[u8] {
        &self.val[..(self.len as usize).min(self.val.len())]
    }

    /// The value as a native-endian int, EINVAL when it is not 4 bytes.
    pub fn int(&self) -> Result<i32, crate::Errno> {
        let v = self.value();
        let b: [u8; 4] = v.try_into().map_err(|_| crate::Errno::EINVAL)?;
        Ok(i32::from_ne_bytes(b))
    }

    /// Answer a get call with `bytes`; EINVAL when the caller's buffer is too small.
    pub fn reply(&mut self, bytes: &[u8]) -> Result<(), crate::Errno> {
        let dst = self
            .val
            .get_mut(..bytes.len())
            .ok_or(crate::Errno::EINVAL)?;
        dst.copy_from_slice(bytes);
        self.len = bytes.len() as u32;
        Ok(())
    }

    pub fn reply_int(&mut self, v: i32) -> Result<(), crate::Errno> {
        self.reply(&v.to_ne_bytes())
    }
}
