//! The AWS Secrets Manager provider against a real moto server.

mod support;

use aws_sdk_secretsmanager::primitives::Blob;
use sealant_providers::{
    AwsAuth, AwsConfig, CallCounter, Provider, ProviderConfig, ProviderError, RemoteRef, no_counter,
};
use support::{Calls, Server};
use zeroize::Zeroizing;

const REGION: &str = "eu-west-1";

fn static_auth() -> AwsAuth {
    AwsAuth::Static {
        access_key_id: "AKIDTESTING".into(),
        secret_access_key: Zeroizing::new("testing-secret".into()),
        session_token: None,
    }
}

fn config(server: &Server, auth: AwsAuth) -> ProviderConfig {
    ProviderConfig::Aws(AwsConfig {
        region: REGION.into(),
        endpoint: Some(server.http_url()),
        auth,
    })
}

async fn connect(server: &Server, calls: CallCounter) -> Provider {
    Provider::connect(config(server, static_auth()), calls)
        .await
        .unwrap()
}

/// A Secrets Manager client with dummy static credentials, to seed moto.
async fn seeder(server: &Server) -> aws_sdk_secretsmanager::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_secretsmanager::config::Region::new(REGION))
        .endpoint_url(server.http_url())
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "AKIDTESTING",
            "testing",
            None,
            None,
            "test",
        ))
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&sdk)
}

async fn create(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) -> String {
    let out = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
    out.version_id.unwrap()
}

