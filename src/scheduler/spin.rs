//! Polling before sleeping: the one spin policy of idle workers and waiting callers.

use std::time::{Duration, Instant};

/// Calls `poll` until it gives a value or `spin` has passed; `None` when time ran out (then the
/// caller blocks). A zero `spin` polls once.
pub(crate) fn poll_for<T>(spin: Duration, mut poll: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + spin;
    loop {
        if let Some(value) = poll() {
            return Some(value);
        }
        if Instant::now() >= until {
            return None;
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_or_gives_up_after_the_spin() {
        let mut calls = 0;
        assert_eq!(
            poll_for(Duration::from_secs(10), || {
                calls += 1;
                (calls == 3).then_some(calls)
            }),
            Some(3)
        );
        let start = Instant::now();
        assert_eq!(poll_for(Duration::from_millis(2), || None::<()>), None);
        assert!(start.elapsed() >= Duration::from_millis(2));
        let mut polled = 0;
        assert_eq!(
            poll_for(Duration::ZERO, || {
                polled += 1;
                None::<()>
            }),
            None
        );
        assert_eq!(polled, 1);
    }
}
