//! [`ModelState`]: where a loaded model is in its life. A leaf, so that the registry, the
//! workers and the metrics can all name it without importing each other.

use std::fmt;

/// Where a model is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModelState {
    /// Running every batch size once before taking traffic.
    Warming,
    /// Serving.
    Ready,
    /// Serving, but it has panicked at least once (its worker was restarted).
    Degraded,
    /// Replaced, unloaded or shutting down: finishing what it accepted, taking nothing new.
    Draining,
    /// Its worker has exited.
    Stopped,
}

impl ModelState {
    /// Every state, in declaration order (`ALL[s as usize] == s`).
    pub const ALL: [ModelState; 5] = [
        ModelState::Warming,
        ModelState::Ready,
        ModelState::Degraded,
        ModelState::Draining,
        ModelState::Stopped,
    ];

    /// A stable lower-case name, used as a metrics label.
    pub fn name(self) -> &'static str {
        match self {
            ModelState::Warming => "warming",
            ModelState::Ready => "ready",
            ModelState::Degraded => "degraded",
            ModelState::Draining => "draining",
            ModelState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
