//! The service's shutdown as its classification runs see it: once a stop signal has
//! come, a run stops at its next batch boundary and records `interrupted`, and the
//! process waits for the runs still going to do so before it exits, so that none
//! holds its scheme's slot until it goes stale.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// How long the process waits for its runs to reach a batch boundary.
const RUNS_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<State>);

#[derive(Debug, Default)]
struct State {
    begun: AtomicBool,
    runs: AtomicUsize,
    runs_ended: Notify,
}

impl Shutdown {
    pub fn begin(&self) {
        self.0.begun.store(true, Ordering::SeqCst);
    }

    pub fn has_begun(&self) -> bool {
        self.0.begun.load(Ordering::SeqCst)
    }

    /// Counts a run as going until the guard drops.
    pub fn track_run(&self) -> RunGuard {
        self.0.runs.fetch_add(1, Ordering::SeqCst);
        RunGuard(self.clone())
    }

    /// Waits until no run is going, or `RUNS_GRACE` has passed; whether they all ended.
    pub async fn runs_ended(&self) -> bool {
        let deadline = tokio::time::Instant::now() + RUNS_GRACE;
        loop {
            // Taken before the count is read, so that an end between the two still wakes it.
            let ended = self.0.runs_ended.notified();
            if self.0.runs.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return false;
            }
        }
    }
}

/// A run in progress; see [`Shutdown::track_run`].
pub struct RunGuard(Shutdown);

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0 .0.runs.fetch_sub(1, Ordering::SeqCst);
        self.0 .0.runs_ended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_runs_going_and_no_longer() {
        let shutdown = Shutdown::default();
        assert!(!shutdown.has_begun());
        let guard = shutdown.track_run();
        shutdown.begin();
        assert!(shutdown.has_begun());
        let waiting = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.runs_ended().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a run is still going");
        drop(guard);
        assert!(waiting.await.unwrap());
    }
}
