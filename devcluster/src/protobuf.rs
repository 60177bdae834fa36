//! A small decoder for the Kubernetes protobuf envelope (`application/vnd.kubernetes.protobuf`).
//!
//! kubectl's typed clients (`kubectl create secret|configmap|namespace|serviceaccount|role|...`,
//! `kubectl auth can-i`, `kubectl create token`) send protobuf request bodies. Responses are always
//! JSON (kubectl accepts both). Only the kinds below are understood; unknown fields are skipped.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::errors::ApiError;

#[derive(Debug, Clone, Copy)]
enum K {
    Str,
    Bytes,
    Int,
    Bool,
    Msg(&'static [F]),
    MapSS,
    MapSB,
    RepStr,
    RepMsg(&'static [F]),
    /// `intstr.IntOrString`: {type, intVal, strVal} decoded to a JSON number or string.
    IntOrStr,
}

#[derive(Debug, Clone, Copy)]
struct F(u64, &'static str, K);

const OWNER_REF: &[F] = &[
    F(1, "kind", K::Str),
    F(3, "name", K::Str),
    F(4, "uid", K::Str),
    F(5, "apiVersion", K::Str),
    F(6, "controller", K::Bool),
    F(7, "blockOwnerDeletion", K::Bool),
];
const META: &[F] = &[
    F(1, "name", K::Str),
    F(2, "generateName", K::Str),
    F(3, "namespace", K::Str),
    F(5, "uid", K::Str),
    F(6, "resourceVersion", K::Str),
    F(7, "generation", K::Int),
    F(11, "labels", K::MapSS),
    F(12, "annotations", K::MapSS),
    F(13, "ownerReferences", K::RepMsg(OWNER_REF)),
    F(14, "finalizers", K::RepStr),
];
const SECRET: &[F] = &[
    F(1, "metadata", K::Msg(META)),
    F(2, "data", K::MapSB),
    F(3, "type", K::Str),
    F(4, "stringData", K::MapSS),
    F(5, "immutable", K::Bool),
];
const CONFIGMAP: &[F] = &[
    F(1, "metadata", K::Msg(META)),
    F(2, "data", K::MapSS),
    F(3, "binaryData", K::MapSB),
    F(4, "immutable", K::Bool),
];
const NS_SPEC: &[F] = &[F(1, "finalizers", K::RepStr)];
const NAMESPACE: &[F] = &[F(1, "metadata", K::Msg(META)), F(2, "spec", K::Msg(NS_SPEC))];
const LOCAL_REF: &[F] = &[F(1, "name", K::Str)];
const SERVICE_ACCOUNT: &[F] = &[
    F(1, "metadata", K::Msg(META)),
    F(3, "imagePullSecrets", K::RepMsg(LOCAL_REF)),
    F(4, "automountServiceAccountToken", K::Bool),
];
const RESOURCE_ATTRS: &[F] = &[
    F(1, "namespace", K::Str),
    F(2, "verb", K::Str),
    F(3, "group", K::Str),
    F(4, "version", K::Str),
    F(5, "resource", K::Str),
    F(6, "subresource", K::Str),
    F(7, "name", K::Str),
];
const NONRESOURCE_ATTRS: &[F] = &[F(1, "path", K::Str), F(2, "verb", K::Str)];
const SSAR_SPEC: &[F] = &[
    F(1, "resourceAttributes", K::Msg(RESOURCE_ATTRS)),
    F(2, "nonResourceAttributes", K::Msg(NONRESOURCE_ATTRS)),
];
const SSAR: &[F] = &[F(1, "metadata", K::Msg(META)), F(2, "spec", K::Msg(SSAR_SPEC))];
const SAR_SPEC: &[F] = &[
    F(1, "resourceAttributes", K::Msg(RESOURCE_ATTRS)),
    F(2, "nonResourceAttributes", K::Msg(NONRESOURCE_ATTRS)),
    F(3, "user", K::Str),
    F(4, "groups", K::RepStr),
    F(6, "uid", K::Str),
];
const SAR: &[F] = &[F(1, "metadata", K::Msg(META)), F(2, "spec", K::Msg(SAR_SPEC))];
const BOUND_REF: &[F] = &[
    F(1, "kind", K::Str),
    F(2, "apiVersion", K::Str),
    F(3, "name", K::Str),
    F(4, "uid", K::Str),
];
const TOKEN_SPEC: &[F] = &[
    F(1, "audiences", K::RepStr),
    F(3, "boundObjectRef", K::Msg(BOUND_REF)),
    F(4, "expirationSeconds", K::Int),
];
const TOKEN_REQUEST: &[F] = &[F(1, "metadata", K::Msg(META)), F(2, "spec", K::Msg(TOKEN_SPEC))];
const TOKEN_REVIEW_SPEC: &[F] = &[F(1, "token", K::Str), F(2, "audiences", K::RepStr)];
const TOKEN_REVIEW: &[F] = &[
    F(1, "metadata", K::Msg(META)),
    F(2, "spec", K::Msg(TOKEN_REVIEW_SPEC)),
];
const SELF_REVIEW: &[F] = &[F(1, "metadata", K::Msg(META))];
const POLICY_RULE: &[F] = &[
    F(1, "verbs", K::RepStr),
    F(2, "apiGroups", K::RepStr),
    F(3, "resources", K::RepStr),
    F(4, "resourceNames", K::RepStr),
    F(5, "nonResourceURLs", K::RepStr),
];
const ROLE: &[F] = &[
    F(1, "metadata", K::Msg(META)),
    F(2, "rules", K::RepMsg(POLICY_RULE)),
];
const SUBJECT: &[F] = &[
    F(1, "kind", K::Str),
    F(2, "apiGroup", K::Str),
    F(3, "name", K::Str),
    F(4, "namespace", K::Str),
];
const ROLE_REF: &[F] = &[
    F(1, "apiGroup", K::Str),
    F(2, "kind", K::Str),
    F(3, "name", K::Str),
];
const BINDING: &[F] = &[
    F(1, "metadata", K::Msg(META)),
    F(2, "subjects", K::RepMsg(SUBJECT)),
    F(3, "roleRef", K::Msg(ROLE_REF)),
];
const LABEL_SELECTOR: &[F] = &[F(1, "matchLabels", K::MapSS)];
const DELETE_PRECONDITIONS: &[F] = &[F(1, "uid", K::Str), F(2, "resourceVersion", K::Str)];
const DELETE_OPTIONS: &[F] = &[
    F(1, "gracePeriodSeconds", K::Int),
    F(2, "preconditions", K::Msg(DELETE_PRECONDITIONS)),
    F(3, "orphanDependents", K::Bool),
    F(4, "propagationPolicy", K::Str),
    F(5, "dryRun", K::RepStr),
];
const CONTAINER_PORT: &[F] = &[
    F(1, "name", K::Str),
    F(2, "hostPort", K::Int),
    F(3, "containerPort", K::Int),
    F(4, "protocol", K::Str),
    F(5, "hostIP", K::Str),
];
const ENV_VAR: &[F] = &[F(1, "name", K::Str), F(2, "value", K::Str)];
const CONTAINER: &[F] = &[
    F(1, "name", K::Str),
    F(2, "image", K::Str),
    F(3, "command", K::RepStr),
    F(4, "args", K::RepStr),
    F(5, "workingDir", K::Str),
    F(6, "ports", K::RepMsg(CONTAINER_PORT)),
    F(7, "env", K::RepMsg(ENV_VAR)),
    F(14, "imagePullPolicy", K::Str),
];
const POD_SPEC: &[F] = &[
    F(2, "containers", K::RepMsg(CONTAINER)),
    F(3, "restartPolicy", K::Str),
    F(6, "dnsPolicy", K::Str),
    F(7, "nodeSelector", K::MapSS),
    F(8, "serviceAccountName", K::Str),
];
const POD: &[F] = &[F(1, "metadata", K::Msg(META)), F(2, "spec", K::Msg(POD_SPEC))];
const POD_TEMPLATE: &[F] = &[F(1, "metadata", K::Msg(META)), F(2, "spec", K::Msg(POD_SPEC))];
const DEPLOYMENT_SPEC: &[F] = &[
    F(1, "replicas", K::Int),
    F(2, "selector", K::Msg(LABEL_SELECTOR)),
    F(3, "template", K::Msg(POD_TEMPLATE)),
];
const DEPLOYMENT: &[F] = &[
    F(1, "metadata", K::Msg(META)),
    F(2, "spec", K::Msg(DEPLOYMENT_SPEC)),
];
const SERVICE_PORT: &[F] = &[
    F(1, "name", K::Str),
    F(2, "protocol", K::Str),
    F(3, "port", K::Int),
    F(4, "targetPort", K::IntOrStr),
    F(5, "nodePort", K::Int),
];
const SERVICE_SPEC: &[F] = &[
    F(1, "ports", K::RepMsg(SERVICE_PORT)),
    F(2, "selector", K::MapSS),
    F(3, "clusterIP", K::Str),
    F(4, "type", K::Str),
];
const SERVICE: &[F] = &[F(1, "metadata", K::Msg(META)), F(2, "spec", K::Msg(SERVICE_SPEC))];
const INT_OR_STRING: &[F] = &[
    F(1, "type", K::Int),
    F(2, "intVal", K::Int),
    F(3, "strVal", K::Str),
];
const TYPE_META: &[F] = &[F(1, "apiVersion", K::Str), F(2, "kind", K::Str)];
const UNKNOWN: &[F] = &[F(1, "typeMeta", K::Msg(TYPE_META)), F(2, "raw", K::Bytes)];

/// Integer fields that are pointers in Go, where an explicit 0 means something.
const POINTER_INTS: &[&str] = &[
    "replicas",
    "expirationSeconds",
    "gracePeriodSeconds",
    "type",
    "intVal",
];

fn schema_for(kind: &str) -> Option<&'static [F]> {
    Some(match kind {
        "Secret" => SECRET,
        "ConfigMap" => CONFIGMAP,
        "Namespace" => NAMESPACE,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "SelfSubjectAccessReview" => SSAR,
        "SubjectAccessReview" | "LocalSubjectAccessReview" => SAR,
        "TokenRequest" => TOKEN_REQUEST,
        "TokenReview" => TOKEN_REVIEW,
        "SelfSubjectReview" | "SelfSubjectRulesReview" => SELF_REVIEW,
        "Role" | "ClusterRole" => ROLE,
        "RoleBinding" | "ClusterRoleBinding" => BINDING,
        "DeleteOptions" => DELETE_OPTIONS,
        "LabelSelector" => LABEL_SELECTOR,
        "Pod" => POD,
        "Deployment" => DEPLOYMENT,
        "Service" => SERVICE,
        _ => return None,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn malformed() -> ApiError {
    ApiError::bad_request("malformed protobuf body")
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(malformed)?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(malformed())
    }

    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let len = usize::try_from(self.varint()?).map_err(|_| malformed())?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(malformed)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn skip(&mut self, wire: u64) -> Result<(), ApiError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            _ => Err(malformed()),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), ApiError> {
        if self.pos + n > self.buf.len() {
            return Err(malformed());
        }
        self.pos += n;
        Ok(())
    }
}

fn utf8(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| malformed())
}

fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), ApiError> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), json!(""));
    while r.pos < b.len() {
        let key = r.varint()?;
        match (key >> 3, key & 7) {
            (1, 2) => k = utf8(r.bytes()?)?,
            (2, 2) => {
                let raw = r.bytes()?;
                v = if bytes_value {
                    json!(STANDARD.encode(raw))
                } else {
                    json!(utf8(raw)?)
                };
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok((k, v))
}

fn decode(buf: &[u8], schema: &[F], depth: usize) -> Result<Map<String, Value>, ApiError> {
    if depth > 16 {
        return Err(malformed());
    }
    let mut out = Map::new();
    let mut r = Reader { buf, pos: 0 };
    while r.pos < buf.len() {
        let key = r.varint()?;
        let (num, wire) = (key >> 3, key & 7);
        let Some(F(_, name, kind)) = schema.iter().find(|f| f.0 == num) else {
            r.skip(wire)?;
            continue;
        };
        let name = (*name).to_string();
        match (kind, wire) {
            (K::Str, 2) => {
                // Go's zero values are encoded too; JSON (omitempty) would not carry them
                let v = utf8(r.bytes()?)?;
                if !v.is_empty() {
                    out.insert(name, json!(v));
                }
            }
            (K::Bytes, 2) => {
                out.insert(name, json!(STANDARD.encode(r.bytes()?)));
            }
            (K::Int, 0) => {
                let v = r.varint()? as i64;
                // pointer fields keep an explicit 0; plain ints are omitempty
                if v != 0 || POINTER_INTS.contains(&name.as_str()) {
                    out.insert(name, json!(v));
                }
            }
            (K::Bool, 0) => {
                out.insert(name, json!(r.varint()? != 0));
            }
            (K::Msg(s), 2) => {
                out.insert(name, Value::Object(decode(r.bytes()?, s, depth + 1)?));
            }
            (K::MapSS | K::MapSB, 2) => {
                let (k, v) = map_entry(r.bytes()?, matches!(kind, K::MapSB))?;
                out.entry(name).or_insert_with(|| json!({}))[k] = v;
            }
            (K::RepStr, 2) => {
                let s = utf8(r.bytes()?)?;
                if let Value::Array(a) = out.entry(name).or_insert_with(|| json!([])) {
                    a.push(json!(s));
                }
            }
            (K::RepMsg(s), 2) => {
                let m = decode(r.bytes()?, s, depth + 1)?;
                if let Value::Array(a) = out.entry(name).or_insert_with(|| json!([])) {
                    a.push(Value::Object(m));
                }
            }
            (K::IntOrStr, 2) => {
                let m = decode(r.bytes()?, INT_OR_STRING, depth + 1)?;
                let v = if m.get("type").and_then(Value::as_i64) == Some(1) {
                    m.get("strVal").cloned().unwrap_or_else(|| json!(""))
                } else {
                    m.get("intVal").cloned().unwrap_or_else(|| json!(0))
                };
                out.insert(name, v);
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(out)
}

/// Decodes a protobuf-enveloped object into its JSON form.
pub fn decode_object(body: &[u8]) -> Result<Value, ApiError> {
    let inner = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| ApiError::bad_request("missing protobuf envelope"))?;
    let unknown = decode(inner, UNKNOWN, 0)?;
    let api_version = unknown["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = unknown["typeMeta"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let schema = schema_for(&kind).ok_or_else(|| {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("devcluster cannot decode protobuf bodies of kind {kind:?}; send JSON"),
        )
    })?;
    let raw = STANDARD
        .decode(unknown.get("raw").and_then(Value::as_str).unwrap_or_default())
        .map_err(|_| malformed())?;
    let mut obj = decode(&raw, schema, 0)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((num << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_secret() {
        let meta = [field(1, b"s1"), field(3, b"ns")].concat();
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let secret = [field(1, &meta), field(2, &entry), field(3, b"Opaque")].concat();
        let tm = [field(1, b"v1"), field(2, b"Secret")].concat();
        let unknown = [field(1, &tm), field(2, &secret)].concat();
        let body = [b"k8s\0".as_slice(), &unknown].concat();
        let v = decode_object(&body).unwrap();
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["metadata"]["name"], "s1");
        assert_eq!(v["data"]["k"], "dg==");
        assert_eq!(v["type"], "Opaque");
        assert!(decode_object(b"k8s\0\x0a\xff").is_err());
    }
}
