//! Changes that take effect on a date (生效日期): a category asked for now and applied
//! at `effective_at`.

use chrono::NaiveDateTime;

use super::FieldError;

labelled_enum! {
    /// Where a pending change stands. Only `pending` ones are still to be applied.
    pub enum PendingStatus {
        /// Waiting for its moment.
        Pending = "pending",
        /// Applied at its moment, with history of source `scheduled`.
        Applied = "applied",
        /// Cancelled by a request, by a later manual change of the same customer and
        /// scheme, or by a newer pending change that replaced it.
        Cancelled = "cancelled",
        /// Not applied: its category could no longer take customers, or its customer
        /// was gone; `failure` says why.
        Failed = "failed",
    }
}

/// When a change asked for now takes effect: a moment strictly after `now`.
pub fn effective_at(field: &str, at: NaiveDateTime, now: NaiveDateTime) -> Result<NaiveDateTime, FieldError> {
    if at <= now {
        return Err(FieldError::new(field, "must lie in the future; leave it out to change the category now"));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_future_moment_takes_effect_later() {
        let now = chrono::NaiveDate::from_ymd_opt(2026, 12, 7).unwrap().and_hms_opt(12, 0, 0).unwrap();
        assert!(effective_at("effective_at", now, now).is_err());
        assert!(effective_at("effective_at", now - chrono::Duration::seconds(1), now).is_err());
        let later = now + chrono::Duration::microseconds(1);
        assert_eq!(effective_at("effective_at", later, now).unwrap(), later);
    }
}
