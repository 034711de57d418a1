//! Tolerant reading of vendor JSON, shared by the four mappers.
//!
//! Vendors are loose with types: ids arrive as numbers or strings, VSee sends unix seconds as
//! strings in v1 and integers in v2, fields go missing or turn `null`. The helpers here accept
//! every reasonable spelling of a scalar so that a payload only fails mapping when a value is
//! truly unusable. They also own the wording of parse errors: serde's messages quote the
//! offending value, which may be a patient's name or phone number, so [`describe_json_error`]
//! keeps the error's kind and position and drops the value.

use std::fmt;

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::MapError;

/// Lowercase hex SHA-256, the form every dedupe key and fingerprint uses.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes).as_slice())
}

/// Whether JSON text is an object. Checked before deriving structs from it, because serde's
/// derive also accepts an array as a struct (positionally), which no vendor sends.
pub(crate) fn is_object_text(text: &[u8]) -> bool {
    text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// A JSON scalar read as text: strings as sent, numbers and booleans by their JSON spelling.
/// Objects and arrays are not text and fail.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                // serde_json's own spelling keeps `1.0` as "1.0" (VSee's `version` may be a number).
                match serde_json::Number::from_f64(v) {
                    Some(n) => Ok(Text(n.to_string())),
                    None => Err(E::custom("a non-finite number")),
                }
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// An integer written as a JSON integer, an integral float, or a numeric string; a blank string
/// reads as absent.
struct Int(Option<i64>);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl Visitor<'_> for IntVisitor {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string of digits")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(Some(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(|v| Int(Some(v)))
                    .map_err(|_| E::custom("an integer out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
                if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
                    // Exact: integral and within f64's contiguous integer range.
                    Ok(Int(Some(v as i64)))
                } else {
                    Err(E::custom("a number that is not a whole integer"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                let t = v.trim();
                if t.is_empty() {
                    return Ok(Int(None));
                }
                if let Ok(n) = t.parse::<i64>() {
                    return Ok(Int(Some(n)));
                }
                match t.parse::<f64>() {
                    Ok(f) => self.visit_f64(f),
                    Err(_) => Err(E::custom("a string that is not an integer")),
                }
            }
        }
        deserializer.deserialize_any(IntVisitor)
    }
}

/// `deserialize_with` for optional text kept exactly as sent (null or missing → `None`).
pub(crate) fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Text>::deserialize(d)?.map(|t| t.0))
}

/// `deserialize_with` for ids: number or string, trimmed; blank reads as absent.
pub(crate) fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Text>::deserialize(d)?.and_then(|t| {
        let t = t.0.trim();
        (!t.is_empty()).then(|| t.to_owned())
    }))
}

/// `deserialize_with` for integers sent as numbers or numeric strings.
pub(crate) fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<Int>::deserialize(d)?.and_then(|i| i.0))
}

/// Parses an ISO-8601 / RFC 3339 instant with an offset ("2024-01-17T00:35:22+08:00",
/// "2019-10-29T07:29:30Z", "2023-04-24T18:28:10.000+03:00"). Blank is absent; anything else
/// unparseable is a [`MapError`] naming the field (not the value).
pub(crate) fn instant(
    field: &str,
    raw: Option<&str>,
) -> Result<Option<DateTime<FixedOffset>>, MapError> {
    let Some(raw) = raw.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(raw).map(Some).map_err(|_| {
        MapError::new(format!(
            "`{field}` is not an ISO-8601 timestamp with an offset (like 2024-01-17T00:35:22+08:00)"
        ))
    })
}

/// Unix seconds → instant. Zero or negative reads as "not set" (VSee leaves unstarted visits'
/// `actual_start` at 0 in some exports).
pub(crate) fn unix_seconds(
    field: &str,
    secs: Option<i64>,
) -> Result<Option<DateTime<Utc>>, MapError> {
    match secs {
        None => Ok(None),
        Some(s) if s <= 0 => Ok(None),
        Some(s) => DateTime::from_timestamp(s, 0)
            .map(Some)
            .ok_or_else(|| MapError::new(format!("`{field}` is out of range for unix seconds"))),
    }
}

/// The text of an offset as the vendor's zone ("+08:00"; `Z` becomes "+00:00").
pub(crate) fn offset_text(at: &DateTime<FixedOffset>) -> String {
    at.offset().to_string()
}

/// Normalizes a phone number to E.164 where the digits allow it, else returns it as sent.
///
/// With `digits_carry_country_code` (Chup: "923093927454"), 8–15 digits not starting with 0
/// become `+digits`. A number already written with `+` is compacted (spaces, dashes, dots and
/// parentheses dropped). Local numbers (leading 0) are kept as sent: guessing a country would
/// invent data.
pub(crate) fn phone(raw: Option<&str>, digits_carry_country_code: bool) -> Option<String> {
    let raw = raw.map(str::trim).filter(|t| !t.is_empty())?;
    let (plus, rest) = match raw.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let digits: String = rest
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let plausible = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if plausible && (plus || digits_carry_country_code) {
        Some(format!("+{digits}"))
    } else {
        Some(raw.to_owned())
    }
}

