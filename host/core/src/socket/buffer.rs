//! Host-owned socket buffers in fixed-size chunks.
//!
//! The host owns every connection's send and receive bytes; the TCP stack
//! reads send bytes at an offset from `snd_una` and writes received bytes at
//! an offset from `rcv_nxt`. Storage comes in [`CHUNK`]-byte chunks from a
//! per-worker [`ChunkPool`], so an idle connection holds no chunk and steady
//! state recycles chunks without touching the allocator.
//!
//! Chunks are returned to the pool only through methods taking the pool.
//! Dropping a buffer that still holds chunks frees them to the allocator and
//! leaves [`ChunkPool::allocated`] overstating; call `clear` first.
//!
//! Each buffer keeps a `VecDeque` of chunk pointers whose capacity (8 bytes
//! per chunk at the peak fill) survives draining, to avoid a malloc on every
//! refill; `shrink` releases it for long-idle connections.

use std::collections::VecDeque;
use std::fmt;
use std::ptr::NonNull;

/// Bytes per chunk.
pub const CHUNK: usize = 16 * 1024;

/// The most a scaled window advertisement exceeds the buffer: one unit of the largest
/// window scale (RFC 7323: 14) less a byte.
pub const WINDOW_ROUNDING_SLACK: usize = (1 << 14) - 1;

/// What a read sees of bytes committed but never written (see [`RecvBuf::front`]).
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// One unit of buffer storage.
pub type Chunk = Box<[u8; CHUNK]>;

/// Free list of chunks shared by all buffers of one worker.
#[derive(Default)]
pub struct ChunkPool {
    free: Vec<Chunk>,
    allocated: usize,
    /// The host-wide storage budget (`kern.ipc.maxmbufmem`); none: unbounded.
    budget: Option<crate::gauges::SharedGauges>,
}

impl Drop for ChunkPool {
    fn drop(&mut self) {
        if let Some(g) = &self.budget {
            g.release_buf(self.allocated * CHUNK);
        }
    }
}

impl fmt::Debug for ChunkPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkPool")
            .field("allocated", &self.allocated)
            .field("free", &self.free.len())
            .finish()
    }
}

impl ChunkPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// Chunks created by this pool and not destroyed by `shrink_to`
    /// (free + lent to buffers).
    pub fn allocated(&self) -> usize {
        self.allocated
    }

    /// Chunks sitting in the free list.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Chunks currently held by buffers.
    pub fn in_use(&self) -> usize {
        self.allocated - self.free.len()
    }

    /// A pool whose chunks count against the host's storage budget.
    pub fn with_budget(budget: crate::gauges::SharedGauges) -> Self {
        ChunkPool {
            free: Vec::new(),
            allocated: 0,
            budget: Some(budget),
        }
    }

    /// Allocate up to `n` more free chunks up front (fewer when the budget runs out).
    pub fn reserve(&mut self, n: usize) {
        self.free.reserve(n);
        for _ in 0..n {
            if !self.grow() {
                break;
            }
            self.free.push(Box::new([0; CHUNK]));
        }
    }

    /// Room in the budget for one more chunk, counted as allocated.
    fn grow(&mut self) -> bool {
        if self.budget.as_ref().is_some_and(|g| !g.take_buf(CHUNK)) {
            return false;
        }
        self.allocated += 1;
        true
    }

    /// Give free chunks back to the allocator until at most `keep` are free.
    pub fn shrink_to(&mut self, keep: usize) {
        while self.free.len() > keep {
            self.free.pop();
            self.allocated -= 1;
            if let Some(g) = &self.budget {
                g.release_buf(CHUNK);
            }
        }
    }

    /// A chunk with unspecified contents (possibly another connection's old bytes: callers
    /// only expose bytes they wrote); `None` when the storage budget is spent.
    fn take(&mut self) -> Option<Chunk> {
        match self.free.pop() {
            Some(c) => Some(c),
            None => self.grow().then(|| Box::new([0; CHUNK])),
        }
    }

    fn give(&mut self, c: Chunk) {
        self.free.push(c);
    }
}

/// Send buffer: the byte stream from `snd_una` onwards (sent-unacked, then
/// unsent). Offsets are relative to the front (`snd_una`).
pub struct SendBuf {
    /// Invariant: empty iff `len == 0`; otherwise exactly the chunks covering
    /// `[head, head + len)`.
    chunks: VecDeque<Chunk>,
    /// Offset of the first byte inside `chunks[0]`; `< CHUNK`.
    head: usize,
    len: usize,
    hiwat: usize,
}

impl fmt::Debug for SendBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBuf")
            .field("len", &self.len)
            .field("hiwat", &self.hiwat)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

impl SendBuf {
    /// An empty buffer accepting up to `hiwat` bytes (`SO_SNDBUF`).
    pub fn new(hiwat: usize) -> Self {
        SendBuf {
            chunks: VecDeque::new(),
            head: 0,
            len: 0,
            hiwat,
        }
    }

