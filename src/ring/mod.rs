//! Rings of frames in shared memory, in two flavours over one frame format (`frame.rs`):
//!
//! * [`spsc`]: one producer, one consumer, no locks (the process pool's task and result
//!   rings);
//! * [`mpmc`]: any number of producers and consumers in any processes, each side under the
//!   robust lock word, robust to any of them dying at any instruction (the `Queue`'s ring).
//!
//! Both consumers decode what the producer wrote through [`frame::next`], which trusts none
//! of it. The raw memory each flavour runs on is in `sys` (`SharedMapping`, and
//! `sys::ring_memory` for the queue's borrowed slices). `README.md` beside this file is the
//! protocol.

pub(crate) mod frame;
pub(crate) mod mpmc;
pub(crate) mod spsc;

/// A small deterministic generator for the property tests (xorshift64*).
#[cfg(test)]
pub(crate) struct Rng(pub u64);

#[cfg(test)]
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
