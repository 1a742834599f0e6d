//! A scheme's schedule: when the service starts a classification run by itself. A
//! five-field cron expression read in an IANA time zone, at most every 5 minutes.

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};

use super::FieldError;

/// The shortest time allowed between two firings.
pub const SHORTEST_INTERVAL: chrono::Duration = chrono::Duration::minutes(5);
/// How many firings are checked against `SHORTEST_INTERVAL`: a week of firings every
/// five minutes, or years of daily ones.
const FIRINGS_CHECKED: usize = 2016;

/// A schedule as clients send it and as it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Five fields: minute, hour, day of month, month, day of week (`0 2 * * *`: 02:00 daily).
    #[schema(example = "0 2 * * *")]
    pub cron: String,
    /// IANA time zone the expression is read in.
    #[schema(example = "Asia/Shanghai")]
    pub timezone: String,
    /// Scheduled runs only report what they would change.
    #[serde(default)]
    pub dry_run: bool,
}

/// A checked schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: ScheduleSpec,
    cron: Cron,
    zone: Tz,
}

impl Schedule {
    /// Checks a schedule; errors point below `pointer` (`/schedule/cron`, `/schedule/timezone`).
    pub fn parse(pointer: &str, spec: ScheduleSpec) -> Result<Self, Vec<FieldError>> {
        let schedule = Self::read(pointer, spec)?;
        match schedule.too_frequent() {
            None => Ok(schedule),
            Some(message) => Err(vec![FieldError::new(format!("{pointer}/cron"), message)]),
        }
    }

    /// A schedule as stored: its frequency was checked when it was, so it is not
    /// walked through its next firings again on every read.
    pub fn stored(text: &str) -> Option<Self> {
        let spec: ScheduleSpec = serde_json::from_str(text).ok()?;
        Self::read("/schedule", spec).ok()
    }

    /// The expression and the zone, read.
    fn read(pointer: &str, spec: ScheduleSpec) -> Result<Self, Vec<FieldError>> {
        let cron_field = format!("{pointer}/cron");
        let cron = match spec.cron.split_whitespace().count() {
            5 => CronParser::builder()
                .seconds(Seconds::Disallowed)
                .year(Year::Disallowed)
                .build()
                .parse(spec.cron.trim())
                .map_err(|e| FieldError::new(&cron_field, format!("is not a cron expression: {e}"))),
            fields => Err(FieldError::new(
                &cron_field,
                format!("must have five fields (minute hour day-of-month month day-of-week), not {fields}"),
            )),
        };
        let zone = Tz::from_str(spec.timezone.trim()).map_err(|_| {
            FieldError::new(
                format!("{pointer}/timezone"),
                format!("{:?} is not an IANA time zone such as Asia/Shanghai", spec.timezone),
            )
        });
        match (cron, zone) {
            (Ok(cron), Ok(zone)) => Ok(Schedule {
                spec: ScheduleSpec {
                    cron: spec.cron.trim().to_string(),
                    timezone: zone.name().to_string(),
                    dry_run: spec.dry_run,
                },
                cron,
                zone,
            }),
            (cron, zone) => Err(cron.err().into_iter().chain(zone.err()).collect()),
        }
    }

    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    pub fn dry_run(&self) -> bool {
        self.spec.dry_run
    }

    /// The first firing after `after` (UTC), if it ever fires again.
    pub fn next_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let local = DateTime::<Utc>::from_naive_utc_and_offset(after, Utc).with_timezone(&self.zone);
        self.cron.find_next_occurrence(&local, false).ok().map(|next| next.naive_utc())
    }

    /// Why it fires too often (or never), judged on its next firings from a fixed moment.
    fn too_frequent(&self) -> Option<String> {
        let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .expect("a valid moment");
        let Some(mut previous) = self.next_after(start) else { return Some("never fires".to_string()) };
        for _ in 0..FIRINGS_CHECKED {
            let next = self.next_after(previous)?;
            if next - previous < SHORTEST_INTERVAL {
                return Some(format!(
                    "fires {} minutes apart (at {previous} and {next} UTC); schedules may fire at most every 5 minutes",
                    (next - previous).num_minutes()
                ));
            }
            previous = next;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cron: &str, timezone: &str) -> ScheduleSpec {
        ScheduleSpec { cron: cron.into(), timezone: timezone.into(), dry_run: false }
    }

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn fires_at_local_times_of_its_zone() {
        let daily = Schedule::parse("/schedule", spec("0 2 * * *", "Asia/Shanghai")).unwrap();
        assert_eq!(
            daily.next_after(at("2026-12-05 17:00")),
            Some(at("2026-12-05 18:00")),
            "02:00 in Shanghai is 18:00 UTC"
        );
        assert_eq!(daily.next_after(at("2026-12-05 18:00")), Some(at("2026-12-06 18:00")), "strictly after");
        let berlin = Schedule::parse("/schedule", spec("30 6 * * MON", "Europe/Berlin")).unwrap();
        assert_eq!(berlin.next_after(at("2026-07-01 00:00")), Some(at("2026-07-06 04:30")), "summer time");
        assert_eq!(berlin.next_after(at("2026-12-01 00:00")), Some(at("2026-12-07 05:30")), "winter time");
    }

    #[test]
    fn refuses_bad_expressions_zones_and_frequencies_at_their_pointers() {
        let fields = |errors: Vec<FieldError>| errors.into_iter().map(|e| e.field).collect::<Vec<_>>();
        assert_eq!(fields(Schedule::parse("/schedule", spec("0 2 * *", "UTC")).unwrap_err()), ["/schedule/cron"]);
        assert_eq!(fields(Schedule::parse("/schedule", spec("0 25 * * *", "UTC")).unwrap_err()), ["/schedule/cron"]);
        assert_eq!(
            fields(Schedule::parse("/schedule", spec("0 0 2 * * *", "UTC")).unwrap_err()),
            ["/schedule/cron"],
            "no seconds"
        );
        assert_eq!(
            fields(Schedule::parse("/schedule", spec("0 2 * * *", "Mars/Olympus")).unwrap_err()),
            ["/schedule/timezone"]
        );
        assert_eq!(
            fields(Schedule::parse("/schedule", spec("nonsense", "Nowhere")).unwrap_err()),
            ["/schedule/cron", "/schedule/timezone"]
        );
        for often in ["* * * * *", "*/4 * * * *", "0,3 * * * *", "1,58 * * * *", "0 0 30 2 *"] {
            assert_eq!(
                fields(Schedule::parse("/schedule", spec(often, "UTC")).unwrap_err()),
                ["/schedule/cron"],
                "{often}"
            );
        }
        for fine in ["*/5 * * * *", "0 2 * * *", "0,30 9-17 * * 1-5"] {
            assert!(Schedule::parse("/schedule", spec(fine, "Asia/Shanghai")).is_ok(), "{fine}");
        }
    }
}
