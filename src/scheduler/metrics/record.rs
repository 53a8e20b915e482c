//! One record per batch: what was run, why the batch closed, where the time and memory went.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a batch stopped growing and was sent to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// It reached `max_batch_size` rows (or the next request would not fit).
    Full,
    /// Its oldest request had waited `max_wait`.
    Wait,
    /// Waiting longer would make a request miss its deadline, given the measured compute time.
    Deadline,
    /// The model is draining (unload, replace or shutdown) and its queue is empty.
    Drain,
}

impl CloseReason {
    /// Every reason, in declaration order.
    pub const ALL: [CloseReason; 4] = [
        CloseReason::Full,
        CloseReason::Wait,
        CloseReason::Deadline,
        CloseReason::Drain,
    ];

    /// A stable lower-case name, used as a metrics label.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Full => "full",
            CloseReason::Wait => "wait",
            CloseReason::Deadline => "deadline",
            CloseReason::Drain => "drain",
        }
    }

    /// Position in [`CloseReason::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one batch cost. Made by the model's worker after the batch's replies are sent.
///
/// Memory has two parts. `scratch_bytes` is accounted from the plan: the batch's slice of the
/// worker's reusable input and output buffers plus the workspaces the model used; it is live
/// during the batch but allocated once, at load. `alloc_bytes`/`alloc_count`/`alloc_peak_bytes`
/// are measured on the worker thread by [`crate::CountingAllocator`] when the program installs
/// it as its global allocator (`alloc_counted` says whether it did); in steady state they are the
/// reply payloads handed to callers, one `Array2` per request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BatchRecord {
    /// The model's name.
    pub model: Arc<str>,
    /// The batch's sequence number within this model instance (0, 1, 2, …).
    pub sequence: u64,
    /// Rows computed.
    pub rows: usize,
    /// Requests answered with a result from this batch.
    pub requests: usize,
    /// Requests of the batch that expired before compute (answered `DeadlineExceeded`).
    pub expired: usize,
    /// Requests whose caller had dropped the reply handle before compute (not computed).
    pub cancelled: usize,
    /// Requests answered with an error by the model.
    pub failed: usize,
    /// Why the batch closed.
    pub close_reason: CloseReason,
    /// Time from its oldest request's submission to the batch's close.
    pub oldest_wait: Duration,
    /// Time from its newest request's submission to the batch's close.
    pub newest_wait: Duration,
    /// Time from the batch's first request arriving at the worker to its close.
    pub form_time: Duration,
    /// Time in the model.
    pub compute_time: Duration,
    /// Time to copy results out and answer every request.
    pub scatter_time: Duration,
    /// Bytes of preallocated scratch this batch used (accounted from the plan).
    pub scratch_bytes: usize,
    /// Bytes allocated on the worker thread while the batch was formed, run and answered.
    pub alloc_bytes: u64,
    /// Allocations made on the worker thread for this batch.
    pub alloc_count: u64,
    /// Peak of bytes allocated and not yet freed on the worker thread during the batch.
    pub alloc_peak_bytes: u64,
    /// Whether the `alloc_*` fields were measured (a [`crate::CountingAllocator`] is installed).
    pub alloc_counted: bool,
}

impl BatchRecord {
    /// Close to reply latency of the batch: compute plus scatter.
    pub fn service_time(&self) -> Duration {
        self.compute_time + self.scatter_time
    }
}
