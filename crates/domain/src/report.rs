//! Words and arithmetic of the analysis reports (分类分析与报表): report dates and
//! periods, measures summed exactly, shares, and the roll-up of a category tree.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use super::code_rule::CodeRule;
use super::sales::Money;
use super::FieldError;

/// A sales measure a report sums and averages per row, as of the report's moment.
/// (Not a `labelled_enum!`: `spend_12m` is no variant name in snake_case.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
pub enum Measure {
    /// Spend over the 12 months up to the moment, in yuan.
    #[serde(rename = "spend_12m")]
    Spend12m,
    /// Orders (transactions with a positive amount) over the same 12 months.
    #[serde(rename = "orders_12m")]
    Orders12m,
    /// All spend up to the moment, in yuan.
    #[serde(rename = "lifetime_spend")]
    LifetimeSpend,
}

impl Measure {
    pub const ALL: [Measure; 3] = [Measure::Spend12m, Measure::Orders12m, Measure::LifetimeSpend];
    pub const LABELS: [&'static str; 3] = ["spend_12m", "orders_12m", "lifetime_spend"];

    pub fn as_str(self) -> &'static str {
        Self::LABELS[self as usize]
    }

    pub fn from_label(label: &str) -> Option<Measure> {
        Self::ALL.into_iter().find(|measure| measure.as_str() == label)
    }

    /// `spend_12m,orders_12m`: each at most once, in the order given.
    pub fn parse_list(field: &str, text: &str) -> Result<Vec<Measure>, FieldError> {
        let mut measures = Vec::new();
        for label in text.split(',').map(str::trim).filter(|label| !label.is_empty()) {
            let measure = Measure::from_label(label).ok_or_else(|| {
                FieldError::new(
                    field,
                    format!("unknown measure {label:?}; the measures are {}", Measure::LABELS.join(", ")),
                )
            })?;
            if !measures.contains(&measure) {
                measures.push(measure);
            }
        }
        Ok(measures)
    }

    pub fn is_money(self) -> bool {
        !matches!(self, Measure::Orders12m)
    }
}

/// The most a transitions report may span.
pub const MAX_PERIOD_YEARS: i32 = 10;

/// A calendar day (UTC) of a report, `YYYY-MM-DD`, within the years the database stores.
pub fn parse_day(field: &str, text: &str) -> Result<NaiveDate, FieldError> {
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| FieldError::new(field, format!("{text:?} is not a date YYYY-MM-DD")))?;
    if !super::moment_in_range(day.and_time(NaiveTime::MIN)) {
        return Err(FieldError::new(field, format!("must be {}", super::MOMENT_RANGE)));
    }
    Ok(day)
}

/// The first instant after `day` ends: reports "as of a day" include all of it.
pub fn end_of(day: NaiveDate) -> NaiveDateTime {
    day.succ_opt().unwrap_or(day).and_time(NaiveTime::MIN)
}

/// `as_of` must not lie after `today`: the future has no data yet.
pub fn ensure_not_future(field: &str, day: NaiveDate, today: NaiveDate) -> Result<(), FieldError> {
    if day > today {
        return Err(FieldError::new(field, format!("{day} is in the future (today is {today} UTC)")));
    }
    Ok(())
}

/// The days `from` to `to`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Self, FieldError> {
        if from > to {
            return Err(FieldError::new("from", format!("{from} is after to ({to})")));
        }
        let limit =
            from.checked_add_months(chrono::Months::new(12 * MAX_PERIOD_YEARS as u32)).unwrap_or(NaiveDate::MAX);
        if to >= limit {
            return Err(FieldError::new("to", format!("the period may span at most {MAX_PERIOD_YEARS} years")));
        }
        Ok(Self { from, to })
    }

    /// The first instant of the period.
    pub fn start(self) -> NaiveDateTime {
        self.from.and_time(NaiveTime::MIN)
    }

    /// The first instant after the period.
    pub fn end(self) -> NaiveDateTime {
        end_of(self.to)
    }
}

/// `part` ÷ `whole` as a decimal string with 4 places, rounded half up; `0.0000` of nothing.
pub fn share(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "0.0000".to_string();
    }
    let scaled = (i128::from(part) * 10_000 * 2 + i128::from(whole)) / (2 * i128::from(whole));
    format!("{}.{:04}", scaled / 10_000, scaled % 10_000)
}

/// `sum` ÷ `count` in hundredths, rounded half away from zero; `None` of no customers.
pub fn average_hundredths(sum_hundredths: i64, count: i64) -> Option<i64> {
    if count <= 0 {
        return None;
    }
    let (sum, count) = (i128::from(sum_hundredths), i128::from(count));
    let rounded = (sum.abs() * 2 + count) / (2 * count);
    Some((if sum < 0 { -rounded } else { rounded }) as i64)
}

