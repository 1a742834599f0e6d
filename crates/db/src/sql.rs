//! Hand-built statements: SQL text whose `?` placeholders travel with their values,
//! so that joining pieces can never misalign the two.

use chrono::NaiveDateTime;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{BigInt, Double, Text, Timestamp};

use super::{DbBackend, DbConnection};

/// Where the two backends spell things differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Mysql,
    Sqlite,
}

impl Dialect {
    pub fn of(conn: &DbConnection) -> Self {
        match conn {
            DbConnection::Mysql(_) => Dialect::Mysql,
            DbConnection::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// The type `CAST(… AS …)` takes for a 64-bit integer.
    pub fn integer(self) -> &'static str {
        match self {
            Dialect::Mysql => "SIGNED",
            Dialect::Sqlite => "INTEGER",
        }
    }

    /// The type `CAST(… AS …)` takes for a double.
    pub fn double(self) -> &'static str {
        match self {
            Dialect::Mysql => "DOUBLE",
            Dialect::Sqlite => "REAL",
        }
    }

    /// An inner join that reads its left table first, whatever the planner estimates.
    pub fn left_first_join(self) -> &'static str {
        match self {
            Dialect::Mysql => "STRAIGHT_JOIN",
            Dialect::Sqlite => "CROSS JOIN",
        }
    }
}

/// A value bound to one placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    BigInt(i64),
    Double(f64),
    Text(String),
    Timestamp(NaiveDateTime),
}

/// SQL text with a `?` for each of its values, in order. Text comes from code only;
/// every value from a request or a rule is a [`Bind`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fragment {
    sql: String,
    binds: Vec<Bind>,
}

impl Fragment {
    pub fn new(sql: &str) -> Self {
        Self { sql: sql.to_string(), binds: Vec::new() }
    }

    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    pub fn bind(&mut self, value: Bind) -> &mut Self {
        self.sql.push('?');
        self.binds.push(value);
        self
    }

    /// Binds each text, separated by commas (the inside of an `IN (…)`).
    pub fn bind_texts<'a>(&mut self, texts: impl IntoIterator<Item = &'a str>) -> &mut Self {
        for (index, text) in texts.into_iter().enumerate() {
            if index > 0 {
                self.push(", ");
            }
            self.bind(Bind::Text(text.to_string()));
        }
        self
    }

    pub fn append(&mut self, other: Fragment) -> &mut Self {
        self.sql.push_str(&other.sql);
        self.binds.extend(other.binds);
        self
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    pub fn binds(&self) -> &[Bind] {
        &self.binds
    }

    pub fn into_query(self) -> BoxedSqlQuery<'static, DbBackend, SqlQuery> {
        let mut query = diesel::sql_query(self.sql).into_boxed::<DbBackend>();
        for bind in self.binds {
            query = match bind {
                Bind::BigInt(value) => query.bind::<BigInt, _>(value),
                Bind::Double(value) => query.bind::<Double, _>(value),
                Bind::Text(value) => query.bind::<Text, _>(value),
                Bind::Timestamp(value) => query.bind::<Timestamp, _>(value),
            };
        }
        query
    }
}

/// A hand-built condition inside a Diesel query: `.filter(Predicate(fragment))`.
#[derive(Debug, Clone)]
pub struct Predicate(pub Fragment);

impl diesel::expression::Expression for Predicate {
    type SqlType = diesel::sql_types::Bool;
}

impl<QS> diesel::expression::AppearsOnTable<QS> for Predicate {}

impl<QS> diesel::expression::SelectableExpression<QS> for Predicate {}

impl diesel::expression::ValidGrouping<()> for Predicate {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl diesel::query_builder::QueryId for Predicate {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::QueryFragment<DbBackend> for Predicate {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, DbBackend>) -> diesel::QueryResult<()> {
        // Text from code never holds a `?` of its own, so each one is a placeholder.
        let mut pieces = self.0.sql.split('?');
        out.push_sql(pieces.next().unwrap_or_default());
        for (piece, bind) in pieces.zip(&self.0.binds) {
            match bind {
                Bind::BigInt(value) => out.push_bind_param::<BigInt, _>(value)?,
                Bind::Double(value) => out.push_bind_param::<Double, _>(value)?,
                Bind::Text(value) => out.push_bind_param::<Text, _>(value)?,
                Bind::Timestamp(value) => out.push_bind_param::<Timestamp, _>(value)?,
            }
            out.push_sql(piece);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_fragments_keep_placeholders_and_values_in_step() {
        let mut inner = Fragment::new("b = ");
        inner.bind(Bind::Text("x".into()));
        let mut outer = Fragment::new("a = ");
        outer.bind(Bind::BigInt(1)).push(" AND ").append(inner).push(" AND c = ").bind(Bind::Double(0.5));
        assert_eq!(outer.sql(), "a = ? AND b = ? AND c = ?");
        assert_eq!(outer.binds(), [Bind::BigInt(1), Bind::Text("x".into()), Bind::Double(0.5)]);
    }
}
