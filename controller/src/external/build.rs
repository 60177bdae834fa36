//! The pure build step of an ExternalSecret: what to fetch, and the Secret data made of what was fetched.

use std::collections::{BTreeMap, HashMap};

use sealant_crds::{DecodingStrategy, ExternalSecretSpec, RemoteReference};
use sealant_providers::extract;
use sealant_providers::{Find, ProviderError, RemoteRef, RemoteSecret};
use sealant_seal::Plaintext;

use crate::template::render;

/// Why the data cannot be built. Names keys and paths, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    InvalidSpec(String),
    #[error("{key}: {error}{}", provider_hint(.error))]
    Provider { key: String, error: ProviderError },
    #[error("{0}")]
    Extract(String),
    #[error("{0}")]
    Template(String),
}

impl BuildError {
    pub fn reason(&self) -> &'static str {
        match self {
            BuildError::InvalidSpec(_) => "InvalidSpec",
            BuildError::Provider { .. } => "ProviderError",
            BuildError::Extract(_) => "ExtractFailed",
            BuildError::Template(_) => "TemplateFailed",
        }
    }
}

/// What to do about a provider error that will not go away by itself.
fn provider_hint(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::NotFound { .. } => "; create it in the provider, or fix the remoteRef key",
        ProviderError::Denied { .. } => {
            "; allow the store's credentials to read it (a policy in the provider)"
        }
        _ => "",
    }
}

fn remote(r: &RemoteReference) -> RemoteRef {
    RemoteRef {
        key: r.key.clone(),
        version: r.version.clone(),
    }
}

/// What to fetch: the remote references named in the spec, and the `dataFrom[].find` queries (by index)
/// whose results are fetched too.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub refs: Vec<RemoteRef>,
    pub finds: Vec<(usize, Find)>,
}

/// The plan of an ExternalSecret.
pub fn plan(spec: &ExternalSecretSpec) -> Result<Plan, BuildError> {
    let mut plan = Plan {
        refs: spec.data.iter().map(|d| remote(&d.remote_ref)).collect(),
        finds: Vec::new(),
    };
    for (i, from) in spec.data_from.iter().enumerate() {
        match (&from.extract, &from.find) {
            (Some(r), None) => plan.refs.push(remote(r)),
            (None, Some(f)) => plan.finds.push((
                i,
                Find {
                    path: f.path.clone(),
                    name_regex: f.name.as_ref().map(|n| n.regexp.clone()),
                    tags: f.tags.clone(),
                },
            )),
            _ => {
                return Err(BuildError::InvalidSpec(format!(
                    "dataFrom[{i}] needs exactly one of extract, find"
                )));
            }
        }
    }
    if plan.refs.is_empty() && plan.finds.is_empty() {
        return Err(BuildError::InvalidSpec(
            "spec.data and spec.dataFrom are both empty: nothing to sync".into(),
        ));
    }
    plan.refs.sort();
    plan.refs.dedup();
    Ok(plan)
}

/// The Secret key for a secret found by `dataFrom[].find`: its name with `/` as `_` (Secret keys allow no `/`).
pub fn found_key(name: &str) -> String {
    name.trim_matches('/').replace('/', "_")
}

fn strategy(s: DecodingStrategy) -> extract::DecodingStrategy {
    match s {
        DecodingStrategy::None => extract::DecodingStrategy::None,
        DecodingStrategy::Base64 => extract::DecodingStrategy::Base64,
        DecodingStrategy::Base64Url => extract::DecodingStrategy::Base64Url,
        DecodingStrategy::Auto => extract::DecodingStrategy::Auto,
    }
}

fn fetched<'a>(
    results: &'a HashMap<RemoteRef, Result<RemoteSecret, ProviderError>>,
    r: &RemoteReference,
) -> Result<&'a RemoteSecret, BuildError> {
    match results.get(&remote(r)) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(BuildError::Provider {
            key: r.key.clone(),
            error: e.clone(),
        }),
        None => Err(BuildError::Provider {
            key: r.key.clone(),
            error: ProviderError::Other {
                detail: "no answer for this key".into(),
            },
        }),
    }
}