/// Customers and the sums of the requested measures (cents for money, orders
/// otherwise), in the order of the measures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub customers: i64,
    pub sums: Vec<i64>,
}

impl Tally {
    pub fn new(measures: usize) -> Self {
        Self { customers: 0, sums: vec![0; measures] }
    }

    pub fn add(&mut self, other: &Tally) {
        self.customers += other.customers;
        for (sum, more) in self.sums.iter_mut().zip(&other.sums) {
            *sum += more;
        }
    }

    /// The sum and the average of each measure, as reports show them: money as
    /// decimal strings exact to the cent, orders summed whole and averaged to 2 places.
    pub fn values(&self, measures: &[Measure]) -> MeasureValues {
        let mut values = MeasureValues::default();
        for (measure, &sum) in measures.iter().zip(&self.sums) {
            let hundredths = if measure.is_money() { sum } else { sum * 100 };
            let average = average_hundredths(hundredths, self.customers).map(|h| Money::from_cents(h).to_string());
            match measure {
                Measure::Spend12m => {
                    (values.sum_spend_12m, values.avg_spend_12m) = (Some(Money::from_cents(sum).to_string()), average)
                }
                Measure::Orders12m => (values.sum_orders_12m, values.avg_orders_12m) = (Some(sum), average),
                Measure::LifetimeSpend => {
                    (values.sum_lifetime_spend, values.avg_lifetime_spend) =
                        (Some(Money::from_cents(sum).to_string()), average)
                }
            }
        }
        values
    }
}

/// The measure fields of a report row; only the requested measures are present. An
/// average is `null` where the row has no customers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct MeasureValues {
    /// Exact to the cent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "1250000.00")]
    pub sum_spend_12m: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "312500.00")]
    pub avg_spend_12m: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum_orders_12m: Option<i64>,
    /// To 2 decimal places.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "3.50")]
    pub avg_orders_12m: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "2500000.00")]
    pub sum_lifetime_spend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "625000.00")]
    pub avg_lifetime_spend: Option<String>,
}

impl MeasureValues {
    /// Field name and value of each present measure, in a fixed order: a spreadsheet's columns.
    pub fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        let mut columns = Vec::new();
        let mut push = |name: &'static str, present: bool, value: Option<String>| {
            if present {
                columns.push((name, value));
            }
        };
        push("sum_spend_12m", self.sum_spend_12m.is_some(), self.sum_spend_12m.clone());
        push("avg_spend_12m", self.sum_spend_12m.is_some(), self.avg_spend_12m.clone());
        push("sum_orders_12m", self.sum_orders_12m.is_some(), self.sum_orders_12m.map(|n| n.to_string()));
        push("avg_orders_12m", self.sum_orders_12m.is_some(), self.avg_orders_12m.clone());
        push("sum_lifetime_spend", self.sum_lifetime_spend.is_some(), self.sum_lifetime_spend.clone());
        push("avg_lifetime_spend", self.sum_lifetime_spend.is_some(), self.avg_lifetime_spend.clone());
        columns
    }
}

/// The level (1-based) a category code sits on under `rule`.
pub fn level_of(rule: &CodeRule, code: &str) -> Option<usize> {
    rule.place(code.len()).map(|placement| placement.level)
}

/// `depth` must name a level of the rule: 1 to its number of segments.
pub fn check_depth(field: &str, rule: &CodeRule, depth: usize) -> Result<usize, FieldError> {
    let levels = rule.boundaries().len();
    if depth == 0 || depth > levels {
        return Err(FieldError::new(field, format!("must be a level of code rule {rule}: 1 to {levels}")));
    }
    Ok(depth)
}

/// The code `code` counts under when a report stops at `depth`: itself, or its
/// ancestor on that level.
pub fn rolled_up<'a>(rule: &CodeRule, code: &'a str, depth: usize) -> &'a str {
    match rule.boundaries().get(depth.saturating_sub(1)) {
        Some(&length) if length < code.len() => &code[..length],
        _ => code,
    }
}

/// Per category: what its own customers add up to, and what its whole subtree does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeTally {
    pub direct: Tally,
    pub subtree: Tally,
}

