//! AWS Secrets Manager, through the AWS SDK.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_secretsmanager::config::{Credentials, Region};
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use futures::StreamExt as _;
use tracing::{debug, instrument, warn};
use zeroize::Zeroizing;

use crate::{AwsAuth, AwsConfig, CallCounter, ProviderError, RemoteRef, RemoteSecret};

/// `BatchGetSecretValue` takes at most 20 secret ids.
pub(crate) const BATCH_SIZE: usize = 20;
/// How many batch calls run at once.
const BATCH_CONCURRENCY: usize = 4;
/// How many `GetSecretValue` calls run at once.
const GET_CONCURRENCY: usize = 16;

type Fetched = Result<RemoteSecret, ProviderError>;

pub(crate) struct AwsProvider {
    client: aws_sdk_secretsmanager::Client,
    region: String,
    endpoint: Option<String>,
    calls: CallCounter,
    /// Set once `BatchGetSecretValue` turned out not to be usable (not allowed by the IAM policy, or not
    /// implemented by an emulator): from then on every id is read with `GetSecretValue`.
    batch_unusable: AtomicBool,
}

impl fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsProvider")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("batch_unusable", &self.batch_unusable.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AwsProvider {
    #[instrument(name = "aws_connect", skip_all, fields(region = %config.region, endpoint = ?config.endpoint), err)]
    pub(crate) async fn connect(config: AwsConfig, calls: CallCounter) -> Result<Self, ProviderError> {
        if config.region.trim().is_empty() {
            return Err(ProviderError::config("the AWS region is empty"));
        }
        if let Some(endpoint) = &config.endpoint {
            let ok = url::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return Err(ProviderError::config(format!(
                    "the AWS endpoint `{endpoint}` is not an http(s) URL"
                )));
            }
        }
        let loader = || {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(config.region.clone()))
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_attempt_timeout(Duration::from_secs(20))
                        .operation_timeout(Duration::from_secs(60))
                        .build(),
                );
            if let Some(endpoint) = &config.endpoint {
                loader = loader.endpoint_url(endpoint);
            }
            loader
        };
        let sdk_config = match config.auth {
            AwsAuth::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let credentials = Credentials::new(
                    access_key_id,
                    secret_access_key.to_string(),
                    session_token.map(|t| t.to_string()),
                    None,
                    "sealant-static",
                );
                loader().credentials_provider(credentials).load().await
            }
            AwsAuth::WebIdentity {
                role_arn,
                token,
                session_name,
            } => {
                // AssumeRoleWithWebIdentity is not signed: the STS client needs no credentials, but it must
                // use the same region and endpoint override as Secrets Manager.
                let sts = aws_sdk_sts::Client::new(&loader().no_credentials().load().await);
                let provider = WebIdentity {
                    sts,
                    role_arn,
                    session_name,
                    token,
                };
                // Assume the role once now, so that a bad token or role is reported by `connect`.
                provider.assume().await.map_err(|e| {
                    let e = sdk_error(&e, "AssumeRoleWithWebIdentity", None);
                    match e {
                        ProviderError::Unavailable { .. } => e,
                        other => ProviderError::auth(other.to_string()),
                    }
                })?;
                loader().credentials_provider(provider).load().await
            }
            AwsAuth::DefaultChain => loader().load().await,
        };
        Ok(AwsProvider {
            client: aws_sdk_secretsmanager::Client::new(&sdk_config),
            region: config.region,
            endpoint: config.endpoint,
            calls,
            batch_unusable: AtomicBool::new(false),
        })
    }

    #[instrument(name = "aws_fetch", skip_all, fields(region = %self.region, refs = refs.len()))]
    pub(crate) async fn fetch(&self, refs: &[RemoteRef]) -> Vec<(RemoteRef, Fetched)> {
        let latest: Vec<&str> = refs
            .iter()
            .filter(|r| r.version.is_none())
            .map(|r| r.key.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let versioned: BTreeSet<&RemoteRef> = refs.iter().filter(|r| r.version.is_some()).collect();

        let batches = futures::stream::iter(latest.chunks(BATCH_SIZE))
            .map(|chunk| self.batch(chunk))
            .buffer_unordered(BATCH_CONCURRENCY)
            .collect::<Vec<_>>();
        let singles = futures::stream::iter(versioned)
            .map(|r| async move { (r.clone(), self.get(&r.key, r.version.as_deref()).await) })
            .buffer_unordered(GET_CONCURRENCY)
            .collect::<Vec<_>>();
        let (batches, singles) = futures::join!(batches, singles);

        let mut found: HashMap<RemoteRef, Fetched> = singles.into_iter().collect();
        for (key, result) in batches.into_iter().flatten() {
            found.insert(RemoteRef { key, version: None }, result);
        }
        refs.iter()
            .map(|r| {
                let result = found.get(r).cloned().unwrap_or_else(|| {
                    Err(ProviderError::other(format!(
                        "`{}` was not fetched (internal error)",
                        r.key
                    )))
                });
                (r.clone(), result)
            })
            .collect()
    }

    /// The names of the secrets whose name starts with `prefix` and that carry every tag in `tags`.
    #[instrument(name = "aws_list", skip_all, fields(region = %self.region))]
    pub(crate) async fn list(
        &self,
        prefix: Option<&str>,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<String>, ProviderError> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let mut filters = Vec::new();
        if let Some(p) = prefix.filter(|p| !p.is_empty()) {
            filters.push(
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .values(p)
                    .build(),
            );
        }
        for k in tags.keys() {
            filters.push(
                Filter::builder()
                    .key(FilterNameStringType::TagKey)
                    .values(k)
                    .build(),
            );
        }
        let mut out = Vec::new();
        let mut next_token = None;
        loop {
            (self.calls)("aws", "ListSecrets");
            let output = self
                .client
                .list_secrets()
                .set_filters((!filters.is_empty()).then(|| filters.clone()))
                .set_next_token(next_token.take())
                .max_results(100)
                .send()
                .await
                .map_err(|e| sdk_error(&e, "ListSecrets", None))?;
            for entry in output.secret_list.unwrap_or_default() {
                let Some(name) = entry.name else { continue };
                if prefix.is_some_and(|p| !name.starts_with(p)) {
                    continue;
                }
                let have = entry.tags.unwrap_or_default();
                let tagged = tags.iter().all(|(k, v)| {
                    have.iter().any(|t| {
                        t.key.as_deref() == Some(k.as_str()) && t.value.as_deref() == Some(v.as_str())
                    })
                });
                if tagged {
                    out.push(name);
                }
            }
            next_token = output.next_token;
            if next_token.is_none() || out.len() >= crate::FIND_LIMIT {
                break;
            }
        }
        Ok(out)
    }

    /// Reads up to [`BATCH_SIZE`] secrets (latest versions) with `BatchGetSecretValue`.
    async fn batch(&self, ids: &[&str]) -> Vec<(String, Fetched)> {
        if self.batch_unusable.load(Ordering::Relaxed) {
            return self.get_each(ids).await;
        }
        let mut found: HashMap<&str, Fetched> = HashMap::new();
        let mut next_token = None;
        loop {
            (self.calls)("aws", "BatchGetSecretValue");
            let response = self
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(ids.iter().map(|id| (*id).to_owned()).collect()))
                .set_next_token(next_token.take())
                .send()
                .await;
            let output = match response {
                Ok(output) => output,
                Err(e) if batch_unusable(&e) => {
                    warn!(
                        error = %DisplayErrorContext(&e),
                        "BatchGetSecretValue cannot be used; reading secrets one by one with GetSecretValue"
                    );
                    self.batch_unusable.store(true, Ordering::Relaxed);
                    return self.get_each(ids).await;
                }
                Err(e) => {
                    let error = sdk_error(&e, "BatchGetSecretValue", None);
                    for id in ids {
                        found.entry(id).or_insert_with(|| Err(error.clone()));
                    }
                    break;
                }
            };
            for entry in output.secret_values.unwrap_or_default() {
                // The same secret may have been asked for by name and by ARN.
                let asked: Vec<&str> = ids
                    .iter()
                    .copied()
                    .filter(|id| {
                        entry.name.as_deref() == Some(*id)
                            || entry.arn.as_deref().is_some_and(|arn| arn_matches(arn, id))
                    })
                    .collect();
                let Some(first) = asked.first() else {
                    debug!(name = ?entry.name, "BatchGetSecretValue returned a secret that was not asked for");
                    continue;
                };
                let value = secret(first, entry.secret_string, entry.secret_binary, entry.version_id);
                for id in asked {
                    found.insert(id, value.clone());
                }
            }
            for error in output.errors.unwrap_or_default() {
                let Some(id) = ids.iter().find(|id| error.secret_id.as_deref() == Some(**id)) else {
                    continue;
                };
                let code = error.error_code.as_deref().unwrap_or("");
                let message = error.message.as_deref().unwrap_or("");
                found.insert(
                    id,
                    Err(code_error(
                        code,
                        400,
                        message,
                        &format!("reading `{id}`"),
                        Some(id),
                    )),
                );
            }
            next_token = output.next_token;
            if next_token.is_none() {
                break;
            }
        }
        ids.iter()
            .map(|id| {
                let result = found.remove(id).unwrap_or_else(|| {
                    Err(ProviderError::other(format!(
                        "`{id}` is missing from the BatchGetSecretValue response"
                    )))
                });
                ((*id).to_owned(), result)
            })
            .collect()
    }

    async fn get_each(&self, ids: &[&str]) -> Vec<(String, Fetched)> {
        futures::stream::iter(ids)
            .map(|id| async move { ((*id).to_owned(), self.get(id, None).await) })
            .buffered(GET_CONCURRENCY)
            .collect()
            .await
    }

    /// Reads one secret with `GetSecretValue`, at a version id or staging label if given.
    async fn get(&self, id: &str, version: Option<&str>) -> Fetched {
        let mut request = self.client.get_secret_value().secret_id(id);
        match version.map(version_selector) {
            Some(VersionSelector::Id(v)) => request = request.version_id(v),
            Some(VersionSelector::Stage(v)) => request = request.version_stage(v),
            None => {}
        }
        (self.calls)("aws", "GetSecretValue");
        let output = request
            .send()
            .await
            .map_err(|e| sdk_error(&e, &format!("reading `{id}`"), Some(id)))?;
        secret(id, output.secret_string, output.secret_binary, output.version_id)
    }
}

