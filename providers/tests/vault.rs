//! The Vault provider against a real OpenBao dev server.

mod support;

use std::time::Duration;

use sealant_providers::{
    CallCounter, KvVersion, Provider, ProviderConfig, ProviderError, RemoteRef, VaultAuth, VaultConfig,
    extract, no_counter,
};
use serde_json::json;
use support::{Calls, Server, random_id};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use zeroize::Zeroizing;

/// An OpenBao dev server and a root client to seed it.
struct Bao {
    server: Server,
    root_token: String,
    root: VaultClient,
}

impl Bao {
    fn start() -> Bao {
        let root_token = random_id("root-");
        let server = Server::bao(&root_token);
        let root = client(&server.http_url(), &root_token, None);
        Bao {
            server,
            root_token,
            root,
        }
    }

    fn config(&self, auth: VaultAuth) -> VaultConfig {
        VaultConfig {
            server: self.server.http_url(),
            mount: "secret".into(),
            kv_version: KvVersion::V2,
            namespace: None,
            ca_pem: None,
            auth,
        }
    }

    fn root_auth(&self) -> VaultAuth {
        VaultAuth::Token(Zeroizing::new(self.root_token.clone()))
    }

    async fn connect(&self, auth: VaultAuth, calls: CallCounter) -> Result<Provider, ProviderError> {
        Provider::connect(ProviderConfig::Vault(self.config(auth)), calls).await
    }

    async fn put(&self, key: &str, data: serde_json::Value) {
        vaultrs::kv2::set(&self.root, "secret", key, &data).await.unwrap();
    }

    /// AppRole `app` (reads `secret/data/app*`) with the given token TTL; returns (role_id, secret_id).
    async fn approle(&self, token_ttl: &str) -> (String, String) {
        vaultrs::sys::auth::enable(&self.root, "approle", "approle", None)
            .await
            .unwrap();
        vaultrs::sys::policy::set(
            &self.root,
            "app-read",
            r#"path "secret/data/app*" { capabilities = ["read"] }"#,
        )
        .await
        .unwrap();
        let mut role = vaultrs::api::auth::approle::requests::SetAppRoleRequest::builder();
        role.token_policies(vec!["app-read".to_owned()])
            .token_ttl(token_ttl)
            .token_max_ttl("1h");
        vaultrs::auth::approle::role::set(&self.root, "approle", "app", Some(&mut role))
            .await
            .unwrap();
        let role_id = vaultrs::auth::approle::role::read_id(&self.root, "approle", "app")
            .await
            .unwrap()
            .role_id;
        let secret_id = vaultrs::auth::approle::role::secret::generate(&self.root, "approle", "app", None)
            .await
            .unwrap()
            .secret_id;
        (role_id, secret_id)
    }
}

fn client(server: &str, token: &str, namespace: Option<&str>) -> VaultClient {
    VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(server)
            .token(token)
            .namespace(namespace.map(str::to_owned))
            .ca_certs(Vec::new())
            .identity(None)
            .build()
            .unwrap(),
    )
    .unwrap()
}

fn approle_auth(role_id: &str, secret_id: &str) -> VaultAuth {
    VaultAuth::AppRole {
        mount: "approle".into(),
        role_id: role_id.into(),
        secret_id: Zeroizing::new(secret_id.into()),
    }
}

