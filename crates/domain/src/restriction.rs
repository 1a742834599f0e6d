//! Record-level data permission (记录级数据权限): an API key restricted to customers
//! whose category in a scheme lies in one of some subtrees, `{"REGION": ["01", "0203"]}`.
//! In every restricted scheme the customer's category must be in one of its subtrees
//! (a customer with no category there is outside).

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::category::CategoryCode;
use super::FieldError;

/// Schemes a restriction may name, and subtrees per scheme.
const MAX_SCHEMES: usize = 10;
const MAX_SUBTREES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction(BTreeMap<String, Vec<CategoryCode>>);

impl Restriction {
    /// `{"SCHEME": ["CODE", …], …}`: at least one scheme, each with at least one code.
    pub fn parse(field: &str, value: &Json) -> Result<Self, Vec<FieldError>> {
        let Some(schemes) = value.as_object() else {
            return Err(vec![FieldError::new(field, "must be an object of scheme codes, each with a list of category codes: {\"REGION\": [\"01\", \"0203\"]}")]);
        };
        if schemes.is_empty() || schemes.len() > MAX_SCHEMES {
            return Err(vec![FieldError::new(field, format!("must name 1 to {MAX_SCHEMES} schemes"))]);
        }
        let mut errors = Vec::new();
        let mut parsed = BTreeMap::new();
        for (scheme, codes) in schemes {
            let pointer = format!("{field}/{scheme}");
            let Some(codes) = codes.as_array().filter(|codes| (1..=MAX_SUBTREES).contains(&codes.len())) else {
                errors.push(FieldError::new(pointer, format!("must be a list of 1 to {MAX_SUBTREES} category codes")));
                continue;
            };
            let mut subtrees: Vec<CategoryCode> = Vec::new();
            for (index, code) in codes.iter().enumerate() {
                match code.as_str().map(|text| CategoryCode::parse(&format!("{pointer}/{index}"), text)) {
                    Some(Ok(code)) => subtrees.push(code),
                    Some(Err(error)) => errors.push(error),
                    None => errors.push(FieldError::new(format!("{pointer}/{index}"), "must be a category code")),
                }
            }
            subtrees.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            subtrees.dedup();
            parsed.insert(scheme.clone(), subtrees);
        }
        if errors.is_empty() {
            Ok(Self(parsed))
        } else {
            Err(errors)
        }
    }

    /// As stored with a key, or `None` when it was not written by [`Self::to_json`].
    pub fn stored(text: &str) -> Option<Self> {
        serde_json::from_str::<Json>(text).ok().and_then(|value| Self::parse("restrict", &value).ok())
    }

    pub fn to_json(&self) -> Json {
        Json::Object(
            self.0
                .iter()
                .map(|(scheme, codes)| (scheme.clone(), codes.iter().map(|code| Json::from(code.as_str())).collect()))
                .collect(),
        )
    }

    /// The restricted schemes and their subtrees' roots.
    pub fn schemes(&self) -> impl Iterator<Item = (&str, &[CategoryCode])> {
        self.0.iter().map(|(scheme, codes)| (scheme.as_str(), codes.as_slice()))
    }

    /// Whether a category is one this restriction allows a customer to be in: any
    /// category of an unrestricted scheme, one in a subtree of a restricted one.
    pub fn allows(&self, scheme: &str, category: &str) -> bool {
        self.0.get(scheme).is_none_or(|roots| roots.iter().any(|root| category.starts_with(root.as_str())))
    }

    /// Whether the scheme is restricted: leaving it unclassified puts a customer outside.
    pub fn restricts(&self, scheme: &str) -> bool {
        self.0.contains_key(scheme)
    }

    /// Whether a customer with these categories (`(scheme, category)`) is inside.
    pub fn admits<'a>(&self, categories: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> bool {
        self.0.keys().all(|scheme| {
            categories.clone().into_iter().any(|(held, category)| held == scheme && self.allows(scheme, category))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn region() -> Restriction {
        Restriction::parse("restrict", &json!({"REGION": ["01", "0203"]})).unwrap()
    }

    #[test]
    fn a_customer_is_inside_when_its_category_lies_in_a_subtree() {
        let restriction = region();
        assert!(restriction.admits([("REGION", "01")]));
        assert!(restriction.admits([("REGION", "0102"), ("TIER", "03")]));
        assert!(restriction.admits([("REGION", "0203")]));
        assert!(!restriction.admits([("REGION", "02")]), "the parent of a subtree is outside");
        assert!(!restriction.admits([("REGION", "0202")]));
        assert!(!restriction.admits([("TIER", "01")]), "unclassified in a restricted scheme is outside");
        assert!(!restriction.admits([]));
    }

    #[test]
    fn every_restricted_scheme_must_hold() {
        let both = Restriction::parse("restrict", &json!({"REGION": ["01"], "TIER": ["01", "02"]})).unwrap();
        assert!(both.admits([("REGION", "0101"), ("TIER", "02")]));
        assert!(!both.admits([("REGION", "0101"), ("TIER", "03")]));
        assert!(both.allows("INDUSTRY", "07"), "an unrestricted scheme allows anything");
        assert!(!both.allows("TIER", "03"));
    }

    #[test]
    fn bad_restrictions_name_their_field() {
        for (bad, field) in [
            (json!([]), "restrict"),
            (json!({}), "restrict"),
            (json!({"REGION": []}), "restrict/REGION"),
            (json!({"REGION": "01"}), "restrict/REGION"),
            (json!({"REGION": ["01", "0-2"]}), "restrict/REGION/1"),
            (json!({"REGION": [1]}), "restrict/REGION/0"),
        ] {
            let errors = Restriction::parse("restrict", &bad).unwrap_err();
            assert_eq!(errors[0].field, field, "{bad}");
        }
    }

    #[test]
    fn it_reads_back_as_stored() {
        let restriction = Restriction::parse("restrict", &json!({"REGION": ["0203", "01", "01"]})).unwrap();
        assert_eq!(restriction.to_json(), json!({"REGION": ["01", "0203"]}));
        assert_eq!(Restriction::stored(&restriction.to_json().to_string()), Some(restriction));
    }
}
