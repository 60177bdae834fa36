//! The committed CRD YAML must match what the types generate.

#[test]
fn committed_crd_yaml_is_current() {
    let mut stale = Vec::new();
    for (file, crd) in sealant_crds::all_crds() {
        let path = sealant_crds::yaml_dir().join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != sealant_crds::crd_yaml(&crd) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale CRD YAML: {stale:?}; regenerate with `cargo run -p sealant-crds --bin crdgen` and commit it"
    );
}

#[test]
fn crd_yaml_parses_back_into_a_crd() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    for (_, crd) in sealant_crds::all_crds() {
        let text = sealant_crds::crd_yaml(&crd);
        let back: CustomResourceDefinition =
            serde_saphyr::from_str(text.split_once("---\n").unwrap().1).unwrap();
        assert_eq!(back.spec.group, sealant_crds::GROUP);
        let v = &back.spec.versions[0];
        assert!(
            v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
            "status subresource"
        );
        let schema = serde_json::to_value(v.schema.as_ref().unwrap()).unwrap();
        let spec_props = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
        let expected: &[&str] = match back.spec.names.kind.as_str() {
            "SealedSecret" => &["encryptedData", "template", "recipients"],
            "ExternalSecret" => &["refreshInterval", "secretStoreRef", "target", "data", "dataFrom"],
            "SecretStore" | "ClusterSecretStore" => &["provider", "conditions"],
            "GitSync" => &[
                "url",
                "ref",
                "path",
                "interval",
                "secretRef",
                "prune",
                "targetNamespace",
                "serviceAccountName",
                "suspend",
                "timeout",
            ],
            other => panic!("unexpected kind {other}"),
        };
        for field in expected {
            assert!(
                spec_props.get(*field).is_some(),
                "{}: spec.{field} missing from schema",
                back.spec.names.kind
            );
        }
    }
}

#[test]
fn eso_v1_manifests_parse_with_only_the_api_version_changed() {
    let es = r#"
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {name: db, namespace: shop}
spec:
  refreshInterval: 15m
  secretStoreRef: {name: vault, kind: ClusterSecretStore}
  target:
    name: db-credentials
    creationPolicy: Owner
    deletionPolicy: Retain
    template:
      type: kubernetes.io/basic-auth
      engineVersion: v2
      data: {url: "postgres://{{ .user }}:{{ .password }}@db"}
  data:
    - secretKey: password
      remoteRef: {key: shop/db, property: password, version: "3", decodingStrategy: Base64}
  dataFrom:
    - extract: {key: shop/common}
    - find: {path: shop/, name: {regexp: "^api-"}}
"#;
    let parsed: sealant_crds::ExternalSecret = serde_saphyr::from_str(es).unwrap();
    assert_eq!(
        parsed.spec.secret_store_ref.kind,
        Some(sealant_crds::StoreKind::ClusterSecretStore)
    );
    assert_eq!(
        parsed.spec.data[0].remote_ref.decoding_strategy,
        sealant_crds::DecodingStrategy::Base64
    );
    assert_eq!(parsed.spec.data_from.len(), 2);
    let store = r#"
apiVersion: sealant.dev/v1
kind: SecretStore
metadata: {name: aws, namespace: shop}
spec:
  provider:
    aws:
      service: SecretsManager
      region: eu-west-1
      auth:
        secretRef:
          accessKeyIDSecretRef: {name: aws-creds, key: access-key}
          secretAccessKeySecretRef: {name: aws-creds, key: secret-key}
"#;
    let parsed: sealant_crds::SecretStore = serde_saphyr::from_str(store).unwrap();
    let aws = parsed.spec.provider.aws.unwrap();
    assert_eq!(
        aws.auth.unwrap().secret_ref.unwrap().access_key_id_secret_ref.key,
        "access-key"
    );
    let defaulted: sealant_crds::ExternalSecret = serde_saphyr::from_str(
        "apiVersion: sealant.dev/v1\nkind: ExternalSecret\nmetadata: {name: x}\nspec: {secretStoreRef: {name: s}}\n",
    )
    .unwrap();
    assert_eq!(defaulted.spec.refresh_interval, "1h");
    assert_eq!(
        defaulted.spec.target.creation_policy,
        sealant_crds::CreationPolicy::Owner
    );
}
