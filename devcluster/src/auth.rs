//! Authentication: the admin bearer token, extra static tokens, and signed ServiceAccount tokens
//! (ES256 JWTs, as asymmetric as the real server's, issued by the TokenRequest subresource and validated by
//! TokenReview; relying parties such as OpenBao's kubernetes auth refuse symmetric algorithms).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::store::State;
use crate::util::now_unix;

/// The issuer written into ServiceAccount tokens.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// User uid (may be empty).
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes.
    pub extra: HashMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with groups (`system:authenticated` is added).
    pub fn new(name: &str, groups: &[&str]) -> Self {
        let mut g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        if !g.iter().any(|x| x == "system:authenticated") {
            g.push("system:authenticated".into());
        }
        Self {
            name: name.into(),
            uid: String::new(),
            groups: g,
            extra: HashMap::new(),
        }
    }

    /// The identity of a ServiceAccount.
    pub fn service_account(ns: &str, name: &str, uid: &str) -> Self {
        let mut u = Self::new(
            &format!("system:serviceaccount:{ns}:{name}"),
            &["system:serviceaccounts", &format!("system:serviceaccounts:{ns}")],
        );
        u.uid = uid.into();
        u
    }

    /// Whether this user is a cluster admin.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }

    /// The `UserInfo` JSON used in reviews.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            v["extra"] = json!(self.extra);
        }
        v
    }
}

/// Issues and checks tokens.
#[derive(Debug)]
pub struct Authenticator {
    admin_token: String,
    key: EcdsaKeyPair,
    static_tokens: Mutex<HashMap<String, UserInfo>>,
}

/// Claims of a verified ServiceAccount token.
#[derive(Debug, Clone)]
pub struct SaClaims {
    /// The ServiceAccount identity.
    pub user: UserInfo,
    /// Audiences.
    pub audiences: Vec<String>,
    /// Expiry (unix seconds).
    pub exp: i64,
}

impl Authenticator {
    /// A new authenticator with a random signing key.
    pub fn new(admin_token: String) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generating a P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("a freshly generated P-256 key parses");
        Self {
            admin_token,
            key,
            static_tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The admin token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Registers an extra bearer token for a user.
    pub fn add_token(&self, token: &str, user: UserInfo) {
        self.static_tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.into(), user);
    }

    /// Authenticates a bearer token against the current state.
    pub fn authenticate(&self, token: &str, st: &State) -> Option<UserInfo> {
        if constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            return Some(UserInfo::new("devcluster-admin", &["system:masters"]));
        }
        if let Some(u) = self
            .static_tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
        {
            return Some(u.clone());
        }
        self.verify_sa_token(token, st).map(|c| c.user)
    }

    /// The base64url ES256 signature (r || s) of a JWT signing input.
    fn sign(&self, signing_input: &str) -> String {
        let sig = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .expect("ECDSA signing");
        URL_SAFE_NO_PAD.encode(sig.as_ref())
    }

    /// Signs a token for a ServiceAccount.
    pub fn issue_sa_token(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        audiences: &[String],
        ttl_secs: i64,
    ) -> (String, i64) {
        let now = now_unix();
        let exp = now + ttl_secs;
        let header = json!({"alg": "ES256", "kid": "devcluster", "typ": "JWT"});
        let claims = json!({
            "aud": audiences,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:{ns}:{name}"),
            "jti": crate::util::uuid(),
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": uid}},
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        (format!("{signing_input}.{}", self.sign(&signing_input)), exp)
    }

    /// Signs a non-expiring token for a `kubernetes.io/service-account-token` Secret (the legacy
    /// token controller's job); it stops working when the Secret or the ServiceAccount goes away.
    pub fn issue_secret_token(
        &self,
        ns: &str,
        sa: &str,
        sa_uid: &str,
        secret: &str,
        secret_uid: &str,
    ) -> String {
        let header = json!({"alg": "ES256", "kid": "devcluster", "typ": "JWT"});
        let claims = json!({
            "iss": "kubernetes/serviceaccount",
            "sub": format!("system:serviceaccount:{ns}:{sa}"),
            "kubernetes.io/serviceaccount/namespace": ns,
            "kubernetes.io/serviceaccount/secret.name": secret,
            "kubernetes.io/serviceaccount/service-account.name": sa,
            "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa, "uid": sa_uid},
                "secret": {"name": secret, "uid": secret_uid}},
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        format!("{signing_input}.{}", self.sign(&signing_input))
    }

    /// Verifies a ServiceAccount token: signature, expiry, and that the account still exists with the same uid.
    pub fn verify_sa_token(&self, token: &str, st: &State) -> Option<SaClaims> {
        let (signing_input, sig) = token.rsplit_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        )
        .verify(signing_input.as_bytes(), &sig)
        .ok()?;
        let (_, payload) = signing_input.split_once('.')?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        // Secret-bound legacy tokens carry no expiry
        let exp = match claims.get("exp") {
            Some(e) => e.as_i64()?,
            None if claims["kubernetes.io"].get("secret").is_some() => i64::MAX,
            None => return None,
        };
        if exp <= now_unix() {
            return None;
        }
        let k = &claims["kubernetes.io"];
        let ns = k["namespace"].as_str()?;
        let name = k["serviceaccount"]["name"].as_str()?;
        let uid = k["serviceaccount"]["uid"].as_str()?;
        let sa = st.raw_object("", "serviceaccounts", ns, name)?;
        if sa["metadata"]["uid"].as_str() != Some(uid) || !sa["metadata"]["deletionTimestamp"].is_null() {
            return None;
        }
        if let Some(secret) = claims["kubernetes.io"].get("secret") {
            let s = st.raw_object("", "secrets", ns, secret["name"].as_str()?)?;
            if s["metadata"]["uid"] != secret["uid"] {
                return None;
            }
        }
        let mut audiences: Vec<String> = claims["aud"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default();
        if audiences.is_empty() {
            // legacy tokens are valid for the API server's own audience
            audiences.push(ISSUER.to_string());
        }
        Some(SaClaims {
            user: UserInfo::service_account(ns, name, uid),
            audiences,
            exp,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
