//! What TCP function blocks (whole stacks) share beyond the loss-recovery blocks of
//! [`crate::rtt`], [`crate::reass`], [`crate::sack`] and [`crate::rack`]: with the `testing`
//! feature, a fake host for a stack's unit tests (`stack::testing`).

#[cfg(any(test, feature = "testing"))]
pub mod testing;
