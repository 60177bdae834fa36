//! The plaintext frame that binds a value to where it may be used.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "SLNT"
//! 4       1     version (1)
//! 5       1     scope: 0 strict, 1 namespace-wide, 2 cluster-wide
//! 6       ...   bound fields for the scope, each a u16 big-endian length then UTF-8 bytes:
//!               strict: namespace, name, key; namespace-wide: namespace; cluster-wide: none
//! ...     rest  the value
//! ```

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::error::{SealError, UnsealError};

/// The four bytes that start every frame.
pub const FRAME_MAGIC: &[u8; 4] = b"SLNT";
/// The frame version this library writes and reads.
pub const FRAME_VERSION: u8 = 1;

/// Where a sealed value may be unsealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Only in the same namespace, object name and data key.
    #[default]
    Strict,
    /// In any object of the same namespace, under any key.
    NamespaceWide,
    /// Anywhere in the cluster.
    ClusterWide,
}

impl Scope {
    /// All scopes, in the order of their tags.
    pub const ALL: [Scope; 3] = [Scope::Strict, Scope::NamespaceWide, Scope::ClusterWide];

    /// The name used on the command line, in annotations and in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Strict => "strict",
            Scope::NamespaceWide => "namespace-wide",
            Scope::ClusterWide => "cluster-wide",
        }
    }

    fn tag(self) -> u8 {
        match self {
            Scope::Strict => 0,
            Scope::NamespaceWide => 1,
            Scope::ClusterWide => 2,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Scope::ALL.into_iter().find(|s| s.tag() == tag)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown scope name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`: use one of strict, namespace-wide, cluster-wide")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

/// The place a value is sealed for or unsealed at: namespace, object name and data key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub key: &'a str,
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} key {}", self.namespace, self.name, self.key)
    }
}

/// A decoded frame: the scope, the fields bound by it, and the value.
#[derive(PartialEq, Eq)]
pub struct Frame {
    pub scope: Scope,
    /// The bound fields, in order (3 for strict, 1 for namespace-wide, 0 for cluster-wide).
    pub bound: Vec<String>,
    pub value: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("scope", &self.scope)
            .field("bound", &self.bound)
            .field("value", &format_args!("[REDACTED; {} bytes]", self.value.len()))
            .finish()
    }
}

fn bound_fields<'a>(scope: Scope, target: &Target<'a>) -> Vec<(&'static str, &'a str)> {
    match scope {
        Scope::Strict => vec![
            ("namespace", target.namespace),
            ("name", target.name),
            ("key", target.key),
        ],
        Scope::NamespaceWide => vec![("namespace", target.namespace)],
        Scope::ClusterWide => vec![],
    }
}

impl Frame {
    /// Encodes `value` in a frame bound to `target` as `scope` requires.
    pub fn encode(scope: Scope, target: &Target<'_>, value: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let fields = bound_fields(scope, target);
        let header_len: usize = 6 + fields.iter().map(|(_, v)| 2 + v.len()).sum::<usize>();
        let mut out = Zeroizing::new(Vec::with_capacity(header_len + value.len()));
        out.extend_from_slice(FRAME_MAGIC);
        out.push(FRAME_VERSION);
        out.push(scope.tag());
        for (field, v) in fields {
            if v.is_empty() {
                return Err(SealError::MissingBinding { scope, field });
            }
            let len =
                u16::try_from(v.len()).map_err(|_| SealError::BindingTooLong { field, len: v.len() })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        out.extend_from_slice(value);
        Ok(out)
    }

    /// Decodes a frame. The value is copied into a zeroizing buffer.
    pub fn decode(bytes: &[u8]) -> Result<Frame, UnsealError> {
        let rest = bytes
            .strip_prefix(FRAME_MAGIC.as_slice())
            .ok_or(UnsealError::BadFrame("wrong magic"))?;
        let (&version, rest) = rest
            .split_first()
            .ok_or(UnsealError::BadFrame("truncated header"))?;
        if version != FRAME_VERSION {
            return Err(UnsealError::BadFrame(
                "unsupported frame version; upgrade sealant",
            ));
        }
        let (&tag, mut rest) = rest
            .split_first()
            .ok_or(UnsealError::BadFrame("truncated header"))?;
        let scope = Scope::from_tag(tag).ok_or(UnsealError::BadFrame("unknown scope tag"))?;
        let count = bound_fields(
            scope,
            &Target {
                namespace: "",
                name: "",
                key: "",
            },
        )
        .len();
        let mut bound = Vec::with_capacity(count);
        for _ in 0..count {
            if rest.len() < 2 {
                return Err(UnsealError::BadFrame("truncated bound field"));
            }
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let field = rest
                .get(2..2 + len)
                .ok_or(UnsealError::BadFrame("truncated bound field"))?;
            let field =
                std::str::from_utf8(field).map_err(|_| UnsealError::BadFrame("bound field is not UTF-8"))?;
            bound.push(field.to_owned());
            rest = &rest[2 + len..];
        }
        Ok(Frame {
            scope,
            bound,
            value: Zeroizing::new(rest.to_vec()),
        })
    }

    /// Checks that this frame may be used at `target`.
    pub fn check(&self, target: &Target<'_>) -> Result<(), UnsealError> {
        let expected = bound_fields(self.scope, target);
        let matches =
            expected.len() == self.bound.len() && expected.iter().zip(&self.bound).all(|((_, e), b)| e == b);
        if matches {
            return Ok(());
        }
        let describe = |values: Vec<&str>| match self.scope {
            Scope::Strict => format!("{}/{} key {}", values[0], values[1], values[2]),
            Scope::NamespaceWide => format!("namespace {}", values[0]),
            Scope::ClusterWide => String::from("anywhere"),
        };
        Err(UnsealError::ScopeMismatch {
            scope: self.scope,
            sealed_for: describe(self.bound.iter().map(String::as_str).collect()),
            used_at: describe(expected.iter().map(|(_, v)| *v).collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Target<'static> = Target {
        namespace: "prod",
        name: "db",
        key: "password",
    };

    #[test]
    fn strict_frame_bytes() {
        let f = Frame::encode(Scope::Strict, &T, b"hunter2").unwrap();
        let mut expected = b"SLNT\x01\x00".to_vec();
        expected.extend_from_slice(b"\x00\x04prod\x00\x02db\x00\x08password");
        expected.extend_from_slice(b"hunter2");
        assert_eq!(&f[..], &expected[..]);
        let d = Frame::decode(&f).unwrap();
        assert_eq!(d.scope, Scope::Strict);
        assert_eq!(d.bound, ["prod", "db", "password"]);
        assert_eq!(&d.value[..], b"hunter2");
        d.check(&T).unwrap();
    }

    #[test]
    fn scopes_bind_what_they_say() {
        let other_name = Target {
            name: "cache",
            key: "token",
            ..T
        };
        let other_ns = Target {
            namespace: "dev",
            ..T
        };
        let strict = Frame::decode(&Frame::encode(Scope::Strict, &T, b"v").unwrap()).unwrap();
        assert!(matches!(
            strict.check(&other_name),
            Err(UnsealError::ScopeMismatch { .. })
        ));
        let nsw = Frame::decode(&Frame::encode(Scope::NamespaceWide, &T, b"v").unwrap()).unwrap();
        nsw.check(&other_name).unwrap();
        assert!(matches!(
            nsw.check(&other_ns),
            Err(UnsealError::ScopeMismatch { .. })
        ));
        let cw = Frame::decode(&Frame::encode(Scope::ClusterWide, &T, b"v").unwrap()).unwrap();
        cw.check(&other_ns).unwrap();
        cw.check(&Target {
            namespace: "",
            name: "",
            key: "",
        })
        .unwrap();
    }

    #[test]
    fn mismatch_message_names_both_places() {
        let strict = Frame::decode(&Frame::encode(Scope::Strict, &T, b"v").unwrap()).unwrap();
        let err = strict
            .check(&Target {
                namespace: "dev",
                ..T
            })
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "sealed for prod/db key password (strict scope) but used at dev/db key password"
        );
    }

    #[test]
    fn empty_binding_is_refused() {
        let err = Frame::encode(Scope::Strict, &Target { namespace: "", ..T }, b"v").unwrap_err();
        assert!(matches!(
            err,
            SealError::MissingBinding {
                field: "namespace",
                ..
            }
        ));
        Frame::encode(
            Scope::ClusterWide,
            &Target {
                namespace: "",
                name: "",
                key: "",
            },
            b"v",
        )
        .unwrap();
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let good = Frame::encode(Scope::Strict, &T, b"value").unwrap();
        for cut in 0..good.len() - "value".len() {
            assert!(
                Frame::decode(&good[..cut]).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
        assert!(Frame::decode(b"SLNT\x02\x00").is_err());
        assert!(Frame::decode(b"SLNT\x01\x09").is_err());
        assert!(Frame::decode(b"SLNT\x01\x01\x00\x02\xff\xfe").is_err());
    }

    #[test]
    fn debug_redacts_value() {
        let d = Frame::decode(&Frame::encode(Scope::ClusterWide, &T, b"hunter2").unwrap()).unwrap();
        let s = format!("{d:?}");
        assert!(!s.contains("hunter2") && s.contains("REDACTED"), "{s}");
    }

    #[test]
    fn scope_names_round_trip() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().unwrap(), s);
        }
        assert!("namespace".parse::<Scope>().is_err());
    }
}
