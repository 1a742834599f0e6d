//! Words of the sales report by category (分类销售统计): which category a sale counts
//! under, and how its period is cut into intervals.

use chrono::{Datelike, Months, NaiveDate, NaiveDateTime};

use super::report::{end_of, Period};

labelled_enum! {
    /// Under which category a sale counts.
    pub enum SalesBasis {
        /// The category its customer held when the sale happened (`occurred_at`), as
        /// history tells: moving a customer does not regroup its past sales.
        AtSale = "at_sale",
        /// The category its customer holds now.
        Current = "current",
    }
}

labelled_enum! {
    /// How a sales report cuts its period.
    pub enum Interval {
        /// Calendar months (UTC), the first and last cut to the period.
        Month = "month",
        /// Calendar quarters (January to March, …), the first and last cut to the period.
        Quarter = "quarter",
        /// The whole period as one.
        None = "none",
    }
}

/// One interval of a report: the days `first` to `last`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl Slice {
    /// `2026-01`, `2026-Q1`, or `2026-01-01..2026-03-31` for the whole period.
    pub fn label(&self, interval: Interval) -> String {
        match interval {
            Interval::Month => self.first.format("%Y-%m").to_string(),
            Interval::Quarter => format!("{}-Q{}", self.first.year(), self.first.month0() / 3 + 1),
            Interval::None => format!("{}..{}", self.first, self.last),
        }
    }
}

/// The period cut by `interval`, in order; together they cover it exactly.
pub fn slices(period: Period, interval: Interval) -> Vec<Slice> {
    let months = match interval {
        Interval::Month => 1,
        Interval::Quarter => 3,
        Interval::None => return vec![Slice { first: period.from, last: period.to }],
    };
    let mut slices = Vec::new();
    let mut first = period.from;
    while first <= period.to {
        let start_month = first.month0() / months * months;
        let opening = NaiveDate::from_ymd_opt(first.year(), start_month + 1, 1).expect("a month's first day");
        let next = opening.checked_add_months(Months::new(months)).unwrap_or(NaiveDate::MAX);
        let last = next.pred_opt().unwrap_or(next).min(period.to);
        slices.push(Slice { first, last });
        first = next;
    }
    slices
}

/// The instants where the slices begin, then the first instant after the last: a sale
/// at `t` falls in slice `i` when `bounds[i] <= t < bounds[i + 1]`.
pub fn bounds(slices: &[Slice]) -> Vec<NaiveDateTime> {
    let mut bounds: Vec<NaiveDateTime> =
        slices.iter().map(|slice| slice.first.and_time(chrono::NaiveTime::MIN)).collect();
    if let Some(last) = slices.last() {
        bounds.push(end_of(last.last));
    }
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn period(from: &str, to: &str) -> Period {
        Period::new(day(from), day(to)).unwrap()
    }

    fn spans(slices: &[Slice]) -> Vec<(String, String)> {
        slices.iter().map(|s| (s.first.to_string(), s.last.to_string())).collect()
    }

    #[test]
    fn months_are_cut_to_the_period() {
        let slices = slices(period("2026-01-15", "2026-03-10"), Interval::Month);
        assert_eq!(
            spans(&slices),
            [
                ("2026-01-15".into(), "2026-01-31".into()),
                ("2026-02-01".into(), "2026-02-28".into()),
                ("2026-03-01".into(), "2026-03-10".into())
            ]
        );
        assert_eq!(slices[1].label(Interval::Month), "2026-02");
    }

    #[test]
    fn quarters_follow_the_calendar() {
        let slices = slices(period("2025-11-01", "2026-04-30"), Interval::Quarter);
        assert_eq!(
            spans(&slices),
            [
                ("2025-11-01".into(), "2025-12-31".into()),
                ("2026-01-01".into(), "2026-03-31".into()),
                ("2026-04-01".into(), "2026-04-30".into())
            ]
        );
        assert_eq!(
            slices.iter().map(|s| s.label(Interval::Quarter)).collect::<Vec<_>>(),
            ["2025-Q4", "2026-Q1", "2026-Q2"]
        );
    }

    #[test]
    fn one_day_and_the_whole_period() {
        assert_eq!(
            spans(&slices(period("2026-05-31", "2026-05-31"), Interval::Month)),
            [("2026-05-31".into(), "2026-05-31".into())]
        );
        let whole = slices(period("2026-01-01", "2026-12-31"), Interval::None);
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].label(Interval::None), "2026-01-01..2026-12-31");
        let instants = bounds(&whole);
        assert_eq!(
            instants.iter().map(|at| at.to_string()).collect::<Vec<_>>(),
            ["2026-01-01 00:00:00", "2027-01-01 00:00:00"]
        );
    }
}
