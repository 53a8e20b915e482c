//! Heap bytes one batch allocates on the calling thread and on every thread of its pool, read from
//! the library's per-thread counters (`densebatch::AllocScope`; `main` installs the allocator).

use densebatch::AllocScope;
use rayon::ThreadPool;

/// Counters opened on the caller and on each pool thread, closed by [`BatchAllocWindow::close`].
pub struct BatchAllocWindow<'pool> {
    pool: &'pool ThreadPool,
    caller: AllocScope,
    workers: Vec<AllocScope>,
}

impl<'pool> BatchAllocWindow<'pool> {
    /// Opens the window. The pool threads are woken once to open theirs; whatever that costs
    /// happens before the caller's window opens, so it is not counted.
    pub fn open(pool: &'pool ThreadPool) -> Self {
        let workers = pool.broadcast(|_| AllocScope::start());
        let caller = AllocScope::start();
        BatchAllocWindow {
            pool,
            caller,
            workers,
        }
    }

    /// Bytes allocated since [`BatchAllocWindow::open`] on the caller and the pool threads.
    pub fn close(self) -> u64 {
        let caller = self.caller.finish().bytes;
        let workers = &self.workers;
        let on_workers: Vec<u64> = self
            .pool
            .broadcast(|context| workers[context.index()].finish().bytes);
        caller + on_workers.iter().sum::<u64>()
    }
}
