use crate::extract::DecodingStrategy;

/// Why fetching from a provider failed, sorted into kinds the controller can act on.
///
/// No message ever contains a secret value, a token or a password: messages name keys, paths, server
/// addresses and the provider's own error codes only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The secret (or the requested version of it) does not exist.
    #[error("secret `{key}` not found")]
    NotFound { key: String },
    /// The credentials are valid but not allowed to read this secret.
    #[error("access denied: {detail}")]
    Denied { detail: String },
    /// The provider could not be reached or answered with a server-side error (connection refused,
    /// timeout, 5xx, throttling). Worth retrying later.
    #[error("provider unavailable: {detail}")]
    Unavailable { detail: String },
    /// Logging in failed, or the credentials were rejected (invalid or expired token, unknown keys).
    #[error("authentication failed: {detail}")]
    Auth { detail: String },
    /// The store's configuration cannot work (bad URL, bad CA bundle, bad version string, ...).
    #[error("invalid provider configuration: {detail}")]
    InvalidConfig { detail: String },
    /// Anything else (an unexpected response, a secret that cannot be decrypted, ...).
    #[error("{detail}")]
    Other { detail: String },
}

impl ProviderError {
    /// Whether trying again later may succeed without changing anything (only [`ProviderError::Unavailable`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::Unavailable { .. })
    }

    /// A short, stable name of the kind, for metrics labels and status reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::NotFound { .. } => "NotFound",
            ProviderError::Denied { .. } => "Denied",
            ProviderError::Unavailable { .. } => "Unavailable",
            ProviderError::Auth { .. } => "Auth",
            ProviderError::InvalidConfig { .. } => "InvalidConfig",
            ProviderError::Other { .. } => "Other",
        }
    }

    pub(crate) fn not_found(key: &str) -> Self {
        ProviderError::NotFound { key: key.to_owned() }
    }
    pub(crate) fn denied(detail: impl Into<String>) -> Self {
        ProviderError::Denied {
            detail: detail.into(),
        }
    }
    pub(crate) fn unavailable(detail: impl Into<String>) -> Self {
        ProviderError::Unavailable {
            detail: detail.into(),
        }
    }
    pub(crate) fn auth(detail: impl Into<String>) -> Self {
        ProviderError::Auth {
            detail: detail.into(),
        }
    }
    pub(crate) fn config(detail: impl Into<String>) -> Self {
        ProviderError::InvalidConfig {
            detail: detail.into(),
        }
    }
    pub(crate) fn other(detail: impl Into<String>) -> Self {
        ProviderError::Other {
            detail: detail.into(),
        }
    }
}

/// Why a property could not be extracted from, or decoded out of, a secret value.
///
/// Messages name the property path or the decoding strategy, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error(
        "the secret value is not JSON, so property `{path}` cannot be read (leave `property` out to use the whole value)"
    )]
    NotJson { path: String },
    #[error("property `{path}` not found in the secret value")]
    PropertyNotFound { path: String },
    #[error("the secret value is not a JSON object, so its fields cannot be extracted")]
    NotAnObject,
    #[error("the value is not valid {strategy} (decodingStrategy: {strategy})")]
    Decode { strategy: DecodingStrategy },
}
