//! sealant's secret providers: fetch secret values from HashiCorp Vault / OpenBao (KV v1 and v2) and AWS
//! Secrets Manager, for the controller's ExternalSecret reconciler.
//!
//! This crate has no Kubernetes dependency: the controller resolves Kubernetes Secret references and
//! service-account tokens and hands over plain credentials in a [`ProviderConfig`].
//!
//! One [`Provider`] is made per store with [`Provider::connect`] (Vault logs in there, once) and is then used for
//! every [`Provider::fetch`]; the controller calls [`Provider::keep_alive`] regularly (e.g. every minute) so
//! that the Vault token is renewed before it expires. Fetching takes many [`RemoteRef`]s at once: Vault reads
//! run concurrently (16 at a time), AWS reads are batched with `BatchGetSecretValue` (20 ids per call).
//! Values come back as [`RemoteSecret`]s, and [`extract`] picks properties out of them.
//!
//! Secret values and tokens live in [`Zeroizing`] buffers, print as `[REDACTED]` in `Debug` and never appear
//! in errors or logs.

mod aws;
mod error;
pub mod extract;
#[cfg(test)]
mod fake_http;
mod vault;

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

pub use error::{ExtractError, ProviderError};
pub use extract::DecodingStrategy;

/// Called once per request made to a provider, with the provider (`"vault"` or `"aws"`) and the operation
/// (Vault: `"login"`, `"lookup"`, `"renew"`, `"read"`; AWS: `"BatchGetSecretValue"`, `"GetSecretValue"`).
/// For metrics, and for tests that count calls.
pub type CallCounter = Arc<dyn Fn(&'static str, &'static str) + Send + Sync>;

/// A [`CallCounter`] that counts nothing.
pub fn no_counter() -> CallCounter {
    Arc::new(|_, _| {})
}

/// Which provider a store uses and how to reach and authenticate to it.
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Vault(VaultConfig),
    Aws(AwsConfig),
}

/// A Vault (or OpenBao) KV secrets engine.
#[derive(Clone)]
pub struct VaultConfig {
    /// `http://…` or `https://…`, without `/v1`.
    pub server: String,
    /// Where the KV engine is mounted, e.g. `secret`.
    pub mount: String,
    pub kv_version: KvVersion,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// PEM bundle of CA certificates to trust for an `https` server, in addition to the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub auth: VaultAuth,
}

impl fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultConfig")
            .field("server", &self.server)
            .field("mount", &self.mount)
            .field("kv_version", &self.kv_version)
            .field("namespace", &self.namespace)
            .field(
                "ca_pem",
                &self.ca_pem.as_ref().map(|pem| format!("<{} bytes>", pem.len())),
            )
            .field("auth", &self.auth)
            .finish()
    }
}

/// The version of a Vault KV secrets engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvVersion {
    V1,
    V2,
}

/// How to log in to Vault.
#[derive(Clone)]
pub enum VaultAuth {
    /// A token, used as it is (renewed by [`Provider::keep_alive`] when it is renewable).
    Token(Zeroizing<String>),
    /// AppRole login at `auth/{mount}/login`.
    AppRole {
        mount: String,
        role_id: String,
        secret_id: Zeroizing<String>,
    },
    /// Kubernetes login at `auth/{mount}/login` with a service-account token.
    Kubernetes {
        mount: String,
        role: String,
        jwt: Zeroizing<String>,
    },
}

impl VaultAuth {
    fn method(&self) -> &'static str {
        match self {
            VaultAuth::Token(_) => "token",
            VaultAuth::AppRole { .. } => "approle",
            VaultAuth::Kubernetes { .. } => "kubernetes",
        }
    }
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultAuth::Token(_) => f.debug_tuple("Token").field(&"[REDACTED]").finish(),
            VaultAuth::AppRole { mount, role_id, .. } => f
                .debug_struct("AppRole")
                .field("mount", mount)
                .field("role_id", role_id)
                .field("secret_id", &"[REDACTED]")
                .finish(),
            VaultAuth::Kubernetes { mount, role, .. } => f
                .debug_struct("Kubernetes")
                .field("mount", mount)
                .field("role", role)
                .field("jwt", &"[REDACTED]")
                .finish(),
        }
    }
}

/// AWS Secrets Manager in one region.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub region: String,
    /// Endpoint override (a VPC endpoint, or a local emulator in tests); also used for STS.
    pub endpoint: Option<String>,
    pub auth: AwsAuth,
}

