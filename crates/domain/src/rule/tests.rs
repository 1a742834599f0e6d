use super::*;
use serde_json::json;

struct Known;

impl Catalog for Known {
    fn attribute_type(&self, key: &str) -> Option<ValueType> {
        (key == "discount_rate").then_some(ValueType::Decimal)
    }

    fn category_exists(&self, scheme: &str, code: &str) -> Option<bool> {
        (scheme == "REGION").then(|| code.is_empty() || code == "01" || code == "0101")
    }
}

fn errors(condition: Json) -> Vec<(String, String)> {
    parse(&condition, "/condition", &Known).unwrap_err().into_iter().map(|e| (e.field, e.message)).collect()
}

/// The OpenAPI document states the field grammar as a pattern: every name the
/// parser takes must match it, and every name it refuses for its form must not.
#[test]
fn the_documented_field_pattern_is_the_parsers_grammar() {
    let pattern = regex::Regex::new(&field_pattern()).unwrap();
    let mut names: Vec<String> = NAMED_FIELDS.iter().map(|(name, _)| name.to_string()).collect();
    names.extend(["attr.discount_rate", "category.REGION"].map(String::from));
    let singles = names.clone();
    for ranking in [Ranking::Percentile, Ranking::CumulativeShare] {
        for inner in singles.iter().chain(["percentile(spend_12m)".to_string()].iter()) {
            names.push(format!("{}({inner})", ranking.name()));
            names.push(format!("{}( {inner} )", ranking.name()));
        }
        names.push(format!("{} (spend_12m)", ranking.name()));
        names.push(format!("{}(spend_12m", ranking.name()));
    }
    names.extend(
        ["nope", "attr.", "category.", "attr.Discount", "category.region", "rfm_x", "spend_12m "].map(String::from),
    );
    let mut accepted = 0;
    for name in &names {
        let parsed = parse_field(name, &Known).is_ok();
        accepted += usize::from(parsed);
        assert_eq!(pattern.is_match(name), parsed, "{name:?}: the parser says {parsed}, the pattern otherwise");
    }
    assert!(accepted > NAMED_FIELDS.len() + 10, "only {accepted} names were accepted");
}

#[test]
fn a_valid_tree_parses() {
    let condition = json!({"all": [
        {"field": "spend_12m", "op": ">=", "value": 1000000},
        {"not": {"field": "category.REGION", "op": "under", "value": "01"}},
        {"any": [{"field": "attr.discount_rate", "op": "between", "value": [0.1, 0.2]}, {"field": "last_order_at", "op": "is_null", "value": true}]}
    ]});
    let parsed = parse(&condition, "/condition", &Known).unwrap();
    let Condition::All(items) = parsed else { panic!() };
    assert_eq!(
        items[0],
        Condition::Leaf {
            field: Field::Metric(Metric::Spend12m),
            op: Op::Gte,
            value: Operand::One(Scalar::Money(Money::from_cents(100_000_000)))
        }
    );
}

#[test]
fn every_error_points_at_its_node() {
    assert_eq!(
        errors(
            json!({"all": [{"field": "spend_12m", "op": ">", "value": 1}, {"field": "nope", "op": "=", "value": 1}]})
        )[0]
        .0,
        "/condition/all/1/field"
    );
    assert_eq!(errors(json!({"any": [{"field": "status", "op": ">", "value": "active"}]}))[0].0, "/condition/any/0/op");
    assert_eq!(errors(json!({"not": {"field": "orders_12m", "op": "=", "value": "ten"}}))[0].0, "/condition/not/value");
    assert_eq!(errors(json!({"field": "category.REGION", "op": "=", "value": "09"}))[0].0, "/condition/value");
    assert_eq!(errors(json!({"field": "category.NOPE", "op": "=", "value": "01"}))[0].0, "/condition/field");
    assert_eq!(errors(json!({"field": "attr.missing", "op": "=", "value": 1}))[0].0, "/condition/field");
    assert_eq!(errors(json!({"field": "spend_12m", "op": "in", "value": [1, "x"]}))[0].0, "/condition/value/1");
    assert_eq!(errors(json!({"field": "spend_12m", "op": "between", "value": [1]}))[0].0, "/condition/value");
    assert_eq!(errors(json!({"all": []}))[0].0, "/condition/all");
    assert_eq!(errors(json!({"field": "spend_12m", "op": "~", "value": 1}))[0].0, "/condition/op");
    assert_eq!(errors(json!({"field": "spend_12m", "op": ">", "value": 1.234}))[0].0, "/condition/value");
    assert_eq!(errors(json!({"field": "spend_12m", "op": ">", "value": 1, "extra": 1}))[0].0, "/condition/extra");
    assert_eq!(errors(json!([1]))[0].0, "/condition");
    let two = errors(
        json!({"all": [{"field": "x", "op": "=", "value": 1}, {"field": "status", "op": "under", "value": "a"}]}),
    );
    assert_eq!(two.len(), 2, "every bad node is reported");
}

