/// Why talking to a Git remote or reading a revision failed, sorted into kinds the controller can act on.
///
/// No message ever contains a password, token or private key: URLs are shown without their userinfo, and every
/// text that comes from gix or the server is scrubbed of the credentials in use before it is stored here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    /// The remote could not be reached, did not answer in time, or answered with a server-side error. Worth
    /// retrying later.
    #[error("git remote unreachable: {detail}")]
    Unreachable { detail: String },
    /// The remote rejected or asked for credentials (HTTP 401/403, ssh authentication or host key failure).
    #[error("git authentication failed: {detail}")]
    Auth { detail: String },
    /// The repository, branch, tag, commit or path does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The URL cannot be parsed or uses an unsupported scheme.
    #[error("invalid git URL: {detail}")]
    InvalidUrl { detail: String },
    /// A reference name, commit id or path is malformed.
    #[error("invalid input: {detail}")]
    InvalidInput { detail: String },
    /// The files under the path are larger than the limit together.
    #[error("the files under `{path}` exceed the limit of {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    /// Anything else (a corrupt cache, an unexpected answer, an I/O error, ...).
    #[error("{detail}")]
    Other { detail: String },
}

impl GitError {
    /// Whether trying again later may succeed without changing anything (only [`GitError::Unreachable`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, GitError::Unreachable { .. })
    }

    /// A short, stable name of the kind, for metrics labels and status reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            GitError::Unreachable { .. } => "Unreachable",
            GitError::Auth { .. } => "Auth",
            GitError::NotFound { .. } => "NotFound",
            GitError::InvalidUrl { .. } => "InvalidUrl",
            GitError::InvalidInput { .. } => "InvalidInput",
            GitError::TooLarge { .. } => "TooLarge",
            GitError::Other { .. } => "Other",
        }
    }

    pub(crate) fn other(detail: impl Into<String>) -> Self {
        GitError::Other {
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid_input(detail: impl Into<String>) -> Self {
        GitError::InvalidInput {
            detail: detail.into(),
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        GitError::NotFound { what: what.into() }
    }
}

/// Removes credentials from a text that may contain URLs or secrets: the userinfo of every `scheme://user:pw@host`
/// and every occurrence of the given secrets.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = strip_userinfo(text);
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret, "[REDACTED]");
        }
    }
    out
}

/// Replaces the userinfo of every `scheme://userinfo@host` in `text` with `***`.
fn strip_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace, quote or closing bracket; userinfo ends at its last '@'.
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ')' | '>' | ']'))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_removed_from_urls() {
        assert_eq!(
            redact("fetch https://bob:hunter2@example.com/r.git failed", &[]),
            "fetch https://***@example.com/r.git failed"
        );
        assert_eq!(redact("ssh://git@host:22/r", &[]), "ssh://***@host:22/r");
        assert_eq!(redact("\"http://a:b@h\"", &[]), "\"http://***@h\"");
        assert_eq!(redact("no url here", &[]), "no url here");
        assert_eq!(redact("http://host/path@x", &[]), "http://host/path@x");
    }

    #[test]
    fn secrets_are_removed() {
        let text = redact("token s3cr3t rejected", &["s3cr3t", ""]);
        assert_eq!(text, "token [REDACTED] rejected");
    }

    #[test]
    fn only_unreachable_is_retryable() {
        assert!(
            GitError::Unreachable {
                detail: String::new()
            }
            .is_retryable()
        );
        assert!(!GitError::not_found("branch `x`").is_retryable());
        assert_eq!(
            GitError::not_found("branch `x`").to_string(),
            "branch `x` not found"
        );
    }
}
