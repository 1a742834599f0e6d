//! Words of classification runs.

labelled_enum! {
    /// Where a run stands.
    pub enum RunStatus {
        Running = "running",
        Completed = "completed",
        /// Stopped by an error, given in the run's `error`.
        Failed = "failed",
        /// Its process stopped without finishing (no heartbeat for 10 minutes).
        Abandoned = "abandoned",
        /// Stopped on request (`POST …/cancel`) after the batches it had committed.
        Cancelled = "cancelled",
        /// Stopped by the service shutting down, after the batches it had committed.
        Interrupted = "interrupted",
    }
}

labelled_enum! {
    /// What started a run.
    pub enum Trigger {
        /// `POST …/classification-runs`.
        Request = "request",
        /// New transactions for a scheme with `auto_classify`.
        Ingestion = "ingestion",
        /// The scheme's `schedule`.
        Schedule = "schedule",
    }
}

labelled_enum! {
    /// What a run did with one customer a rule chose.
    pub enum ChangeOutcome {
        /// Moved (or, in a dry run, would move) to the rule's category.
        Changed = "changed",
        /// Could not move there; `detail` says why (for example a required attribute without a value).
        Rejected = "rejected",
        /// Would move down, but the scheme's tier policy keeps it in its tier for now;
        /// `detail` says for how long.
        Held = "held",
    }
}
