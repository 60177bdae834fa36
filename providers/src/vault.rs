//! HashiCorp Vault / OpenBao KV v1 and v2, through `vaultrs`.

use std::fmt;
use std::io::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tracing::{debug, instrument, warn};
use vaultrs::api::kv2::requests::ReadSecretRequest;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use crate::{CallCounter, KvVersion, ProviderError, RemoteRef, RemoteSecret, VaultAuth, VaultConfig};

/// How many reads run at once.
const CONCURRENCY: usize = 16;
/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct VaultProvider {
    server: String,
    mount: String,
    kv_version: KvVersion,
    namespace: Option<String>,
    auth: VaultAuth,
    /// The CA bundle, written to a private temporary file because `vaultrs` reads CA files by path. Kept
    /// alive (and so on disk) as long as the provider.
    ca_file: Option<tempfile::NamedTempFile>,
    calls: CallCounter,
    /// The client carrying the current token; replaced on a new login.
    client: RwLock<Arc<VaultClient>>,
    token: Mutex<TokenState>,
    /// Serializes renewals and logins.
    renewing: tokio::sync::Mutex<()>,
}

/// What is known about the current token's lifetime.
#[derive(Debug, Clone, Copy)]
struct TokenState {
    /// When the TTL below was learnt.
    since: Instant,
    /// Zero: the token does not expire (e.g. a root token).
    ttl: Duration,
    renewable: bool,
}

impl fmt::Debug for VaultProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultProvider")
            .field("server", &self.server)
            .field("mount", &self.mount)
            .field("kv_version", &self.kv_version)
            .field("namespace", &self.namespace)
            .field("auth", &self.auth.method())
            .finish_non_exhaustive()
    }
}

