//! Why a customer stands where it does: how far its value of a numeric field is from
//! making a comparison hold, or from making it fail (the distance to the next tier).

use super::rule::{Op, Operand, Scalar};

/// How far a value is from flipping a numeric comparison, in the field's own unit
/// (cents for money).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gap {
    /// The comparison fails; the value must move this far for it to hold.
    Missing(f64),
    /// The comparison holds; the value may move this far and it still holds.
    ToSpare(f64),
}

/// A scalar as a number, where it is one.
pub fn number(scalar: &Scalar) -> Option<f64> {
    match scalar {
        Scalar::Money(money) => Some(money.cents() as f64),
        Scalar::Integer(n) => Some(*n as f64),
        Scalar::Decimal(n) => Some(*n),
        Scalar::Boolean(_) | Scalar::Moment(_) | Scalar::Text(_) => None,
    }
}

/// The gap of `actual` to the comparison `op operand`, for `>`, `>=`, `<`, `<=` and
/// `between`; `None` for other comparisons, which have no distance. A strict
/// comparison (`>`, `<`) that fails needs the value to pass its bound, which the gap
/// reaches exactly.
pub fn gap(op: Op, operand: &Operand, actual: f64) -> Option<Gap> {
    let (low, high) = match (op, operand) {
        (Op::Gt | Op::Gte, Operand::One(bound)) => (Some(number(bound)?), None),
        (Op::Lt | Op::Lte, Operand::One(bound)) => (None, Some(number(bound)?)),
        (Op::Between, Operand::Range(low, high)) => (Some(number(low)?), Some(number(high)?)),
        _ => return None,
    };
    let holds = match op {
        Op::Gt => actual > low?,
        Op::Lt => actual < high?,
        _ => low.is_none_or(|low| actual >= low) && high.is_none_or(|high| actual <= high),
    };
    Some(if holds {
        Gap::ToSpare(match (low, high) {
            (Some(low), Some(high)) => (actual - low).min(high - actual),
            (Some(low), None) => actual - low,
            (None, Some(high)) => high - actual,
            (None, None) => 0.0,
        })
    } else if let Some(low) = low.filter(|low| actual <= *low) {
        Gap::Missing(low - actual)
    } else {
        Gap::Missing(actual - high.unwrap_or(actual))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sales::Money;

    fn one(n: i64) -> Operand {
        Operand::One(Scalar::Integer(n))
    }

    #[test]
    fn a_lower_bound_says_what_is_missing_or_to_spare() {
        assert_eq!(gap(Op::Gte, &one(10), 7.0), Some(Gap::Missing(3.0)));
        assert_eq!(gap(Op::Gte, &one(10), 10.0), Some(Gap::ToSpare(0.0)));
        assert_eq!(gap(Op::Gt, &one(10), 10.0), Some(Gap::Missing(0.0)));
        assert_eq!(gap(Op::Gt, &one(10), 14.0), Some(Gap::ToSpare(4.0)));
    }

    #[test]
    fn an_upper_bound_and_a_range_measure_from_the_nearer_side() {
        assert_eq!(gap(Op::Lt, &one(30), 45.0), Some(Gap::Missing(15.0)));
        assert_eq!(gap(Op::Lte, &one(30), 20.0), Some(Gap::ToSpare(10.0)));
        let range = Operand::Range(Scalar::Integer(10), Scalar::Integer(20));
        assert_eq!(gap(Op::Between, &range, 12.0), Some(Gap::ToSpare(2.0)));
        assert_eq!(gap(Op::Between, &range, 4.0), Some(Gap::Missing(6.0)));
        assert_eq!(gap(Op::Between, &range, 26.0), Some(Gap::Missing(6.0)));
    }

    #[test]
    fn money_counts_in_cents_and_other_comparisons_have_no_distance() {
        let million = Operand::One(Scalar::Money(Money::from_cents(100_000_000)));
        assert_eq!(gap(Op::Gte, &million, 75_000_000.0), Some(Gap::Missing(25_000_000.0)));
        assert_eq!(gap(Op::Eq, &one(1), 1.0), None);
        assert_eq!(gap(Op::Gte, &Operand::One(Scalar::Text("x".into())), 1.0), None);
    }
}
