//! Hold rules against flapping (防止客户等级频繁升降): an ordered scheme's runs move a
//! customer up at once, but down only after it has stayed long enough in its tier and
//! failed that tier in enough consecutive applied runs.

use chrono::{Duration, NaiveDateTime};
use serde::{Deserialize, Serialize};

use super::FieldError;

/// The longest stay a policy may ask for: ten years.
pub const MIN_STAY_DAYS_MAX: u32 = 3650;
/// The most consecutive failing runs a policy may ask for.
pub const DOWNGRADE_AFTER_RUNS_MAX: u32 = 366;

/// An ordered scheme's policy, as clients send it and as it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"min_stay_days": 30, "downgrade_after_runs": 3}))]
pub struct TierPolicy {
    /// After entering its tier a customer stays there at least this many days before a
    /// run moves it down (0 to 3650; 0: no minimum).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 3650, example = 30)]
    pub min_stay_days: u32,
    /// A run moves a customer down only once it has failed its tier in this many
    /// consecutive applied runs, this one included (1 to 366; 1: at the first).
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 366, default = 1, example = 3)]
    pub downgrade_after_runs: u32,
}

fn one() -> u32 {
    1
}

/// Why a run does not move a customer down now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Consecutive applied runs the customer has failed its tier, this one included.
    pub failed_runs: u32,
    /// Runs still needed, when that is why.
    pub runs_missing: Option<u32>,
    /// The end of the minimum stay, when that is why.
    pub stay_until: Option<NaiveDateTime>,
}

impl Hold {
    /// What a run's change entry says of the hold.
    pub fn describe(&self, policy: &TierPolicy) -> String {
        let mut reasons = Vec::new();
        if let Some(missing) = self.runs_missing {
            reasons.push(format!(
                "failed its tier in {} of the {} consecutive runs needed ({missing} more)",
                self.failed_runs, policy.downgrade_after_runs
            ));
        }
        if let Some(until) = self.stay_until {
            reasons.push(format!(
                "the minimum stay of {} days lasts until {}",
                policy.min_stay_days,
                until.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        format!("held by the scheme's tier policy: {}", reasons.join("; "))
    }
}

impl TierPolicy {
    pub fn check(self, field: &str) -> Result<Self, FieldError> {
        if self.min_stay_days > MIN_STAY_DAYS_MAX {
            return Err(FieldError::new(format!("{field}/min_stay_days"), format!("must be 0 to {MIN_STAY_DAYS_MAX}")));
        }
        if !(1..=DOWNGRADE_AFTER_RUNS_MAX).contains(&self.downgrade_after_runs) {
            return Err(FieldError::new(
                format!("{field}/downgrade_after_runs"),
                format!("must be 1 to {DOWNGRADE_AFTER_RUNS_MAX}"),
            ));
        }
        Ok(self)
    }

    /// A policy read back from storage; `None` for text that is not one.
    pub fn stored(text: &str) -> Option<Self> {
        serde_json::from_str::<Self>(text).ok().and_then(|policy| policy.check("tier_policy").ok())
    }

    /// Whether a run at `now` moves down a customer that entered its tier at
    /// `entered_at` and has now failed it in `failed_runs` consecutive runs (this
    /// one included): `None` moves it, a `Hold` keeps it where it is.
    pub fn hold(&self, failed_runs: u32, entered_at: NaiveDateTime, now: NaiveDateTime) -> Option<Hold> {
        let runs_missing = self.downgrade_after_runs.checked_sub(failed_runs).filter(|missing| *missing > 0);
        let stay_until = entered_at + Duration::days(i64::from(self.min_stay_days));
        let stay_until = (stay_until > now).then_some(stay_until);
        (runs_missing.is_some() || stay_until.is_some()).then_some(Hold { failed_runs, runs_missing, stay_until })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 12, day).unwrap().and_hms_opt(2, 0, 0).unwrap()
    }

    #[test]
    fn a_downgrade_waits_for_the_runs_and_the_stay() {
        let policy = TierPolicy { min_stay_days: 3, downgrade_after_runs: 2 };
        let held = policy.hold(1, at(1), at(2)).unwrap();
        assert_eq!(held.runs_missing, Some(1));
        assert_eq!(held.stay_until, Some(at(4)));
        let description = held.describe(&policy);
        assert!(description.contains("1 of the 2 consecutive runs needed (1 more)"), "{description}");
        assert!(description.contains("minimum stay of 3 days lasts until 2026-12-04T02:00:00Z"), "{description}");
        assert_eq!(policy.hold(2, at(1), at(3)).unwrap().runs_missing, None);
        assert_eq!(policy.hold(2, at(1), at(4)), None);
        assert_eq!(policy.hold(5, at(1), at(9)), None);
    }

    #[test]
    fn the_neutral_policy_holds_nothing() {
        let policy = TierPolicy { min_stay_days: 0, downgrade_after_runs: 1 };
        assert_eq!(policy.hold(1, at(2), at(2)), None);
    }

    #[test]
    fn limits() {
        let policy = |min_stay_days, downgrade_after_runs| TierPolicy { min_stay_days, downgrade_after_runs };
        assert!(policy(0, 1).check("tier_policy").is_ok());
        assert!(policy(3650, 366).check("tier_policy").is_ok());
        assert_eq!(policy(3651, 1).check("tier_policy").unwrap_err().field, "tier_policy/min_stay_days");
        assert_eq!(policy(0, 0).check("tier_policy").unwrap_err().field, "tier_policy/downgrade_after_runs");
        assert_eq!(policy(0, 367).check("tier_policy").unwrap_err().field, "tier_policy/downgrade_after_runs");
        assert_eq!(TierPolicy::stored(r#"{"min_stay_days":30,"downgrade_after_runs":3}"#), Some(policy(30, 3)));
        assert_eq!(TierPolicy::stored(r#"{"min_stay_days":30,"downgrade_after_runs":0}"#), None);
    }
}