    /// Bytes held (unacked + unsent).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `append` would accept now (0 if `hiwat` was lowered below `len`).
    pub fn space(&self) -> usize {
        self.hiwat.saturating_sub(self.len)
    }

    pub fn hiwat(&self) -> usize {
        self.hiwat
    }

    /// Change the limit; bytes already held are kept even above it.
    pub fn set_hiwat(&mut self, hiwat: usize) {
        self.hiwat = hiwat;
    }

    /// Chunks this buffer holds.
    pub fn chunks_held(&self) -> usize {
        self.chunks.len()
    }

    /// Append up to `space()` bytes of `data`; returns the bytes taken.
    pub fn append(&mut self, pool: &mut ChunkPool, data: &[u8]) -> usize {
        let n = data.len().min(self.space());
        let mut src = &data[..n];
        while !src.is_empty() {
            let pos = self.head + self.len;
            let (ci, co) = (pos / CHUNK, pos % CHUNK);
            if ci == self.chunks.len() {
                // Out of storage: what fit so far (the caller says ENOBUFS for nothing).
                let Some(c) = pool.take() else {
                    return n - src.len();
                };
                self.chunks.push_back(c);
            }
            let k = (CHUNK - co).min(src.len());
            self.chunks[ci][co..co + k].copy_from_slice(&src[..k]);
            self.len += k;
            src = &src[k..];
        }
        n
    }

    /// Copy bytes starting `off` bytes after the front into `dst`; returns
    /// the bytes copied (0 if `off >= len`).
    pub fn read_at(&self, off: usize, dst: &mut [u8]) -> usize {
        let mut done = 0;
        for s in self.slices_at(off, dst.len()) {
            dst[done..done + s.len()].copy_from_slice(s);
            done += s.len();
        }
        done
    }

    /// The bytes `[off, off + len)` (clamped to what is held) as borrowed
    /// slices, at most `len / CHUNK + 2` of them, so the host can copy
    /// payload straight into a packet buffer.
    pub fn slices_at(&self, off: usize, len: usize) -> Slices<'_> {
        let len = if off >= self.len {
            0
        } else {
            len.min(self.len - off)
        };
        Slices {
            chunks: &self.chunks,
            pos: self.head + off.min(self.len),
            remaining: len,
        }
    }

    /// Discard `n` bytes from the front (acked); chunks wholly consumed go
    /// back to the pool, and all of them once the buffer is empty. Returns
    /// the bytes dropped (`n` clamped to `len`).
    pub fn drop_front(&mut self, pool: &mut ChunkPool, n: usize) -> usize {
        let n = n.min(self.len);
        if n == self.len {
            self.clear(pool);
            return n;
        }
        self.len -= n;
        self.head += n;
        while self.head >= CHUNK {
            if let Some(c) = self.chunks.pop_front() {
                pool.give(c);
            }
            self.head -= CHUNK;
        }
        n
    }

    /// Drop all bytes, returning every chunk to the pool.
    pub fn clear(&mut self, pool: &mut ChunkPool) {
        for c in self.chunks.drain(..) {
            pool.give(c);
        }
        self.head = 0;
        self.len = 0;
    }

    /// Free the chunk-pointer array if the buffer is empty (long-idle
    /// connections); the next append allocates it again.
    pub fn shrink(&mut self) {
        if self.len == 0 {
            self.chunks = VecDeque::new();
        }
    }
}

/// Iterator over borrowed slices of a [`SendBuf`]; see
/// [`SendBuf::slices_at`].
pub struct Slices<'a> {
    chunks: &'a VecDeque<Chunk>,
    /// Position from the start of `chunks[0]`.
    pos: usize,
    remaining: usize,
}

impl<'a> Iterator for Slices<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        let (ci, co) = (self.pos / CHUNK, self.pos % CHUNK);
        let k = (CHUNK - co).min(self.remaining);
        let chunk = self.chunks.get(ci)?;
        self.pos += k;
        self.remaining -= k;
        Some(&chunk[co..co + k])
    }
}

/// A chunk a [`RecvBuf`] holds, kept as a raw pointer: a segment handed to a stack may
/// borrow bytes placed in one chunk (direct data placement) while the buffer writes other
/// bytes of the same chunk, which a `&mut` to the whole chunk would not allow.
struct RawChunk(NonNull<u8>);

// SAFETY: a RawChunk uniquely owns its allocation, like the Box it came from.
unsafe impl Send for RawChunk {}

impl Drop for RawChunk {
    fn drop(&mut self) {
        // SAFETY: as in `into_chunk`, which forgets instead of dropping.
        drop(unsafe { Box::from_raw(self.0.as_ptr().cast::<[u8; CHUNK]>()) });
    }
}

impl RawChunk {
    fn new(c: Chunk) -> Self {
        // Box::into_raw is never null.
        RawChunk(NonNull::new(Box::into_raw(c).cast::<u8>()).unwrap_or_else(|| unreachable!()))
    }

