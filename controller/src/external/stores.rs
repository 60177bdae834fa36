//! From a store reference to a connected provider: find the SecretStore/ClusterSecretStore, check the
//! ExternalSecret may use it, read its credentials (only from where the store may read them), and keep one
//! connected [`Provider`] (one login) and one [`Coalescer`] per store, replaced only when the store or its
//! credentials change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use ring::digest;
use sealant_crds::{
    ClusterSecretStore, ExternalSecret, SecretKeySelector, SecretStore, SecretStoreProvider,
    ServiceAccountSelector, StoreKind,
};
use sealant_providers::{
    AwsAuth, AwsConfig, CallCounter, KvVersion, Provider, ProviderConfig, ProviderError, RemoteRef,
    RemoteSecret, VaultAuth, VaultConfig,
};
use zeroize::Zeroizing;

use super::admission::admitted;
use super::coalesce::{Coalescer, FetchFn};

/// Why a store cannot be used; the `reason` goes into the ExternalSecret's Ready condition.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name} not found; create it, or fix spec.secretStoreRef ({hint})")]
    NotFound {
        kind: &'static str,
        name: String,
        hint: &'static str,
    },
    #[error("ClusterSecretStore {name} does not admit namespace {namespace} (see its spec.conditions)")]
    NotAllowed { name: String, namespace: String },
    #[error("{0}")]
    Invalid(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Provider(#[from] ProviderError),
}

impl StoreError {
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "StoreNotFound",
            StoreError::NotAllowed { .. } => "StoreNotAllowed",
            StoreError::Invalid(_) => "InvalidStore",
            StoreError::Kube(_) => "KubernetesError",
            StoreError::Provider(_) => "ProviderError",
        }
    }

    /// Worth retrying soon without anything changing.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Kube(_) => true,
            StoreError::Provider(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// A store as an ExternalSecret sees it.
#[derive(Debug, Clone)]
pub struct StoreRef {
    /// `SecretStore/ns/name` or `ClusterSecretStore/name`.
    pub key: String,
    pub provider: SecretStoreProvider,
    /// The namespace credentials are read from: the store's own for a SecretStore, `None` for a
    /// ClusterSecretStore (whose references must name their namespace).
    pub namespace: Option<String>,
}

/// Finds the store an ExternalSecret names and checks that it may use it.
pub async fn find(client: &Client, es: &ExternalSecret) -> Result<StoreRef, StoreError> {
    let ns = es.namespace().unwrap_or_default();
    let r = &es.spec.secret_store_ref;
    match r.kind.unwrap_or_default() {
        StoreKind::SecretStore => {
            let api: Api<SecretStore> = Api::namespaced(client.clone(), &ns);
            let store = api.get_opt(&r.name).await?.ok_or_else(|| StoreError::NotFound {
                kind: "SecretStore",
                name: format!("{ns}/{}", r.name),
                hint: "a SecretStore serves only ExternalSecrets in its own namespace; share a store across \
                       namespaces with a ClusterSecretStore",
            })?;
            Ok(StoreRef {
                key: format!("SecretStore/{ns}/{}", r.name),
                provider: store.spec.provider,
                namespace: Some(ns),
            })
        }
        StoreKind::ClusterSecretStore => {
            let api: Api<ClusterSecretStore> = Api::all(client.clone());
            let store = api.get_opt(&r.name).await?.ok_or_else(|| StoreError::NotFound {
                kind: "ClusterSecretStore",
                name: r.name.clone(),
                hint: "kind: SecretStore for a store in this namespace",
            })?;
            if !store.spec.conditions.is_empty() {
                let namespace = Api::<Namespace>::all(client.clone()).get(&ns).await?;
                let ok = admitted(&store.spec.conditions, &ns, namespace.labels())
                    .map_err(|e| StoreError::Invalid(format!("ClusterSecretStore {}: {e}", r.name)))?;
                if !ok {
                    return Err(StoreError::NotAllowed {
                        name: r.name.clone(),
                        namespace: ns,
                    });
                }
            }
            Ok(StoreRef {
                key: format!("ClusterSecretStore/{}", r.name),
                provider: store.spec.provider,
                namespace: None,
            })
        }
    }
}

/// The credentials a store needs, read from Kubernetes, before anything is sent to the provider.
#[derive(Debug)]
pub struct Resolved {
    /// A hash over the store spec and every credential read: a change means a new connection.
    pub fingerprint: String,
    config: ProviderConfig,
    /// A ServiceAccount whose token must be requested at connect time (Vault Kubernetes auth, AWS web identity).
    token_for: Option<(String, ServiceAccountSelector)>,
}

fn ns_for<'a>(store_ns: Option<&'a str>, wanted: Option<&'a str>, what: &str) -> Result<&'a str, StoreError> {
    match (store_ns, wanted) {
        (Some(own), None) => Ok(own),
        (Some(own), Some(w)) if w == own => Ok(own),
        (Some(own), Some(w)) => Err(StoreError::Invalid(format!(
            "{what} names namespace {w}, but a SecretStore reads credentials only from its own namespace {own}; \
             put the credentials in {own}, or use a ClusterSecretStore"
        ))),
        (None, Some(w)) => Ok(w),
        (None, None) => Err(StoreError::Invalid(format!(
            "{what}: a ClusterSecretStore reference must set namespace"
        ))),
    }
}

async fn read_key(
    client: &Client,
    store_ns: Option<&str>,
    sel: &SecretKeySelector,
    what: &str,
    hash: &mut digest::Context,
) -> Result<Zeroizing<String>, StoreError> {
    let ns = ns_for(store_ns, sel.namespace.as_deref(), what)?;
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&sel.name)
        .await?
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "{what}: Secret {ns}/{} not found; create it with key {}, or fix {what}",
                sel.name, sel.key
            ))
        })?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&sel.key))
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "{what}: Secret {ns}/{} has no key {}; add the key, or fix {what}",
                sel.name, sel.key
            ))
        })?;
    hash.update(&bytes.0);
    let text = String::from_utf8(bytes.0.clone()).map_err(|_| {
        StoreError::Invalid(format!(
            "{what}: Secret {ns}/{} key {} is not text",
            sel.name, sel.key
        ))
    })?;
    Ok(Zeroizing::new(text.trim().to_owned()))
}

