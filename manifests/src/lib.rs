//! Loading manifests from a checked-out tree: plain YAML/JSON files (several documents each, `List`s
//! flattened) under the GitSync's path, or the `resources:` of a `kustomization.yaml` there. Every object is
//! parsed and checked before anything is applied; the first problem names its file.

#[doc(hidden)]
pub mod fuzz_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

/// A manifest that cannot be used. `file` is relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct LoadError {
    pub file: String,
    pub reason: String,
}

fn err(file: &str, reason: impl Into<String>) -> LoadError {
    LoadError {
        file: file.to_owned(),
        reason: reason.into(),
    }
}

/// The identity of an object: what the inventory records and prune compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectId {
    /// `<namespace>_<name>_<group>_<kind>`, as in Flux inventories.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}_{}",
            self.namespace.as_deref().unwrap_or(""),
            self.name,
            self.group,
            self.kind
        )
    }
}

impl ObjectId {
    /// Parses an inventory id. Namespaces, groups and kinds never contain `_` (the loader refuses them), but
    /// names may (`system:foo_bar` is a valid ClusterRole name), so the name is everything between the
    /// first `_` and the last two.
    pub fn parse(id: &str) -> Option<ObjectId> {
        let (ns, rest) = id.split_once('_')?;
        let (rest, kind) = rest.rsplit_once('_')?;
        let (name, group) = rest.rsplit_once('_')?;
        if name.is_empty() || kind.is_empty() {
            return None;
        }
        Some(ObjectId {
            group: group.to_owned(),
            kind: kind.to_owned(),
            namespace: (!ns.is_empty()).then(|| ns.to_owned()),
            name: name.to_owned(),
        })
    }
}

/// One object to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub value: Value,
    pub file: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

impl Object {
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
    }

    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(_, v)| v)
            .unwrap_or(&self.api_version)
    }

    pub fn id(&self) -> ObjectId {
        ObjectId {
            group: self.group().to_owned(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    parts.join("/")
}

fn join(dir: &str, rel: &str) -> Result<String, String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("`{rel}` points outside the repository"));
                }
            }
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

fn is_manifest(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    !is_kustomization(path) && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
}

fn is_kustomization(path: &str) -> bool {
    matches!(
        path.rsplit('/').next(),
        Some("kustomization.yaml" | "kustomization.yml" | "Kustomization")
    )
}

fn under<'a>(
    files: &'a BTreeMap<String, Vec<u8>>,
    dir: &'a str,
) -> impl Iterator<Item = (&'a String, &'a Vec<u8>)> {
    files
        .iter()
        .filter(move |(p, _)| dir.is_empty() || p.starts_with(&format!("{dir}/")))
}

fn kustomization_in<'a>(files: &'a BTreeMap<String, Vec<u8>>, dir: &str) -> Option<(String, &'a Vec<u8>)> {
    ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .find_map(|n| {
            let p = if dir.is_empty() {
                n.to_string()
            } else {
                format!("{dir}/{n}")
            };
            files.get(&p).map(|c| (p, c))
        })
}

/// Loads every object under `root` of `files` (repository-relative paths).
pub fn load(files: &[(String, Vec<u8>)], root: &str) -> Result<Vec<Object>, LoadError> {
    let files: BTreeMap<String, Vec<u8>> = files.iter().map(|(p, c)| (normalize(p), c.clone())).collect();
    let root = normalize(root);
    let mut objects = Vec::new();
    if let Some((kpath, text)) = kustomization_in(&files, &root) {
        let mut seen = BTreeSet::new();
        kustomize(&files, &kpath, text, &mut seen, &mut objects)?;
    } else {
        if !root.is_empty() && under(&files, &root).next().is_none() {
            return Err(err(&root, "no such directory in this revision (check spec.path)"));
        }
        for (path, text) in under(&files, &root) {
            if is_manifest(path) {
                objects.extend(parse_file(path, text)?);
            }
        }
    }
    let mut ids: BTreeMap<ObjectId, String> = BTreeMap::new();
    for o in &objects {
        if let Some(first) = ids.insert(o.id(), o.file.clone()) {
            return Err(err(
                &o.file,
                format!("{} {} is also defined in {first}", o.kind, o.name),
            ));
        }
    }
    Ok(objects)
}

