//! The symbols scripts use (packetdrill's symbols_freebsd.c and symbols_linux.c), mapped to
//! the numbers plugtcp's POSIX layer takes: FreeBSD's for the socket API, plugtcp's own for
//! the Linux-only TCP options, and plugtcp's errno values.

use plugtcp_abi::sockopt as so;
use plugtcp_abi::Errno;

use plugtcp_host::posix::consts::*;

/// The value of `name`, if the runner knows it.
pub fn lookup(name: &str) -> Option<i64> {
    if let Some(e) = Errno::from_name(name) {
        return Some(i64::from(e.0));
    }
    let v: i64 = match name {
        "AF_INET" | "PF_INET" => AF_INET.into(),
        "AF_INET6" | "PF_INET6" => AF_INET6.into(),
        "AF_UNSPEC" => 0,
        "SOCK_STREAM" => SOCK_STREAM.into(),
        "SOCK_DGRAM" => SOCK_DGRAM.into(),
        "SOCK_NONBLOCK" => SOCK_NONBLOCK.into(),
        "SOCK_CLOEXEC" => SOCK_CLOEXEC.into(),
        "IPPROTO_IP" => IPPROTO_IP.into(),
        "IPPROTO_TCP" => IPPROTO_TCP.into(),
        "IPPROTO_UDP" => 17,
        "IPPROTO_SCTP" => 132,
        "IPPROTO_IPV6" => IPPROTO_IPV6.into(),
        "SOL_SOCKET" => SOL_SOCKET.into(),
        "SOL_TCP" => IPPROTO_TCP.into(),
        "SOL_IP" => IPPROTO_IP.into(),
        "SOL_IPV6" => IPPROTO_IPV6.into(),

        "SO_DEBUG" => SO_DEBUG.into(),
        "SO_ACCEPTCONN" => SO_ACCEPTCONN.into(),
        "SO_REUSEADDR" => SO_REUSEADDR.into(),
        "SO_KEEPALIVE" => SO_KEEPALIVE.into(),
        "SO_DONTROUTE" => SO_DONTROUTE.into(),
        "SO_BROADCAST" => SO_BROADCAST.into(),
        "SO_LINGER" => SO_LINGER.into(),
        "SO_OOBINLINE" => SO_OOBINLINE.into(),
        "SO_REUSEPORT" => SO_REUSEPORT.into(),
        "SO_NOSIGPIPE" => SO_NOSIGPIPE.into(),
        "SO_SNDBUF" => SO_SNDBUF.into(),
        "SO_RCVBUF" => SO_RCVBUF.into(),
        "SO_MAX_PACING_RATE" => SO_MAX_PACING_RATE.into(),
        "SO_SNDLOWAT" => SO_SNDLOWAT.into(),
        "SO_RCVLOWAT" => SO_RCVLOWAT.into(),
        "SO_SNDTIMEO" => SO_SNDTIMEO.into(),
        "SO_RCVTIMEO" => SO_RCVTIMEO.into(),
        "SO_ERROR" => SO_ERROR.into(),
        "SO_TYPE" => SO_TYPE.into(),

        "IP_TOS" => IP_TOS.into(),
        "IP_TTL" => IP_TTL.into(),
        "IPV6_TCLASS" => IPV6_TCLASS.into(),
        "IPV6_UNICAST_HOPS" => IPV6_UNICAST_HOPS.into(),
        "IPV6_V6ONLY" => IPV6_V6ONLY.into(),

        "TCP_NODELAY" => so::TCP_NODELAY.into(),
        "TCP_MAXSEG" => so::TCP_MAXSEG.into(),
        "TCP_NOPUSH" => so::TCP_NOPUSH.into(),
        "TCP_NOOPT" => so::TCP_NOOPT.into(),
        "TCP_MD5SIG" => so::TCP_MD5SIG.into(),
        "TCP_INFO" => so::TCP_INFO.into(),
        "TCP_STATS" => so::TCP_STATS.into(),
        "TCP_LOG" => so::TCP_LOG.into(),
        "TCP_CONGESTION" => so::TCP_CONGESTION.into(),
        "TCP_CCALGOOPT" => so::TCP_CCALGOOPT.into(),
        "TCP_MAXUNACKTIME" => so::TCP_MAXUNACKTIME.into(),
        "TCP_MAXPEAKRATE" => so::TCP_MAXPEAKRATE.into(),
        "TCP_IDLE_REDUCE" => so::TCP_IDLE_REDUCE.into(),
        "TCP_REMOTE_UDP_ENCAPS_PORT" => so::TCP_REMOTE_UDP_ENCAPS_PORT.into(),
        "TCP_KEEPINIT" => so::TCP_KEEPINIT.into(),
        "TCP_KEEPIDLE" => so::TCP_KEEPIDLE.into(),
        "TCP_KEEPINTVL" => so::TCP_KEEPINTVL.into(),
        "TCP_KEEPCNT" => so::TCP_KEEPCNT.into(),
        "TCP_FASTOPEN" => so::TCP_FASTOPEN.into(),
        "TCP_FUNCTION_BLK" => so::TCP_FUNCTION_BLK.into(),
        "TCP_FUNCTION_ALIAS" => so::TCP_FUNCTION_ALIAS.into(),
        "TCP_CORK" => so::TCP_CORK.into(),
        "TCP_SYNCNT" => so::TCP_SYNCNT.into(),
        "TCP_LINGER2" => so::TCP_LINGER2.into(),
        "TCP_DEFER_ACCEPT" => so::TCP_DEFER_ACCEPT.into(),
        "TCP_WINDOW_CLAMP" => so::TCP_WINDOW_CLAMP.into(),
        "TCP_QUICKACK" => so::TCP_QUICKACK.into(),
        "TCP_USER_TIMEOUT" => so::TCP_USER_TIMEOUT.into(),
        "TCP_FASTOPEN_CONNECT" => so::TCP_FASTOPEN_CONNECT.into(),

        "O_RDONLY" => O_RDONLY.into(),
        "O_WRONLY" => O_WRONLY.into(),
        "O_RDWR" => O_RDWR.into(),
        "O_NONBLOCK" => O_NONBLOCK.into(),
        "O_APPEND" => O_APPEND.into(),
        "O_ASYNC" => O_ASYNC.into(),
        "F_GETFD" => F_GETFD.into(),
        "F_SETFD" => F_SETFD.into(),
        "F_GETFL" => F_GETFL.into(),
        "F_SETFL" => F_SETFL.into(),
        "FD_CLOEXEC" => FD_CLOEXEC.into(),

        "MSG_OOB" => MSG_OOB.into(),
        "MSG_PEEK" => MSG_PEEK.into(),
        "MSG_DONTROUTE" => MSG_DONTROUTE.into(),
        "MSG_EOR" => MSG_EOR.into(),
        "MSG_TRUNC" => MSG_TRUNC.into(),
        "MSG_CTRUNC" => MSG_CTRUNC.into(),
        "MSG_WAITALL" => MSG_WAITALL.into(),
        "MSG_DONTWAIT" => MSG_DONTWAIT.into(),
        "MSG_EOF" => MSG_EOF.into(),
        "MSG_NOSIGNAL" => MSG_NOSIGNAL.into(),
        "MSG_FASTOPEN" => MSG_FASTOPEN.into(),

        "SHUT_RD" => SHUT_RD.into(),
        "SHUT_WR" => SHUT_WR.into(),
        "SHUT_RDWR" => SHUT_RDWR.into(),

        "POLLIN" => POLLIN.into(),
        "POLLPRI" => POLLPRI.into(),
        "POLLOUT" => POLLOUT.into(),
        "POLLRDNORM" => POLLRDNORM.into(),
        "POLLWRNORM" => POLLWRNORM.into(),
        "POLLRDBAND" => POLLRDBAND.into(),
        "POLLWRBAND" => POLLWRBAND.into(),
        "POLLINIGNEOF" => POLLINIGNEOF.into(),
        "POLLRDHUP" => POLLRDHUP.into(),
        "POLLERR" => POLLERR.into(),
        "POLLHUP" => POLLHUP.into(),
        "POLLNVAL" => POLLNVAL.into(),

        "FIONREAD" => FIONREAD as i64,
        "FIONBIO" => FIONBIO as i64,
        "FIONWRITE" => FIONWRITE as i64,
        "FIONSPACE" => FIONSPACE as i64,
        "SIOCATMARK" => SIOCATMARK as i64,
        "SIOCINQ" => SIOCINQ_LINUX as i64,
        "SIOCOUTQ" => SIOCOUTQ_LINUX as i64,

        "INADDR_ANY" => 0,

        // netinet/ip.h DSCP code points, already shifted into the TOS byte.
        "IPTOS_DSCP_CS0" => 0x00,
        "IPTOS_DSCP_CS1" => 0x20,
        "IPTOS_DSCP_AF11" => 0x28,
        "IPTOS_DSCP_AF12" => 0x30,
        "IPTOS_DSCP_AF13" => 0x38,
        "IPTOS_DSCP_CS2" => 0x40,
        "IPTOS_DSCP_AF21" => 0x48,
        "IPTOS_DSCP_AF22" => 0x50,
        "IPTOS_DSCP_AF23" => 0x58,
        "IPTOS_DSCP_CS3" => 0x60,
        "IPTOS_DSCP_AF31" => 0x68,
        "IPTOS_DSCP_AF32" => 0x70,
        "IPTOS_DSCP_AF33" => 0x78,
        "IPTOS_DSCP_CS4" => 0x80,
        "IPTOS_DSCP_AF41" => 0x88,
        "IPTOS_DSCP_AF42" => 0x90,
        "IPTOS_DSCP_AF43" => 0x98,
        "IPTOS_DSCP_CS5" => 0xa0,
        "IPTOS_DSCP_EF" => 0xb8,
        "IPTOS_DSCP_CS6" => 0xc0,
        "IPTOS_DSCP_CS7" => 0xe0,
        "IPTOS_LOWDELAY" => 0x10,
        "IPTOS_THROUGHPUT" => 0x08,
        "IPTOS_RELIABILITY" => 0x04,

        _ => return tcp_info_constant(name),
    };
    Some(v)
}

