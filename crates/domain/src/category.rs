//! Categories (客户分类): codes whose prefixes are their ancestors.

use std::fmt;

use super::code_rule::CodeRule;
use super::{clean_text, FieldError};

pub const MAX_NAME_CHARS: usize = 100;

/// `[0-9A-Za-z]+`, at most 30 characters. Compared exactly (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CategoryCode(String);

impl CategoryCode {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        if text.is_empty()
            || text.len() > super::code_rule::MAX_TOTAL_LENGTH
            || !text.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(FieldError::new(field, "must be 1 to 30 characters from 0-9, A-Z and a-z"));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Codes of every ancestor, root first: `010203` under `2-2-2` gives `01`, `0102`.
    pub fn ancestors(&self, rule: &CodeRule) -> Vec<CategoryCode> {
        rule.boundaries().into_iter().filter(|&b| b < self.0.len()).map(|b| Self(self.0[..b].to_string())).collect()
    }
}

impl fmt::Display for CategoryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A category code placed in its scheme's hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedCode {
    pub code: CategoryCode,
    pub level: usize,
    pub parent: Option<CategoryCode>,
}

/// Why a code does not fit the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffBoundary {
    pub allowed_lengths: Vec<usize>,
}

impl PlacedCode {
    pub fn place(code: CategoryCode, rule: &CodeRule) -> Result<Self, OffBoundary> {
        let placement = rule.place(code.0.len()).ok_or_else(|| OffBoundary { allowed_lengths: rule.boundaries() })?;
        let parent = placement.parent_len.map(|len| CategoryCode(code.0[..len].to_string()));
        Ok(Self { code, level: placement.level, parent })
    }
}

/// 1–100 characters after trimming, any Unicode but control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryName(String);

impl CategoryName {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        clean_text(field, text, 1, MAX_NAME_CHARS).map(Self)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A customer's categories in every scheme as one string, `|<scheme id>:<code>|…|` in
/// scheme order ('' for none). Each of the customer's memberships carries it, so that a
/// list filtered by several categories tests the others on the index entries it scans.
/// Codes hold neither `|` nor `:`, so an entry is found by plain substring search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassificationVector(String);

impl ClassificationVector {
    pub fn of<'a>(assignments: impl IntoIterator<Item = (i64, &'a str)>) -> Self {
        let mut assignments: Vec<(i64, &str)> = assignments.into_iter().collect();
        assignments.sort_unstable();
        if assignments.is_empty() {
            return Self(String::new());
        }
        Self(
            assignments
                .iter()
                .fold("|".to_string(), |vector, (scheme_id, code)| format!("{vector}{scheme_id}:{code}|")),
        )
    }

    /// The entry of a customer's category in a scheme, as its vectors contain it.
    pub fn entry(scheme_id: i64, code: &str) -> String {
        format!("|{scheme_id}:{code}|")
    }

    /// What the vector of every customer with a category in the scheme contains.
    pub fn scheme_needle(scheme_id: i64) -> String {
        format!("|{scheme_id}:")
    }

    /// What the vector of every customer in the subtree of `code` contains.
    pub fn subtree_needle(scheme_id: i64, code: &str) -> String {
        format!("|{scheme_id}:{code}")
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> CodeRule {
        "2-2-2".parse().unwrap()
    }

    #[test]
    fn codes_are_alphanumeric() {
        assert!(CategoryCode::parse("code", "01aZ").is_ok());
        assert!(CategoryCode::parse("code", "").is_err());
        assert!(CategoryCode::parse("code", "01-2").is_err());
        assert!(CategoryCode::parse("code", "０１").is_err());
        assert!(CategoryCode::parse("code", &"1".repeat(31)).is_err());
    }

    #[test]
    fn placement_derives_parent_from_the_code() {
        let placed = PlacedCode::place(CategoryCode::parse("c", "0102").unwrap(), &rule()).unwrap();
        assert_eq!(placed.level, 2);
        assert_eq!(placed.parent.unwrap().as_str(), "01");
        let root = PlacedCode::place(CategoryCode::parse("c", "01").unwrap(), &rule()).unwrap();
        assert_eq!((root.level, root.parent), (1, None));
        let off = PlacedCode::place(CategoryCode::parse("c", "010").unwrap(), &rule()).unwrap_err();
        assert_eq!(off.allowed_lengths, vec![2, 4, 6]);
    }

    #[test]
    fn ancestors_root_first() {
        let code = CategoryCode::parse("c", "010203").unwrap();
        let names: Vec<_> = code.ancestors(&rule()).iter().map(|c| c.as_str().to_string()).collect();
        assert_eq!(names, ["01", "0102"]);
    }

    #[test]
    fn names_are_trimmed_unicode() {
        assert_eq!(CategoryName::parse("name", " 华北地区客户🚀 ").unwrap().into_inner(), "华北地区客户🚀");
        assert!(CategoryName::parse("name", &"客".repeat(100)).is_ok());
        assert!(CategoryName::parse("name", &"客".repeat(101)).is_err());
        assert!(CategoryName::parse("name", "  ").is_err());
    }

    #[test]
    fn vectors_list_categories_in_scheme_order() {
        assert_eq!(ClassificationVector::of([(12, "03"), (2, "0101"), (7, "A1")]).into_inner(), "|2:0101|7:A1|12:03|");
        assert_eq!(ClassificationVector::of([]).into_inner(), "");
        let vector = ClassificationVector::of([(2, "0101"), (12, "03")]).into_inner();
        assert!(vector.contains(&ClassificationVector::entry(12, "03")));
        assert!(vector.contains(&ClassificationVector::subtree_needle(2, "01")));
        assert!(
            !vector.contains(&ClassificationVector::entry(2, "01")),
            "an ancestor is matched by its subtree needle only"
        );
        assert!(!vector.contains(&ClassificationVector::entry(1, "03")), "scheme 1 is not scheme 12");
    }
}