/// The Secret data: `data[]` keys, `dataFrom[].extract` fields, then `target.template.data` rendered over them
/// (templated keys only, unless the template's mergePolicy is `Merge`).
pub fn data(
    spec: &ExternalSecretSpec,
    found: &BTreeMap<usize, Vec<String>>,
    results: &HashMap<RemoteRef, Result<RemoteSecret, ProviderError>>,
) -> Result<BTreeMap<String, Plaintext>, BuildError> {
    let mut out = BTreeMap::new();
    for (i, from) in spec.data_from.iter().enumerate() {
        if let Some(f) = &from.find {
            for name in found.get(&i).map(Vec::as_slice).unwrap_or_default() {
                let r = RemoteReference {
                    key: name.clone(),
                    ..Default::default()
                };
                let value = fetched(results, &r)?;
                let decoded = extract::decode(&value.bytes, strategy(f.decoding_strategy))
                    .map_err(|e| BuildError::Extract(format!("dataFrom[{i}].find {name}: {e}")))?;
                out.insert(found_key(name), Plaintext::new(decoded.to_vec()));
            }
            continue;
        }
        let Some(r) = &from.extract else { continue };
        let value = fetched(results, r)?;
        let source = match &r.property {
            Some(p) => extract::property(&value.bytes, p)
                .map_err(|e| BuildError::Extract(format!("dataFrom extract {}: {e}", r.key)))?,
            None => value.bytes.clone(),
        };
        let fields = extract::all_fields(&source)
            .map_err(|e| BuildError::Extract(format!("dataFrom extract {}: {e}", r.key)))?;
        for (k, v) in fields {
            let decoded = extract::decode(&v, strategy(r.decoding_strategy))
                .map_err(|e| BuildError::Extract(format!("dataFrom extract {} field {k}: {e}", r.key)))?;
            out.insert(k, Plaintext::new(decoded.to_vec()));
        }
    }
    for d in &spec.data {
        let r = &d.remote_ref;
        let value = fetched(results, r)?;
        let raw = match &r.property {
            Some(p) => extract::property(&value.bytes, p)
                .map_err(|e| BuildError::Extract(format!("data {} ({}): {e}", d.secret_key, r.key)))?,
            None => value.bytes.clone(),
        };
        let decoded = extract::decode(&raw, strategy(r.decoding_strategy))
            .map_err(|e| BuildError::Extract(format!("data {} ({}): {e}", d.secret_key, r.key)))?;
        out.insert(d.secret_key.clone(), Plaintext::new(decoded.to_vec()));
    }
    if let Some(tpl) = spec.target.template.as_ref().filter(|t| !t.data.is_empty()) {
        let mut rendered = BTreeMap::new();
        for (k, t) in &tpl.data {
            rendered.insert(
                k.clone(),
                render(k, t, &out).map_err(|e| BuildError::Template(e.to_string()))?,
            );
        }
        if tpl.merge_policy.as_deref() == Some("Merge") {
            out.extend(rendered);
        } else {
            out = rendered;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealant_crds::{
        ExternalSecretData, ExternalSecretDataFromRemoteRef, ExternalSecretTemplate, SecretStoreRef,
    };
    use zeroize::Zeroizing;

    fn spec(yaml: &str) -> ExternalSecretSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn ok(bytes: &str) -> Result<RemoteSecret, ProviderError> {
        Ok(RemoteSecret {
            bytes: Zeroizing::new(bytes.as_bytes().to_vec()),
            version: None,
        })
    }

    #[test]
    fn data_properties_extract_and_template() {
        let s = spec(
            r#"
secretStoreRef: {name: vault}
target:
  template:
    mergePolicy: Merge
    data: {url: "pg://{{ .user }}:{{ .password }}@db"}
data:
  - {secretKey: password, remoteRef: {key: shop/db, property: password}}
  - {secretKey: cert, remoteRef: {key: shop/tls, decodingStrategy: Base64}}
dataFrom:
  - extract: {key: shop/common}
"#,
        );
        let p = plan(&s).unwrap();
        assert_eq!(p.refs.len(), 3);
        assert!(p.finds.is_empty());
        let results: HashMap<_, _> = [
            (
                RemoteRef {
                    key: "shop/db".into(),
                    version: None,
                },
                ok(r#"{"password":"s3cret","user":"ignored"}"#),
            ),
            (
                RemoteRef {
                    key: "shop/tls".into(),
                    version: None,
                },
                ok("Y2VydA=="),
            ),
            (
                RemoteRef {
                    key: "shop/common".into(),
                    version: None,
                },
                ok(r#"{"user":"app","region":"eu"}"#),
            ),
        ]
        .into();
        let d = data(&s, &BTreeMap::new(), &results).unwrap();
        assert_eq!(d["password"].as_bytes(), b"s3cret");
        assert_eq!(d["cert"].as_bytes(), b"cert");
        assert_eq!(d["user"].as_bytes(), b"app");
        assert_eq!(d["url"].as_bytes(), b"pg://app:s3cret@db");
        let mut replace = s.clone();
        replace.target.template.as_mut().unwrap().merge_policy = None;
        assert_eq!(
            data(&replace, &BTreeMap::new(), &results)
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["url"]
        );
    }

    #[test]
    fn found_secrets_become_keys() {
        let s = spec(
            r#"
secretStoreRef: {name: vault}
dataFrom:
  - find: {path: shop, name: {regexp: "api"}, decodingStrategy: Base64}
data:
  - {secretKey: shop_api-b, remoteRef: {key: override}}
"#,
        );
        let p = plan(&s).unwrap();
        assert_eq!(p.finds.len(), 1);
        assert_eq!(p.finds[0].1.path.as_deref(), Some("shop"));
        assert_eq!(p.finds[0].1.name_regex.as_deref(), Some("api"));
        let found: BTreeMap<usize, Vec<String>> =
            [(0, vec!["shop/api-a".to_owned(), "shop/api-b".to_owned()])].into();
        let results: HashMap<_, _> = [
            (
                RemoteRef {
                    key: "shop/api-a".into(),
                    version: None,
                },
                ok("YQ=="),
            ),
            (
                RemoteRef {
                    key: "shop/api-b".into(),
                    version: None,
                },
                ok("Yg=="),
            ),
            (
                RemoteRef {
                    key: "override".into(),
                    version: None,
                },
                ok("explicit"),
            ),
        ]
        .into();
        let d = data(&s, &found, &results).unwrap();
        assert_eq!(d["shop_api-a"].as_bytes(), b"a");
        assert_eq!(d["shop_api-b"].as_bytes(), b"explicit", "data[] wins over find");
    }

    #[test]
    fn errors_name_keys_not_values() {
        let s = ExternalSecretSpec {
            refresh_interval: "1h".into(),
            secret_store_ref: SecretStoreRef {
                name: "aws".into(),
                kind: None,
            },
            target: Default::default(),
            data: vec![ExternalSecretData {
                secret_key: "password".into(),
                remote_ref: RemoteReference {
                    key: "db".into(),
                    property: Some("nope".into()),
                    ..Default::default()
                },
            }],
            data_from: vec![],
        };
        let results: HashMap<_, _> = [(
            RemoteRef {
                key: "db".into(),
                version: None,
            },
            ok(r#"{"password":"s3cret"}"#),
        )]
        .into();
        let e = data(&s, &BTreeMap::new(), &results).unwrap_err();
        assert_eq!(e.reason(), "ExtractFailed");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let missing: HashMap<_, _> = [(
            RemoteRef {
                key: "db".into(),
                version: None,
            },
            Err(ProviderError::NotFound { key: "db".into() }),
        )]
        .into();
        assert_eq!(
            data(&s, &BTreeMap::new(), &missing).unwrap_err().reason(),
            "ProviderError"
        );
        let mut tpl = s.clone();
        tpl.data[0].remote_ref.property = None;
        tpl.target.template = Some(ExternalSecretTemplate {
            data: [("x".into(), "{{ .nope }}".into())].into(),
            ..Default::default()
        });
        assert_eq!(
            data(&tpl, &BTreeMap::new(), &results).unwrap_err().reason(),
            "TemplateFailed"
        );
        let mut both = s.clone();
        both.data_from = vec![ExternalSecretDataFromRemoteRef {
            find: Some(Default::default()),
            extract: Some(Default::default()),
        }];
        assert_eq!(plan(&both).unwrap_err().reason(), "InvalidSpec");
        let empty = ExternalSecretSpec { data: vec![], ..s };
        assert_eq!(plan(&empty).unwrap_err().reason(), "InvalidSpec");
    }
}
