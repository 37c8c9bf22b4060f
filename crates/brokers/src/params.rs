//! Reading `application/x-www-form-urlencoded` text as the brokers do: raw, undecoded pairs.

/// The `name=value` pairs of `text`, undecoded; a pair without `=` has an empty value.
pub(crate) fn pairs(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The raw value of the first parameter called `name`.
pub(crate) fn value<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    pairs(text).find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// Appends `pair` (or several, `a=1&b=2`) to `text`, with a `&` when both are not empty.
pub(crate) fn append(text: &mut String, pair: &str) {
    if pair.is_empty() {
        return;
    }
    if !text.is_empty() {
        text.push('&');
    }
    text.push_str(pair);
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_read_raw_and_in_order() {
        let text = "a=1&b=%20x&&flag&a=2";
        let all: Vec<_> = pairs(text).collect();
        assert_eq!(all, [("a", "1"), ("b", "%20x"), ("flag", ""), ("a", "2")]);
        assert_eq!(value(text, "a"), Some("1"));
        assert_eq!(value(text, "c"), None);
    }

    #[test]
    fn append_adds_a_separator_only_between_pairs() {
        let mut text = String::new();
        append(&mut text, "a=1");
        append(&mut text, "b=2");
        append(&mut text, "");
        assert_eq!(text, "a=1&b=2");
    }

    #[test]
    fn hex_is_lower_case_and_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
    }
}
