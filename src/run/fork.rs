//! [`Fork`]: how a split runs its workers, on the current rayon pool or on a [`Team`].

use crate::run::team::{Team, Work};

/// Where the workers of a split run. Either way `work(0)` runs on the calling thread and `work`
/// must finish the whole job from any subset of its workers that includes worker 0 (the splits
/// claim their parts, so a late worker takes fewer).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fork<'a> {
    /// Every worker, on the current rayon pool (`rayon::join`: jobs on the stack, no
    /// allocation). Called inside the pool, or rayon hands the call to it.
    Pool,
    /// Worker 0 on the caller, the others on whichever helpers are free.
    Team(&'a Team),
}

impl Fork<'_> {
    /// Runs `work(i)` for workers `0..workers` as described on [`Fork`].
    pub(crate) fn run(self, workers: usize, work: &Work<'_>) {
        match self {
            Fork::Pool => join_all(0, workers, work),
            Fork::Team(team) => team.fork(workers, work),
        }
    }
}

/// `work(i)` for `i` in `first..first + workers`, split in halves with `rayon::join`. Worker
/// `first` runs on the calling thread, so with the same caller each call gives a thread the
/// same share, whose data its caches may still hold from the last call.
fn join_all(first: usize, workers: usize, work: &Work<'_>) {
    if workers <= 1 {
        return work(first);
    }
    let half = workers / 2;
    rayon::join(
        || join_all(first, half, work),
        || join_all(first + half, workers - half, work),
    );
}