/// The constants `%{ }%` code compares TCP_INFO fields with.
pub fn tcp_info_constant(name: &str) -> Option<i64> {
    Some(match name {
        // FreeBSD netinet/tcp.h
        "TCPI_OPT_TIMESTAMPS" => 0x01,
        "TCPI_OPT_SACK" => 0x02,
        "TCPI_OPT_WSCALE" => 0x04,
        "TCPI_OPT_ECN" => 0x08,
        "TCPI_OPT_TOE" => 0x10,
        "TCPI_OPT_TFO" => 0x20,
        "TCPI_OPT_ACE" => 0x40,
        // FreeBSD tcp_fsm.h states, as tcpi_state reports them (nplab's code.c gives the
        // same numbers as TCPI_*).
        "TCPS_CLOSED" | "TCPI_CLOSED" => 0,
        "TCPS_LISTEN" | "TCPI_LISTEN" => 1,
        "TCPS_SYN_SENT" | "TCPI_SYN_SENT" => 2,
        "TCPS_SYN_RECEIVED" | "TCPI_SYN_RECEIVED" => 3,
        "TCPS_ESTABLISHED" | "TCPI_ESTABLISHED" => 4,
        "TCPS_CLOSE_WAIT" | "TCPI_CLOSE_WAIT" => 5,
        "TCPS_FIN_WAIT_1" | "TCPI_FIN_WAIT_1" => 6,
        "TCPS_CLOSING" | "TCPI_CLOSING" => 7,
        "TCPS_LAST_ACK" | "TCPI_LAST_ACK" => 8,
        "TCPS_FIN_WAIT_2" | "TCPI_FIN_WAIT_2" => 9,
        "TCPS_TIME_WAIT" | "TCPI_TIME_WAIT" => 10,
        // Linux's congestion-avoidance states (tcpi_ca_state).
        "TCP_CA_Open" => 0,
        "TCP_CA_Disorder" => 1,
        "TCP_CA_CWR" => 2,
        "TCP_CA_Recovery" => 3,
        "TCP_CA_Loss" => 4,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown() {
        assert_eq!(lookup("SOL_SOCKET"), Some(0xffff));
        assert_eq!(lookup("EINPROGRESS"), Some(i64::from(Errno::EINPROGRESS.0)));
        assert_eq!(lookup("TCP_CORK"), Some(i64::from(so::TCP_CORK)));
        assert_eq!(lookup("TCPI_OPT_SACK"), Some(2));
        assert_eq!(lookup("NO_SUCH_THING"), None);
    }
}