    fn into_chunk(self) -> Chunk {
        let p = self.0;
        std::mem::forget(self);
        // SAFETY: the pointer came from Box::into_raw of a Chunk and is given back once
        // (`forget` keeps Drop from doing it too).
        unsafe { Box::from_raw(p.as_ptr().cast::<[u8; CHUNK]>()) }
    }

    fn at(&self, co: usize) -> *mut u8 {
        assert!(co <= CHUNK);
        // SAFETY: within (or one past) the CHUNK-byte allocation.
        unsafe { self.0.as_ptr().add(co) }
    }

    fn slice(&self, co: usize, len: usize) -> &[u8] {
        assert!(co + len <= CHUNK);
        // SAFETY: in bounds; the bytes are initialised (chunks are made zeroed), and only
        // `write` changes them, which takes `&mut self`.
        unsafe { std::slice::from_raw_parts(self.at(co), len) }
    }

    fn slice_mut(&mut self, co: usize, len: usize) -> &mut [u8] {
        assert!(co + len <= CHUNK);
        // SAFETY: in bounds and initialised; `&mut self` makes it the only access.
        unsafe { std::slice::from_raw_parts_mut(self.at(co), len) }
    }

    /// Copies `src` to `co`, unless `src` already is those bytes (placed there).
    fn write(&mut self, co: usize, src: &[u8]) {
        assert!(co + src.len() <= CHUNK);
        let dst = self.at(co);
        if std::ptr::eq(dst.cast_const(), src.as_ptr()) {
            return;
        }
        // SAFETY: in bounds; `ptr::copy` allows the ranges to overlap.
        unsafe { std::ptr::copy(src.as_ptr(), dst, src.len()) }
    }
}

/// Receive buffer: bytes from the application's read position onwards.
/// `[0, readable)` is in-order data the application may read; above it the
/// stack may place out-of-order data with `write_at`, and tracks itself which
/// ranges are filled. Out-of-order bytes do not reduce [`RecvBuf::space`]:
/// they sit inside the window `[readable, hiwat)` that `space()` describes
/// (the stack advertises `rcv_wnd = space()` from `rcv_nxt`), and `write_at`
/// refuses anything past `hiwat`.
///
/// Direct data placement: the receive path may copy a segment's payload to where it
/// belongs before the stack has seen it ([`RecvBuf::place`], only past every written byte),
/// and hand the stack a payload that points there; the stack's `write_at` of those very
/// bytes then copies nothing.
pub struct RecvBuf {
    /// Chunk slots covering `[head, head + max(written_end, placed_end))`; `None` for a
    /// slot no byte was written into (a hole in out-of-order data). Empty iff both ends
    /// are 0.
    chunks: VecDeque<Option<RawChunk>>,
    /// Offset of the first readable byte inside slot 0; `< CHUNK`.
    head: usize,
    readable: usize,
    /// End of the furthest byte written (relative to the read position);
    /// `>= readable`. Lets us release everything once it reaches 0.
    written_end: usize,
    hiwat: u32,
    /// End of bytes placed but not yet written (relative to the read position; 0: none):
    /// their chunks are kept until [`RecvBuf::end_placement`].
    placed_end: u32,
}

impl fmt::Debug for RecvBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBuf")
            .field("readable", &self.readable)
            .field("written_end", &self.written_end)
            .field("placed_end", &self.placed_end)
            .field("hiwat", &self.hiwat)
            .field("slots", &self.chunks.len())
            .finish()
    }
}

/// Socket buffer limits are 32-bit (`SO_RCVBUF` is an int).
fn clamp_u32(n: usize) -> u32 {
    n.min(u32::MAX as usize) as u32
}

impl RecvBuf {
    /// An empty buffer with window limit `hiwat` (`SO_RCVBUF`).
    pub fn new(hiwat: usize) -> Self {
        RecvBuf {
            chunks: VecDeque::new(),
            head: 0,
            readable: 0,
            written_end: 0,
            hiwat: clamp_u32(hiwat),
            placed_end: 0,
        }
    }

    /// In-order bytes the application can read.
    pub fn readable(&self) -> usize {
        self.readable
    }

    /// End of the bytes written so far, in-order or not (relative to the read position):
    /// above `readable` when out-of-order data is held.
    pub fn written_end(&self) -> usize {
        self.written_end
    }

    /// Receive window: `hiwat - readable` (0 if `hiwat` was lowered below
    /// it). Out-of-order bytes are not subtracted; see the type docs.
    pub fn space(&self) -> usize {
        self.hiwat().saturating_sub(self.readable)
    }

    pub fn hiwat(&self) -> usize {
        self.hiwat as usize
    }

    /// How far past the readable bytes data may be written: `hiwat`, plus what a scaled
    /// window advertisement rounds up by (FreeBSD rounds the window up to the scale's unit
    /// so the right edge never shrinks, and takes what the peer sends into it).
    fn write_limit(&self) -> usize {
        self.hiwat() + WINDOW_ROUNDING_SLACK
    }

    /// Change the limit. Bytes already written are kept (and may still be
    /// committed) even above a lowered limit.
    pub fn set_hiwat(&mut self, hiwat: usize) {
        self.hiwat = clamp_u32(hiwat);
    }

