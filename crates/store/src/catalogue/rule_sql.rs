//! Rules as SQL: one statement per batch finds, for each customer, the first rule
//! whose condition holds, with the metrics computed from its transactions.
//! Field expressions and operators come from code; every value is bound.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDateTime;

use crate::domain::attribute::{ValueType, LIKE_ESCAPE};
use crate::domain::rule::{Condition, CustomerField, Field, Metric, Op, Operand, Scalar};

use crate::archive::transactions::metric_columns;
use crate::db::sql::{Bind, Dialect, Fragment};

/// The customers of one batch.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// Ids from `low` to `high`, both included.
    Range(i64, i64),
    Ids(&'a [i64]),
}

impl Selection<'_> {
    /// The SQL condition on `column`; ids come from the database, never from a request.
    pub(crate) fn on(&self, column: &str) -> String {
        match self {
            Selection::Range(low, high) => format!("{column} BETWEEN {low} AND {high}"),
            Selection::Ids(ids) => format!("{column} IN ({})", crate::id_list(ids)),
        }
    }
}

/// What a batch statement is compiled for.
pub struct Evaluation<'a> {
    pub dialect: Dialect,
    pub as_of: NaiveDateTime,
    /// Scheme ids by code: conditions name schemes by code.
    pub scheme_ids: &'a HashMap<String, i64>,
}

impl Evaluation<'_> {
    /// The statement for a batch: each customer's id, code, status, category in the
    /// scheme `scheme_id` and its pin (`current_category`, `locked`), and `matched`:
    /// the 1-based index of the first of `rules` that holds, 0 for none.
    pub fn statement(&self, scheme_id: i64, rules: &[&Condition], selection: Selection) -> Fragment {
        let mut compiler = Compiler { evaluation: self, joined_schemes: BTreeSet::new() };
        let mut statement = Fragment::new("SELECT c.id AS id, c.code AS code, c.status AS status, cc.category_code AS current_category, cc.locked AS locked, CAST(");
        if rules.is_empty() {
            statement.push("0");
        } else {
            statement.push("CASE");
            for (i, rule) in rules.iter().enumerate() {
                statement.push(" WHEN ").append(compiler.condition(rule)).push(&format!(" THEN {}", i + 1));
            }
            statement.push(" ELSE 0 END");
        }
        statement.push(&format!(" AS {}) AS matched ", self.dialect.integer()));
        statement.append(self.from(&compiler, Some(scheme_id), selection)).push(" ORDER BY c.id");
        statement
    }

    /// One customer's values of `fields` and the truth (1 or 0) of `conditions`, as
    /// the batch statement computes them, in one JSON array `[values…, truths…]` in
    /// the column `probe`.
    pub fn probe(&self, fields: &[&Field], conditions: &[&Condition], customer_id: i64) -> Fragment {
        let mut compiler = Compiler { evaluation: self, joined_schemes: BTreeSet::new() };
        let mut statement = Fragment::new(match self.dialect {
            Dialect::Mysql => "SELECT JSON_ARRAY(",
            Dialect::Sqlite => "SELECT json_array(",
        });
        let mut items: Vec<Fragment> = fields.iter().map(|field| compiler.field(field)).collect();
        items.extend(conditions.iter().map(|condition| compiler.condition(condition)));
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                statement.push(", ");
            }
            statement.append(item);
        }
        statement.push(") AS probe ");
        let ids = [customer_id];
        statement.append(self.from(&compiler, None, Selection::Ids(&ids)));
        statement
    }

    /// `FROM customers c` with what the compiled expressions read: the customer's
    /// category in `scheme_id` (as `cc`), in every scheme a condition names (as
    /// `k<id>`), and its metrics as of `as_of` (as `m`), for the selected customers.
    fn from(&self, compiler: &Compiler, scheme_id: Option<i64>, selection: Selection) -> Fragment {
        let mut from = Fragment::new("FROM customers c ");
        if let Some(scheme_id) = scheme_id {
            from.push(&format!(
                "LEFT JOIN customer_categories cc ON cc.customer_id = c.id AND cc.scheme_id = {scheme_id} "
            ));
        }
        for joined in &compiler.joined_schemes {
            from.push(&format!(
                "LEFT JOIN customer_categories k{0} ON k{0}.customer_id = c.id AND k{0}.scheme_id = {joined} ",
                joined.max(&0)
            ));
        }
        from.push("LEFT JOIN (SELECT t.customer_id, ")
            .append(metric_columns(self.dialect, self.as_of))
            .push(&format!(" FROM transactions t WHERE {} AND t.occurred_at <= ", selection.on("t.customer_id")))
            .bind(Bind::Timestamp(self.as_of))
            .push(&format!(" GROUP BY t.customer_id) m ON m.customer_id = c.id WHERE {}", selection.on("c.id")));
        from
    }
}