#[test]
fn moments_take_rfc3339_or_dates() {
    assert_eq!(parse_moment("2026-01-02").unwrap().to_string(), "2026-01-02 00:00:00");
    assert_eq!(parse_moment("2026-01-02T08:00:00+08:00").unwrap().to_string(), "2026-01-02 00:00:00");
    assert!(parse_moment("yesterday").is_none());
    assert!(parse_moment("0002-12-29").is_none());
    assert!(parse_moment("1970-12-31T23:59:59Z").is_none());
    assert_eq!(parse_moment("1971-01-01").unwrap().to_string(), "1971-01-01 00:00:00");
    assert!(parse_moment("2037-12-31T23:59:59Z").is_some());
    assert!(parse_moment("2038-01-01").is_none());
}

fn leaf(i: usize) -> Json {
    json!({"field": "name", "op": "=", "value": format!("n{i}")})
}

#[test]
fn oversized_conditions_are_refused_at_the_root() {
    let wide = json!({"any": (0..MAX_NODES).map(leaf).collect::<Vec<_>>()});
    assert_eq!(
        errors(wide),
        vec![(
            "/condition".to_string(),
            format!("the condition has {} groups and leaves; the most is {MAX_NODES}", MAX_NODES + 1)
        )]
    );
    let widest_allowed = json!({"any": (0..MAX_NODES - 1).map(leaf).collect::<Vec<_>>()});
    assert!(parse(&widest_allowed, "/condition", &Known).is_ok());

    let many_values = json!({"any": [
        {"field": "orders_12m", "op": "in", "value": (0..600).collect::<Vec<_>>()},
        {"field": "orders_12m", "op": "not_in", "value": (0..401).collect::<Vec<_>>()}
    ]});
    assert_eq!(errors(many_values)[0].1, format!("the condition compares with 1001 values; the most is {MAX_VALUES}"));

    let long_text =
        json!({"field": "name", "op": "in", "value": (0..600).map(|i| format!("{i:0>60}")).collect::<Vec<_>>()});
    let refused = errors(long_text);
    assert_eq!(refused[0].0, "/condition");
    assert!(refused[0].1.contains("bytes as JSON"), "{refused:?}");

    let mut deep = leaf(0);
    for _ in 0..=MAX_DEPTH {
        deep = json!({"not": deep});
    }
    assert!(errors(deep)[0].1.contains("nest at most"));
}

#[test]
fn parameters_bound_what_the_compiler_binds() {
    let condition = parse(
        &json!({"all": [leaf(0), {"field": "orders_12m", "op": "in", "value": [1, 2, 3]}]}),
        "/condition",
        &Known,
    )
    .unwrap();
    assert_eq!(condition.parameters(), (1 + 2) + (3 + 2));
}

#[test]
fn text_matches_take_text_fields_and_a_text_to_look_for() {
    let leaf = |field: &str, op: &str, value: Json| json!({"field": field, "op": op, "value": value});
    for (field, op) in
        [("name", "contains"), ("code", "starts_with"), ("short_name", "ends_with"), ("tax_id", "contains")]
    {
        assert!(parse(&leaf(field, op, json!("银行")), "/condition", &Known).is_ok(), "{field} {op}");
    }
    for field in ["spend_12m", "status", "created_at", "rfm"] {
        assert!(parse(&leaf(field, "contains", json!("1")), "/condition", &Known).is_err(), "{field}");
    }
    for value in [json!(""), json!(5), json!(["a"]), json!("长".repeat(201))] {
        assert!(parse(&leaf("name", "contains", value.clone()), "/condition", &Known).is_err(), "{value}");
    }
}

#[test]
fn a_like_pattern_escapes_its_wildcards_and_is_lower_case() {
    assert_eq!(TextMatch::Anywhere.like_pattern("A%b_C!", '!'), "%a!%b!_c!!%");
    assert_eq!(TextMatch::Start.like_pattern("银行", '!'), "银行%");
    assert_eq!(TextMatch::End.like_pattern("Bank", '\\'), "%bank");
}
