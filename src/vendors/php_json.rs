//! Re-encodes JSON text the way PHP's `json_encode($value)` (default flags) writes it.
//!
//! Chup's backend is Laravel and the signed bytes are undocumented; the most likely scheme is
//! `hash_hmac('sha256', json_encode($payload), $secret)`. When the `payload` text in the body
//! does not verify as received (a proxy pretty-printed it, or Chup embedded it with other
//! flags), the verifier tries this form. PHP's defaults: no whitespace, `/` escaped as `\/`,
//! every non-ASCII character as `\uXXXX` with lowercase hex (UTF-16 surrogate pairs above the
//! BMP), control characters as their short escape or `\u00XX`.
//!
//! This is a token-level transform of the received text, not a parse into
//! `serde_json::Value`: a `Value` would reorder keys (they are sorted unless `preserve_order` is
//! on), turn `{}` vs `[]` ambiguities and number spellings into something PHP never sent, and
//! key order is exactly what PHP preserved. Numbers and literals are copied verbatim.

/// The input was not well-formed JSON text (only reachable with input serde already rejected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhpJsonError {
    #[error("unterminated string")]
    UnterminatedString,
    #[error("invalid escape sequence in a string")]
    BadEscape,
    #[error("unexpected non-ASCII character outside a string")]
    StrayCharacter,
}

/// Re-encodes `raw` (valid JSON text) in PHP `json_encode` default form. The output is ASCII.
pub fn encode(raw: &str) -> Result<String, PhpJsonError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {}
            '"' => encode_string(&mut chars, &mut out)?,
            c if c.is_ascii() => out.push(c),
            _ => return Err(PhpJsonError::StrayCharacter),
        }
    }
    Ok(out)
}

/// Reads one string body (after its opening quote) and writes it PHP-escaped, quotes included.
fn encode_string(chars: &mut std::str::Chars<'_>, out: &mut String) -> Result<(), PhpJsonError> {
    out.push('"');
    loop {
        let c = chars.next().ok_or(PhpJsonError::UnterminatedString)?;
        match c {
            '"' => break,
            '\\' => {
                let escaped = chars.next().ok_or(PhpJsonError::UnterminatedString)?;
                match escaped {
                    '"' => push_char('"', out),
                    '\\' => push_char('\\', out),
                    '/' => push_char('/', out),
                    'b' => push_char('\u{8}', out),
                    'f' => push_char('\u{c}', out),
                    'n' => push_char('\n', out),
                    'r' => push_char('\r', out),
                    't' => push_char('\t', out),
                    'u' => decode_unicode_escape(chars, out)?,
                    _ => return Err(PhpJsonError::BadEscape),
                }
            }
            c => push_char(c, out),
        }
    }
    out.push('"');
    Ok(())
}

/// Handles `\uXXXX` (the `\u` already read), joining a surrogate pair into one character so it
/// is re-emitted exactly once. A lone surrogate cannot be a `char`; it is re-emitted as its
/// escape, which is what PHP would have had to send for it to be in the body at all.
fn decode_unicode_escape(
    chars: &mut std::str::Chars<'_>,
    out: &mut String,
) -> Result<(), PhpJsonError> {
    let unit = read_hex4(chars)?;
    if (0xD800..0xDC00).contains(&unit) {
        let mut lookahead = chars.clone();
        if lookahead.next() == Some('\\') && lookahead.next() == Some('u') {
            let low = read_hex4(&mut lookahead)?;
            if (0xDC00..0xE000).contains(&low) {
                let code = 0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                if let Some(c) = char::from_u32(code) {
                    *chars = lookahead;
                    push_char(c, out);
                    return Ok(());
                }
            }
        }
        push_unit(unit, out);
        return Ok(());
    }
    match char::from_u32(u32::from(unit)) {
        Some(c) => push_char(c, out),
        None => push_unit(unit, out),
    }
    Ok(())
}

fn read_hex4(chars: &mut std::str::Chars<'_>) -> Result<u16, PhpJsonError> {
    let mut value: u16 = 0;
    for _ in 0..4 {
        let digit = chars
            .next()
            .and_then(|c| c.to_digit(16))
            .ok_or(PhpJsonError::BadEscape)?;
        // Four hex digits never overflow a u16; the digit is < 16.
        value = (value << 4) | digit as u16;
    }
    Ok(value)
}

/// Writes one decoded character the way PHP's encoder does.
fn push_char(c: char, out: &mut String) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '/' => out.push_str("\\/"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x20 => push_unit(c as u16, out),
        c if c.is_ascii() => out.push(c),
        c => {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                push_unit(*unit, out);
            }
        }
    }
}

fn push_unit(unit: u16, out: &mut String) {
    out.push_str(&format!("\\u{unit:04x}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(raw: &str) -> String {
        encode(raw).unwrap()
    }

    #[test]
    fn whitespace_outside_strings_is_dropped_and_kept_inside() {
        assert_eq!(
            enc("{\n  \"a\" : [ 1 , 2 ],\t\"b\": \"x y\"\r\n}"),
            r#"{"a":[1,2],"b":"x y"}"#
        );
    }

    #[test]
    fn slashes_are_escaped_whether_or_not_they_were_escaped_before() {
        assert_eq!(
            enc(r#"{"url":"https://chup.online/a\/b"}"#),
            r#"{"url":"https:\/\/chup.online\/a\/b"}"#
        );
    }

    #[test]
    fn non_ascii_becomes_lowercase_u_escapes() {
        assert_eq!(enc(r#""José 陈""#), r#""Jos\u00e9 \u9648""#);
        // An already escaped character is normalized to lowercase hex.
        assert_eq!(enc(r#""\u00E9""#), r#""\u00e9""#);
    }

    #[test]
    fn an_emoji_becomes_a_surrogate_pair() {
        assert_eq!(enc(r#""ok 😀""#), r#""ok \ud83d\ude00""#);
        assert_eq!(enc(r#""\uD83D\uDE00""#), r#""\ud83d\ude00""#);
    }

    #[test]
    fn escaped_ascii_is_written_plainly_and_controls_use_php_escapes() {
        assert_eq!(
            enc(r#""\u0041\"\\\n\u0001\u007f""#),
            "\"A\\\"\\\\\\n\\u0001\u{7f}\""
        );
    }

    #[test]
    fn nested_arrays_objects_and_literals_keep_their_order() {
        assert_eq!(
            enc(r#"{ "z": [ [ ], { } , [ true , null , -1.50e3 ] ], "a": {"y":1, "b":2} }"#),
            r#"{"z":[[],{},[true,null,-1.50e3]],"a":{"y":1,"b":2}}"#
        );
    }

    #[test]
    fn lone_surrogates_survive_as_escapes() {
        assert_eq!(enc(r#""\uD800x""#), r#""\ud800x""#);
    }

    #[test]
    fn broken_text_is_an_error_not_a_panic() {
        assert_eq!(encode(r#""abc"#), Err(PhpJsonError::UnterminatedString));
        assert_eq!(encode(r#""\q""#), Err(PhpJsonError::BadEscape));
        assert_eq!(encode(r#""\u12""#), Err(PhpJsonError::BadEscape));
        assert_eq!(encode("{é}"), Err(PhpJsonError::StrayCharacter));
    }
}