fn json_of(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[tokio::test]
async fn kv2_latest_and_pinned_versions() {
    let bao = Bao::start();
    bao.put("app/db", json!({"user": "app", "password": "one"})).await;
    bao.put("app/db", json!({"user": "app", "password": "two"})).await;
    let provider = bao.connect(bao.root_auth(), no_counter()).await.unwrap();

    let refs = [
        RemoteRef::latest("app/db"),
        RemoteRef::versioned("app/db", "1"),
        RemoteRef::versioned("app/db", "2"),
    ];
    let got = provider.fetch(&refs).await;
    assert_eq!(got.len(), 3);
    for ((r, result), (want_password, want_version)) in
        got.iter().zip([("two", "2"), ("one", "1"), ("two", "2")])
    {
        let secret = result.as_ref().unwrap_or_else(|e| panic!("{r:?}: {e}"));
        assert_eq!(
            json_of(&secret.bytes),
            json!({"user": "app", "password": want_password}),
            "{r:?}"
        );
        assert_eq!(secret.version.as_deref(), Some(want_version), "{r:?}");
    }
    // The bytes are the KV data map, ready for property extraction.
    let latest = got[0].1.as_ref().unwrap();
    assert_eq!(
        extract::property(&latest.bytes, "password").unwrap().as_slice(),
        b"two"
    );
    assert_eq!(got[1].0, refs[1]);
}

#[tokio::test]
async fn kv1_engine() {
    let bao = Bao::start();
    vaultrs::sys::mount::enable(&bao.root, "kv1", "kv", None)
        .await
        .unwrap();
    vaultrs::kv1::set(
        &bao.root,
        "kv1",
        "team/api",
        &[("token", "abc"), ("url", "https://x")].into_iter().collect(),
    )
    .await
    .unwrap();
    let mut config = bao.config(bao.root_auth());
    config.mount = "kv1".into();
    config.kv_version = KvVersion::V1;
    let provider = Provider::connect(ProviderConfig::Vault(config), no_counter())
        .await
        .unwrap();
    let got = provider
        .fetch(&[
            RemoteRef::latest("team/api"),
            RemoteRef::latest("team/none"),
            RemoteRef::versioned("team/api", "1"),
        ])
        .await;
    let secret = got[0].1.as_ref().unwrap();
    assert_eq!(
        json_of(&secret.bytes),
        json!({"token": "abc", "url": "https://x"})
    );
    assert_eq!(secret.version, None);
    assert_eq!(
        got[1].1.as_ref().unwrap_err(),
        &ProviderError::NotFound {
            key: "team/none".into()
        }
    );
    assert!(
        matches!(got[2].1, Err(ProviderError::InvalidConfig { .. })),
        "{:?}",
        got[2].1
    );
}

#[tokio::test]
async fn missing_keys_and_versions_are_not_found_per_ref() {
    let bao = Bao::start();
    bao.put("app/present", json!({"k": "v"})).await;
    let provider = bao.connect(bao.root_auth(), no_counter()).await.unwrap();
    let got = provider
        .fetch(&[
            RemoteRef::latest("app/missing"),
            RemoteRef::latest("app/present"),
            RemoteRef::versioned("app/present", "7"),
            RemoteRef::versioned("app/present", "latest"),
        ])
        .await;
    assert_eq!(
        got[0].1,
        Err(ProviderError::NotFound {
            key: "app/missing".into()
        })
    );
    assert!(!got[0].1.as_ref().unwrap_err().is_retryable());
    assert!(got[1].1.is_ok());
    assert_eq!(
        got[2].1,
        Err(ProviderError::NotFound {
            key: "app/present".into()
        })
    );
    assert!(
        matches!(got[3].1, Err(ProviderError::InvalidConfig { .. })),
        "{:?}",
        got[3].1
    );
}

#[tokio::test]
async fn wrong_token_fails_to_connect_and_a_narrow_token_is_denied() {
    let bao = Bao::start();
    bao.put("app/db", json!({"password": "p"})).await;
    bao.put("other/db", json!({"password": "p"})).await;

    let err = bao
        .connect(
            VaultAuth::Token(Zeroizing::new("not-a-token".into())),
            no_counter(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("not-a-token"), "{err}");

    vaultrs::sys::policy::set(
        &bao.root,
        "app-read",
        r#"path "secret/data/app*" { capabilities = ["read"] }"#,
    )
    .await
    .unwrap();
    let mut request = vaultrs::api::token::requests::CreateTokenRequest::builder();
    request.policies(vec!["app-read".to_owned()]);
    let narrow = vaultrs::token::new(&bao.root, Some(&mut request))
        .await
        .unwrap()
        .client_token;
    let provider = bao
        .connect(VaultAuth::Token(Zeroizing::new(narrow.clone())), no_counter())
        .await
        .unwrap();
    let got = provider
        .fetch(&[RemoteRef::latest("app/db"), RemoteRef::latest("other/db")])
        .await;
    assert!(got[0].1.is_ok(), "{:?}", got[0].1);
    let denied = got[1].1.as_ref().unwrap_err();
    assert!(matches!(denied, ProviderError::Denied { .. }), "{denied:?}");
    assert!(!denied.to_string().contains(&narrow), "{denied}");
}

#[tokio::test]
async fn approle_login_once_and_token_reuse() {
    let bao = Bao::start();
    bao.put("app/one", json!({"n": "1"})).await;
    bao.put("app/two", json!({"n": "2"})).await;
    let (role_id, secret_id) = bao.approle("1h").await;

    let err = bao
        .connect(approle_auth(&role_id, "wrong-secret-id"), no_counter())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong-secret-id"));

    let calls = Calls::default();
    let provider = bao
        .connect(approle_auth(&role_id, &secret_id), calls.counter())
        .await
        .unwrap();
    let refs = [
        RemoteRef::latest("app/one"),
        RemoteRef::latest("app/two"),
        RemoteRef::latest("other"),
    ];
    for _ in 0..5 {
        let got = provider.fetch(&refs).await;
        assert_eq!(json_of(&got[0].1.as_ref().unwrap().bytes), json!({"n": "1"}));
        assert_eq!(json_of(&got[1].1.as_ref().unwrap().bytes), json!({"n": "2"}));
        // The role's policy does not cover it.
        assert!(
            matches!(got[2].1, Err(ProviderError::Denied { .. })),
            "{:?}",
            got[2].1
        );
        provider.keep_alive().await.unwrap();
    }
    assert_eq!(calls.get("vault", "login"), 1, "one login for every fetch");
    assert_eq!(calls.get("vault", "read"), 15);
    assert_eq!(calls.get("vault", "renew"), 0, "a 1h token is not renewed early");
}

#[tokio::test]
async fn many_refs_are_read_concurrently() {
    let bao = Bao::start();
    for i in 0..40 {
        bao.put(&format!("app/s{i}"), json!({"i": i})).await;
    }
    let calls = Calls::default();
    let provider = bao.connect(bao.root_auth(), calls.counter()).await.unwrap();
    let refs: Vec<RemoteRef> = (0..40).map(|i| RemoteRef::latest(format!("app/s{i}"))).collect();
    let got = provider.fetch(&refs).await;
    for (i, (r, result)) in got.iter().enumerate() {
        assert_eq!(r, &refs[i], "results keep the order of the refs");
        assert_eq!(json_of(&result.as_ref().unwrap().bytes), json!({"i": i}));
    }
    assert_eq!(calls.get("vault", "read"), 40);
    assert_eq!(calls.get("vault", "lookup"), 1);
}

#[tokio::test]
async fn keep_alive_renews_and_logs_in_again_after_expiry() {
    let bao = Bao::start();
    bao.put("app/db", json!({"password": "p"})).await;
    let (role_id, secret_id) = bao.approle("6s").await;

    let calls = Calls::default();
    let kept = bao
        .connect(approle_auth(&role_id, &secret_id), calls.counter())
        .await
        .unwrap();
    let neglected = bao
        .connect(approle_auth(&role_id, &secret_id), no_counter())
        .await
        .unwrap();
    let refs = [RemoteRef::latest("app/db")];

    // Before two thirds of the TTL nothing happens.
    kept.keep_alive().await.unwrap();
    assert_eq!(calls.get("vault", "renew"), 0);
    tokio::time::sleep(Duration::from_millis(4300)).await;
    kept.keep_alive().await.unwrap();
    assert_eq!(calls.get("vault", "renew"), 1, "renewed past 2/3 of the TTL");
    tokio::time::sleep(Duration::from_millis(2200)).await;

    // 6.5 s after login: the original 6 s TTL is over.
    let got = neglected.fetch(&refs).await;
    assert!(
        got[0].1.is_err(),
        "an unrenewed token must have expired: {:?}",
        got[0].1
    );
    let got = kept.fetch(&refs).await;
    assert!(got[0].1.is_ok(), "the renewed token still works: {:?}", got[0].1);
    assert_eq!(calls.get("vault", "login"), 1);

    // The neglected provider's token expired: keep_alive logs in again.
    neglected.keep_alive().await.unwrap();
    assert!(neglected.fetch(&refs).await[0].1.is_ok());
}

#[tokio::test]
async fn server_down_is_unavailable_and_recovers_after_restart() {
    let mut bao = Bao::start();
    bao.put("app/db", json!({"password": "p"})).await;
    let provider = bao.connect(bao.root_auth(), no_counter()).await.unwrap();
    assert!(provider.fetch(&[RemoteRef::latest("app/db")]).await[0].1.is_ok());

    bao.server.stop();
    let got = provider
        .fetch(&[RemoteRef::latest("app/db"), RemoteRef::versioned("app/db", "1")])
        .await;
    for (r, result) in &got {
        let err = result.as_ref().unwrap_err();
        assert!(matches!(err, ProviderError::Unavailable { .. }), "{r:?}: {err:?}");
        assert!(err.is_retryable());
        assert!(
            err.to_string()
                .contains(&format!("127.0.0.1:{}", bao.server.port)),
            "{err}"
        );
    }
    let err = bao.connect(bao.root_auth(), no_counter()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    // Same port, same root token id; a dev server starts empty, so seed again.
    bao.server.start();
    bao.put("app/db", json!({"password": "again"})).await;
    let got = provider.fetch(&[RemoteRef::latest("app/db")]).await;
    assert_eq!(
        json_of(&got[0].1.as_ref().unwrap().bytes),
        json!({"password": "again"})
    );
    provider.keep_alive().await.unwrap();
}

#[tokio::test]
async fn tls_with_a_ca_bundle() {
    let root_token = random_id("root-");
    let server = Server::bao_tls(&root_token);
    let ca = server.bao_ca_pem();
    let config = |ca_pem: Option<Vec<u8>>| VaultConfig {
        server: server.https_url(),
        mount: "secret".into(),
        kv_version: KvVersion::V2,
        namespace: None,
        ca_pem,
        auth: VaultAuth::Token(Zeroizing::new(root_token.clone())),
    };
    // The listener may accept connections before the dev server is unsealed.
    let mut attempt = 0;
    let provider = loop {
        match Provider::connect(ProviderConfig::Vault(config(Some(ca.clone()))), no_counter()).await {
            Ok(p) => break p,
            Err(e) if e.is_retryable() && attempt < 100 => attempt += 1,
            Err(e) => panic!("{e}\n{}", server.log()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let got = provider.fetch(&[RemoteRef::latest("nothing")]).await;
    assert_eq!(
        got[0].1,
        Err(ProviderError::NotFound {
            key: "nothing".into()
        })
    );

    let err = Provider::connect(ProviderConfig::Vault(config(None)), no_counter())
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "untrusted server certificate: {err}"
    );
}

#[tokio::test]
async fn namespaces() {
    let bao = Bao::start();
    let status = std::process::Command::new("bao")
        .args(["namespace", "create", "team-a"])
        .env("BAO_ADDR", bao.server.http_url())
        .env("BAO_TOKEN", &bao.root_token)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "bao namespace create failed");
    let in_namespace = client(&bao.server.http_url(), &bao.root_token, Some("team-a"));
    let mut engine = vaultrs::api::sys::requests::EnableEngineRequest::builder();
    engine.options(
        [("version".to_owned(), "2".to_owned())]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
    );
    vaultrs::sys::mount::enable(&in_namespace, "secret", "kv", Some(&mut engine))
        .await
        .unwrap();
    vaultrs::kv2::set(&in_namespace, "secret", "app/db", &json!({"where": "team-a"}))
        .await
        .unwrap();
    bao.put("app/db", json!({"where": "root"})).await;

    let mut config = bao.config(bao.root_auth());
    config.namespace = Some("team-a".into());
    let provider = Provider::connect(ProviderConfig::Vault(config), no_counter())
        .await
        .unwrap();
    let got = provider.fetch(&[RemoteRef::latest("app/db")]).await;
    assert_eq!(
        json_of(&got[0].1.as_ref().unwrap().bytes),
        json!({"where": "team-a"})
    );
}

#[tokio::test]
async fn keep_alive_renews_a_static_token_and_reports_its_expiry() {
    let bao = Bao::start();
    bao.put("app/db", json!({"password": "p"})).await;
    let root = &bao.root;
    let token = |renewable: bool| async move {
        let mut request = vaultrs::api::token::requests::CreateTokenRequest::builder();
        request.ttl("6s").explicit_max_ttl("1h").renewable(renewable);
        vaultrs::token::new(root, Some(&mut request))
            .await
            .unwrap()
            .client_token
    };
    let (renewable, fixed) = (token(true).await, token(false).await);
    let calls = Calls::default();
    let kept = bao
        .connect(VaultAuth::Token(Zeroizing::new(renewable)), calls.counter())
        .await
        .unwrap();
    let doomed = bao
        .connect(VaultAuth::Token(Zeroizing::new(fixed.clone())), no_counter())
        .await
        .unwrap();
    assert_eq!(calls.get("vault", "lookup"), 1);

    // Lookup reports whole seconds (5 or 6): 4.1 s is past two thirds of either, and before the end.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    kept.keep_alive().await.unwrap();
    assert_eq!(calls.get("vault", "renew"), 1);
    // Not renewable, but still valid for a moment: not an error yet.
    doomed.keep_alive().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2400)).await;

    assert!(kept.fetch(&[RemoteRef::latest("app/db")]).await[0].1.is_ok());
    assert!(doomed.fetch(&[RemoteRef::latest("app/db")]).await[0].1.is_err());
    let err = doomed.keep_alive().await.unwrap_err();
    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains(&fixed));
}

#[tokio::test]
async fn find_lists_keys_under_a_path_recursively() {
    let bao = Bao::start();
    for key in [
        "shop/api-a",
        "shop/api-b",
        "shop/nested/api-c",
        "shop/db",
        "other/api-x",
    ] {
        bao.put(key, json!({"v": key})).await;
    }
    let calls = Calls::default();
    let provider = bao.connect(bao.root_auth(), calls.counter()).await.unwrap();
    let find = |path: Option<&str>, re: Option<&str>| sealant_providers::Find {
        path: path.map(str::to_owned),
        name_regex: re.map(str::to_owned),
        tags: Default::default(),
    };
    assert_eq!(
        provider.list(&find(Some("shop"), None)).await.unwrap(),
        ["shop/api-a", "shop/api-b", "shop/db", "shop/nested/api-c"]
    );
    assert_eq!(
        provider.list(&find(Some("shop/"), Some("/api-"))).await.unwrap(),
        ["shop/api-a", "shop/api-b", "shop/nested/api-c"]
    );
    assert!(calls.get("vault", "list") >= 2, "folders are listed");
    assert!(
        provider
            .list(&find(Some("nothing-here"), None))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        provider.list(&find(None, Some("("))).await,
        Err(ProviderError::InvalidConfig { .. })
    ));
    let tagged = sealant_providers::Find {
        tags: [("team".into(), "x".into())].into(),
        ..Default::default()
    };
    assert!(matches!(
        provider.list(&tagged).await,
        Err(ProviderError::InvalidConfig { .. })
    ));
}