/// How to get AWS credentials.
#[derive(Clone)]
pub enum AwsAuth {
    /// Access keys, e.g. from a Kubernetes Secret.
    Static {
        access_key_id: String,
        secret_access_key: Zeroizing<String>,
        session_token: Option<Zeroizing<String>>,
    },
    /// `AssumeRoleWithWebIdentity` with a (service-account) token, e.g. IRSA.
    WebIdentity {
        role_arn: String,
        token: Zeroizing<String>,
        session_name: String,
    },
    /// The SDK's default chain (environment, profile, web identity from the environment, ECS, IMDS).
    DefaultChain,
}

impl fmt::Debug for AwsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AwsAuth::Static {
                access_key_id,
                session_token,
                ..
            } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"[REDACTED]")
                .field("session_token", &session_token.as_ref().map(|_| "[REDACTED]"))
                .finish(),
            AwsAuth::WebIdentity {
                role_arn,
                session_name,
                ..
            } => f
                .debug_struct("WebIdentity")
                .field("role_arn", role_arn)
                .field("token", &"[REDACTED]")
                .field("session_name", session_name)
                .finish(),
            AwsAuth::DefaultChain => f.write_str("DefaultChain"),
        }
    }
}

/// One secret to fetch: the unit of fetching and coalescing.
///
/// `key` is the Vault path below the mount, or the AWS secret name or ARN. `version` is, for Vault KV v2, a
/// version number; for AWS a `VersionId` (optionally prefixed `uuid/`, as in ESO) or a staging label such as
/// `AWSCURRENT` / `AWSPREVIOUS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteRef {
    pub key: String,
    pub version: Option<String>,
}

impl RemoteRef {
    /// The latest version of `key`.
    pub fn latest(key: impl Into<String>) -> Self {
        RemoteRef {
            key: key.into(),
            version: None,
        }
    }

    /// A given version of `key`.
    pub fn versioned(key: impl Into<String>, version: impl Into<String>) -> Self {
        RemoteRef {
            key: key.into(),
            version: Some(version.into()),
        }
    }
}

/// A fetched value. For Vault, `bytes` is the KV data map as a JSON object and `version` the KV v2 version
/// number; for AWS, the `SecretString` (or `SecretBinary`) bytes and the `VersionId`.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteSecret {
    pub bytes: Zeroizing<Vec<u8>>,
    pub version: Option<String>,
}

impl fmt::Debug for RemoteSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSecret")
            .field("bytes", &format_args!("[REDACTED {} bytes]", self.bytes.len()))
            .field("version", &self.version)
            .finish()
    }
}

/// What ESO's `dataFrom[].find` looks for: secrets under `path` (Vault: a folder; AWS: a name prefix) whose
/// name matches `name_regex`, and (AWS only) that carry every tag in `tags`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Find {
    pub path: Option<String>,
    pub name_regex: Option<String>,
    pub tags: std::collections::BTreeMap<String, String>,
}

/// At most this many secrets are listed for one `find`.
pub const FIND_LIMIT: usize = 1000;

impl Find {
    fn regex(&self) -> Result<Option<regex::Regex>, ProviderError> {
        self.name_regex
            .as_deref()
            .map(|r| {
                regex::Regex::new(r).map_err(|_| ProviderError::InvalidConfig {
                    detail: format!("find.name.regexp `{r}` is not a regular expression"),
                })
            })
            .transpose()
    }
}

/// A connected provider: one per store. Holds the client and, for Vault, the token.
pub struct Provider {
    inner: Inner,
}

enum Inner {
    Vault(Box<vault::VaultProvider>),
    Aws(aws::AwsProvider),
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Vault(v) => f.debug_tuple("Provider").field(v).finish(),
            Inner::Aws(a) => f.debug_tuple("Provider").field(a).finish(),
        }
    }
}

impl Provider {
    /// Builds the client for `config`. Vault logs in here, once (or, with a token, looks it up to learn
    /// its TTL); AWS makes no request unless it uses a web identity, whose role is assumed here so that a
    /// bad token or role shows up at once.
    pub async fn connect(config: ProviderConfig, calls: CallCounter) -> Result<Provider, ProviderError> {
        let inner = match config {
            ProviderConfig::Vault(c) => {
                Inner::Vault(Box::new(vault::VaultProvider::connect(c, calls).await?))
            }
            ProviderConfig::Aws(c) => Inner::Aws(aws::AwsProvider::connect(c, calls).await?),
        };
        Ok(Provider { inner })
    }