fn secret(
    id: &str,
    string: Option<String>,
    binary: Option<aws_sdk_secretsmanager::primitives::Blob>,
    version_id: Option<String>,
) -> Fetched {
    let bytes = match (string, binary) {
        (Some(s), _) => Zeroizing::new(s.into_bytes()),
        (None, Some(b)) => Zeroizing::new(b.into_inner()),
        (None, None) => {
            return Err(ProviderError::other(format!(
                "`{id}` has neither a SecretString nor a SecretBinary"
            )));
        }
    };
    Ok(RemoteSecret {
        bytes,
        version: version_id,
    })
}

/// Whether an ARN from a response is the secret asked for as `id` (a full ARN, or a partial ARN without the
/// six random characters AWS appends to the name).
fn arn_matches(arn: &str, id: &str) -> bool {
    arn == id
        || (id.starts_with("arn:")
            && arn.len() == id.len() + 7
            && arn.starts_with(id)
            && arn.as_bytes()[id.len()] == b'-')
}

#[derive(Debug, PartialEq, Eq)]
enum VersionSelector<'a> {
    Id(&'a str),
    Stage(&'a str),
}

/// ESO's convention (`uuid/<VersionId>`) is honoured; otherwise a version that looks like a version id
/// (32 to 64 hex digits and dashes, e.g. a UUID) is one, and anything else is a staging label
/// (`AWSCURRENT`, `AWSPREVIOUS`, `AWSPENDING` or a custom label).
fn version_selector(version: &str) -> VersionSelector<'_> {
    if let Some(id) = version.strip_prefix("uuid/") {
        return VersionSelector::Id(id);
    }
    let looks_like_id = (32..=64).contains(&version.len())
        && version.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && version.bytes().any(|b| b.is_ascii_digit());
    if looks_like_id {
        VersionSelector::Id(version)
    } else {
        VersionSelector::Stage(version)
    }
}

