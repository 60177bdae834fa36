//! Small helpers: time, random ids, JSON path access.

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;

/// Current time as RFC 3339 with second precision, like the API server.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Current time in seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Fills `buf` with random bytes.
pub fn random_bytes(buf: &mut [u8]) {
    // SystemRandom only fails if the OS RNG is unavailable; fall back to a time-based fill.
    if SystemRandom::new().fill(buf).is_err() {
        let mut x = jiff::Timestamp::now().as_nanosecond() as u64 | 1;
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
}

/// A random UUID v4 string.
pub fn uuid() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random float in [0, 1).
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Random suffix for generateName (5 chars from the API server's alphabet).
pub fn name_suffix() -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    random_bytes(&mut b);
    b.iter()
        .map(|x| ALPHA[*x as usize % ALPHA.len()] as char)
        .collect()
}

/// A random hex token.
pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    random_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Looks up a dotted path (`metadata.name`) in a JSON object.
pub fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// String field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The string form of a scalar, as field selectors compare it.
pub fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
