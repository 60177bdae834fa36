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
        for field in ["encryptedData", "template", "recipients"] {
            assert!(
                spec_props.get(field).is_some(),
                "spec.{field} missing from schema"
            );
        }
    }
}