/// Reads the store's credentials (never from a namespace the store may not read).
pub async fn resolve(client: &Client, store: &StoreRef) -> Result<Resolved, StoreError> {
    let mut hash = digest::Context::new(&digest::SHA256);
    hash.update(store.key.as_bytes());
    hash.update(&serde_json::to_vec(&store.provider).unwrap_or_default());
    let ns = store.namespace.as_deref();
    let (config, token_for) = match (&store.provider.vault, &store.provider.aws) {
        (Some(v), None) => {
            let ca_pem = match (&v.ca_bundle, &v.ca_provider) {
                (Some(b64), _) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .map_err(|_| StoreError::Invalid("vault.caBundle is not base64".into()))?,
                ),
                (None, Some(p)) => {
                    let pns = ns_for(ns, p.namespace.as_deref(), "vault.caProvider")?;
                    let pem = if p.type_ == "ConfigMap" {
                        Api::<ConfigMap>::namespaced(client.clone(), pns)
                            .get(&p.name)
                            .await?
                            .data
                            .and_then(|mut d| d.remove(&p.key))
                            .map(String::into_bytes)
                    } else {
                        Api::<Secret>::namespaced(client.clone(), pns)
                            .get(&p.name)
                            .await?
                            .data
                            .and_then(|mut d| d.remove(&p.key))
                            .map(|b| b.0)
                    };
                    let pem = pem.ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "vault.caProvider: {pns}/{} has no key {}",
                            p.name, p.key
                        ))
                    })?;
                    hash.update(&pem);
                    Some(pem)
                }
                (None, None) => None,
            };
            let kv_version = match v.version.as_deref().unwrap_or("v2") {
                "v2" => KvVersion::V2,
                "v1" => KvVersion::V1,
                other => {
                    return Err(StoreError::Invalid(format!(
                        "vault.version `{other}`: use v1 or v2"
                    )));
                }
            };
            let a = &v.auth;
            let mut token_for = None;
            let auth = if let Some(sel) = &a.token_secret_ref {
                VaultAuth::Token(read_key(client, ns, sel, "vault.auth.tokenSecretRef", &mut hash).await?)
            } else if let Some(ar) = &a.app_role {
                let role_id = match (&ar.role_id, &ar.role_ref) {
                    (Some(id), _) => id.clone(),
                    (None, Some(sel)) => read_key(client, ns, sel, "vault.auth.appRole.roleRef", &mut hash)
                        .await?
                        .to_string(),
                    (None, None) => {
                        return Err(StoreError::Invalid(
                            "vault.auth.appRole needs roleId or roleRef".into(),
                        ));
                    }
                };
                VaultAuth::AppRole {
                    mount: ar.path.clone().unwrap_or_else(|| "approle".into()),
                    role_id,
                    secret_id: read_key(
                        client,
                        ns,
                        &ar.secret_ref,
                        "vault.auth.appRole.secretRef",
                        &mut hash,
                    )
                    .await?,
                }
            } else if let Some(k) = &a.kubernetes {
                let jwt = match (&k.secret_ref, &k.service_account_ref) {
                    (Some(sel), _) => {
                        read_key(client, ns, sel, "vault.auth.kubernetes.secretRef", &mut hash).await?
                    }
                    (None, Some(sa)) => {
                        let sa_ns = ns_for(
                            ns,
                            sa.namespace.as_deref(),
                            "vault.auth.kubernetes.serviceAccountRef",
                        )?;
                        token_for = Some((sa_ns.to_owned(), sa.clone()));
                        Zeroizing::new(String::new())
                    }
                    (None, None) => {
                        return Err(StoreError::Invalid(
                            "vault.auth.kubernetes needs serviceAccountRef or secretRef".into(),
                        ));
                    }
                };
                VaultAuth::Kubernetes {
                    mount: k.mount_path.clone().unwrap_or_else(|| "kubernetes".into()),
                    role: k.role.clone(),
                    jwt,
                }
            } else {
                return Err(StoreError::Invalid(
                    "vault.auth needs one of tokenSecretRef, appRole, kubernetes".into(),
                ));
            };
            let config = VaultConfig {
                server: v.server.clone(),
                mount: v.path.clone().unwrap_or_else(|| "secret".into()),
                kv_version,
                namespace: v.namespace.clone(),
                ca_pem,
                auth,
            };
            (ProviderConfig::Vault(config), token_for)
        }
        (None, Some(aws)) => {
            if aws.service.as_deref().is_some_and(|s| s != "SecretsManager") {
                return Err(StoreError::Invalid(
                    "aws.service: only SecretsManager is supported".into(),
                ));
            }
            let mut token_for = None;
            let auth = match aws.auth.as_ref() {
                Some(a) if a.secret_ref.is_some() => {
                    let s = a.secret_ref.as_ref().expect("checked");
                    let access = read_key(
                        client,
                        ns,
                        &s.access_key_id_secret_ref,
                        "aws.auth.secretRef",
                        &mut hash,
                    )
                    .await?;
                    let secret = read_key(
                        client,
                        ns,
                        &s.secret_access_key_secret_ref,
                        "aws.auth.secretRef",
                        &mut hash,
                    )
                    .await?;
                    let session = match &s.session_token_secret_ref {
                        Some(sel) => Some(read_key(client, ns, sel, "aws.auth.secretRef", &mut hash).await?),
                        None => None,
                    };
                    AwsAuth::Static {
                        access_key_id: access.to_string(),
                        secret_access_key: secret,
                        session_token: session,
                    }
                }
                Some(a) if a.jwt.is_some() => {
                    let sa = &a.jwt.as_ref().expect("checked").service_account_ref;
                    let role_arn = aws.role.clone().ok_or_else(|| {
                        StoreError::Invalid("aws.auth.jwt needs aws.role (the role to assume)".into())
                    })?;
                    let sa_ns = ns_for(ns, sa.namespace.as_deref(), "aws.auth.jwt.serviceAccountRef")?;
                    token_for = Some((sa_ns.to_owned(), sa.clone()));
                    AwsAuth::WebIdentity {
                        role_arn,
                        token: Zeroizing::new(String::new()),
                        session_name: "sealant".into(),
                    }
                }
                _ => AwsAuth::DefaultChain,
            };
            let config = AwsConfig {
                region: aws.region.clone(),
                endpoint: aws.endpoint.clone(),
                auth,
            };
            (ProviderConfig::Aws(config), token_for)
        }
        _ => {
            return Err(StoreError::Invalid(
                "spec.provider must name exactly one of vault, aws".into(),
            ));
        }
    };
    let fingerprint = hash.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Resolved {
        fingerprint,
        config,
        token_for,
    })
}

