//! CSV cells that a spreadsheet would run as a formula (CSV injection, OWASP): a text
//! that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is written with a
//! leading `'`, which Excel and LibreOffice take as "this is text". Reading a CSV file
//! takes that `'` off again, so that an export imports back unchanged.

use std::borrow::Cow;

/// The first characters that make a spreadsheet read a cell as a formula.
const TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether `text`, after any quotes already guarding it, starts a formula. A text that
/// starts with `'` before a trigger is guarded too, so that reading takes off exactly
/// the one `'` that writing added.
fn needs_guard(text: &str) -> bool {
    text.trim_start_matches('\'').starts_with(TRIGGERS)
}

/// The text as a CSV cell.
pub fn guard(text: &str) -> Cow<'_, str> {
    if needs_guard(text) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The text a CSV cell written by [`guard`] stands for.
pub fn unguard(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if needs_guard(rest) => rest,
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_written_as_text() {
        assert_eq!(guard("=HYPERLINK(\"http://x\",\"click\")"), "'=HYPERLINK(\"http://x\",\"click\")");
        for text in ["+1", "-1", "@SUM(A1)", "\tx", "\rx", "'=x", "''+x"] {
            assert_eq!(guard(text), format!("'{text}"));
        }
        for text in ["", "华东", "a=b", "'quoted'", "x-1", " =x"] {
            assert_eq!(guard(text), text);
        }
    }

    #[test]
    fn every_text_reads_back_as_it_was() {
        for text in ["=1+1", "+86 138", "-", "@", "\t", "\r\n", "'", "'=", "''=x", "'a", "plain", "", "=", "'''"] {
            assert_eq!(unguard(&guard(text)), text, "{text:?}");
        }
        assert_eq!(unguard("'abc"), "'abc", "a quote before plain text is the text's own");
    }
}
