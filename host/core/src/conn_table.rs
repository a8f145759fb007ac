//! The connection table: a slab of connections addressed by generation-checked handles.
//!
//! A slot is reused once its connection is freed (so the table stays as large as the most
//! connections open at once), and every reuse moves the slot's generation on. A [`ConnId`]
//! carries the generation its connection was made in: once that connection is gone the
//! handle names nothing, never the newer connection in the same slot, and every call made
//! with it fails as a call on a closed connection does.
//!
//! Inside the host, timers and the demux address connections by slot alone: they are
//! cancelled or unhashed when the connection is freed, so a slot they hold is always live.

use std::ops::{Deref, DerefMut};

use crate::conn::Conn;
use plugtcp_abi::Errno;

/// A handle on one connection: its slot in the [`ConnTable`] and the slot's generation when
/// the connection was made.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnId {
    slot: u32,
    gen: u32,
}

impl ConnId {
    /// The slot (an index into the table; reused after the connection is freed).
    pub fn slot(self) -> usize {
        self.slot as usize
    }

    /// A handle from its parts (the host's own tables; a user gets handles from the host).
    pub(crate) fn from_parts(slot: usize, gen: u32) -> Self {
        ConnId {
            slot: slot as u32,
            gen,
        }
    }

    /// The slot's generation this handle belongs to.
    pub fn generation(self) -> u32 {
        self.gen
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.slot, self.gen)
    }
}

/// The slab. It derefs to its slots, for the host's own slot-addressed paths; connections
/// enter it with [`ConnTable::put`] and leave with [`ConnTable::take`], which keep the
/// generations.
#[derive(Default)]
pub struct ConnTable {
    slots: Vec<Option<Box<Conn>>>,
    gens: Vec<u32>,
    free: Vec<usize>,
}

/// What [`ConnTable::resolve`] gives for a stale handle: no slot has this index, so every
/// slot lookup with it finds nothing.
const NO_SLOT: usize = usize::MAX;

impl ConnTable {
    /// An empty slot for a connection about to be made (O(1): freed slots are reused first).
    /// As [`ConnTable::vacant`], ENOBUFS when memory for another slot cannot be had.
    pub fn try_vacant(&mut self) -> Result<usize, Errno> {
        if self.free.is_empty() {
            self.slots.try_reserve(1).map_err(|_| Errno::ENOBUFS)?;
            self.gens.try_reserve(1).map_err(|_| Errno::ENOBUFS)?;
        }
        Ok(self.vacant())
    }

    pub fn vacant(&mut self) -> usize {
        while let Some(s) = self.free.pop() {
            if self.slots.get(s).is_some_and(Option::is_none) {
                return s;
            }
        }
        self.slots.push(None);
        self.gens.push(0);
        self.slots.len() - 1
    }

    /// Puts `conn` in `slot` (from [`ConnTable::vacant`]) and returns its handle.
    pub fn put(&mut self, slot: usize, conn: Box<Conn>) -> ConnId {
        debug_assert!(self.slots[slot].is_none(), "slot {slot} is taken");
        self.slots[slot] = Some(conn);
        ConnId {
            slot: slot as u32,
            gen: self.gens[slot],
        }
    }

    /// The handle the connection about to be put in `slot` (from [`ConnTable::vacant`]) will
    /// have.
    pub fn vacant_id(&self, slot: usize) -> ConnId {
        ConnId::from_parts(slot, self.gens[slot])
    }

    /// Takes the connection out of `slot`; its handles go stale and the slot is free again.
    pub fn take(&mut self, slot: usize) -> Option<Box<Conn>> {
        let c = self.slots.get_mut(slot)?.take()?;
        self.gens[slot] = self.gens[slot].wrapping_add(1);
        self.free.push(slot);
        Some(c)
    }

    /// The handle of the connection in `slot`, if one lives there.
    pub fn id(&self, slot: usize) -> Option<ConnId> {
        self.slots.get(slot)?.as_ref()?;
        Some(ConnId {
            slot: slot as u32,
            gen: self.gens[slot],
        })
    }

    /// Whether `id` names a connection that is still there.
    pub fn is_live(&self, id: ConnId) -> bool {
        self.id(id.slot()) == Some(id)
    }

    /// The slot of a live handle, or an index no slot has (so that a lookup with it finds
    /// nothing, as for a closed connection).
    pub fn resolve(&self, id: ConnId) -> usize {
        if self.is_live(id) {
            id.slot()
        } else {
            NO_SLOT
        }
    }

    /// The connection `id` names, if it is still there.
    pub fn get_by_id(&self, id: ConnId) -> Option<&Conn> {
        self.slots.get(self.resolve(id))?.as_deref()
    }

    /// The connection `id` names, if it is still there.
    pub fn get_by_id_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        let slot = self.resolve(id);
        self.slots.get_mut(slot)?.as_deref_mut()
    }

    /// Handles of every live connection, in slot order.
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        (0..self.slots.len()).filter_map(|s| self.id(s))
    }

    /// How many connections are there (a pass over the slots).
    pub fn live(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Room for `n` more connections without growing.
    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        self.gens.reserve(n);
        self.free.reserve(n);
    }
}

impl Deref for ConnTable {
    type Target = [Option<Box<Conn>>];
    fn deref(&self) -> &Self::Target {
        &self.slots
    }
}

impl DerefMut for ConnTable {
    /// Slot access for changing a connection in place. Putting one in or taking one out
    /// goes through [`ConnTable::put`] and [`ConnTable::take`].
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.slots
    }
}

/// `Box::new` that reports allocation failure instead of aborting the process (what
/// `Box::try_new` will do once it is stable).
pub fn try_box<T>(value: T) -> Result<Box<T>, Errno> {
    let layout = std::alloc::Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(value));
    }
    // SAFETY: the layout has a nonzero size.
    let p = unsafe { std::alloc::alloc(layout) } as *mut T;
    if p.is_null() {
        return Err(Errno::ENOBUFS);
    }
    // SAFETY: `p` is a fresh allocation for one `T` from the global allocator with T's
    // layout, which is what `Box::from_raw` takes ownership of.
    unsafe {
        p.write(value);
        Ok(Box::from_raw(p))
    }
}