impl VaultProvider {
    #[instrument(
        name = "vault_connect",
        skip_all,
        fields(server = %config.server, mount = %config.mount, auth = config.auth.method()),
        err
    )]
    pub(crate) async fn connect(config: VaultConfig, calls: CallCounter) -> Result<Self, ProviderError> {
        let url = url::Url::parse(&config.server).map_err(|e| {
            ProviderError::config(format!("vault server `{}` is not a URL: {e}", config.server))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ProviderError::config(format!(
                "vault server `{}` must start with http:// or https://",
                config.server
            )));
        }
        if config.mount.trim_matches('/').is_empty() {
            return Err(ProviderError::config("the vault KV mount is empty"));
        }
        let ca_file = match &config.ca_pem {
            Some(pem) => Some(write_ca_file(pem)?),
            None => None,
        };
        let mut provider = VaultProvider {
            server: config.server,
            mount: config.mount.trim_matches('/').to_owned(),
            kv_version: config.kv_version,
            namespace: config.namespace,
            auth: config.auth,
            ca_file,
            calls,
            client: RwLock::new(Arc::new(placeholder_client()?)),
            token: Mutex::new(TokenState {
                since: Instant::now(),
                ttl: Duration::ZERO,
                renewable: false,
            }),
            renewing: tokio::sync::Mutex::new(()),
        };
        let (client, state) = provider.login().await?;
        provider.client = RwLock::new(Arc::new(client));
        provider.token = Mutex::new(state);
        Ok(provider)
    }

    fn build_client(&self, token: &str) -> Result<VaultClient, ProviderError> {
        let ca_certs = match &self.ca_file {
            Some(file) => vec![
                file.path()
                    .to_str()
                    .ok_or_else(|| ProviderError::config("the temporary CA file path is not UTF-8"))?
                    .to_owned(),
            ],
            None => Vec::new(),
        };
        let settings = VaultClientSettingsBuilder::default()
            .address(&self.server)
            .token(token)
            .namespace(self.namespace.clone())
            .ca_certs(ca_certs)
            .identity(None)
            .verify(true)
            .timeout(Some(REQUEST_TIMEOUT))
            .build()
            .map_err(|e| ProviderError::config(format!("vault client settings: {e}")))?;
        VaultClient::new(settings).map_err(|e| match e {
            ClientError::ParseCertificateError { .. } => {
                ProviderError::config("the vault CA bundle is not a valid PEM certificate bundle")
            }
            other => ProviderError::config(format!("cannot build the vault client: {other}")),
        })
    }

    /// Logs in with the configured method (a static token is looked up instead) and returns a client
    /// carrying the token.
    async fn login(&self) -> Result<(VaultClient, TokenState), ProviderError> {
        let since = Instant::now();
        match &self.auth {
            VaultAuth::Token(token) => {
                let client = self.build_client(token)?;
                (self.calls)("vault", "lookup");
                let info = vaultrs::token::lookup_self(&client)
                    .await
                    .map_err(|e| login_error(&self.server, "token lookup", e))?;
                let state = TokenState {
                    since,
                    ttl: Duration::from_secs(info.ttl),
                    renewable: info.renewable.unwrap_or(false),
                };
                debug!(
                    ttl_s = info.ttl,
                    renewable = state.renewable,
                    "vault token looked up"
                );
                Ok((client, state))
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let mut client = self.build_client("")?;
                (self.calls)("vault", "login");
                let auth = vaultrs::auth::approle::login(&client, mount, role_id, secret_id)
                    .await
                    .map_err(|e| login_error(&self.server, "approle login", e))?;
                let state = self.logged_in(&mut client, since, auth);
                Ok((client, state))
            }
            VaultAuth::Kubernetes { mount, role, jwt } => {
                let mut client = self.build_client("")?;
                (self.calls)("vault", "login");
                let auth = vaultrs::auth::kubernetes::login(&client, mount, role, jwt)
                    .await
                    .map_err(|e| login_error(&self.server, "kubernetes login", e))?;
                let state = self.logged_in(&mut client, since, auth);
                Ok((client, state))
            }
        }
    }

    fn logged_in(
        &self,
        client: &mut VaultClient,
        since: Instant,
        auth: vaultrs::api::AuthInfo,
    ) -> TokenState {
        let token = Zeroizing::new(auth.client_token);
        client.set_token(&token);
        debug!(
            ttl_s = auth.lease_duration,
            renewable = auth.renewable,
            method = self.auth.method(),
            "logged in to vault"
        );
        TokenState {
            since,
            ttl: Duration::from_secs(auth.lease_duration),
            renewable: auth.renewable,
        }
    }

    fn current_client(&self) -> Arc<VaultClient> {
        self.client.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[instrument(name = "vault_fetch", skip_all, fields(server = %self.server, mount = %self.mount, refs = refs.len()))]
    pub(crate) async fn fetch(
        &self,
        refs: &[RemoteRef],
    ) -> Vec<(RemoteRef, Result<RemoteSecret, ProviderError>)> {
        let client = self.current_client();
        futures::stream::iter(refs)
            .map(|r| {
                let client = &client;
                async move { (r.clone(), self.read(client, r).await) }
            })
            .buffered(CONCURRENCY)
            .collect()
            .await
    }

    async fn read(&self, client: &VaultClient, r: &RemoteRef) -> Result<RemoteSecret, ProviderError> {
        let key = r.key.trim_start_matches('/');
        if key.is_empty() {
            return Err(ProviderError::config("the vault key is empty"));
        }
        match self.kv_version {
            KvVersion::V2 => {
                let version = match r.version.as_deref() {
                    None => None,
                    Some(v) => Some(v.parse::<u64>().map_err(|_| {
                        ProviderError::config(format!(
                            "version `{v}` of `{key}` is not a KV v2 version number"
                        ))
                    })?),
                };
                let request = ReadSecretRequest::builder()
                    .mount(&self.mount)
                    .path(key)
                    .version(version)
                    .build()
                    .map_err(|e| ProviderError::other(format!("cannot build the vault request: {e}")))?;
                (self.calls)("vault", "read");
                let response = vaultrs::api::exec_with_result(client, request)
                    .await
                    .map_err(|e| read_error(&self.server, key, e))?;
                if response.data.is_null() || response.metadata.destroyed {
                    return Err(ProviderError::not_found(key));
                }
                Ok(RemoteSecret {
                    bytes: to_json(&response.data, key)?,
                    version: Some(response.metadata.version.to_string()),
                })
            }
            KvVersion::V1 => {
                if let Some(v) = &r.version {
                    return Err(ProviderError::config(format!(
                        "version `{v}` of `{key}` asked for, but KV v1 has no versions"
                    )));
                }
                (self.calls)("vault", "read");
                let response = vaultrs::kv1::get_raw(client, &self.mount, key)
                    .await
                    .map_err(|e| read_error(&self.server, key, e))?;
                if response.data.is_null() {
                    return Err(ProviderError::not_found(key));
                }
                Ok(RemoteSecret {
                    bytes: to_json(&response.data, key)?,
                    version: None,
                })
            }
        }
    }

    /// The keys under `path`, walking folders (KV v2 `metadata/`, KV v1 LIST), up to [`FIND_LIMIT`] keys.
    #[instrument(name = "vault_list", skip_all, fields(server = %self.server, mount = %self.mount, path))]
    pub(crate) async fn list(&self, path: &str) -> Result<Vec<String>, ProviderError> {
        let client = self.current_client();
        let mut out = Vec::new();
        let mut folders = vec![path.trim_matches('/').to_owned()];
        while let Some(folder) = folders.pop() {
            (self.calls)("vault", "list");
            let listed = match self.kv_version {
                KvVersion::V2 => vaultrs::kv2::list(&*client, &self.mount, &folder).await,
                KvVersion::V1 => vaultrs::kv1::list(&*client, &self.mount, &folder)
                    .await
                    .map(|r| r.data.keys),
            };
            let entries = match listed {
                Ok(entries) => entries,
                Err(e) => match read_error(&self.server, &folder, e) {
                    ProviderError::NotFound { .. } => Vec::new(),
                    other => return Err(other),
                },
            };
            for entry in entries {
                let full = if folder.is_empty() {
                    entry.clone()
                } else {
                    format!("{folder}/{entry}")
                };
                if let Some(sub) = full.strip_suffix('/') {
                    folders.push(sub.to_owned());
                } else {
                    out.push(full);
                }
                if out.len() >= crate::FIND_LIMIT {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    #[instrument(name = "vault_keep_alive", skip_all, fields(server = %self.server, auth = self.auth.method()), err)]
    pub(crate) async fn keep_alive(&self) -> Result<(), ProviderError> {
        let _one_at_a_time = self.renewing.lock().await;
        let state = *self.token.lock().unwrap_or_else(|e| e.into_inner());
        if state.ttl.is_zero() {
            return Ok(());
        }
        let age = state.since.elapsed();
        if age < state.ttl * 2 / 3 {
            return Ok(());
        }
        let mut renew_error = None;
        if state.renewable && age < state.ttl {
            let client = self.current_client();
            (self.calls)("vault", "renew");
            match vaultrs::token::renew_self(client.as_ref(), None).await {
                Ok(auth) => {
                    let ttl = Duration::from_secs(auth.lease_duration);
                    debug!(ttl_s = auth.lease_duration, "vault token renewed");
                    *self.token.lock().unwrap_or_else(|e| e.into_inner()) = TokenState {
                        since: Instant::now(),
                        ttl,
                        renewable: auth.renewable,
                    };
                    // A token at its max TTL renews to what is left of it; log in again before it ends.
                    if ttl >= Duration::from_secs(2) || matches!(self.auth, VaultAuth::Token(_)) {
                        return Ok(());
                    }
                }
                Err(e) => {
                    let e = login_error(&self.server, "token renewal", e);
                    warn!(error = %e, "vault token renewal failed");
                    renew_error = Some(e);
                }
            }
        }
        if let VaultAuth::Token(_) = self.auth {
            // A static token cannot log in again.
            return match renew_error {
                Some(e) if e.is_retryable() => Err(e),
                Some(_) => Err(ProviderError::auth(format!(
                    "the vault token for {} could not be renewed (revoked or expired); give the store a new token",
                    self.server
                ))),
                None if age < state.ttl => {
                    let left_s = (state.ttl - age).as_secs();
                    warn!(
                        left_s,
                        "the vault token is not renewable and expires soon; give the store a new token"
                    );
                    Ok(())
                }
                None => Err(ProviderError::auth(format!(
                    "the vault token for {} expired; give the store a new token",
                    self.server
                ))),
            };
        }
        let (client, state) = self.login().await?;
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(client);
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = state;
        Ok(())
    }
}

fn placeholder_client() -> Result<VaultClient, ProviderError> {
    let settings = VaultClientSettingsBuilder::default()
        .address("http://127.0.0.1:1")
        .token("")
        .ca_certs(Vec::new())
        .identity(None)
        .verify(true)
        .build()
        .map_err(|e| ProviderError::other(format!("vault client settings: {e}")))?;
    VaultClient::new(settings)
        .map_err(|e| ProviderError::other(format!("cannot build the vault client: {e}")))
}

fn write_ca_file(pem: &[u8]) -> Result<tempfile::NamedTempFile, ProviderError> {
    // NamedTempFile is created with mode 0600.
    let mut file = tempfile::Builder::new()
        .prefix("sealant-vault-ca-")
        .suffix(".pem")
        .tempfile()
        .map_err(|e| {
            ProviderError::other(format!(
                "cannot write the vault CA bundle to a temporary file: {e}"
            ))
        })?;
    file.write_all(pem).and_then(|()| file.flush()).map_err(|e| {
        ProviderError::other(format!(
            "cannot write the vault CA bundle to a temporary file: {e}"
        ))
    })?;
    Ok(file)
}

fn to_json(data: &serde_json::Value, key: &str) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
    serde_json::to_vec(data)
        .map(Zeroizing::new)
        .map_err(|_| ProviderError::other(format!("the data of `{key}` cannot be serialized as JSON")))
}

/// The vault server's own error strings (they describe the failure, never a secret), shortened.
fn api_errors(errors: &[String]) -> String {
    let mut text = errors.join("; ");
    if text.is_empty() {
        return "no details".to_owned();
    }
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The cause chain of a transport error (reqwest/hyper: URL, "connection refused", "timed out").
fn transport_detail(source: &(dyn std::error::Error + 'static)) -> String {
    let mut text = source.to_string();
    let mut next = source.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// Classifies errors that are not about a particular status code. `None` means "an HTTP status": the caller
/// decides.
fn transport_error(server: &str, what: &str, e: &ClientError) -> Option<ProviderError> {
    use rustify::errors::ClientError as Rest;
    match e {
        ClientError::RestClientError { source } => Some(match source {
            Rest::RequestError { source, .. } => ProviderError::unavailable(format!(
                "{what}: cannot reach vault at {server}: {}",
                transport_detail(source.as_ref())
            )),
            Rest::ResponseError { source } => ProviderError::unavailable(format!(
                "{what}: no complete response from vault at {server}: {}",
                transport_detail(source.as_ref())
            )),
            Rest::ServerResponseError { code, .. } => {
                status_error(server, what, *code, "unparsable error body")
            }
            // The parse errors may quote the response body, which can hold secret data: not shown.
            Rest::ResponseParseError { .. } | Rest::ResponseConversionError { .. } => {
                ProviderError::other(format!("{what}: unexpected response from vault at {server}"))
            }
            other => ProviderError::other(format!("{what}: request to vault at {server} failed: {other}")),
        }),
        ClientError::APIError { .. } => None,
        ClientError::JsonParseError { .. }
        | ClientError::ResponseEmptyError
        | ClientError::ResponseDataEmptyError => Some(ProviderError::other(format!(
            "{what}: unexpected response from vault at {server}"
        ))),
        other => Some(ProviderError::other(format!("{what}: {other}"))),
    }
}

fn status_error(server: &str, what: &str, code: u16, details: &str) -> ProviderError {
    match code {
        429 | 412 | 500..=599 => {
            ProviderError::unavailable(format!("{what}: vault at {server} answered {code}: {details}"))
        }
        _ => ProviderError::other(format!("{what}: vault at {server} answered {code}: {details}")),
    }
}

fn login_error(server: &str, what: &str, e: ClientError) -> ProviderError {
    if let Some(mapped) = transport_error(server, what, &e) {
        return mapped;
    }
    let ClientError::APIError { code, errors } = &e else {
        unreachable!("handled above")
    };
    match code {
        400..=499 if *code != 429 && *code != 412 => ProviderError::auth(format!(
            "{what} at {server} rejected ({code}): {}",
            api_errors(errors)
        )),
        _ => status_error(server, what, *code, &api_errors(errors)),
    }
}

fn read_error(server: &str, key: &str, e: ClientError) -> ProviderError {
    let what = format!("reading `{key}`");
    if let Some(mapped) = transport_error(server, &what, &e) {
        return mapped;
    }
    let ClientError::APIError { code, errors } = &e else {
        unreachable!("handled above")
    };
    match code {
        404 => ProviderError::not_found(key),
        403 => ProviderError::denied(format!("{what} from vault at {server}: {}", api_errors(errors))),
        401 => ProviderError::auth(format!("{what} from vault at {server}: {}", api_errors(errors))),
        _ => status_error(server, &what, *code, &api_errors(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, errors: &[&str]) -> ClientError {
        ClientError::APIError {
            code,
            errors: errors.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn read_errors_are_classified() {
        let s = "http://127.0.0.1:8200";
        assert_eq!(read_error(s, "db", api(404, &[])), ProviderError::not_found("db"));
        assert!(matches!(
            read_error(s, "db", api(403, &["permission denied"])),
            ProviderError::Denied { .. }
        ));
        assert!(read_error(s, "db", api(503, &["Vault is sealed"])).is_retryable());
        assert!(read_error(s, "db", api(500, &[])).is_retryable());
        assert!(read_error(s, "db", api(429, &[])).is_retryable());
        assert!(matches!(
            read_error(s, "db", api(400, &["bad"])),
            ProviderError::Other { .. }
        ));
        let msg = read_error(s, "db", api(403, &["permission denied"])).to_string();
        assert!(msg.contains("`db`") && msg.contains("permission denied"), "{msg}");
    }

    #[test]
    fn login_errors_are_auth_unless_the_server_fails() {
        let s = "http://127.0.0.1:8200";
        let e = login_error(s, "kubernetes login", api(403, &["permission denied"]));
        assert!(matches!(e, ProviderError::Auth { .. }), "{e:?}");
        let e = login_error(s, "kubernetes login", api(400, &["invalid role name \"x\""]));
        assert!(matches!(e, ProviderError::Auth { .. }), "{e:?}");
        assert!(login_error(s, "approle login", api(503, &[])).is_retryable());
    }

    #[test]
    fn long_server_errors_are_shortened() {
        let long = "é".repeat(400);
        let text = api_errors(&[long]);
        assert!(text.len() <= 304 && text.ends_with('…'));
        assert_eq!(api_errors(&[]), "no details");
    }

    #[tokio::test]
    async fn bad_configuration_is_rejected_before_any_request() {
        let calls: CallCounter = Arc::new(|_, op| panic!("no request expected, got {op}"));
        let config = |server: &str, ca: Option<&[u8]>| VaultConfig {
            server: server.into(),
            mount: "secret".into(),
            kv_version: KvVersion::V2,
            namespace: None,
            ca_pem: ca.map(<[u8]>::to_vec),
            auth: VaultAuth::Kubernetes {
                mount: "kubernetes".into(),
                role: "r".into(),
                jwt: Zeroizing::new("jwt".into()),
            },
        };
        for (server, ca) in [
            ("127.0.0.1:8200", None),
            ("ftp://127.0.0.1", None),
            (
                "https://127.0.0.1:1",
                Some(&b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"[..]),
            ),
        ] {
            let err = VaultProvider::connect(config(server, ca), calls.clone())
                .await
                .unwrap_err();
            assert!(
                matches!(err, ProviderError::InvalidConfig { .. }),
                "{server}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn kubernetes_login_posts_role_and_jwt_to_the_mount() {
        // A stand-in for vault that answers the login with a token.
        let (server, requests, _task) = crate::fake_http::serve(|_| {
            let body = r#"{"request_id":"r","lease_id":"","lease_duration":0,"renewable":false,"data":null,
                "warnings":null,"wrap_info":null,"auth":{"client_token":"s.issued","accessor":"a","policies":["p"],
                "token_policies":["p"],"metadata":null,"lease_duration":3600,"renewable":true,"entity_id":"e",
                "token_type":"service","orphan":true}}"#;
            (200, "application/json", body.to_owned())
        })
        .await;
        let config = VaultConfig {
            server,
            mount: "secret".into(),
            kv_version: KvVersion::V2,
            namespace: Some("team-a".into()),
            ca_pem: None,
            auth: VaultAuth::Kubernetes {
                mount: "k8s-prod".into(),
                role: "shop".into(),
                jwt: Zeroizing::new("eyJ.sa-token".into()),
            },
        };
        let logins = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = logins.clone();
        let calls: CallCounter = Arc::new(move |p, op| {
            assert_eq!((p, op), ("vault", "login"));
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let provider = VaultProvider::connect(config, calls).await.unwrap();
        let requests = requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 1);
        assert!(
            requests[0].head.starts_with("POST /v1/auth/k8s-prod/login "),
            "{}",
            requests[0].head
        );
        assert_eq!(requests[0].header("x-vault-namespace"), Some("team-a"));
        let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
        assert_eq!(body, serde_json::json!({"role": "shop", "jwt": "eyJ.sa-token"}));
        assert_eq!(logins.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(provider.current_client().settings.token, "s.issued");
        let state = *provider.token.lock().unwrap();
        assert_eq!(state.ttl, Duration::from_secs(3600));
        assert!(state.renewable);
        assert!(format!("{provider:?}").contains("kubernetes"));
    }
}
