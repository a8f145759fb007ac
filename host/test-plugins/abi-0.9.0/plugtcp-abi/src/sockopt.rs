//! Socket options as they cross the ABI: the option id, the direction, and the value bytes.

use abi_stable::{std_types::RSliceMut, StableAbi};

/// `IPPROTO_TCP`, the level of every option below.
pub const IPPROTO_TCP: i32 = 6;
/// `SOL_SOCKET` options (SO_KEEPALIVE, SO_LINGER, ...) use this level.
pub const SOL_SOCKET: i32 = 0xffff;

/// SOL_SOCKET option names (FreeBSD values). The host handles them; a stack sees
/// SO_KEEPALIVE (after the host stored it in the tcpcb) to re-arm its keepalive timer.
pub const SO_KEEPALIVE: i32 = 0x0008;
/// SO_LINGER: linger on close (host only; a zero linger time makes close an abort).
pub const SO_LINGER: i32 = 0x0080;
/// SO_OOBINLINE: keep the urgent byte in the stream (host only).
pub const SO_OOBINLINE: i32 = 0x0100;
/// SO_SNDBUF: send buffer size; turns send-buffer auto-sizing off (host only).
pub const SO_SNDBUF: i32 = 0x1001;
/// SO_RCVBUF: receive buffer size; turns receive-buffer auto-sizing off (host only).
pub const SO_RCVBUF: i32 = 0x1002;

// FreeBSD <netinet/tcp.h> option names and values. "Stack" below means the host passes the
// option to the stack's `ctloutput`; "host" that the host answers it itself.
/// TCP_NODELAY: no Nagle delay (stack; `tf::NODELAY`).
pub const TCP_NODELAY: i32 = 1;
/// TCP_MAXSEG: the MSS (stack; `t_maxseg`).
pub const TCP_MAXSEG: i32 = 2;
/// TCP_NOPUSH: hold back partial segments (stack; `tf::NOPUSH`).
pub const TCP_NOPUSH: i32 = 4;
/// TCP_NOOPT: send no TCP options (stack; `tf::NOOPT`).
pub const TCP_NOOPT: i32 = 8;
/// TCP_MD5SIG: RFC 2385 signatures, handled by the host: FreeBSD's int (sign with the
/// store's key for the peer) or Linux's `struct tcp_md5sig` (a key into the store).
pub const TCP_MD5SIG: i32 = 16;
/// TCP_INFO: `struct tcp_info` (host, through the stack's `info` hook).
pub const TCP_INFO: i32 = 32;
/// TCP_STATS: plugtcp's [`crate::stack::TcpStats`] (host, from the tcpcb).
pub const TCP_STATS: i32 = 33;
/// TCP_LOG: FreeBSD's BB logging (not implemented by the host; passed to the stack).
pub const TCP_LOG: i32 = 34;
/// TCP_CONGESTION: the connection's CC module by name (host).
pub const TCP_CONGESTION: i32 = 64;
/// TCP_CCALGOOPT: an option of the CC module (host, to the module's `ctl_output`; ENOENT
/// when it has none).
pub const TCP_CCALGOOPT: i32 = 65;
/// TCP_MAXUNACKTIME (FreeBSD; not implemented by the host; passed to the stack).
pub const TCP_MAXUNACKTIME: i32 = 68;
/// TCP_MAXPEAKRATE (FreeBSD; not implemented by the host; passed to the stack).
pub const TCP_MAXPEAKRATE: i32 = 69;
/// TCP_IDLE_REDUCE (FreeBSD; not implemented by the host; passed to the stack).
pub const TCP_IDLE_REDUCE: i32 = 70;
/// TCP_REMOTE_UDP_ENCAPS_PORT: run over UDP to this peer port (host; a closed socket only).
pub const TCP_REMOTE_UDP_ENCAPS_PORT: i32 = 71;
/// TCP_KEEPINIT: connection-establishment timeout, seconds (host stores `t_keepinit` in ms,
/// then tells the stack).
pub const TCP_KEEPINIT: i32 = 128;
/// TCP_KEEPIDLE: idle time before keepalive probes, seconds (host stores `t_keepidle` in
/// ms, then tells the stack).
pub const TCP_KEEPIDLE: i32 = 256;
/// TCP_KEEPINTVL: interval between keepalive probes, seconds (host stores `t_keepintvl` in
/// ms, then tells the stack).
pub const TCP_KEEPINTVL: i32 = 512;
/// TCP_KEEPCNT: unanswered probes before the drop (host stores `t_keepcnt`, then tells the
/// stack).
pub const TCP_KEEPCNT: i32 = 1024;
/// TCP_FASTOPEN: RFC 7413 (not implemented by the host; passed to the stack).
pub const TCP_FASTOPEN: i32 = 1025;
/// TCP_FUNCTION_BLK: the connection's function block (host: a stack switch).
pub const TCP_FUNCTION_BLK: i32 = 8192;
/// TCP_FUNCTION_ALIAS: the alias the block was selected by (host, read only).
pub const TCP_FUNCTION_ALIAS: i32 = 8193;