/// `BatchGetSecretValue` itself is refused (the IAM policy may allow only `GetSecretValue`) or unknown.
fn batch_unusable<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    let SdkError::ServiceError(service) = e else {
        return false;
    };
    matches!(
        service.err().code(),
        Some(
            "AccessDeniedException"
                | "UnknownOperationException"
                | "InvalidAction"
                | "NotImplemented"
                | "UnsupportedOperation"
        )
    )
}

/// Maps an SDK error. `key` is the secret the call was about, if only one.
fn sdk_error<E>(
    e: &SdkError<E, aws_sdk_secretsmanager::config::http::HttpResponse>,
    what: &str,
    key: Option<&str>,
) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            code_error(
                err.code().unwrap_or(""),
                service.raw().status().as_u16(),
                err.message().unwrap_or(""),
                what,
                key,
            )
        }
        _ if has_credentials_error(e) => ProviderError::auth(format!(
            "{what}: cannot get AWS credentials: {}",
            DisplayErrorContext(e)
        )),
        SdkError::TimeoutError(_) => ProviderError::unavailable(format!("{what}: timed out")),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ProviderError::unavailable(format!("{what}: {}", DisplayErrorContext(e)))
        }
        SdkError::ConstructionFailure(_) => {
            ProviderError::config(format!("{what}: {}", DisplayErrorContext(e)))
        }
        _ => ProviderError::other(format!("{what}: {}", DisplayErrorContext(e))),
    }
}