    /// Chunks this buffer holds.
    pub fn chunks_held(&self) -> usize {
        self.chunks.iter().filter(|c| c.is_some()).count()
    }

    /// The chunk for slot `ci`, taken from the pool if the slot has none.
    /// `None` when the pool's storage budget is spent.
    fn chunk_mut(&mut self, pool: &mut ChunkPool, ci: usize) -> Option<&mut RawChunk> {
        while self.chunks.len() <= ci {
            self.chunks.push_back(None);
        }
        if self.chunks[ci].is_none() {
            self.chunks[ci] = Some(RawChunk::new(pool.take()?));
        }
        self.chunks[ci].as_mut()
    }

    /// Store `data` at `off` bytes past the end of the readable region
    /// (0 = next in-order byte). Bytes that would land at or past `hiwat`
    /// (measured from the read position) are refused; returns the number of
    /// leading bytes of `data` stored. Bytes placed there already are not copied again.
    pub fn write_at(&mut self, pool: &mut ChunkPool, off: usize, data: &[u8]) -> usize {
        let Some(start) = self.readable.checked_add(off) else {
            return 0;
        };
        if start >= self.write_limit() {
            return 0;
        }
        let n = data.len().min(self.write_limit() - start);
        let mut done = 0;
        while done < n {
            let pos = self.head + start + done;
            let (ci, co) = (pos / CHUNK, pos % CHUNK);
            let k = (CHUNK - co).min(n - done);
            // Out of storage: the bytes so far are taken, the peer sends the rest again.
            let Some(chunk) = self.chunk_mut(pool, ci) else {
                break;
            };
            chunk.write(co, &data[done..done + k]);
            done += k;
        }
        if done > 0 {
            self.written_end = self.written_end.max(start + done);
        }
        done
    }

    /// Direct data placement: room for `len` bytes at `off` past the readable region, to
    /// copy a payload into before the stack sees it, as one slice or, where the range
    /// crosses into the next chunk, two. Only where nothing was written (at or past
    /// `written_end`, so a payload that then fails its checksum spoils nothing), below
    /// `hiwat`, and at most one chunk long. The bytes count as written only once the stack
    /// writes them (`write_at` with this very memory); until [`RecvBuf::end_placement`]
    /// their chunks are kept.
    pub fn place(
        &mut self,
        pool: &mut ChunkPool,
        off: usize,
        len: usize,
    ) -> Option<(&mut [u8], &mut [u8])> {
        let start = self.readable.checked_add(off)?;
        let end = start.checked_add(len)?;
        if len == 0 || len > CHUNK || start < self.written_end || end > self.write_limit() {
            return None;
        }
        let pos = self.head + start;
        let (ci, co) = (pos / CHUNK, pos % CHUNK);
        let first = len.min(CHUNK - co);
        self.chunk_mut(pool, ci)?;
        if first < len {
            self.chunk_mut(pool, ci + 1)?;
        }
        self.placed_end = self.placed_end.max(clamp_u32(end));
        let mut slots = self.chunks.range_mut(ci..);
        let head = slots.next()?.as_mut()?.slice_mut(co, first);
        let tail = if first < len {
            slots.next()?.as_mut()?.slice_mut(0, len - first)
        } else {
            <&mut [u8]>::default()
        };
        Some((head, tail))
    }

    /// Bytes from `off` past the readable region to the end of its chunk.
    pub fn chunk_room(&self, off: usize) -> usize {
        CHUNK - (self.head + self.readable + off) % CHUNK
    }

    /// Where placed bytes at `off` (past the readable region) are, if `len` of them are
    /// held: the payload handed to the stack.
    pub fn placed(&self, off: usize, len: usize) -> Option<*const u8> {
        let start = self.readable.checked_add(off)?;
        if start.checked_add(len)? > self.placed_end as usize {
            return None;
        }
        let pos = self.head + start;
        let (ci, co) = (pos / CHUNK, pos % CHUNK);
        if co + len > CHUNK {
            return None;
        }
        Some(self.chunks.get(ci)?.as_ref()?.at(co).cast_const())
    }

    /// The placed bytes were handed over (the stack wrote what it kept); chunks that only
    /// held placed bytes it did not keep go back to the pool.
    pub fn end_placement(&mut self, pool: &mut ChunkPool) {
        self.placed_end = 0;
        self.trim(pool, self.written_end);
    }

    /// Returns the chunks past the first `held` bytes (all of them if none).
    fn trim(&mut self, pool: &mut ChunkPool, held: usize) {
        if held == 0 {
            self.release_all(pool);
            return;
        }
        let keep = (self.head + held).div_ceil(CHUNK);
        while self.chunks.len() > keep {
            if let Some(Some(c)) = self.chunks.pop_back() {
                pool.give(c.into_chunk());
            }
        }
    }