/// Sums tallies of assigned categories (`direct`, by code) up a tree whose codes are
/// `codes`: every code's subtree holds its own tally and those of its descendants.
/// Codes not in `codes` (categories deleted since, seen `as_of`) still count in the
/// subtrees of their ancestors that exist.
pub fn tree_tallies(
    rule: &CodeRule,
    codes: &[&str],
    direct: &BTreeMap<String, Tally>,
    measures: usize,
) -> BTreeMap<String, TreeTally> {
    let mut tallies: BTreeMap<String, TreeTally> = codes
        .iter()
        .map(|code| {
            (
                code.to_string(),
                TreeTally {
                    direct: direct.get(*code).cloned().unwrap_or_else(|| Tally::new(measures)),
                    subtree: Tally::new(measures),
                },
            )
        })
        .collect();
    for (code, tally) in direct {
        let boundaries = rule.boundaries();
        let lengths =
            boundaries.iter().copied().filter(|&length| length < code.len()).chain(std::iter::once(code.len()));
        for length in lengths {
            if let Some(ancestor) = tallies.get_mut(&code[..length]) {
                ancestor.subtree.add(tally);
            }
        }
    }
    tallies
}

labelled_enum! {
    /// What a data-quality item checks.
    pub enum QualityCheck {
        /// Customers without a category in `scheme`.
        Unclassified = "unclassified",
        /// Customers of `category` without a value of `attribute`, which it requires with no default.
        MissingAttribute = "missing_attribute",
        MissingTaxId = "missing_tax_id",
        /// No order (a positive sale) in `dormant_days`, and created before them.
        Dormant = "dormant",
        /// Inactive customers still in a category.
        InactiveClassified = "inactive_classified",
        /// Groups of candidate duplicates by `key` (`count` counts groups).
        Duplicates = "duplicates",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_half_up_to_four_places() {
        assert_eq!(share(1, 3), "0.3333");
        assert_eq!(share(2, 3), "0.6667");
        assert_eq!(share(3, 3), "1.0000");
        assert_eq!(share(1, 20_000), "0.0001");
        assert_eq!(share(0, 0), "0.0000");
    }

    #[test]
    fn averages_round_half_away_from_zero() {
        assert_eq!(average_hundredths(1000, 3), Some(333));
        assert_eq!(average_hundredths(1001, 2), Some(501));
        assert_eq!(average_hundredths(-1001, 2), Some(-501));
        assert_eq!(average_hundredths(5, 0), None);
    }

    #[test]
    fn measures_serialise_as_their_labels() {
        for measure in Measure::ALL {
            assert_eq!(serde_json::to_value(measure).unwrap(), measure.as_str());
        }
    }

    #[test]
    fn tallies_format_money_exactly_and_orders_to_two_places() {
        let tally = Tally { customers: 3, sums: vec![100_000_001, 7] };
        let values = tally.values(&[Measure::Spend12m, Measure::Orders12m]);
        assert_eq!(values.sum_spend_12m.as_deref(), Some("1000000.01"));
        assert_eq!(values.avg_spend_12m.as_deref(), Some("333333.34"));
        assert_eq!(values.sum_orders_12m, Some(7));
        assert_eq!(values.avg_orders_12m.as_deref(), Some("2.33"));
        assert_eq!(values.sum_lifetime_spend, None);
    }

    #[test]
    fn periods_are_ordered_and_at_most_ten_years() {
        let day = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
        assert!(Period::new(day("2026-07-01"), day("2026-09-30")).is_ok());
        assert_eq!(Period::new(day("2026-10-01"), day("2026-09-30")).unwrap_err().field, "from");
        assert!(Period::new(day("2016-01-01"), day("2025-12-31")).is_ok());
        assert_eq!(Period::new(day("2016-01-01"), day("2026-01-01")).unwrap_err().field, "to");
    }

    #[test]
    fn codes_roll_up_to_their_ancestor_on_a_level() {
        let rule: CodeRule = "2-2-2".parse().unwrap();
        assert_eq!(rolled_up(&rule, "010203", 1), "01");
        assert_eq!(rolled_up(&rule, "010203", 2), "0102");
        assert_eq!(rolled_up(&rule, "01", 2), "01");
        assert!(check_depth("depth", &rule, 4).is_err());
        assert!(check_depth("depth", &rule, 0).is_err());
    }

    #[test]
    fn subtrees_add_up_descendants() {
        let rule: CodeRule = "2-2".parse().unwrap();
        let direct: BTreeMap<String, Tally> = [
            ("0101".to_string(), Tally { customers: 2, sums: vec![] }),
            ("0102".to_string(), Tally { customers: 3, sums: vec![] }),
            ("02".to_string(), Tally { customers: 1, sums: vec![] }),
        ]
        .into_iter()
        .collect();
        let tallies = tree_tallies(&rule, &["01", "0101", "0102", "02"], &direct, 0);
        assert_eq!(tallies["01"].direct.customers, 0);
        assert_eq!(tallies["01"].subtree.customers, 5);
        assert_eq!(tallies["0102"].subtree.customers, 3);
        assert_eq!(tallies["02"].subtree.customers, 1);
    }
}
