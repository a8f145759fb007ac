//! The numbers of the POSIX socket API as FreeBSD defines them (sys/socket.h, fcntl.h,
//! poll.h, sys/filio.h, netinet/in.h), plus the Linux names plugtcp also answers to.
//! Option names at IPPROTO_TCP are plugtcp_abi::sockopt's; SOL_SOCKET's are there too.

pub use plugtcp_abi::sockopt::{
    IPPROTO_TCP, SOL_SOCKET, SO_KEEPALIVE, SO_LINGER, SO_MAX_PACING_RATE, SO_OOBINLINE, SO_RCVBUF,
    SO_SNDBUF,
};

pub const AF_INET: i32 = 2;
pub const AF_INET6: i32 = 28;
/// Linux's AF_INET6, accepted too.
pub const AF_INET6_LINUX: i32 = 10;

pub const SOCK_STREAM: i32 = 1;
pub const SOCK_DGRAM: i32 = 2;
pub const SOCK_CLOEXEC: i32 = 0x1000_0000;
pub const SOCK_NONBLOCK: i32 = 0x2000_0000;

pub const IPPROTO_IP: i32 = 0;
pub const IPPROTO_IPV6: i32 = 41;

pub const SO_DEBUG: i32 = 0x0001;
pub const SO_ACCEPTCONN: i32 = 0x0002;
pub const SO_REUSEADDR: i32 = 0x0004;
pub const SO_DONTROUTE: i32 = 0x0010;
pub const SO_BROADCAST: i32 = 0x0020;
pub const SO_REUSEPORT: i32 = 0x0200;
pub const SO_NOSIGPIPE: i32 = 0x0800;
pub const SO_SNDLOWAT: i32 = 0x1003;
pub const SO_RCVLOWAT: i32 = 0x1004;
pub const SO_SNDTIMEO: i32 = 0x1005;
pub const SO_RCVTIMEO: i32 = 0x1006;
pub const SO_ERROR: i32 = 0x1007;
pub const SO_TYPE: i32 = 0x1008;

pub const IP_TOS: i32 = 3;
pub const IP_TTL: i32 = 4;
pub const IPV6_UNICAST_HOPS: i32 = 4;
pub const IPV6_V6ONLY: i32 = 27;
pub const IPV6_TCLASS: i32 = 61;

pub const O_RDONLY: i32 = 0x0000;
pub const O_WRONLY: i32 = 0x0001;
pub const O_RDWR: i32 = 0x0002;
pub const O_NONBLOCK: i32 = 0x0004;
pub const O_APPEND: i32 = 0x0008;
pub const O_ASYNC: i32 = 0x0040;

pub const F_GETFD: i32 = 1;
pub const F_SETFD: i32 = 2;
pub const F_GETFL: i32 = 3;
pub const F_SETFL: i32 = 4;
pub const FD_CLOEXEC: i32 = 1;

pub const MSG_OOB: i32 = 0x0001;
pub const MSG_PEEK: i32 = 0x0002;
pub const MSG_DONTROUTE: i32 = 0x0004;
pub const MSG_EOR: i32 = 0x0008;
pub const MSG_TRUNC: i32 = 0x0010;
pub const MSG_CTRUNC: i32 = 0x0020;
pub const MSG_WAITALL: i32 = 0x0040;
pub const MSG_DONTWAIT: i32 = 0x0080;
pub const MSG_EOF: i32 = 0x0100;
pub const MSG_NOSIGNAL: i32 = 0x0002_0000;
/// Linux's MSG_FASTOPEN (issue 14 gives it meaning).
pub const MSG_FASTOPEN: i32 = 0x2000_0000;

pub const SHUT_RD: i32 = 0;
pub const SHUT_WR: i32 = 1;
pub const SHUT_RDWR: i32 = 2;

pub const POLLIN: i16 = 0x0001;
pub const POLLPRI: i16 = 0x0002;
pub const POLLOUT: i16 = 0x0004;
pub const POLLRDNORM: i16 = 0x0040;
pub const POLLWRNORM: i16 = POLLOUT;
pub const POLLRDBAND: i16 = 0x0080;
pub const POLLWRBAND: i16 = 0x0100;
pub const POLLINIGNEOF: i16 = 0x2000;
pub const POLLRDHUP: i16 = 0x4000;
pub const POLLERR: i16 = 0x0008;
pub const POLLHUP: i16 = 0x0010;
pub const POLLNVAL: i16 = 0x0020;

pub const FIONREAD: u64 = 0x4004_667f;
pub const FIONBIO: u64 = 0x8004_667e;
pub const FIONWRITE: u64 = 0x4004_6677;
pub const FIONSPACE: u64 = 0x4004_6676;
pub const SIOCATMARK: u64 = 0x4004_7307;
/// Linux's names: SIOCINQ is FIONREAD's, SIOCOUTQ counts the send buffer as FIONWRITE.
pub const SIOCINQ_LINUX: u64 = 0x541b;
pub const SIOCOUTQ_LINUX: u64 = 0x5411;
pub const FIONBIO_LINUX: u64 = 0x5421;
pub const SIOCATMARK_LINUX: u64 = 0x8905;

/// FreeBSD's SOMAXCONN, the backlog a negative or too large listen(2) backlog becomes.
pub const SOMAXCONN: usize = 128;