/// "First Last" from optional parts, or `None` when both are blank.
pub(crate) fn join_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = [first, last]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// Uppercases and turns spaces and dashes into underscores, so "In Queue", "in-queue" and
/// "IN_QUEUE" compare equal when classifying vendor enums.
pub(crate) fn enum_key(raw: &str) -> String {
    raw.trim()
        .chars()
        .map(|c| {
            if c == ' ' || c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

/// A key-sorted, whitespace-free serialization, so that two deliveries that differ only in
/// formatting or key order have the same fingerprint. Written out rather than relying on
/// `Value`'s map order, which depends on whether some crate in the build enables serde_json's
/// `preserve_order` feature.
pub(crate) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(val, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Describes a serde_json error without quoting the input: serde's data errors embed the
/// offending value (`invalid type: string "Saad", …`), which may be PHI and would end up in the
/// inbox and logs. Keeps the kind, what was expected, field names and the position.
pub(crate) fn describe_json_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let position = format!("line {} column {}", err.line(), err.column());
    match err.classify() {
        Category::Syntax => format!("syntax error at {position}"),
        Category::Eof => "unexpected end of input".to_owned(),
        Category::Io => "read error".to_owned(),
        Category::Data => {
            let msg = err.to_string();
            let msg = msg.split(" at line ").next().unwrap_or_default();
            let safe = if let Some(rest) = msg
                .strip_prefix("invalid type: ")
                .or_else(|| msg.strip_prefix("invalid value: "))
            {
                let kind = rest.split([' ', ',']).next().unwrap_or_default();
                let expected = rest
                    .split_once(", expected ")
                    .map(|(_, e)| e)
                    .unwrap_or("another type");
                format!("invalid type: {kind}, expected {expected}")
            } else if msg.starts_with("missing field")
                || msg.starts_with("duplicate field")
                || msg.starts_with("data did not match")
            {
                msg.to_owned()
            } else {
                "unusable value".to_owned()
            };
            format!("{safe} at {position}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chup_digits_with_country_code_become_e164() {
        assert_eq!(
            phone(Some("923093927454"), true).as_deref(),
            Some("+923093927454")
        );
        assert_eq!(
            phone(Some("6012345678"), true).as_deref(),
            Some("+6012345678")
        );
    }

    #[test]
    fn local_and_odd_phone_numbers_are_kept_as_sent() {
        assert_eq!(
            phone(Some("0123456789"), true).as_deref(),
            Some("0123456789")
        );
        assert_eq!(phone(Some("12345"), true).as_deref(), Some("12345"));
        assert_eq!(phone(Some("555-0101"), false).as_deref(), Some("555-0101"));
        assert_eq!(phone(Some("  "), true), None);
    }

    #[test]
    fn plus_prefixed_numbers_are_compacted() {
        assert_eq!(
            phone(Some("+1 (212) 555-0101"), false).as_deref(),
            Some("+12125550101")
        );
    }

    #[test]
    fn canonical_json_ignores_key_order_and_whitespace() {
        let a: Value =
            serde_json::from_str(r#"{"b": [1, {"y":2,"x":1}], "a": "é"}"#).unwrap_or_default();
        let b: Value =
            serde_json::from_str(r#"{"a":"é","b":[1,{"x":1,"y":2}]}"#).unwrap_or_default();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":"é","b":[1,{"x":1,"y":2}]}"#);
    }

    #[test]
    fn json_error_descriptions_never_quote_the_value() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct T {
            n: i64,
        }
        let err = serde_json::from_str::<T>(r#"{"n": "Saad Secret"}"#).err();
        let text = err.as_ref().map(describe_json_error).unwrap_or_default();
        assert!(!text.contains("Saad"), "{text}");
        assert!(
            text.starts_with("invalid type: string, expected i64"),
            "{text}"
        );
    }

    #[test]
    fn ids_and_ints_accept_numbers_and_strings() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "opt_id")]
            a: Option<String>,
            #[serde(default, deserialize_with = "opt_id")]
            b: Option<String>,
            #[serde(default, deserialize_with = "opt_int")]
            c: Option<i64>,
            #[serde(default, deserialize_with = "opt_int")]
            d: Option<i64>,
            #[serde(default, deserialize_with = "opt_int")]
            e: Option<i64>,
        }
        let t: T = serde_json::from_str(
            r#"{"a": 19242, "b": " abc ", "c": "1546950556", "d": 2500.0, "e": null}"#,
        )
        .unwrap();
        assert_eq!(t.a.as_deref(), Some("19242"));
        assert_eq!(t.b.as_deref(), Some("abc"));
        assert_eq!(t.c, Some(1_546_950_556));
        assert_eq!(t.d, Some(2500));
        assert_eq!(t.e, None);
    }
}
