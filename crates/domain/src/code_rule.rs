//! The code rule (编码规则) of a scheme: segment lengths such as `2-2-2`.
//! The hierarchy of categories lives in their codes, so the rule decides
//! which code lengths are legal and who the parent of a code is.

use std::fmt;
use std::str::FromStr;

pub const MAX_LEVELS: usize = 9;
pub const MAX_TOTAL_LENGTH: usize = 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRule {
    segments: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeRuleError {
    #[error("must be segment lengths separated by '-', such as \"2-2-2\"")]
    Syntax,
    #[error("each segment length must be between 1 and {MAX_TOTAL_LENGTH}")]
    SegmentLength,
    #[error("at most {MAX_LEVELS} levels are allowed")]
    TooManyLevels,
    #[error("the segments may add up to at most {MAX_TOTAL_LENGTH} characters")]
    TooLong,
}

/// Where a code sits in the hierarchy defined by a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// 1-based level.
    pub level: usize,
    /// Length of the parent's code, `None` at level 1.
    pub parent_len: Option<usize>,
}

impl CodeRule {
    /// Code lengths that end on a segment boundary: `2-2-2` gives 2, 4, 6.
    pub fn boundaries(&self) -> Vec<usize> {
        self.segments
            .iter()
            .scan(0, |sum, len| {
                *sum += len;
                Some(*sum)
            })
            .collect()
    }

    /// Places a code of `len` characters, or `None` when the length is off every boundary.
    pub fn place(&self, len: usize) -> Option<Placement> {
        let boundaries = self.boundaries();
        let index = boundaries.iter().position(|&b| b == len)?;
        Some(Placement { level: index + 1, parent_len: index.checked_sub(1).map(|i| boundaries[i]) })
    }

    /// True when `self` keeps every segment of `earlier` and only appends new ones,
    /// the one change allowed once categories exist.
    pub fn extends(&self, earlier: &CodeRule) -> bool {
        self.segments.len() >= earlier.segments.len() && self.segments[..earlier.segments.len()] == earlier.segments[..]
    }
}

impl FromStr for CodeRule {
    type Err = CodeRuleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(CodeRuleError::Syntax);
        }
        let segments = text
            .split('-')
            .map(|part| {
                if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CodeRuleError::Syntax);
                }
                let len: usize = part.parse().map_err(|_| CodeRuleError::Syntax)?;
                if len == 0 || len > MAX_TOTAL_LENGTH {
                    return Err(CodeRuleError::SegmentLength);
                }
                Ok(len)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if segments.len() > MAX_LEVELS {
            return Err(CodeRuleError::TooManyLevels);
        }
        if segments.iter().sum::<usize>() > MAX_TOTAL_LENGTH {
            return Err(CodeRuleError::TooLong);
        }
        Ok(Self { segments })
    }
}

/// Read from a stored row; the stored text was checked when it was written.
impl TryFrom<String> for CodeRule {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse().map_err(|e| format!("code rule {text:?}: {e}"))
    }
}

impl fmt::Display for CodeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.segments.iter().map(usize::to_string).collect();
        f.write_str(&parts.join("-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let rule: CodeRule = "2-2-2".parse().unwrap();
        assert_eq!(rule.to_string(), "2-2-2");
        assert_eq!(rule.boundaries(), vec![2, 4, 6]);
    }

    #[test]
    fn rejects_bad_rules() {
        assert_eq!("".parse::<CodeRule>(), Err(CodeRuleError::Syntax));
        assert_eq!("2--2".parse::<CodeRule>(), Err(CodeRuleError::Syntax));
        assert_eq!("2-a".parse::<CodeRule>(), Err(CodeRuleError::Syntax));
        assert_eq!("2-0".parse::<CodeRule>(), Err(CodeRuleError::SegmentLength));
        assert_eq!("1-1-1-1-1-1-1-1-1-1".parse::<CodeRule>(), Err(CodeRuleError::TooManyLevels));
        assert_eq!("10-10-11".parse::<CodeRule>(), Err(CodeRuleError::TooLong));
        assert!("1-1-1-1-1-1-1-1-1".parse::<CodeRule>().is_ok());
        assert!("10-10-10".parse::<CodeRule>().is_ok());
    }

    #[test]
    fn places_codes_on_boundaries_only() {
        let rule: CodeRule = "2-2-2".parse().unwrap();
        assert_eq!(rule.place(2), Some(Placement { level: 1, parent_len: None }));
        assert_eq!(rule.place(4), Some(Placement { level: 2, parent_len: Some(2) }));
        assert_eq!(rule.place(6), Some(Placement { level: 3, parent_len: Some(4) }));
        assert_eq!(rule.place(3), None);
        assert_eq!(rule.place(8), None);
    }

    #[test]
    fn extension_only_appends() {
        let old: CodeRule = "2-2".parse().unwrap();
        assert!("2-2-3".parse::<CodeRule>().unwrap().extends(&old));
        assert!("2-2".parse::<CodeRule>().unwrap().extends(&old));
        assert!(!"2-3".parse::<CodeRule>().unwrap().extends(&old));
        assert!(!"2".parse::<CodeRule>().unwrap().extends(&old));
    }
}