/// Whole calendar days from `last_order` (a moment column) to `as_of`.
pub fn days_since(dialect: Dialect, as_of: NaiveDateTime, last_order: Fragment) -> Fragment {
    let mut days = Fragment::new(match dialect {
        Dialect::Mysql => "DATEDIFF(",
        Dialect::Sqlite => "CAST(julianday(date(",
    });
    days.bind(Bind::Timestamp(as_of)).push(match dialect {
        Dialect::Mysql => ", ",
        Dialect::Sqlite => ")) - julianday(date(",
    });
    days.append(last_order).push(match dialect {
        Dialect::Mysql => ")",
        Dialect::Sqlite => ")) AS INTEGER)",
    });
    days
}

/// The value of customer `c`'s attribute `key`, in the column of its type.
pub fn attribute_value(key: &str, value_type: ValueType) -> Fragment {
    let column = if value_type.is_numeric() { "value_number" } else { "value_text" };
    let mut value = Fragment::new(&format!(
        "(SELECT a.{column} FROM customer_attributes a WHERE a.customer_id = c.id AND a.attr_key = "
    ));
    value.bind(Bind::Text(key.to_string())).push(")");
    value
}

struct Compiler<'a> {
    evaluation: &'a Evaluation<'a>,
    /// Schemes whose assignment a condition reads; each is joined once as `k<id>`.
    joined_schemes: BTreeSet<i64>,
}

fn scalar(scalar: &Scalar) -> Bind {
    match scalar {
        Scalar::Money(money) => Bind::BigInt(money.cents()),
        Scalar::Integer(n) => Bind::BigInt(*n),
        Scalar::Decimal(n) => Bind::Double(*n),
        Scalar::Boolean(flag) => Bind::BigInt(i64::from(*flag)),
        Scalar::Moment(moment) => Bind::Timestamp(*moment),
        Scalar::Text(text) => Bind::Text(text.clone()),
    }
}