    /// Make `n` more bytes readable (the stack has them in order at offsets
    /// `0..n`). Clamped to the bytes written so far; returns bytes committed.
    /// The stack must only commit bytes it wrote: a byte inside a written
    /// chunk but never written has unspecified contents.
    pub fn commit(&mut self, n: usize) -> usize {
        let n = n.min(self.written_end - self.readable);
        self.readable += n;
        n
    }

    /// Copy readable bytes from `off` into `dst` without consuming them.
    pub fn peek(&self, off: usize, dst: &mut [u8]) -> usize {
        if off >= self.readable {
            return 0;
        }
        let n = dst.len().min(self.readable - off);
        let mut done = 0;
        while done < n {
            let pos = self.head + off + done;
            let (ci, co) = (pos / CHUNK, pos % CHUNK);
            let k = (CHUNK - co).min(n - done);
            match self.chunks.get(ci) {
                Some(Some(c)) => dst[done..done + k].copy_from_slice(c.slice(co, k)),
                // Committed but never written (a stack bug): zeros, not
                // stale bytes.
                _ => dst[done..done + k].fill(0),
            }
            done += k;
        }
        n
    }

    /// The first contiguous run of readable bytes (at most up to the end of a chunk),
    /// borrowed: zero-copy reads hand this to the application, then `consume`.
    pub fn front(&self) -> &[u8] {
        let k = (CHUNK - self.head).min(self.readable);
        match self.chunks.front() {
            Some(Some(c)) => c.slice(self.head, k),
            // Committed but never written (a stack bug): zeros, as `peek` gives.
            _ => &ZEROS[..k],
        }
    }

    /// Read and consume readable bytes into `dst`; fully read chunks go back
    /// to the pool, and all chunks once nothing is buffered.
    pub fn read(&mut self, pool: &mut ChunkPool, dst: &mut [u8]) -> usize {
        let n = self.peek(0, dst);
        self.consume(pool, n);
        n
    }

    /// Discard `n` readable bytes (clamped); returns bytes discarded.
    pub fn consume(&mut self, pool: &mut ChunkPool, n: usize) -> usize {
        let n = n.min(self.readable);
        self.readable -= n;
        self.written_end -= n;
        self.placed_end = self.placed_end.saturating_sub(clamp_u32(n));
        if self.written_end == 0 && self.placed_end == 0 {
            self.release_all(pool);
            return n;
        }
        self.head += n;
        while self.head >= CHUNK {
            if let Some(Some(c)) = self.chunks.pop_front() {
                pool.give(c.into_chunk());
            }
            self.head -= CHUNK;
        }
        n
    }

    /// Drop all out-of-order bytes (e.g. the stack flushed its reassembly
    /// queue), releasing chunks that held only those (and no placed bytes).
    pub fn discard_ooo(&mut self, pool: &mut ChunkPool) {
        self.written_end = self.readable;
        self.trim(pool, self.readable.max(self.placed_end as usize));
    }

    /// Drop everything, returning every chunk to the pool.
    pub fn clear(&mut self, pool: &mut ChunkPool) {
        self.readable = 0;
        self.written_end = 0;
        self.placed_end = 0;
        self.release_all(pool);
    }

    /// Free the chunk-pointer array if no chunk is held.
    pub fn shrink(&mut self) {
        if self.chunks.is_empty() {
            self.chunks = VecDeque::new();
        }
    }

