//! Rules on free text that every field of the API shares.

/// Characters no field of this service accepts: control characters (NUL, which PostgreSQL cannot
/// store in text, line breaks and escapes, which forge log lines) and the bidirectional
/// overrides, which make a value display as something else.
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Whether `text` holds a character [`is_forbidden_char`] refuses.
pub fn has_forbidden_char(text: &str) -> bool {
    text.chars().any(is_forbidden_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_forbidden_and_letters_are_not() {
        for bad in [
            "a\u{0}b",
            "line\nbreak",
            "tab\t",
            "esc\u{1b}[31m",
            "\u{202e}txt",
            "\u{2066}x",
        ] {
            assert!(has_forbidden_char(bad), "{bad:?}");
        }
        for good in ["Zoë", "O'Brien-Smith", "+33 1 23 45", "日本語", "a b"] {
            assert!(!has_forbidden_char(good), "{good:?}");
        }
    }
}