impl Compiler<'_> {
    fn field(&mut self, field: &Field) -> Fragment {
        match field {
            Field::Metric(Metric::Spend12m) => Fragment::new("COALESCE(m.spend_12m, 0)"),
            Field::Metric(Metric::Orders12m) => Fragment::new("COALESCE(m.orders_12m, 0)"),
            Field::Metric(Metric::LifetimeSpend) => Fragment::new("COALESCE(m.lifetime_spend, 0)"),
            Field::Metric(Metric::LastOrderAt) => Fragment::new("m.last_order_at"),
            Field::Metric(Metric::DaysSinceLastOrder) => {
                days_since(self.evaluation.dialect, self.evaluation.as_of, Fragment::new("m.last_order_at"))
            }
            Field::Customer(field) => Fragment::new(match field {
                CustomerField::Code => "c.code",
                CustomerField::Name => "c.name",
                CustomerField::ShortName => "c.short_name",
                CustomerField::Status => "c.status",
                CustomerField::CreatedAt => "c.created_at",
                CustomerField::TaxId => "c.tax_id",
            }),
            Field::Attribute { key, value_type } => attribute_value(key, *value_type),
            Field::Category { scheme } => {
                // Saved rules name existing schemes (checked when a run starts); -1
                // joins nothing, so a vanished scheme reads as no category.
                let scheme_id = self.evaluation.scheme_ids.get(scheme).copied().unwrap_or(-1);
                self.joined_schemes.insert(scheme_id);
                Fragment::new(&format!("k{}.category_code", scheme_id.max(0)))
            }
            // Relative fields are resolved into plain ones before a run compiles its
            // rules (`rankings::resolve`); left unresolved, they have no value.
            Field::Ranked { .. } | Field::RfmScore(_) | Field::Rfm => Fragment::new("NULL"),
        }
    }

    /// A condition as a 0/1 expression: a comparison with a missing value is false,
    /// so `not` means what it says.
    fn condition(&mut self, condition: &Condition) -> Fragment {
        match condition {
            // Resolving relative fields leaves empty groups: all of nothing holds, any of nothing does not.
            Condition::All(items) if items.is_empty() => Fragment::new("1"),
            Condition::Any(items) if items.is_empty() => Fragment::new("0"),
            Condition::All(items) | Condition::Any(items) => {
                let joiner = if matches!(condition, Condition::All(_)) { " AND " } else { " OR " };
                let mut all = Fragment::new("(");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        all.push(joiner);
                    }
                    all.append(self.condition(item));
                }
                all.push(")");
                all
            }
            Condition::Not(inner) => {
                let mut not = Fragment::new("(NOT ");
                not.append(self.condition(inner)).push(")");
                not
            }
            Condition::Leaf { field, op, value } => {
                let mut leaf = Fragment::new("COALESCE((");
                let column = self.field(field);
                match (op, value) {
                    (_, Operand::Null(true)) => {
                        leaf.append(column).push(" IS NULL");
                    }
                    (_, Operand::Null(false)) => {
                        leaf.append(column).push(" IS NOT NULL");
                    }
                    (Op::Under, Operand::One(Scalar::Text(code))) => {
                        leaf.append(column.clone()).push(" >= ").bind(Bind::Text(code.clone()));
                        leaf.push(" AND ").append(column).push(" < ").bind(Bind::Text(crate::prefix_upper_bound(code)));
                    }
                    (Op::Match(place), Operand::One(Scalar::Text(text))) => {
                        leaf.push("LOWER(")
                            .append(column)
                            .push(") LIKE ")
                            .bind(Bind::Text(place.like_pattern(text, LIKE_ESCAPE)))
                            .push(&format!(" ESCAPE '{LIKE_ESCAPE}'"));
                    }
                    (_, Operand::One(value)) => {
                        leaf.append(column).push(&format!(" {} ", op.sql())).bind(scalar(value));
                    }
                    (_, Operand::List(values)) => {
                        leaf.append(column).push(&format!(" {} (", op.sql()));
                        for (i, value) in values.iter().enumerate() {
                            if i > 0 {
                                leaf.push(", ");
                            }
                            leaf.bind(scalar(value));
                        }
                        leaf.push(")");
                    }
                    (_, Operand::Range(low, high)) => {
                        leaf.append(column).push(" BETWEEN ").bind(scalar(low)).push(" AND ").bind(scalar(high));
                    }
                }
                leaf.push("), 0)");
                leaf
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rule::TextMatch;
    use crate::domain::sales::Money;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn compile(dialect: Dialect, condition: &Condition) -> (Fragment, BTreeSet<i64>) {
        let scheme_ids = HashMap::from([("REGION".to_string(), 7)]);
        let evaluation = Evaluation { dialect, as_of: at("2026-11-27 12:00:00"), scheme_ids: &scheme_ids };
        let mut compiler = Compiler { evaluation: &evaluation, joined_schemes: BTreeSet::new() };
        let fragment = compiler.condition(condition);
        (fragment, compiler.joined_schemes)
    }

    fn leaf(field: Field, op: Op, value: Operand) -> Condition {
        Condition::Leaf { field, op, value }
    }

    fn sql_and_binds(dialect: Dialect, condition: &Condition) -> (String, Vec<Bind>) {
        let (fragment, _) = compile(dialect, condition);
        (fragment.sql().to_string(), fragment.binds().to_vec())
    }

    #[test]
    fn a_text_match_is_a_bound_lower_case_pattern_with_its_wildcards_escaped() {
        let name = || Field::Customer(CustomerField::Name);
        let cases = [
            (TextMatch::Anywhere, "%100!%!_pure%"),
            (TextMatch::Start, "100!%!_pure%"),
            (TextMatch::End, "%100!%!_pure"),
        ];
        for (place, pattern) in cases {
            let condition = leaf(name(), Op::Match(place), Operand::One(Scalar::Text("100%_Pure".into())));
            for dialect in [Dialect::Sqlite, Dialect::Mysql] {
                assert_eq!(
                    sql_and_binds(dialect, &condition),
                    ("COALESCE((LOWER(c.name) LIKE ? ESCAPE '!'), 0)".into(), vec![Bind::Text(pattern.into())])
                );
            }
        }
    }

    #[test]
    fn every_comparison_binds_its_operand() {
        let spend = || Field::Metric(Metric::Spend12m);
        let money = |cents| Scalar::Money(Money::from_cents(cents));
        assert_eq!(
            sql_and_binds(Dialect::Sqlite, &leaf(spend(), Op::Gt, Operand::One(money(100_000_000)))),
            ("COALESCE((COALESCE(m.spend_12m, 0) > ?), 0)".into(), vec![Bind::BigInt(100_000_000)])
        );
        for (op, sql) in [(Op::Eq, "="), (Op::Ne, "<>"), (Op::Gte, ">="), (Op::Lt, "<"), (Op::Lte, "<=")] {
            assert_eq!(
                sql_and_binds(Dialect::Mysql, &leaf(spend(), op, Operand::One(money(5)))),
                (format!("COALESCE((COALESCE(m.spend_12m, 0) {sql} ?), 0)"), vec![Bind::BigInt(5)])
            );
        }
        assert_eq!(
            sql_and_binds(Dialect::Sqlite, &leaf(spend(), Op::Between, Operand::Range(money(1), money(9)))),
            ("COALESCE((COALESCE(m.spend_12m, 0) BETWEEN ? AND ?), 0)".into(), vec![Bind::BigInt(1), Bind::BigInt(9)])
        );
        let code = || Field::Customer(CustomerField::Code);
        let texts = || Operand::List(vec![Scalar::Text("C1".into()), Scalar::Text("C2".into())]);
        assert_eq!(
            sql_and_binds(Dialect::Sqlite, &leaf(code(), Op::In, texts())),
            ("COALESCE((c.code IN (?, ?)), 0)".into(), vec![Bind::Text("C1".into()), Bind::Text("C2".into())])
        );
        assert_eq!(
            sql_and_binds(Dialect::Sqlite, &leaf(code(), Op::NotIn, texts())).0,
            "COALESCE((c.code NOT IN (?, ?)), 0)"
        );
        assert_eq!(
            sql_and_binds(Dialect::Sqlite, &leaf(code(), Op::IsNull, Operand::Null(true))),
            ("COALESCE((c.code IS NULL), 0)".into(), vec![])
        );
        assert_eq!(
            sql_and_binds(Dialect::Sqlite, &leaf(code(), Op::IsNull, Operand::Null(false))),
            ("COALESCE((c.code IS NOT NULL), 0)".into(), vec![])
        );
    }

    #[test]
    fn scalars_bind_in_their_column_types() {
        let cases = [
            (Scalar::Integer(3), Bind::BigInt(3)),
            (Scalar::Decimal(0.15), Bind::Double(0.15)),
            (Scalar::Boolean(true), Bind::BigInt(1)),
            (Scalar::Moment(at("2026-01-01 00:00:00")), Bind::Timestamp(at("2026-01-01 00:00:00"))),
            (Scalar::Text("王芳".into()), Bind::Text("王芳".into())),
        ];
        for (value, bind) in cases {
            assert_eq!(
                sql_and_binds(
                    Dialect::Sqlite,
                    &leaf(Field::Customer(CustomerField::Name), Op::Eq, Operand::One(value))
                )
                .1,
                vec![bind]
            );
        }
    }

    #[test]
    fn fields_read_their_columns() {
        let expressions = [
            (Field::Metric(Metric::Orders12m), "COALESCE(m.orders_12m, 0)"),
            (Field::Metric(Metric::LifetimeSpend), "COALESCE(m.lifetime_spend, 0)"),
            (Field::Metric(Metric::LastOrderAt), "m.last_order_at"),
            (Field::Customer(CustomerField::Name), "c.name"),
            (Field::Customer(CustomerField::ShortName), "c.short_name"),
            (Field::Customer(CustomerField::Status), "c.status"),
            (Field::Customer(CustomerField::CreatedAt), "c.created_at"),
            (Field::Customer(CustomerField::TaxId), "c.tax_id"),
        ];
        for (field, column) in expressions {
            assert_eq!(
                sql_and_binds(Dialect::Sqlite, &leaf(field, Op::IsNull, Operand::Null(true))).0,
                format!("COALESCE(({column} IS NULL), 0)")
            );
        }
    }

    #[test]
    fn days_since_last_order_is_spelled_per_backend_with_as_of_bound() {
        let days = leaf(Field::Metric(Metric::DaysSinceLastOrder), Op::Gt, Operand::One(Scalar::Integer(180)));
        let as_of = Bind::Timestamp(at("2026-11-27 12:00:00"));
        assert_eq!(
            sql_and_binds(Dialect::Mysql, &days),
            ("COALESCE((DATEDIFF(?, m.last_order_at) > ?), 0)".into(), vec![as_of.clone(), Bind::BigInt(180)])
        );
        assert_eq!(
            sql_and_binds(Dialect::Sqlite, &days),
            (
                "COALESCE((CAST(julianday(date(?)) - julianday(date(m.last_order_at)) AS INTEGER) > ?), 0)".into(),
                vec![as_of, Bind::BigInt(180)]
            )
        );
    }

    #[test]
    fn attributes_read_the_column_of_their_type_with_the_key_bound() {
        let rate = leaf(
            Field::Attribute { key: "discount_rate".into(), value_type: ValueType::Decimal },
            Op::Gte,
            Operand::One(Scalar::Decimal(0.1)),
        );
        assert_eq!(
            sql_and_binds(Dialect::Sqlite, &rate),
            (
                "COALESCE(((SELECT a.value_number FROM customer_attributes a WHERE a.customer_id = c.id AND a.attr_key = ?) >= ?), 0)".into(),
                vec![Bind::Text("discount_rate".into()), Bind::Double(0.1)]
            )
        );
        let manager = leaf(
            Field::Attribute { key: "account_manager".into(), value_type: ValueType::String },
            Op::Eq,
            Operand::One(Scalar::Text("王芳".into())),
        );
        assert!(sql_and_binds(Dialect::Mysql, &manager).0.contains("SELECT a.value_text FROM"));
    }

    #[test]
    fn categories_join_their_scheme_once_and_under_is_a_code_range() {
        let region = || Field::Category { scheme: "REGION".into() };
        let both = Condition::Any(vec![
            leaf(region(), Op::Under, Operand::One(Scalar::Text("01".into()))),
            leaf(region(), Op::Eq, Operand::One(Scalar::Text("0201".into()))),
        ]);
        let (fragment, joined) = compile(Dialect::Sqlite, &both);
        assert_eq!(
            fragment.sql(),
            "(COALESCE((k7.category_code >= ? AND k7.category_code < ?), 0) OR COALESCE((k7.category_code = ?), 0))"
        );
        assert_eq!(fragment.binds(), [Bind::Text("01".into()), Bind::Text("01{".into()), Bind::Text("0201".into())]);
        assert_eq!(joined, BTreeSet::from([7]));
    }

    #[test]
    fn all_any_and_not_nest_with_their_binds_in_order() {
        let orders = |n| leaf(Field::Metric(Metric::Orders12m), Op::Gte, Operand::One(Scalar::Integer(n)));
        let nested =
            Condition::All(vec![orders(1), Condition::Not(Box::new(Condition::Any(vec![orders(2), orders(3)])))]);
        let (sql, binds) = sql_and_binds(Dialect::Mysql, &nested);
        assert_eq!(
            sql,
            "(COALESCE((COALESCE(m.orders_12m, 0) >= ?), 0) AND (NOT (COALESCE((COALESCE(m.orders_12m, 0) >= ?), 0) OR COALESCE((COALESCE(m.orders_12m, 0) >= ?), 0))))"
        );
        assert_eq!(binds, [Bind::BigInt(1), Bind::BigInt(2), Bind::BigInt(3)]);
    }

    #[test]
    fn the_batch_statement_keeps_every_placeholder_with_its_value() {
        let scheme_ids = HashMap::from([("REGION".to_string(), 7)]);
        let as_of = at("2026-11-27 12:00:00");
        let evaluation = Evaluation { dialect: Dialect::Mysql, as_of, scheme_ids: &scheme_ids };
        let vip = leaf(Field::Metric(Metric::Spend12m), Op::Gt, Operand::One(Scalar::Money(Money::from_cents(100))));
        let north =
            leaf(Field::Category { scheme: "REGION".into() }, Op::Under, Operand::One(Scalar::Text("01".into())));
        let statement = evaluation.statement(3, &[&vip, &north], Selection::Range(1, 1000));
        assert_eq!(statement.sql().matches('?').count(), statement.binds().len());
        let window_start = at("2025-11-27 12:00:00");
        assert_eq!(
            statement.binds(),
            [
                Bind::BigInt(100),
                Bind::Text("01".into()),
                Bind::Text("01{".into()),
                Bind::Timestamp(window_start),
                Bind::Timestamp(window_start),
                Bind::Timestamp(as_of),
            ]
        );
        let sql = statement.sql();
        assert!(sql.contains("CASE WHEN COALESCE((COALESCE(m.spend_12m, 0) > ?), 0) THEN 1 WHEN"));
        assert!(sql.contains("THEN 2 ELSE 0 END AS SIGNED) AS matched"));
        assert!(sql.contains("LEFT JOIN customer_categories k7 ON k7.customer_id = c.id AND k7.scheme_id = 7 "));
        assert!(sql.contains("cc.scheme_id = 3 "));
        assert!(sql.ends_with("WHERE c.id BETWEEN 1 AND 1000 ORDER BY c.id"));
        let none = evaluation.statement(3, &[], Selection::Ids(&[4, 9]));
        assert!(none.sql().contains("CAST(0 AS SIGNED) AS matched"));
        assert!(none.sql().contains("t.customer_id IN (4,9)"));
    }
}