async fn request_token(
    client: &Client,
    ns: &str,
    sa: &ServiceAccountSelector,
) -> Result<Zeroizing<String>, StoreError> {
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: sa.audiences.clone(),
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(&sa.name, &PostParams::default(), &req)
        .await?;
    let token = answer.status.map(|s| s.token).unwrap_or_default();
    Ok(Zeroizing::new(token))
}

/// A connected store.
pub struct StoreClient {
    pub fingerprint: String,
    pub provider: Arc<Provider>,
    pub coalescer: Coalescer<RemoteRef, RemoteSecret, ProviderError>,
}

impl std::fmt::Debug for StoreClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreClient")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The connected stores, shared by every ExternalSecret reconcile.
pub struct Registry {
    clients: tokio::sync::Mutex<HashMap<String, Arc<StoreClient>>>,
    calls: CallCounter,
    retention: Duration,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// `retention`: how long a remote reference nobody asks for stays in a store's sweep.
    pub fn new(calls: CallCounter, retention: Duration) -> Self {
        Registry {
            clients: tokio::sync::Mutex::new(HashMap::new()),
            calls,
            retention,
        }
    }

    /// The connected client of a store, connecting (one login) only when there is none or the store or its
    /// credentials changed.
    pub async fn client(
        &self,
        client: &Client,
        store: &StoreRef,
        resolved: Resolved,
    ) -> Result<Arc<StoreClient>, StoreError> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients
            .get(&store.key)
            .filter(|c| c.fingerprint == resolved.fingerprint)
        {
            let c = c.clone();
            drop(clients);
            c.provider.keep_alive().await?;
            return Ok(c);
        }
        let mut config = resolved.config;
        if let Some((ns, sa)) = &resolved.token_for {
            let token = request_token(client, ns, sa).await?;
            match &mut config {
                ProviderConfig::Vault(VaultConfig {
                    auth: VaultAuth::Kubernetes { jwt, .. },
                    ..
                }) => *jwt = token,
                ProviderConfig::Aws(AwsConfig {
                    auth: AwsAuth::WebIdentity { token: t, .. },
                    ..
                }) => *t = token,
                _ => {}
            }
        }
        let provider = Arc::new(Provider::connect(config, self.calls.clone()).await?);
        let p = provider.clone();
        // The provider's fetch future is not provably `Send` (a rustc limitation with its borrowed closures),
        // so a sweep runs on a blocking thread that drives it on this runtime.
        let fetch: FetchFn<RemoteRef, RemoteSecret, ProviderError> = Arc::new(move |refs: Vec<RemoteRef>| {
            let p = p.clone();
            let handle = tokio::runtime::Handle::current();
            Box::pin(async move {
                let keys = refs.clone();
                tokio::task::spawn_blocking(move || handle.block_on(p.fetch(&refs)))
                    .await
                    .unwrap_or_else(|e| {
                        let err = ProviderError::Other {
                            detail: format!("fetch task failed: {e}"),
                        };
                        keys.into_iter().map(|k| (k, Err(err.clone()))).collect()
                    })
            })
        });
        let c = Arc::new(StoreClient {
            fingerprint: resolved.fingerprint,
            provider,
            coalescer: Coalescer::new(fetch, self.retention),
        });
        clients.insert(store.key.clone(), c.clone());
        Ok(c)
    }

    /// Forgets stores that no longer exist.
    pub async fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.clients.lock().await.retain(|k, _| keep(k));
    }
}

/// The labels of a namespace, for ClusterSecretStore conditions (exposed for tests).
pub fn labels_of(ns: &Namespace) -> &BTreeMap<String, String> {
    ns.labels()
}