    fn release_all(&mut self, pool: &mut ChunkPool) {
        for c in self.chunks.drain(..).flatten() {
            pool.give(c.into_chunk());
        }
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| seed.wrapping_add((i * 31 + i / 251) as u8))
            .collect()
    }

    #[test]
    fn sizes_are_small() {
        let (s, r) = (
            std::mem::size_of::<SendBuf>(),
            std::mem::size_of::<RecvBuf>(),
        );
        println!("size_of SendBuf = {s}, RecvBuf = {r}");
        assert!(s <= 64 && r <= 64, "SendBuf {s} RecvBuf {r}");
    }

    #[test]
    fn send_hiwat_slices_and_release() {
        let mut pool = ChunkPool::new();
        let mut sb = SendBuf::new(40_000);
        let data = pattern(1, 50_000);
        assert_eq!(sb.append(&mut pool, &data), 40_000);
        assert_eq!(sb.space(), 0);
        assert_eq!(sb.append(&mut pool, &data), 0);
        assert_eq!(sb.chunks_held(), 3);
        assert_eq!(pool.in_use(), 3);
        // Straddles the first chunk boundary: two slices.
        let sl: Vec<&[u8]> = sb.slices_at(CHUNK - 10, 1460).collect();
        assert_eq!(sl.iter().map(|s| s.len()).collect::<Vec<_>>(), [10, 1450]);
        assert_eq!(sl.concat(), &data[CHUNK - 10..CHUNK + 1450]);
        assert_eq!(sb.slices_at(40_000, 10).count(), 0);
        assert_eq!(sb.drop_front(&mut pool, CHUNK + 1), CHUNK + 1);
        assert_eq!(sb.chunks_held(), 2);
        assert_eq!(pool.free(), 1);
        let mut buf = [0u8; 100];
        assert_eq!(sb.read_at(0, &mut buf), 100);
        assert_eq!(&buf[..], &data[CHUNK + 1..CHUNK + 101]);
        sb.set_hiwat(10);
        assert_eq!(sb.space(), 0);
        assert_eq!(sb.drop_front(&mut pool, usize::MAX), 40_000 - CHUNK - 1);
        assert_eq!(sb.chunks_held(), 0);
        assert_eq!((pool.allocated(), pool.free(), pool.in_use()), (3, 3, 0));
        // Refill reuses pooled chunks: no new allocation.
        sb.set_hiwat(3 * CHUNK);
        assert_eq!(sb.append(&mut pool, &pattern(2, 3 * CHUNK)), 3 * CHUNK);
        assert_eq!(pool.allocated(), 3);
        sb.clear(&mut pool);
        sb.shrink();
        pool.shrink_to(1);
        assert_eq!((pool.allocated(), pool.free()), (1, 1));
    }

    #[test]
    fn placement_writes_in_place_and_keeps_its_chunks() {
        let mut pool = ChunkPool::new();
        let mut rb = RecvBuf::new(4 * CHUNK);
        let data = pattern(9, 3000);
        // In order, at the read position: one slice.
        let (head, tail) = rb.place(&mut pool, 0, 1000).unwrap();
        assert_eq!((head.len(), tail.len()), (1000, 0));
        head.copy_from_slice(&data[..1000]);
        assert_eq!((rb.readable(), rb.written_end()), (0, 0), "not written yet");
        let at = rb.placed(0, 1000).unwrap();
        assert!(rb.placed(0, 1001).is_none(), "only what was placed");
        // The stack writes the payload it was handed (the placed bytes): no copy.
        // SAFETY: `at` points at 1000 placed bytes, kept until end_placement.
        let payload = unsafe { std::slice::from_raw_parts(at, 1000) };
        assert_eq!(rb.write_at(&mut pool, 0, payload), 1000);
        assert_eq!(rb.commit(1000), 1000);
        rb.end_placement(&mut pool);
        let mut out = vec![0u8; 1000];
        assert_eq!(rb.peek(0, &mut out), 1000);
        assert_eq!(out, &data[..1000]);
        // Never over written bytes: out-of-order data sits at 2000..2100.
        assert_eq!(rb.write_at(&mut pool, 1000, &data[..100]), 100);
        assert!(rb.place(&mut pool, 0, 10).is_none());
        assert!(rb.place(&mut pool, 1050, 10).is_none());
        rb.discard_ooo(&mut pool);
        // Not past hiwat (and the window's rounding slack), not longer than a chunk.
        assert!(rb
            .place(&mut pool, 4 * CHUNK + WINDOW_ROUNDING_SLACK - 1000, 1001)
            .is_none());
        assert!(rb.place(&mut pool, 0, CHUNK + 1).is_none());
        // Across a chunk boundary: two slices.
        let off = CHUNK - 1000 - 100;
        let (head, tail) = rb.place(&mut pool, off, 300).unwrap();
        assert_eq!((head.len(), tail.len()), (100, 200));
        assert!(rb.placed(off, 300).is_none(), "not contiguous");
        assert!(rb.placed(off, 100).is_some());
        // Reading everything readable keeps the chunks under placed bytes.
        assert_eq!(rb.read(&mut pool, &mut out), 1000);
        assert_eq!(rb.chunks_held(), 2);
        rb.shrink();
        assert_eq!(rb.chunks_held(), 2, "shrink keeps held chunks");
        // Placed bytes nobody wrote: their chunks go back once the placement ends.
        rb.end_placement(&mut pool);
        assert_eq!((rb.chunks_held(), pool.in_use()), (0, 0));
    }

    #[test]
    fn recv_out_of_order_hiwat_and_release() {
        let mut pool = ChunkPool::new();
        let mut rb = RecvBuf::new(64 * 1024);
        let data = pattern(9, 64 * 1024);
        // Segment 2 arrives before segment 1, into a later chunk.
        assert_eq!(rb.write_at(&mut pool, 40_000, &data[40_000..41_000]), 1000);
        assert_eq!(rb.chunks_held(), 1);
        assert_eq!(rb.commit(10), 10); // stack bug: hole committed
        let mut z = [1u8; 10];
        assert_eq!(rb.peek(0, &mut z), 10);
        assert_eq!(z, [0; 10]);
        rb.clear(&mut pool);
        assert_eq!(rb.write_at(&mut pool, 40_000, &data[40_000..41_000]), 1000);
        assert_eq!(rb.write_at(&mut pool, 0, &data[..40_000]), 40_000);
        assert_eq!(rb.space(), 64 * 1024);
        assert_eq!(rb.commit(41_000), 41_000);
        assert_eq!(rb.commit(1), 0);
        assert_eq!(rb.space(), 64 * 1024 - 41_000);
        // Past hiwat (and the window's rounding slack): refused, or cut short.
        assert_eq!(
            rb.write_at(&mut pool, rb.space() + WINDOW_ROUNDING_SLACK, b"x"),
            0
        );
        assert_eq!(rb.write_at(&mut pool, usize::MAX, b"x"), 0);
        let tail = 64 * 1024 - 41_000;
        assert_eq!(rb.write_at(&mut pool, 0, &data[41_000..]), tail);
        assert_eq!(rb.commit(usize::MAX), tail);
        assert_eq!(rb.space(), 0);
        let mut out = vec![0u8; 70_000];
        assert_eq!(rb.read(&mut pool, &mut out), 64 * 1024);
        assert_eq!(&out[..64 * 1024], &data[..]);
        assert_eq!(rb.chunks_held(), 0);
        assert_eq!(pool.in_use(), 0);
        assert_eq!(pool.free(), pool.allocated());
        // Out-of-order data alone is kept until discarded.
        rb.write_at(&mut pool, 20_000, b"late");
        assert_eq!(rb.readable(), 0);
        assert_eq!(rb.chunks_held(), 1);
        rb.discard_ooo(&mut pool);
        assert_eq!(rb.chunks_held(), 0);
        assert_eq!(pool.in_use(), 0);
    }

    #[derive(Debug, Clone)]
    enum SOp {
        Append(usize, u8),
        ReadAt(usize, usize),
        Slices(usize, usize),
        Drop(usize),
        Hiwat(usize),
    }

    fn sop() -> impl Strategy<Value = SOp> {
        let sz = prop_oneof![0usize..100, 0usize..3 * CHUNK, CHUNK - 5..CHUNK + 5];
        prop_oneof![
            3 => (sz.clone(), any::<u8>()).prop_map(|(n, s)| SOp::Append(n, s)),
            2 => (sz.clone(), sz.clone()).prop_map(|(o, n)| SOp::ReadAt(o, n)),
            1 => (sz.clone(), sz.clone()).prop_map(|(o, n)| SOp::Slices(o, n)),
            2 => sz.prop_map(SOp::Drop),
            1 => (0usize..6 * CHUNK).prop_map(SOp::Hiwat),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn sendbuf_matches_vecdeque(ops in proptest::collection::vec(sop(), 1..60)) {
            let mut pool = ChunkPool::new();
            let mut sb = SendBuf::new(4 * CHUNK);
            let mut model: std::collections::VecDeque<u8> = Default::default();
            let mut hiwat = 4 * CHUNK;
            for op in ops {
                match op {
                    SOp::Append(n, seed) => {
                        let data = pattern(seed, n);
                        let took = sb.append(&mut pool, &data);
                        prop_assert_eq!(took, n.min(hiwat.saturating_sub(model.len())));
                        model.extend(&data[..took]);
                    }
                    SOp::ReadAt(off, n) => {
                        let mut dst = vec![0u8; n];
                        let got = sb.read_at(off, &mut dst);
                        let want: Vec<u8> = model.iter().skip(off).take(n).copied().collect();
                        prop_assert_eq!(&dst[..got], &want[..]);
                    }
                    SOp::Slices(off, n) => {
                        let sl: Vec<&[u8]> = sb.slices_at(off, n).collect();
                        prop_assert!(sl.len() <= n / CHUNK + 2);
                        prop_assert!(sl.iter().all(|s| !s.is_empty()));
                        let want: Vec<u8> = model.iter().skip(off).take(n).copied().collect();
                        prop_assert_eq!(sl.concat(), want);
                    }
                    SOp::Drop(n) => {
                        let d = sb.drop_front(&mut pool, n);
                        prop_assert_eq!(d, n.min(model.len()));
                        model.drain(..d);
                    }
                    SOp::Hiwat(h) => {
                        hiwat = h;
                        sb.set_hiwat(h);
                    }
                }
                prop_assert_eq!(sb.len(), model.len());
                prop_assert_eq!(sb.space(), hiwat.saturating_sub(model.len()));
                // Chunks held: only those covering the bytes (at most one
                // partially consumed at each end), none when empty.
                prop_assert!(sb.chunks_held() <= model.len().div_ceil(CHUNK) + 1);
                prop_assert_eq!(model.is_empty(), sb.chunks_held() == 0);
                prop_assert_eq!(pool.in_use(), sb.chunks_held());
            }
            sb.clear(&mut pool);
            prop_assert_eq!(pool.free(), pool.allocated());
        }
    }

    #[derive(Debug, Clone)]
    enum ROp {
        Write(usize, usize, u8),
        Commit(usize),
        Read(usize),
        Peek(usize, usize),
        Hiwat(usize),
        DiscardOoo,
        /// Direct placement past the written bytes (offset beyond them, length, seed),
        /// then, if asked, the stack's write of the placed bytes.
        Place(usize, usize, u8, bool),
    }

    fn rop() -> impl Strategy<Value = ROp> {
        let sz = prop_oneof![0usize..100, 0usize..3 * CHUNK, CHUNK - 5..CHUNK + 5];
        prop_oneof![
            4 => (sz.clone(), sz.clone(), any::<u8>()).prop_map(|(o, n, s)| ROp::Write(o, n, s)),
            2 => sz.clone().prop_map(ROp::Commit),
            2 => sz.clone().prop_map(ROp::Read),
            1 => (sz.clone(), sz.clone()).prop_map(|(o, n)| ROp::Peek(o, n)),
            1 => (0usize..6 * CHUNK).prop_map(ROp::Hiwat),
            1 => Just(ROp::DiscardOoo),
            3 => (0usize..3, sz, any::<u8>(), any::<bool>())
                .prop_map(|(o, n, s, w)| ROp::Place(o * 700, n, s, w)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn recvbuf_matches_model(ops in proptest::collection::vec(rop(), 1..60)) {
            let mut pool = ChunkPool::new();
            let mut rb = RecvBuf::new(4 * CHUNK);
            let mut hiwat = 4 * CHUNK;
            // Readable bytes, and out-of-order bytes by offset past them.
            let mut readable: std::collections::VecDeque<u8> = Default::default();
            let mut ooo: Vec<Option<u8>> = Vec::new();
            for op in ops {
                match op {
                    ROp::Write(off, n, seed) => {
                        let data = pattern(seed, n);
                        let room = (hiwat + WINDOW_ROUNDING_SLACK)
                            .saturating_sub(readable.len())
                            .saturating_sub(off);
                        let stored = rb.write_at(&mut pool, off, &data);
                        prop_assert_eq!(stored, n.min(room));
                        if ooo.len() < off + stored {
                            ooo.resize(off + stored, None);
                        }
                        for (i, &b) in data[..stored].iter().enumerate() {
                            ooo[off + i] = Some(b);
                        }
                    }
                    ROp::Commit(n) => {
                        // Like a stack: commit only the in-order filled prefix.
                        let filled = ooo.iter().take_while(|b| b.is_some()).count();
                        let n = n.min(filled);
                        prop_assert_eq!(rb.commit(n), n);
                        readable.extend(ooo.drain(..n).flatten());
                    }
                    ROp::Read(n) => {
                        let mut dst = vec![0u8; n];
                        let got = rb.read(&mut pool, &mut dst);
                        let want: Vec<u8> = readable.drain(..n.min(readable.len())).collect();
                        prop_assert_eq!(&dst[..got], &want[..]);
                    }
                    ROp::Peek(off, n) => {
                        let mut dst = vec![0u8; n];
                        let got = rb.peek(off, &mut dst);
                        let want: Vec<u8> = readable.iter().skip(off).take(n).copied().collect();
                        prop_assert_eq!(&dst[..got], &want[..]);
                    }
                    ROp::Hiwat(h) => {
                        hiwat = h;
                        rb.set_hiwat(h);
                    }
                    ROp::DiscardOoo => {
                        rb.discard_ooo(&mut pool);
                        ooo.clear();
                    }
                    ROp::Place(extra, n, seed, write) => {
                        let data = pattern(seed, n);
                        let off = ooo.len() + extra;
                        let fits = n > 0
                            && n <= CHUNK
                            && readable.len() + off + n <= hiwat + WINDOW_ROUNDING_SLACK;
                        let Some((head, tail)) = rb.place(&mut pool, off, n) else {
                            prop_assert!(!fits, "placement refused at {} len {}", off, n);
                            continue;
                        };
                        prop_assert!(fits);
                        prop_assert_eq!(head.len() + tail.len(), n);
                        let k = head.len();
                        head.copy_from_slice(&data[..k]);
                        tail.copy_from_slice(&data[k..]);
                        if write {
                            // The stack writes the payload it was handed: the placed bytes
                            // when contiguous (no copy), else its own copy.
                            let stored = match rb.placed(off, n) {
                                Some(at) => {
                                    // SAFETY: n placed bytes at `at`, kept until end_placement.
                                    let payload = unsafe { std::slice::from_raw_parts(at, n) };
                                    rb.write_at(&mut pool, off, payload)
                                }
                                None => rb.write_at(&mut pool, off, &data),
                            };
                            prop_assert_eq!(stored, n);
                            if ooo.len() < off + n {
                                ooo.resize(off + n, None);
                            }
                            for (i, &b) in data.iter().enumerate() {
                                ooo[off + i] = Some(b);
                            }
                        }
                        rb.end_placement(&mut pool);
                    }
                }
                while ooo.last() == Some(&None) {
                    ooo.pop();
                }
                prop_assert_eq!(rb.readable(), readable.len());
                prop_assert_eq!(rb.space(), hiwat.saturating_sub(readable.len()));
                prop_assert_eq!(pool.in_use(), rb.chunks_held());
                // Chunks only for the span holding bytes; none when empty.
                let span = readable.len() + ooo.len();
                prop_assert!(rb.chunks_held() <= span.div_ceil(CHUNK) + 1);
                prop_assert_eq!(span == 0, rb.chunks_held() == 0);
            }
            rb.clear(&mut pool);
            prop_assert_eq!(pool.free(), pool.allocated());
        }
    }
}