// Linux-only options plugtcp also accepts (tcp(7)); numbered above FreeBSD's range so the
// two sets never collide.
/// TCP_CORK: Linux's cork, TCP_NOPUSH with a 200 ms ceiling (stack; `tf::NOPUSH` and
/// `tf2::CORK`).
pub const TCP_CORK: i32 = 0x1_0003;
/// TCP_SYNCNT: SYN retransmissions before giving up (stack).
pub const TCP_SYNCNT: i32 = 0x1_0007;
/// TCP_LINGER2: lifetime of an orphaned FIN_WAIT_2, seconds (stack).
pub const TCP_LINGER2: i32 = 0x1_0008;
/// TCP_DEFER_ACCEPT: accept only once data arrived, seconds (host, on listeners).
pub const TCP_DEFER_ACCEPT: i32 = 0x1_0009;
/// TCP_WINDOW_CLAMP: largest window to advertise (stack).
pub const TCP_WINDOW_CLAMP: i32 = 0x1_000a;
/// TCP_QUICKACK: enter or leave quick-ACK mode (stack; `tf2::QUICKACK`).
pub const TCP_QUICKACK: i32 = 0x1_000c;
/// TCP_USER_TIMEOUT: how long data may stay unacknowledged, milliseconds (host stores
/// `t_user_timeout`, then tells the stack).
pub const TCP_USER_TIMEOUT: i32 = 0x1_0012;
/// TCP_FASTOPEN_CONNECT (Linux; not implemented by the host; passed to the stack).
pub const TCP_FASTOPEN_CONNECT: i32 = 0x1_001e;

// plugtcp's own options, numbered above Linux's.
/// A siftr(4)-style trace of the connection: one CSV line per ACK into the file whose path
/// is the value (an empty value stops it). The host handles it; stacks never see it.
pub const TCP_SIFTR: i32 = 0x2_0001;

/// Longest CC name, with its NUL (FreeBSD TCP_CA_NAME_MAX): names have at most 15 bytes.
pub const TCP_CA_NAME_MAX: usize = 16;
/// Longest function block name, with its NUL (FreeBSD TCP_FUNCTION_NAME_LEN_MAX).
pub const TCP_FUNCTION_NAME_LEN_MAX: usize = 32;
/// TCP_CCALGOOPT values are at most this long (issue: EINVAL above).
pub const TCP_CCALGOOPT_MAX: usize = 2048;

/// Which call a [`SockOpt`] is.
#[repr(u8)]
#[derive(Copy, Clone, PartialEq, Eq, Debug, StableAbi)]
pub enum SockOptDir {
    /// getsockopt: the hook writes the value (see [`SockOpt::reply`]).
    Get = 0,
    /// setsockopt: the hook reads the value (see [`SockOpt::value`]).
    Set = 1,
}

/// One getsockopt/setsockopt call. For a set, `val[..len]` holds the value; for a get, the
/// hook writes into `val` and stores the length it wrote in `len`.
#[repr(C)]
#[derive(StableAbi)]
pub struct SockOpt<'a> {
    /// [`IPPROTO_TCP`] or [`SOL_SOCKET`].
    pub level: i32,
    /// The option name (the constants above).
    pub name: i32,
    /// Get or set.
    pub dir: SockOptDir,
    /// The value bytes (set), or the caller's buffer (get), borrowed for the call.
    pub val: RSliceMut<'a, u8>,
    /// Set: bytes of `val` that hold the value. Get: in, the buffer's size; out, the bytes
    /// the hook wrote (what the application's getsockopt returns).
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

    /// Answer a get call with a native-endian int.
    pub fn reply_int(&mut self, v: i32) -> Result<(), crate::Errno> {
        self.reply(&v.to_ne_bytes())
    }
}