fn kustomize(
    files: &BTreeMap<String, Vec<u8>>,
    kpath: &str,
    text: &[u8],
    seen: &mut BTreeSet<String>,
    out: &mut Vec<Object>,
) -> Result<(), LoadError> {
    if !seen.insert(kpath.to_owned()) {
        return Err(err(kpath, "kustomizations include each other in a cycle"));
    }
    let dir = kpath.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let text = std::str::from_utf8(text).map_err(|_| err(kpath, "not UTF-8 text"))?;
    let k: Value = serde_saphyr::from_str(text).map_err(|e| err(kpath, yaml_error(&e)))?;
    let Some(map) = k.as_object() else {
        return Err(err(kpath, "a kustomization must be a map"));
    };
    for key in map.keys() {
        if !matches!(key.as_str(), "apiVersion" | "kind" | "resources" | "namespace") {
            return Err(err(
                kpath,
                format!("`{key}` is not supported: sealant reads only `resources` and `namespace`"),
            ));
        }
    }
    let namespace = match map.get("namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(ns)) if valid_namespace(ns) => Some(ns.clone()),
        Some(other) => {
            return Err(err(
                kpath,
                format!("namespace `{other}` is not a valid namespace ({NAMESPACE_RULE})"),
            ));
        }
    };
    let first = out.len();
    for r in map
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(rel) = r.as_str() else {
            return Err(err(kpath, "resources must be paths"));
        };
        if rel.contains("://") || rel.starts_with("github.com/") {
            return Err(err(
                kpath,
                format!("remote resource `{rel}` is not supported; vendor it into the repository"),
            ));
        }
        let path = join(dir, rel).map_err(|e| err(kpath, e))?;
        if let Some(contents) = files.get(&path) {
            out.extend(parse_file(&path, contents)?);
        } else if let Some((sub, contents)) = kustomization_in(files, &path) {
            kustomize(files, &sub, contents, seen, out)?;
        } else if under(files, &path).next().is_some() {
            return Err(err(kpath, format!("directory `{rel}` has no kustomization.yaml")));
        } else {
            return Err(err(
                kpath,
                format!("resource `{rel}` does not exist in this revision"),
            ));
        }
    }
    if let Some(ns) = namespace {
        for o in &mut out[first..] {
            o.namespace = Some(ns.clone());
            o.value["metadata"]["namespace"] = Value::String(ns.clone());
        }
    }
    Ok(())
}

const NAMESPACE_RULE: &str = "lowercase letters, digits and `-`, at most 63";

/// A namespace that can stand in an inventory id and in an object: an RFC 1123 label.
fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-')
}

/// A YAML parser error: its first line (the place and the problem) only. The parser quotes the input lines
/// around the error after it, and those may hold Secret values (a plain Secret in Git), which must not reach a
/// condition, an Event or a log.
fn yaml_error(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    format!(
        "not valid YAML: {}",
        first.strip_prefix("error: ").unwrap_or(first)
    )
}

fn parse_file(path: &str, contents: &[u8]) -> Result<Vec<Object>, LoadError> {
    let text = std::str::from_utf8(contents).map_err(|_| err(path, "not UTF-8 text"))?;
    let docs: Vec<Value> = if path.ends_with(".json") {
        vec![serde_json::from_str(text).map_err(|e| err(path, format!("not valid JSON: {e}")))?]
    } else {
        serde_saphyr::from_multiple(text).map_err(|e| err(path, yaml_error(&e)))?
    };
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind.ends_with("List") && doc.get("items").is_some() {
            for item in doc["items"].as_array().cloned().unwrap_or_default() {
                out.push(check(path, i + 1, item)?);
            }
        } else {
            out.push(check(path, i + 1, doc)?);
        }
    }
    Ok(out)
}