fn has_credentials_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = next {
        if cause.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        next = cause.source();
    }
    false
}

/// Maps an AWS error code (from a failed call, or from one id inside a batch).
fn code_error(code: &str, status: u16, message: &str, what: &str, key: Option<&str>) -> ProviderError {
    let detail = if message.is_empty() {
        format!("{what}: {code}")
    } else {
        format!("{what}: {code}: {message}")
    };
    match code {
        "ResourceNotFoundException" => match key {
            Some(key) => ProviderError::not_found(key),
            None => ProviderError::other(detail),
        },
        "AccessDeniedException" | "AccessDenied" => ProviderError::denied(detail),
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidIdentityToken"
        | "IDPRejectedClaim" => ProviderError::auth(detail),
        "ThrottlingException"
        | "Throttling"
        | "RequestLimitExceeded"
        | "InternalServiceError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "IDPCommunicationError" => ProviderError::unavailable(detail),
        _ if status >= 500 => ProviderError::unavailable(detail),
        _ => ProviderError::other(detail),
    }
}

/// Credentials from `AssumeRoleWithWebIdentity`, with the token held in memory. The SDK caches them until
/// shortly before they expire.
struct WebIdentity {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    session_name: String,
    token: Zeroizing<String>,
}

impl fmt::Debug for WebIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebIdentity")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

type StsError = SdkError<
    aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError,
    aws_sdk_sts::config::http::HttpResponse,
>;

impl WebIdentity {
    async fn assume(&self) -> Result<Credentials, StsError> {
        let output = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .web_identity_token(self.token.as_str())
            .send()
            .await?;
        let Some(c) = output.credentials else {
            return Ok(Credentials::new(
                "",
                "",
                None,
                Some(SystemTime::UNIX_EPOCH),
                "sealant-web-identity",
            ));
        };
        let expiry = SystemTime::try_from(c.expiration).ok();
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            expiry,
            "sealant-web-identity",
        ))
    }
}

