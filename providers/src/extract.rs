//! Picking values out of fetched secrets, shared by every provider (ESO's `property`, `dataFrom.extract` and
//! `decodingStrategy`).
//!
//! A remote value is treated as JSON when a property is asked for. A property path `a.b.c` walks nested objects
//! (and arrays, with numeric segments); a key that itself contains dots (`tls.crt`) is found too, because at
//! every level the longest matching key is tried first. A string leaf yields its raw text, any other leaf its
//! JSON text (`42`, `true`, `{"x":1}`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;
use zeroize::Zeroizing;

pub use crate::error::ExtractError;

/// ESO's `decodingStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DecodingStrategy {
    /// Use the bytes as they are.
    #[default]
    None,
    /// Standard base64 alphabet (`+/`), padding optional.
    Base64,
    /// URL-safe base64 alphabet (`-_`), padding optional.
    Base64Url,
    /// Base64, else base64url, else the bytes as they are.
    Auto,
}

impl DecodingStrategy {
    /// The name ESO uses in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodingStrategy::None => "None",
            DecodingStrategy::Base64 => "Base64",
            DecodingStrategy::Base64Url => "Base64URL",
            DecodingStrategy::Auto => "Auto",
        }
    }
}

impl fmt::Display for DecodingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error parsing a [`DecodingStrategy`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown decodingStrategy `{0}` (expected None, Base64, Base64URL or Auto)")]
pub struct UnknownStrategy(pub String);

impl FromStr for DecodingStrategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "None" => Ok(DecodingStrategy::None),
            "Base64" => Ok(DecodingStrategy::Base64),
            "Base64URL" => Ok(DecodingStrategy::Base64Url),
            "Auto" => Ok(DecodingStrategy::Auto),
            other => Err(UnknownStrategy(other.to_owned())),
        }
    }
}

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes `bytes` with `strategy`. Surrounding whitespace is ignored for the base64 strategies.
pub fn decode(bytes: &[u8], strategy: DecodingStrategy) -> Result<Zeroizing<Vec<u8>>, ExtractError> {
    let trimmed = bytes.trim_ascii();
    let std = || STANDARD.decode(trimmed).ok().map(Zeroizing::new);
    let url = || URL_SAFE.decode(trimmed).ok().map(Zeroizing::new);
    let failed = || ExtractError::Decode { strategy };
    match strategy {
        DecodingStrategy::None => Ok(Zeroizing::new(bytes.to_vec())),
        DecodingStrategy::Base64 => std().ok_or_else(failed),
        DecodingStrategy::Base64Url => url().ok_or_else(failed),
        DecodingStrategy::Auto => Ok(std()
            .or_else(url)
            .unwrap_or_else(|| Zeroizing::new(bytes.to_vec()))),
    }
}

/// The value at `path` inside the JSON document `bytes`.
pub fn property(bytes: &[u8], path: &str) -> Result<Zeroizing<Vec<u8>>, ExtractError> {
    let doc = parse(bytes).ok_or_else(|| ExtractError::NotJson {
        path: path.to_owned(),
    })?;
    let leaf = lookup(&doc, path).ok_or_else(|| ExtractError::PropertyNotFound {
        path: path.to_owned(),
    })?;
    Ok(leaf_bytes(leaf))
}

/// Every top-level field of the JSON object `bytes` (ESO's `dataFrom.extract`).
pub fn all_fields(bytes: &[u8]) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, ExtractError> {
    match parse(bytes) {
        Some(Value::Object(map)) => Ok(map.iter().map(|(k, v)| (k.clone(), leaf_bytes(v))).collect()),
        _ => Err(ExtractError::NotAnObject),
    }
}

fn parse(bytes: &[u8]) -> Option<Value> {
    // The parser's error can quote the input, so it is dropped here.
    serde_json::from_slice(bytes).ok()
}

fn leaf_bytes(leaf: &Value) -> Zeroizing<Vec<u8>> {
    match leaf {
        Value::String(s) => Zeroizing::new(s.as_bytes().to_vec()),
        other => Zeroizing::new(serde_json::to_vec(other).unwrap_or_default()),
    }
}

fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return None;
    }
    // Split points: the end of the path first (the longest key), then every dot from the right.
    let ends = std::iter::once(path.len()).chain(path.match_indices('.').map(|(i, _)| i).rev());
    for end in ends {
        let (head, rest) = (&path[..end], path.get(end + 1..));
        let child = match value {
            Value::Object(map) => map.get(head),
            Value::Array(items) => head.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match (child, rest) {
            (Some(child), None) => return Some(child),
            (Some(child), Some(rest)) => {
                if let Some(found) = lookup(child, rest) {
                    return Some(found);
                }
            }
            (None, _) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &[u8] =
        br#"{"user":"app","password":"s3cr3t","port":5432,"tls":{"enabled":true,"ca.crt":"PEM"},
        "db":{"primary":{"host":"db1"}},"hosts":["a","b"],"nothing":null}"#;

    fn text(v: Zeroizing<Vec<u8>>) -> String {
        String::from_utf8(v.to_vec()).unwrap()
    }

    #[test]
    fn top_level_and_nested_properties() {
        assert_eq!(text(property(DOC, "user").unwrap()), "app");
        assert_eq!(text(property(DOC, "db.primary.host").unwrap()), "db1");
        assert_eq!(text(property(DOC, "tls.enabled").unwrap()), "true");
        assert_eq!(text(property(DOC, "tls.ca.crt").unwrap()), "PEM");
        assert_eq!(text(property(DOC, "hosts.1").unwrap()), "b");
    }

    #[test]
    fn non_string_leaves_are_json_text() {
        assert_eq!(text(property(DOC, "port").unwrap()), "5432");
        assert_eq!(
            text(property(DOC, "db").unwrap()),
            r#"{"primary":{"host":"db1"}}"#
        );
        assert_eq!(text(property(DOC, "hosts").unwrap()), r#"["a","b"]"#);
        assert_eq!(text(property(DOC, "nothing").unwrap()), "null");
    }

    #[test]
    fn dotted_keys_win_over_nesting() {
        let doc = br#"{"tls.crt":"flat","tls":{"crt":"nested"}}"#;
        assert_eq!(text(property(doc, "tls.crt").unwrap()), "flat");
    }

    #[test]
    fn missing_property_names_the_path_not_the_value() {
        let err = property(DOC, "db.replica.host").unwrap_err();
        assert_eq!(
            err,
            ExtractError::PropertyNotFound {
                path: "db.replica.host".into()
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("db.replica.host"), "{msg}");
        assert!(!msg.contains("s3cr3t") && !msg.contains("db1"), "{msg}");
        assert!(matches!(
            property(DOC, "user.x"),
            Err(ExtractError::PropertyNotFound { .. })
        ));
        assert!(matches!(
            property(DOC, ""),
            Err(ExtractError::PropertyNotFound { .. })
        ));
    }

    #[test]
    fn non_json_with_property_is_a_clear_error() {
        let err = property(b"just-a-password", "password").unwrap_err();
        assert_eq!(
            err,
            ExtractError::NotJson {
                path: "password".into()
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("not JSON") && msg.contains("`password`"), "{msg}");
        assert!(!msg.contains("just-a-password"), "{msg}");
    }

    #[test]
    fn all_fields_of_an_object() {
        let fields = all_fields(DOC).unwrap();
        assert_eq!(fields.len(), 7);
        assert_eq!(fields["password"].as_slice(), b"s3cr3t");
        assert_eq!(fields["port"].as_slice(), b"5432");
        assert_eq!(fields["tls"].as_slice(), br#"{"ca.crt":"PEM","enabled":true}"#);
        assert_eq!(all_fields(b"[1,2]").unwrap_err(), ExtractError::NotAnObject);
        assert_eq!(all_fields(b"plain text").unwrap_err(), ExtractError::NotAnObject);
    }

    #[test]
    fn base64_decoding() {
        assert_eq!(
            decode(b"aGVsbG8=", DecodingStrategy::Base64).unwrap().as_slice(),
            b"hello"
        );
        assert_eq!(
            decode(b"aGVsbG8\n", DecodingStrategy::Base64).unwrap().as_slice(),
            b"hello"
        );
        // 0xfb 0xff encodes as "+/8" in base64 and "-_8" in base64url.
        assert_eq!(
            decode(b"-_8", DecodingStrategy::Base64Url).unwrap().as_slice(),
            &[0xfb, 0xff]
        );
        assert_eq!(
            decode(b"+/8=", DecodingStrategy::Base64).unwrap().as_slice(),
            &[0xfb, 0xff]
        );
        let err = decode(b"-_8", DecodingStrategy::Base64).unwrap_err();
        assert_eq!(
            err,
            ExtractError::Decode {
                strategy: DecodingStrategy::Base64
            }
        );
        assert!(!err.to_string().contains("-_8"));
        assert!(decode(b"not base64!", DecodingStrategy::Base64Url).is_err());
        assert_eq!(
            decode(b"as is", DecodingStrategy::None).unwrap().as_slice(),
            b"as is"
        );
    }

    #[test]
    fn auto_decoding_falls_back() {
        assert_eq!(
            decode(b"aGVsbG8=", DecodingStrategy::Auto).unwrap().as_slice(),
            b"hello"
        );
        assert_eq!(
            decode(b"-_8", DecodingStrategy::Auto).unwrap().as_slice(),
            &[0xfb, 0xff]
        );
        assert_eq!(
            decode(b"not base64!", DecodingStrategy::Auto).unwrap().as_slice(),
            b"not base64!"
        );
    }

    #[test]
    fn strategy_names_round_trip() {
        for s in [
            DecodingStrategy::None,
            DecodingStrategy::Base64,
            DecodingStrategy::Base64Url,
            DecodingStrategy::Auto,
        ] {
            assert_eq!(s.as_str().parse::<DecodingStrategy>().unwrap(), s);
        }
        assert!("base64".parse::<DecodingStrategy>().is_err());
    }
}
