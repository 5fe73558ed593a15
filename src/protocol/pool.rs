//! Lending I/O buffers to busy connections so that idle ones hold none.
//!
//! A connection takes a buffer when bytes arrive or are queued, and gives
//! it back once it is empty again.  One spare buffer per direction and
//! thread is enough: connections are served one after another by the loop,
//! so the buffer is nearly always back before the next one needs it; when
//! it is not (a callback ran a nested loop), the next one simply allocates.

use std::cell::RefCell;

/// Largest buffer kept for lending; bigger ones are freed.  Keeping a
/// large one spares the allocator (and the kernel's page clearing) a
/// round of large allocations per big message; it is one per thread.
const MAX_KEPT: usize = 4 * 1024 * 1024;

/// A one-slot store of a spare buffer.
#[derive(Default)]
pub struct Pool(RefCell<Option<Vec<u8>>>);

impl Pool {
    pub const fn new() -> Pool {
        Pool(RefCell::new(None))
    }

    /// The spare buffer or a new empty one.  A spare keeps its length, so a
    /// reader can reuse its initialised bytes; writers clear it first.
    pub fn take(&self) -> Vec<u8> {
        self.0.borrow_mut().take().unwrap_or_default()
    }

    /// Keep `buf` as the spare unless one is kept already or it is large.
    pub fn give(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > MAX_KEPT {
            return;
        }
        let mut slot = self.0.borrow_mut();
        if slot.is_none() {
            *slot = Some(buf);
        }
    }
}

thread_local! {
    /// Read buffers.
    pub static READ: Pool = const { Pool::new() };
    /// Write buffers.
    pub static WRITE: Pool = const { Pool::new() };
    /// Compressed payloads on their way into a write buffer.
    pub static SCRATCH: Pool = const { Pool::new() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_one_buffer() {
        let pool = Pool::new();
        let mut a = pool.take();
        assert_eq!(a.capacity(), 0);
        a.extend_from_slice(&[1; 100]);
        let cap = a.capacity();
        pool.give(a);
        let b = pool.take();
        assert_eq!((b.len(), b.capacity()), (100, cap));
        assert_eq!(pool.take().capacity(), 0, "only one spare");
        pool.give(vec![0; MAX_KEPT + 1]);
        assert_eq!(pool.take().capacity(), 0, "large buffers are not kept");
    }
}