impl ProvideCredentials for WebIdentity {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.assume().await.map_err(|e| {
                warn!(role_arn = %self.role_arn, error = %DisplayErrorContext(&e), "AssumeRoleWithWebIdentity failed");
                CredentialsError::provider_error(e)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn versions_are_ids_or_stages() {
        use VersionSelector::{Id, Stage};
        assert_eq!(version_selector("AWSCURRENT"), Stage("AWSCURRENT"));
        assert_eq!(version_selector("AWSPREVIOUS"), Stage("AWSPREVIOUS"));
        assert_eq!(version_selector("blue"), Stage("blue"));
        let uuid = "0c1bd1ea-47f6-4b9d-8e7a-3a1b6f0e2d4c";
        assert_eq!(version_selector(uuid), Id(uuid));
        assert_eq!(version_selector("uuid/anything"), Id("anything"));
        assert_eq!(
            version_selector("EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"),
            Stage("EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE")
        );
    }

    #[test]
    fn arns_match_full_and_partial() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf";
        assert!(arn_matches(arn, arn));
        assert!(arn_matches(
            arn,
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db"
        ));
        assert!(!arn_matches(
            arn,
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:d"
        ));
        assert!(!arn_matches(arn, "db"));
    }

    #[test]
    fn codes_are_classified() {
        let e = |code, status| code_error(code, status, "msg", "reading `k`", Some("k"));
        assert_eq!(e("ResourceNotFoundException", 400), ProviderError::not_found("k"));
        assert!(matches!(
            e("AccessDeniedException", 400),
            ProviderError::Denied { .. }
        ));
        assert!(matches!(
            e("UnrecognizedClientException", 400),
            ProviderError::Auth { .. }
        ));
        assert!(matches!(
            e("ExpiredTokenException", 400),
            ProviderError::Auth { .. }
        ));
        assert!(e("ThrottlingException", 400).is_retryable());
        assert!(e("InternalServiceError", 500).is_retryable());
        assert!(e("Whatever", 503).is_retryable());
        assert!(matches!(e("DecryptionFailure", 400), ProviderError::Other { .. }));
        assert!(matches!(
            e("InvalidRequestException", 400),
            ProviderError::Other { .. }
        ));
        assert!(
            e("InvalidRequestException", 400)
                .to_string()
                .contains("InvalidRequestException: msg")
        );
    }

    /// An endpoint that refuses BatchGetSecretValue (as AWS does when the IAM policy allows only
    /// GetSecretValue) and answers GetSecretValue.
    #[tokio::test]
    async fn falls_back_to_get_secret_value_when_the_batch_is_refused() {
        let (endpoint, requests, _task) = crate::fake_http::serve(|request| {
            let json = "application/x-amz-json-1.1";
            match request.header("x-amz-target") {
                Some("secretsmanager.BatchGetSecretValue") => (
                    400,
                    json,
                    r#"{"__type":"AccessDeniedException","message":"not authorized to perform: secretsmanager:BatchGetSecretValue"}"#.to_owned(),
                ),
                Some("secretsmanager.GetSecretValue") => {
                    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
                    let id = body["SecretId"].as_str().unwrap().to_owned();
                    if id == "missing" {
                        let error = r#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#;
                        return (400, json, error.to_owned());
                    }
                    let reply = serde_json::json!({"ARN": format!("arn:aws:secretsmanager:eu-west-1:1:secret:{id}-AbCdEf"),
                        "Name": id, "VersionId": "v1", "SecretString": format!("value-of-{id}"),
                        "VersionStages": ["AWSCURRENT"], "CreatedDate": 1.7e9});
                    (200, json, reply.to_string())
                }
                other => panic!("unexpected operation {other:?}"),
            }
        })
        .await;
        let config = AwsConfig {
            region: "eu-west-1".into(),
            endpoint: Some(endpoint),
            auth: AwsAuth::Static {
                access_key_id: "AKID".into(),
                secret_access_key: Zeroizing::new("secret".into()),
                session_token: None,
            },
        };
        let counts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = counts.clone();
        let calls: CallCounter = Arc::new(move |_, op| seen.lock().unwrap().push(op));
        let provider = AwsProvider::connect(config, calls).await.unwrap();
        let refs = [
            RemoteRef::latest("a"),
            RemoteRef::latest("missing"),
            RemoteRef::latest("b"),
        ];
        for _ in 0..2 {
            let got = provider.fetch(&refs).await;
            assert_eq!(got[0].1.as_ref().unwrap().bytes.as_slice(), b"value-of-a");
            assert_eq!(got[0].1.as_ref().unwrap().version.as_deref(), Some("v1"));
            assert_eq!(got[1].1, Err(ProviderError::not_found("missing")));
            assert_eq!(got[2].1.as_ref().unwrap().bytes.as_slice(), b"value-of-b");
        }
        // The batch is tried once; after the refusal every id is read on its own.
        let ops = counts.lock().unwrap().clone();
        assert_eq!(
            ops.iter().filter(|op| **op == "BatchGetSecretValue").count(),
            1,
            "{ops:?}"
        );
        assert_eq!(
            ops.iter().filter(|op| **op == "GetSecretValue").count(),
            6,
            "{ops:?}"
        );
        assert_eq!(requests.lock().unwrap().len(), 7);
        assert!(format!("{provider:?}").contains("batch_unusable: true"));
    }

    #[tokio::test]
    async fn a_rejected_web_identity_fails_to_connect_with_auth() {
        let (endpoint, requests, _task) = crate::fake_http::serve(|_| {
            let error = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>\
                <Message>Couldn't retrieve verification key from your identity provider</Message></Error>\
                <RequestId>r</RequestId></ErrorResponse>";
            (400, "text/xml", error.to_owned())
        })
        .await;
        let config = AwsConfig {
            region: "eu-west-1".into(),
            endpoint: Some(endpoint),
            auth: AwsAuth::WebIdentity {
                role_arn: "arn:aws:iam::123456789012:role/r".into(),
                token: Zeroizing::new("eyJ.the-token".into()),
                session_name: "s".into(),
            },
        };
        let calls: CallCounter = Arc::new(|_, op| panic!("no Secrets Manager call expected, got {op}"));
        let err = AwsProvider::connect(config, calls).await.unwrap_err();
        assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
        assert!(err.to_string().contains("InvalidIdentityToken"), "{err}");
        assert!(!err.to_string().contains("the-token"), "{err}");
        let requests = requests.lock().unwrap();
        let body = String::from_utf8_lossy(&requests[0].body);
        assert!(body.contains("Action=AssumeRoleWithWebIdentity"), "{body}");
        assert!(body.contains("WebIdentityToken=eyJ.the-token"), "{body}");
    }
}