    /// Fetches every ref; the result has one entry per ref, in the order given. Errors are per ref.
    pub async fn fetch(&self, refs: &[RemoteRef]) -> Vec<(RemoteRef, Result<RemoteSecret, ProviderError>)> {
        match &self.inner {
            Inner::Vault(v) => v.fetch(refs).await,
            Inner::Aws(a) => a.fetch(refs).await,
        }
    }

    /// The keys of the secrets `find` selects (sorted, at most [`FIND_LIMIT`]).
    pub async fn list(&self, find: &Find) -> Result<Vec<String>, ProviderError> {
        let regex = find.regex()?;
        let mut keys = match &self.inner {
            Inner::Vault(v) => {
                if !find.tags.is_empty() {
                    return Err(ProviderError::InvalidConfig {
                        detail: "find.tags works with AWS Secrets Manager only".into(),
                    });
                }
                v.list(find.path.as_deref().unwrap_or("")).await?
            }
            Inner::Aws(a) => a.list(find.path.as_deref(), &find.tags).await?,
        };
        if let Some(re) = regex {
            keys.retain(|k| re.is_match(k));
        }
        keys.sort();
        keys.dedup();
        keys.truncate(FIND_LIMIT);
        Ok(keys)
    }

    /// Keeps the credentials valid; call it regularly (more often than a third of the token TTL).
    ///
    /// Vault: renews the token once past two thirds of its TTL, and logs in again when renewal fails or the
    /// token has expired (a static token cannot log in again: then [`ProviderError::Auth`]). AWS: nothing to
    /// do (the SDK refreshes its credentials itself).
    pub async fn keep_alive(&self) -> Result<(), ProviderError> {
        match &self.inner {
            Inner::Vault(v) => v.keep_alive().await,
            Inner::Aws(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bearing_types_are_redacted_in_debug() {
        let auth = VaultAuth::AppRole {
            mount: "approle".into(),
            role_id: "rid".into(),
            secret_id: Zeroizing::new("SECRET-ID".into()),
        };
        let config = VaultConfig {
            server: "http://127.0.0.1:8200".into(),
            mount: "secret".into(),
            kv_version: KvVersion::V2,
            namespace: None,
            ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            auth,
        };
        let text = format!(
            "{config:?} {:?} {:?} {:?}",
            VaultAuth::Token(Zeroizing::new("TOKEN-VALUE".into())),
            VaultAuth::Kubernetes {
                mount: "k".into(),
                role: "r".into(),
                jwt: Zeroizing::new("JWT-VALUE".into())
            },
            RemoteSecret {
                bytes: Zeroizing::new(b"PLAINTEXT".to_vec()),
                version: Some("3".into())
            },
        );
        let aws = format!(
            "{:?} {:?}",
            AwsAuth::Static {
                access_key_id: "AKID".into(),
                secret_access_key: Zeroizing::new("SAK-VALUE".into()),
                session_token: Some(Zeroizing::new("SESSION-VALUE".into())),
            },
            AwsAuth::WebIdentity {
                role_arn: "arn:aws:iam::1:role/r".into(),
                token: Zeroizing::new("WEB-TOKEN".into()),
                session_name: "s".into(),
            },
        );
        for secret in [
            "SECRET-ID",
            "TOKEN-VALUE",
            "JWT-VALUE",
            "PLAINTEXT",
            "SAK-VALUE",
            "SESSION-VALUE",
            "WEB-TOKEN",
        ] {
            assert!(
                !text.contains(secret) && !aws.contains(secret),
                "{secret} leaked: {text} {aws}"
            );
        }
        assert!(
            text.contains("[REDACTED 9 bytes]") && text.contains("rid") && aws.contains("AKID"),
            "{text}"
        );
    }

    #[test]
    fn only_unavailable_is_retryable() {
        assert!(ProviderError::unavailable("x").is_retryable());
        for e in [
            ProviderError::not_found("k"),
            ProviderError::denied("x"),
            ProviderError::auth("x"),
            ProviderError::config("x"),
            ProviderError::other("x"),
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
        assert_eq!(
            ProviderError::not_found("db/creds").to_string(),
            "secret `db/creds` not found"
        );
    }
}
