//! The tokio sockets: [`AsyncTcpStream`] (`AsyncRead + AsyncWrite`, splittable into owned
//! halves), `accept_async` and `connect_async`. A task that cannot make progress parks its
//! waker on its connection (or on the listener in every shard) under the shard's lock; the
//! shard's driver wakes exactly the tasks of the connections that moved.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use plugtcp_abi::stack::TcpInfo;
use plugtcp_abi::{Errno, TcpState};
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::usrreq::Shutdown;
use plugtcp_host::Host;

use super::socket::connect_result;
use super::{host, lock, Shared, Side, TcpListener, TcpStream, WaitKey};

/// The tokio flavour of [`TcpStream`]: `AsyncRead` and `AsyncWrite`.
pub struct AsyncTcpStream {
    inner: TcpStream,
}

impl TcpStream {
    /// This connection as an `AsyncRead + AsyncWrite` stream.
    pub fn into_async(self) -> AsyncTcpStream {
        AsyncTcpStream { inner: self }
    }
}

impl AsyncTcpStream {
    /// The blocking stream again (its options, addresses, TCP_INFO).
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.inner.set_nodelay(on)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    pub fn tcp_info(&self) -> io::Result<TcpInfo> {
        self.inner.tcp_info()
    }

    /// Splits the stream into a read half and a write half that can move to different
    /// tasks (as tokio's `TcpStream::into_split`). The connection closes when both are
    /// dropped; dropping the write half alone sends FIN (SHUT_WR), as tokio's does.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let s = Arc::new(self);
        (
            OwnedReadHalf { inner: s.clone() },
            OwnedWriteHalf {
                inner: s,
                shutdown_on_drop: true,
            },
        )
    }

    fn poll_op<R>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Host, ConnId) -> Result<R, Errno>,
    ) -> Poll<io::Result<R>> {
        let s = &self.inner;
        let shard = &s.shared.shards[s.shard];
        let mut net = lock(shard);
        let r = f(host(&mut net, s.side), s.slot);
        if matches!(r, Err(Errno::EAGAIN)) {
            shard.park(WaitKey::Conn(s.side, s.slot), cx);
        }
        drop(net);
        match r {
            Err(Errno::EAGAIN) if s.shared.stopped() => Poll::Ready(Err(Errno::ENETDOWN.into())),
            Err(Errno::EAGAIN) => {
                // The driver has work: an application call may have queued some.
                shard.notify();
                Poll::Pending
            }
            r => {
                shard.notify();
                Poll::Ready(r.map_err(io::Error::from))
            }
        }
    }

    fn poll_read_into(
        &self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let dst = buf.initialize_unfilled();
        match self.poll_op(cx, |h, slot| h.recv(slot, dst)) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_from(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_op(cx, |h, slot| match h.send(slot, buf) {
            Err(Errno::ENOTCONN) if h.state(slot) == Some(TcpState::SynSent) => Err(Errno::EAGAIN),
            r => r,
        })
    }

    fn poll_shutdown_write(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_op(cx, |h, slot| h.shutdown(slot, Shutdown::Write))
    }
}

impl tokio::io::AsyncRead for AsyncTcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.poll_read_into(cx, buf)
    }
}

impl tokio::io::AsyncWrite for AsyncTcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_from(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Half-close (SHUT_WR), as tokio's `shutdown` means.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_shutdown_write(cx)
    }
}

/// The read half of an [`AsyncTcpStream`].
pub struct OwnedReadHalf {
    inner: Arc<AsyncTcpStream>,
}

/// The write half of an [`AsyncTcpStream`]; dropping it sends FIN.
pub struct OwnedWriteHalf {
    inner: Arc<AsyncTcpStream>,
    shutdown_on_drop: bool,
}

impl OwnedReadHalf {
    /// The stream (its addresses, options, TCP_INFO).
    pub fn stream(&self) -> &AsyncTcpStream {
        &self.inner
    }
}

impl OwnedWriteHalf {
    pub fn stream(&self) -> &AsyncTcpStream {
        &self.inner
    }
}

impl tokio::io::AsyncRead for OwnedReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner.poll_read_into(cx, buf)
    }
}

impl tokio::io::AsyncWrite for OwnedWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_write_from(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = self.inner.poll_shutdown_write(cx);
        if r.is_ready() {
            self.shutdown_on_drop = false;
        }
        r
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            let _ = self.inner.inner.shutdown(Shutdown::Write);
        }
    }
}

impl TcpListener {
    /// The next connection from any shard, as a future.
    pub async fn accept_async(&self) -> io::Result<AsyncTcpStream> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<AsyncTcpStream>> {
        let n = self.lids.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for k in 0..n {
            let i = (start + k) % n;
            let shard = &self.shared.shards[i];
            let mut net = lock(shard);
            match host(&mut net, self.side).accept(self.lids[i]) {
                Ok(slot) => {
                    drop(net);
                    shard.notify();
                    return Poll::Ready(Ok(TcpStream {
                        shared: self.shared.clone(),
                        shard: i,
                        side: self.side,
                        slot,
                    }
                    .into_async()));
                }
                Err(Errno::EAGAIN) => {
                    shard.park(WaitKey::Listener(self.side, self.lids[i]), cx);
                }
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
        if self.shared.stopped() {
            Poll::Ready(Err(Errno::ENETDOWN.into()))
        } else {
            Poll::Pending
        }
    }
}

/// Opens a connection from the next shard in turn; the future ends with the handshake.
pub(super) async fn connect(
    shared: &Arc<Shared>,
    side: Side,
    remote: SocketAddr,
) -> io::Result<AsyncTcpStream> {
    let i = shared
        .next_connect
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        % shared.shards.len();
    let shard = &shared.shards[i];
    let slot = host(&mut lock(shard), side)
        .connect(remote, None)
        .map_err(io::Error::from)?;
    shard.notify();
    let stream = TcpStream {
        shared: shared.clone(),
        shard: i,
        side,
        slot,
    }
    .into_async();
    std::future::poll_fn(|cx| {
        stream.poll_op(cx, |h, slot| match connect_result(h, slot) {
            None => Err(Errno::EAGAIN),
            Some(r) => r,
        })
    })
    .await?;
    Ok(stream)
}
