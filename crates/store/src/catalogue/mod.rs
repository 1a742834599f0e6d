//! The catalogue: classification schemes, their coded category trees, typed category attributes and the rules of automatic classification.

pub mod attribute_values;
pub mod attributes;
pub mod categories;
pub mod category_rows;
pub mod rule_sql;
pub mod rules;
pub mod schemes;
