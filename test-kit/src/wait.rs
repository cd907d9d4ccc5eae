//! Polling with a deadline: the one loop every harness and test waits with.

use std::time::{Duration, Instant};

/// Why [`wait_until`] gave up.
#[derive(Debug)]
pub enum Waited {
    TimedOut,
    /// The step reported a failure that waiting cannot cure (a process it needs exited).
    Failed(String),
}

/// Calls `step` every `every` until it answers `Ok(true)`; gives up at once when it answers an
/// error, and after `limit` otherwise. The caller adds what it knows (logs) to the panic.
pub fn wait_until(
    limit: Duration,
    every: Duration,
    mut step: impl FnMut() -> Result<bool, String>,
) -> Result<(), Waited> {
    let deadline = Instant::now() + limit;
    loop {
        match step() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(why) => return Err(Waited::Failed(why)),
        }
        if Instant::now() > deadline {
            return Err(Waited::TimedOut);
        }
        std::thread::sleep(every);
    }
}

/// Polls `check` every 100 ms for at most `limit`; panics naming `what` when it never holds.
pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    if wait_until(limit, Duration::from_millis(100), || Ok(check())).is_err() {
        panic!("timed out after {limit:?} waiting for {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_ends_on_success_failure_or_the_deadline() {
        let mut calls = 0;
        let ok = wait_until(Duration::from_secs(5), Duration::ZERO, || {
            calls += 1;
            Ok(calls == 3)
        });
        assert!(ok.is_ok() && calls == 3);
        let failed = wait_until(Duration::from_secs(5), Duration::ZERO, || Err("exited".to_owned()));
        assert!(matches!(failed, Err(Waited::Failed(why)) if why == "exited"));
        let timed_out = wait_until(Duration::from_millis(30), Duration::from_millis(10), || Ok(false));
        assert!(matches!(timed_out, Err(Waited::TimedOut)));
    }
}