fn text(result: &Result<sealant_providers::RemoteSecret, ProviderError>) -> String {
    let secret = result.as_ref().unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(secret.bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn forty_five_refs_take_three_batch_calls() {
    let moto = Server::moto();
    let seed = seeder(&moto).await;
    for i in 0..45 {
        create(&seed, &format!("app/s{i:02}"), &format!(r#"{{"i":{i}}}"#)).await;
    }
    let calls = Calls::default();
    let provider = connect(&moto, calls.counter()).await;
    assert_eq!(calls.total(), 0, "connecting with static keys makes no request");

    let mut refs: Vec<RemoteRef> = (0..45)
        .rev()
        .map(|i| RemoteRef::latest(format!("app/s{i:02}")))
        .collect();
    refs.push(RemoteRef::latest("app/s07")); // a duplicate is fetched once
    let got = provider.fetch(&refs).await;
    assert_eq!(got.len(), 46);
    for (r, result) in &got {
        let i: usize = r.key["app/s".len()..].parse().unwrap();
        assert_eq!(text(result), format!(r#"{{"i":{i}}}"#), "{r:?}");
        assert!(result.as_ref().unwrap().version.is_some());
    }
    assert_eq!(got[0].0, refs[0], "results keep the order of the refs");
    assert_eq!(calls.get("aws", "BatchGetSecretValue"), 3);
    assert_eq!(calls.get("aws", "GetSecretValue"), 0);
    assert_eq!(provider.fetch(&[]).await.len(), 0);
    assert_eq!(calls.total(), 3);
    provider.keep_alive().await.unwrap();
}

#[tokio::test]
async fn not_found_inside_a_batch_is_per_ref() {
    let moto = Server::moto();
    let seed = seeder(&moto).await;
    create(&seed, "a", "A").await;
    create(&seed, "b", "B").await;
    let calls = Calls::default();
    let provider = connect(&moto, calls.counter()).await;
    let got = provider
        .fetch(&[
            RemoteRef::latest("a"),
            RemoteRef::latest("missing"),
            RemoteRef::latest("b"),
        ])
        .await;
    assert_eq!(text(&got[0].1), "A");
    assert_eq!(
        got[1].1,
        Err(ProviderError::NotFound {
            key: "missing".into()
        })
    );
    assert_eq!(text(&got[2].1), "B");
    assert_eq!(calls.get("aws", "BatchGetSecretValue"), 1);

    // Secrets can also be named by ARN.
    let arn = seed
        .describe_secret()
        .secret_id("a")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let got = provider
        .fetch(&[RemoteRef::latest(arn.clone()), RemoteRef::latest("a")])
        .await;
    assert_eq!(text(&got[0].1), "A");
    assert_eq!(got[0].0.key, arn);
    assert_eq!(
        text(&got[1].1),
        "A",
        "the same secret by name and by ARN in one batch"
    );
    assert_eq!(calls.get("aws", "BatchGetSecretValue"), 2);
}

#[tokio::test]
async fn versions_by_id_and_by_stage() {
    let moto = Server::moto();
    let seed = seeder(&moto).await;
    let first = create(&seed, "rotating", "v1").await;
    let second = seed
        .put_secret_value()
        .secret_id("rotating")
        .secret_string("v2")
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap();
    assert_ne!(first, second);

    let calls = Calls::default();
    let provider = connect(&moto, calls.counter()).await;
    let refs = [
        RemoteRef::latest("rotating"),
        RemoteRef::versioned("rotating", first.clone()),
        RemoteRef::versioned("rotating", format!("uuid/{first}")),
        RemoteRef::versioned("rotating", "AWSPREVIOUS"),
        RemoteRef::versioned("rotating", "AWSCURRENT"),
        RemoteRef::versioned("rotating", "NOSUCHSTAGE"),
    ];
    let got = provider.fetch(&refs).await;
    let want = [
        ("v2", &second),
        ("v1", &first),
        ("v1", &first),
        ("v1", &first),
        ("v2", &second),
    ];
    for ((r, result), (value, version)) in got.iter().zip(want) {
        assert_eq!(text(result), value, "{r:?}");
        assert_eq!(
            result.as_ref().unwrap().version.as_deref(),
            Some(version.as_str()),
            "{r:?}"
        );
    }
    assert!(got[5].1.is_err(), "{:?}", got[5].1);
    assert_eq!(calls.get("aws", "BatchGetSecretValue"), 1);
    assert_eq!(calls.get("aws", "GetSecretValue"), 5);
}

#[tokio::test]
async fn secret_binary() {
    let moto = Server::moto();
    let seed = seeder(&moto).await;
    let bytes = vec![0u8, 159, 146, 150, 255];
    let version = seed
        .create_secret()
        .name("cert.der")
        .secret_binary(Blob::new(bytes.clone()))
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap();
    let provider = connect(&moto, no_counter()).await;
    let got = provider
        .fetch(&[
            RemoteRef::latest("cert.der"),
            RemoteRef::versioned("cert.der", "AWSCURRENT"),
        ])
        .await;
    for (r, result) in &got {
        let secret = result.as_ref().unwrap_or_else(|e| panic!("{r:?}: {e}"));
        assert_eq!(secret.bytes.as_slice(), bytes.as_slice(), "{r:?}");
        assert_eq!(secret.version.as_deref(), Some(version.as_str()));
    }
}

#[tokio::test]
async fn moto_down_is_unavailable() {
    let mut moto = Server::moto();
    let seed = seeder(&moto).await;
    create(&seed, "a", "A").await;
    let provider = connect(&moto, no_counter()).await;
    assert_eq!(text(&provider.fetch(&[RemoteRef::latest("a")]).await[0].1), "A");

    moto.stop();
    let got = provider
        .fetch(&[RemoteRef::latest("a"), RemoteRef::versioned("a", "AWSCURRENT")])
        .await;
    for (r, result) in &got {
        let err = result.as_ref().unwrap_err();
        assert!(matches!(err, ProviderError::Unavailable { .. }), "{r:?}: {err:?}");
        assert!(err.is_retryable());
    }

    // Back on the same port (moto starts empty).
    moto.start();
    create(&seeder(&moto).await, "a", "again").await;
    assert_eq!(
        text(&provider.fetch(&[RemoteRef::latest("a")]).await[0].1),
        "again"
    );
}

#[tokio::test]
async fn web_identity_assumes_a_role_through_sts() {
    let moto = Server::moto();
    create(&seeder(&moto).await, "a", "A").await;
    let auth = AwsAuth::WebIdentity {
        role_arn: "arn:aws:iam::123456789012:role/sealant".into(),
        token: Zeroizing::new("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln".into()),
        session_name: "sealant-test".into(),
    };
    let provider = Provider::connect(config(&moto, auth), no_counter())
        .await
        .unwrap();
    assert_eq!(text(&provider.fetch(&[RemoteRef::latest("a")]).await[0].1), "A");
}

#[tokio::test]
async fn bad_configuration() {
    for (region, endpoint) in [("", None), (REGION, Some("localhost:4566".to_owned()))] {
        let config = ProviderConfig::Aws(AwsConfig {
            region: region.into(),
            endpoint,
            auth: static_auth(),
        });
        let err = Provider::connect(config, no_counter()).await.unwrap_err();
        assert!(matches!(err, ProviderError::InvalidConfig { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn find_lists_by_prefix_regex_and_tags() {
    let moto = Server::moto();
    let seed = seeder(&moto).await;
    for name in ["shop/api-a", "shop/api-b", "shop/db", "other/api-x"] {
        create(&seed, name, "{}").await;
    }
    seed.tag_resource()
        .secret_id("shop/api-a")
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("team")
                .value("payments")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let calls = Calls::default();
    let provider = connect(&moto, calls.counter()).await;
    let find = |path: Option<&str>, re: Option<&str>, tags: &[(&str, &str)]| sealant_providers::Find {
        path: path.map(str::to_owned),
        name_regex: re.map(str::to_owned),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    assert_eq!(
        provider.list(&find(Some("shop/"), None, &[])).await.unwrap(),
        ["shop/api-a", "shop/api-b", "shop/db"]
    );
    assert_eq!(
        provider.list(&find(None, Some("api-"), &[])).await.unwrap(),
        ["other/api-x", "shop/api-a", "shop/api-b"]
    );
    assert_eq!(
        provider
            .list(&find(None, None, &[("team", "payments")]))
            .await
            .unwrap(),
        ["shop/api-a"]
    );
    assert!(
        provider
            .list(&find(None, None, &[("team", "nobody")]))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(calls.get("aws", "ListSecrets") >= 4);
}
