//! What makes two customers candidate duplicates (清理重复数据): the same tax id, or a
//! name, phone or email that reads the same once normalised. The normalised forms are
//! kept per customer (`customer_match_keys`) so that the archive groups by an index.

/// Legal-form suffixes that do not tell two companies apart, longest first.
const LEGAL_FORMS: [&str; 4] = ["股份有限公司", "有限责任公司", "有限公司", "公司"];

/// A name as duplicates are compared: full-width letters, digits and signs folded to
/// half-width, ASCII case-folded, spaces and punctuation (`（）` and `()` alike)
/// dropped, and one legal-form suffix folded. 北京电子有限公司, 北京电子有限责任公司 and
/// （北京）电子有限公司 all read 北京电子.
pub fn name_key(name: &str) -> String {
    let folded: String =
        name.chars().map(half_width).filter(|c| c.is_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    // The longest suffix that matches; a name that is nothing but a legal form stays.
    match LEGAL_FORMS.iter().find_map(|suffix| folded.strip_suffix(suffix)) {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => folded,
    }
}

/// A phone number's digits; a leading 86 (China's country code) is dropped from a
/// mobile number written internationally (`+86 138…`, `0086 138…`).
pub fn phone_key(phone: &str) -> String {
    let digits: String = phone.chars().map(half_width).filter(char::is_ascii_digit).collect();
    let national = digits.strip_prefix("00").unwrap_or(&digits);
    match national.strip_prefix("86") {
        Some(mobile) if mobile.len() == 11 && mobile.starts_with('1') => mobile.to_string(),
        _ => national.to_string(),
    }
}

/// An email address trimmed and case-folded.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Full-width forms (U+FF01–U+FF5E) and the ideographic space as their ASCII twins.
fn half_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    }
}

labelled_enum! {
    /// What a duplicate group has in common.
    pub enum DuplicateKey {
        TaxId = "tax_id",
        Name = "name",
        Phone = "phone",
        Email = "email",
    }
}

impl DuplicateKey {
    pub const ALL: [DuplicateKey; 4] =
        [DuplicateKey::TaxId, DuplicateKey::Name, DuplicateKey::Phone, DuplicateKey::Email];

    /// Where the key comes in `ALL`, which orders groups of the same size.
    pub fn order(self) -> usize {
        DuplicateKey::ALL.iter().position(|key| *key == self).unwrap_or(usize::MAX)
    }

    /// `by=tax_id,name`: the keys asked for, each once, in the order of `ALL`.
    pub fn parse_list(text: &str) -> Result<Vec<DuplicateKey>, String> {
        let mut keys = Vec::new();
        for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let key = DuplicateKey::from_label(part)
                .ok_or_else(|| format!("unknown key {part:?}; use tax_id, name, phone or email"))?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("name at least one of tax_id, name, phone, email".into());
        }
        Ok(DuplicateKey::ALL.into_iter().filter(|key| keys.contains(key)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn company_names_that_differ_in_form_read_the_same() {
        for name in [
            "北京电子有限公司",
            "北京电子有限责任公司",
            "（北京）电子有限公司",
            "(北京)电子股份有限公司",
            "北京 电子公司",
            "北京电子",
        ] {
            assert_eq!(name_key(name), "北京电子", "{name}");
        }
        assert_eq!(name_key("ＡＢＣ Trading Co., Ltd."), name_key("abc trading co ltd"));
        assert_eq!(name_key("ＡＢＣ Trading Co., Ltd."), "abctradingcoltd");
        assert_ne!(name_key("北京电子有限公司"), name_key("上海电子有限公司"));
    }

    #[test]
    fn a_name_that_is_only_a_legal_form_is_kept() {
        assert_eq!(name_key("有限公司"), "有限公司");
        assert_eq!(name_key("公司"), "公司");
        assert_eq!(name_key("！！"), "");
    }

    #[test]
    fn phones_compare_by_their_digits() {
        assert_eq!(phone_key("021-5555 0101"), "02155550101");
        assert_eq!(phone_key("（０２１）５５５５０１０１"), "02155550101");
        assert_eq!(phone_key("+86 138 0013 8000"), "13800138000");
        assert_eq!(phone_key("0086-13800138000"), "13800138000");
        assert_eq!(phone_key("13800138000"), "13800138000");
        assert_eq!(phone_key("+86 10 6552 9988"), "861065529988", "a landline keeps its country code");
    }

    #[test]
    fn emails_compare_case_folded() {
        assert_eq!(email_key(" Wang@Example.CN "), "wang@example.cn");
    }

    #[test]
    fn keys_are_listed_once_in_a_fixed_order() {
        assert_eq!(DuplicateKey::parse_list("email, name,email").unwrap(), [DuplicateKey::Name, DuplicateKey::Email]);
        assert!(DuplicateKey::parse_list("name,fax").unwrap_err().contains("fax"));
        assert!(DuplicateKey::parse_list(",").is_err());
    }
}