fn check(path: &str, doc: usize, value: Value) -> Result<Object, LoadError> {
    let at = |reason: String| err(path, format!("document {doc}: {reason}"));
    if !value.is_object() {
        return Err(at(
            "not a Kubernetes object (expected a map with apiVersion, kind, metadata)".into(),
        ));
    }
    let text = |v: &Value, what: &str| -> Result<String, LoadError> {
        match v {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Null => Err(at(format!("{what} is missing"))),
            _ => Err(at(format!("{what} must be a non-empty string"))),
        }
    };
    let api_version = text(&value["apiVersion"], "apiVersion")?;
    let kind = text(&value["kind"], "kind")?;
    if value["metadata"].get("generateName").is_some() && value["metadata"].get("name").is_none() {
        return Err(at(format!(
            "{kind}: generateName cannot be applied declaratively; set metadata.name"
        )));
    }
    let name = text(&value["metadata"]["name"], "metadata.name")?;
    if name.len() > 253 || name.contains('/') || name.contains('%') || name == "." || name == ".." {
        return Err(at(format!("{kind} `{name}`: not a valid object name")));
    }
    let namespace = match &value["metadata"]["namespace"] {
        Value::Null => None,
        v => Some(text(v, "metadata.namespace")?),
    };
    if api_version.matches('/').count() > 1 || api_version.contains('_') {
        return Err(at(format!("apiVersion `{api_version}` is not group/version")));
    }
    if kind.contains('_') {
        return Err(at(format!("kind `{kind}` is not a valid kind (no `_`)")));
    }
    if let Some(ns) = namespace.as_deref().filter(|ns| !valid_namespace(ns)) {
        return Err(at(format!(
            "{kind} `{name}`: namespace `{ns}` is not a valid namespace ({NAMESPACE_RULE})"
        )));
    }
    Ok(Object {
        value,
        file: path.to_owned(),
        api_version,
        kind,
        name,
        namespace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
            .collect()
    }

    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: app}\ndata: {k: v}\n";
    const DEPLOY: &str =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n";

    #[test]
    fn plain_files_under_the_path() {
        let f = files(&[
            ("deploy/a.yaml", &format!("{CM}---\n{DEPLOY}")),
            (
                "deploy/sub/list.json",
                r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}]}"#,
            ),
            ("deploy/README.md", "not a manifest"),
            (
                "other/x.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: elsewhere}\n",
            ),
        ]);
        let objs = load(&f, "./deploy/").unwrap();
        let names: Vec<_> = objs.iter().map(|o| format!("{}/{}", o.kind, o.name)).collect();
        assert_eq!(names, ["ConfigMap/a", "Deployment/web", "Secret/s"]);
        assert_eq!(objs[1].group(), "apps");
        assert_eq!(objs[1].id().to_string(), "_web_apps_Deployment");
        assert_eq!(objs[0].id().to_string(), "app_a__ConfigMap");
        assert_eq!(ObjectId::parse("app_a__ConfigMap"), Some(objs[0].id()));
        let role = ObjectId {
            group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            namespace: None,
            name: "system:foo_bar".into(),
        };
        assert_eq!(ObjectId::parse(&role.to_string()), Some(role));
        assert_eq!(ObjectId::parse("a_b_c"), None);
        assert_eq!(load(&f, "").unwrap().len(), 4);
    }

    #[test]
    fn kustomization_resources() {
        let f = files(&[
            (
                "k/kustomization.yaml",
                "resources: [cm.yaml, ../shared, web]\nnamespace: shop\n",
            ),
            ("k/cm.yaml", CM),
            (
                "k/ignored.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-listed}\n",
            ),
            ("shared/kustomization.yaml", "resources: [d.yaml]\n"),
            ("shared/d.yaml", DEPLOY),
            ("k/web/kustomization.yml", "resources: [svc.yaml]\n"),
            (
                "k/web/svc.yaml",
                "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n",
            ),
        ]);
        let objs = load(&f, "k").unwrap();
        let names: Vec<_> = objs
            .iter()
            .map(|o| (o.name.as_str(), o.namespace.as_deref()))
            .collect();
        assert_eq!(
            names,
            [("a", Some("shop")), ("web", Some("shop")), ("web", Some("shop"))]
        );
        assert_eq!(objs[0].value["metadata"]["namespace"], "shop");
    }

    #[test]
    fn yaml_errors_do_not_quote_the_input() {
        let bad = "apiVersion: v1\nkind: Secret\nstringData:\n  password: hunter2\n   other: hunter2\n";
        for f in [
            files(&[("d/s.yaml", bad)]),
            files(&[("d/kustomization.yaml", bad)]),
        ] {
            let e = load(&f, "d").unwrap_err();
            assert!(
                e.reason.contains("not valid YAML") && e.reason.contains("line "),
                "{e}"
            );
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn bad_manifests_name_their_file() {
        let cases = [
            (vec![("d/a.yaml", "kind: [")], "d/a.yaml", "not valid YAML"),
            (
                vec![("d/a.yaml", "apiVersion: v1\nmetadata: {name: x}\n")],
                "d/a.yaml",
                "kind is missing",
            ),
            (
                vec![("d/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")],
                "d/a.yaml",
                "metadata.name is missing",
            ),
            (
                vec![("d/a.yaml", "- just\n- a list\n")],
                "d/a.yaml",
                "not a Kubernetes object",
            ),
            (
                vec![("d/a.yaml", CM), ("d/b.yaml", CM)],
                "d/b.yaml",
                "also defined in d/a.yaml",
            ),
            (
                vec![("d/kustomization.yaml", "resources: [gone.yaml]\n")],
                "d/kustomization.yaml",
                "does not exist",
            ),
            (
                vec![("d/kustomization.yaml", "resources: []\nnamespace: [shop]\n")],
                "d/kustomization.yaml",
                "not a valid namespace",
            ),
            (
                vec![(
                    "d/a.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: my_app}\n",
                )],
                "d/a.yaml",
                "not a valid namespace",
            ),
            (
                vec![("d/kustomization.yaml", "patches: []\n")],
                "d/kustomization.yaml",
                "not supported",
            ),
            (
                vec![("d/kustomization.yaml", "resources: [../../etc]\n")],
                "d/kustomization.yaml",
                "outside the repository",
            ),
            (
                vec![(
                    "d/a.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: x-}\n",
                )],
                "d/a.yaml",
                "generateName",
            ),
        ];
        for (list, file, reason) in cases {
            let e = load(&files(&list), "d").unwrap_err();
            assert_eq!(e.file, file, "{e}");
            assert!(e.reason.contains(reason), "{e}");
        }
        assert!(
            load(&files(&[("x/a.yaml", CM)]), "missing")
                .unwrap_err()
                .reason
                .contains("spec.path")
        );
    }
}
