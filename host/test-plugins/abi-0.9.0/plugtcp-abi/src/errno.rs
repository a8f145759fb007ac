//! The errno values tcp(4)/tcp(7) name, as one small type that crosses the ABI.

use abi_stable::StableAbi;

/// A POSIX errno value (Linux numbering, so it maps straight to `std::io::Error`).
///
/// What a hook returns as `Err` and what the host hands back to the application for it:
/// the host never translates a stack's or a CC module's errno (a panic aside, see
/// [`HookError::errno`]).
#[repr(transparent)]
#[derive(Copy, Clone, PartialEq, Eq, Hash, StableAbi)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $v:expr, $msg:expr;)*) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "` (", stringify!($v), "): ", $msg, ".")]
                pub const $name: Errno = Errno($v);
            )*

            /// The symbolic name, e.g. "EINVAL".
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($v => stringify!($name),)*
                    _ => "E?",
                }
            }

            /// The errno with this symbolic name (EWOULDBLOCK is EAGAIN's other name).
            pub fn from_name(name: &str) -> Option<Errno> {
                match name {
                    $(stringify!($name) => Some(Errno::$name),)*
                    "EWOULDBLOCK" => Some(Errno::EAGAIN),
                    _ => None,
                }
            }

            /// strerror(3)-like text.
            pub fn message(self) -> &'static str {
                match self.0 {
                    $($v => $msg,)*
                    _ => "unknown error",
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, "operation not permitted";
    ENOENT = 2, "no such file or directory";
    ESRCH = 3, "no such process";
    EIO = 5, "input/output error";
    E2BIG = 7, "argument list too long";
    EBADF = 9, "bad file descriptor";
    EAGAIN = 11, "resource temporarily unavailable";
    ENOMEM = 12, "cannot allocate memory";
    EACCES = 13, "permission denied";
    EFAULT = 14, "bad address";
    EBUSY = 16, "device or resource busy";
    EEXIST = 17, "file exists";
    EINVAL = 22, "invalid argument";
    ENOTTY = 25, "inappropriate ioctl for device";
    ENOSPC = 28, "no space left on device";
    ENAMETOOLONG = 36, "file name too long";
    EPIPE = 32, "broken pipe";
    EDOM = 33, "numerical argument out of domain";
    ENOTSOCK = 88, "socket operation on non-socket";
    EDESTADDRREQ = 89, "destination address required";
    EMSGSIZE = 90, "message too long";
    EPROTOTYPE = 91, "protocol wrong type for socket";
    ENOPROTOOPT = 92, "protocol not available";
    EPROTONOSUPPORT = 93, "protocol not supported";
    EOPNOTSUPP = 95, "operation not supported";
    EAFNOSUPPORT = 97, "address family not supported by protocol";
    EADDRINUSE = 98, "address already in use";
    EADDRNOTAVAIL = 99, "cannot assign requested address";
    ENETDOWN = 100, "network is down";
    ENETUNREACH = 101, "network is unreachable";
    ECONNABORTED = 103, "software caused connection abort";
    ECONNRESET = 104, "connection reset by peer";
    ENOBUFS = 105, "no buffer space available";
    EISCONN = 106, "transport endpoint is already connected";
    ENOTCONN = 107, "transport endpoint is not connected";
    ETIMEDOUT = 110, "connection timed out";
    ECONNREFUSED = 111, "connection refused";
    EHOSTDOWN = 112, "host is down";
    EHOSTUNREACH = 113, "no route to host";
    EALREADY = 114, "operation already in progress";
    EINPROGRESS = 115, "operation now in progress";
}

impl std::fmt::Debug for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.name())
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.0)
    }
}

/// What a plugin hook returns across the ABI: success, an errno, or "the plugin panicked".
///
/// A panic is kept apart from an errno so that the host can count a plugin fault and reset
/// the connection, while an errno (EINVAL from `ctloutput`, say) goes back to the caller.
#[repr(transparent)]
#[derive(Copy, Clone, PartialEq, Eq, Hash, StableAbi)]
pub struct HookStatus(pub i32);

impl HookStatus {
    /// The hook succeeded.
    pub const OK: HookStatus = HookStatus(0);
    /// The hook panicked; the export wrapper caught it at the boundary.
    pub const PANICKED: HookStatus = HookStatus(-1);

    /// Whether this is [`HookStatus::OK`].
    #[inline]
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// `OK` for `Ok(())`, the errno's value for `Err`. (An `Errno(-1)` would read back as
    /// [`HookStatus::PANICKED`], an `Errno(0)` as `OK`: hooks return real errno values.)
    #[inline]
    pub fn from_result(r: Result<(), Errno>) -> Self {
        match r {
            Ok(()) => HookStatus::OK,
            Err(e) => HookStatus(e.0),
        }
    }

    /// `Ok`, `Err(HookError::Errno)`, or `Err(HookError::Panicked)`.
    #[inline]
    pub fn into_result(self) -> Result<(), HookError> {
        match self.0 {
            0 => Ok(()),
            -1 => Err(HookError::Panicked),
            e => Err(HookError::Errno(Errno(e))),
        }
    }
}

impl std::fmt::Debug for HookStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.into_result() {
            Ok(()) => f.write_str("OK"),
            Err(e) => write!(f, "{e:?}"),
        }
    }
}

/// Why a hook call failed.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum HookError {
    /// The hook returned this errno: an answer, passed on to whoever asked (the
    /// application's setsockopt, a stack switch, ...); the connection lives on.
    Errno(Errno),
    /// The hook panicked (caught at the boundary by [`guard`]): a plugin fault. The host
    /// counts it against the plugin and, in most cases, frees the connection the call was
    /// made for (see "Errors and panics" in [`crate::stack`]).
    Panicked,
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookError::Errno(e) => e.fmt(f),
            HookError::Panicked => f.write_str("plugin panicked"),
        }
    }
}

impl HookError {
    /// The errno an application sees: a plugin fault reads as ECONNABORTED (the connection
    /// was torn down under it).
    pub fn errno(self) -> Errno {
        match self {
            HookError::Errno(e) => e,
            HookError::Panicked => Errno::ECONNABORTED,
        }
    }
}

/// Runs a hook body, turning a panic into `HookStatus::PANICKED` so it never unwinds across
/// an `extern "C"` boundary (which would abort the host).
#[inline]
pub fn guard(f: impl FnOnce() -> Result<(), Errno>) -> HookStatus {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => HookStatus::from_result(r),
        Err(_) => HookStatus::PANICKED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_io_mapping() {
        assert_eq!(Errno::EINVAL.name(), "EINVAL");
        assert_eq!(
            std::io::Error::from(Errno::ECONNREFUSED).kind(),
            std::io::ErrorKind::ConnectionRefused
        );
        assert_eq!(std::io::Error::from(Errno::EBUSY).raw_os_error(), Some(16));
    }

    #[test]
    fn guard_catches_panics() {
        assert_eq!(guard(|| Ok(())), HookStatus::OK);
        assert_eq!(
            guard(|| Err(Errno::EBUSY)).into_result(),
            Err(HookError::Errno(Errno::EBUSY))
        );
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let st = guard(|| panic!("boom"));
        std::panic::set_hook(prev);
        assert_eq!(st.into_result(), Err(HookError::Panicked));
    }
}
