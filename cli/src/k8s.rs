//! What the Kubernetes API server accepts in a Secret, checked at seal time: a SealedSecret whose Secret the
//! API server would refuse can never be unsealed, so it is better not committed. The rules are apimachinery's
//! (object names, qualified names for label and annotation keys, label values, the annotation size limit) and
//! the required keys of the built-in Secret types.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use sealant_seal::Plaintext;

use crate::error::hinted;

/// The most a Secret's annotations (keys and values) may take.
const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

/// Keys and values longer than this are shown cut, in messages.
const SHOWN_CHARS: usize = 64;

fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// A name of `max` characters at most: a DNS-1123 subdomain (253, dots allowed) or label (63, no dots).
pub fn check_dns_name(value: &str, what: &str, max: usize) -> Result<()> {
    let ok_dots = max == 253 || !value.contains('.');
    if value.len() > max || !is_dns_subdomain(value) || !ok_dots {
        bail!(hinted(
            format!("`{}` is not a valid Kubernetes {what}", shown(value)),
            format!(
                "use at most {max} lowercase letters, digits and `-`{}, starting and ending with a letter or digit",
                if max == 253 { " or `.`" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// A lowercase DNS-1123 subdomain: dot-separated labels of lowercase letters, digits and `-`, each starting
/// and ending with a letter or digit, 253 characters at most.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && label.starts_with(|c: char| c.is_ascii_alphanumeric())
                && label.ends_with(|c: char| c.is_ascii_alphanumeric())
        })
}

/// Why `name` is not the name part of a qualified name (or a label value), if it is not.
fn name_part_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("the name part is empty")
    } else if name.len() > 63 {
        Some("the name part is longer than 63 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Some("only letters, digits, `-`, `_` and `.` are allowed")
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Some("it must start and end with a letter or digit")
    } else {
        None
    }
}

/// Why `key` is not a qualified name (`[prefix/]name`), if it is not.
fn qualified_name_problem(key: &str) -> Option<&'static str> {
    match key.split_once('/') {
        None => name_part_problem(key),
        Some((_, name)) if name.contains('/') => Some("it has more than one `/`"),
        Some((prefix, _)) if !is_dns_subdomain(prefix) => {
            Some("the prefix before `/` is not a lowercase DNS subdomain (like `example.com`)")
        }
        Some((_, name)) => name_part_problem(name),
    }
}

const KEY_HINT: &str = "a key is an optional lowercase DNS prefix and `/`, then at most 63 letters, digits, `-`, \
                        `_` or `.`, starting and ending with a letter or digit (e.g. `app.kubernetes.io/name`); \
                        the API server would refuse the Secret, so it could never be unsealed";

/// The Secret's labels and annotations, as the API server checks them.
pub fn check_metadata(
    label: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    for (key, value) in labels {
        if let Some(why) = qualified_name_problem(key) {
            bail!(hinted(
                format!("{label}: label key `{}` is not valid: {why}", shown(key)),
                KEY_HINT
            ));
        }
        if let Some(why) = name_part_problem(value).filter(|_| !value.is_empty()) {
            bail!(hinted(
                format!(
                    "{label}: the value `{}` of label {key} is not a valid label value: {}",
                    shown(value),
                    why.replace("the name part", "it")
                ),
                "a label value is empty or at most 63 letters, digits, `-`, `_` or `.`, starting and ending \
                 with a letter or digit; put longer text in an annotation",
            ));
        }
    }
    // the API server checks annotation keys lowercased: `Example.com/x` is accepted
    if let Some((key, why)) = annotations
        .keys()
        .find_map(|k| qualified_name_problem(&k.to_ascii_lowercase()).map(|why| (k, why)))
    {
        bail!(hinted(
            format!("{label}: annotation key `{}` is not valid: {why}", shown(key)),
            KEY_HINT
        ));
    }
    let total: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_ANNOTATION_BYTES {
        bail!(hinted(
            format!(
                "{label}: the annotations take {total} bytes, more than the {MAX_ANNOTATION_BYTES} (256 KiB) \
                 Kubernetes accepts"
            ),
            "keep large text out of annotations (a value belongs under data or stringData)",
        ));
    }
    Ok(())
}

/// The keys a Secret of a built-in type must have (values of the docker types must be JSON objects).
pub fn check_type(
    label: &str,
    type_: Option<&str>,
    data: &BTreeMap<String, Plaintext>,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    let Some(type_) = type_ else {
        return Ok(());
    };
    let fix = |what: &str| format!("{what}, or seal it as type Opaque if it is not a {type_} Secret");
    let no_key = |key: &str| format!("{label} is of type {type_} and has no `{key}`");
    let problem = match type_ {
        "kubernetes.io/tls" => ["tls.crt", "tls.key"]
            .into_iter()
            .find(|k| !data.contains_key(*k))
            .map(|key| {
                (
                    no_key(key),
                    fix(
                        "add tls.crt and tls.key (`kubectl create secret tls NAME --cert=FILE --key=FILE \
                     --dry-run=client -o yaml` makes one)",
                    ),
                )
            }),
        "kubernetes.io/basic-auth" if !data.contains_key("username") && !data.contains_key("password") => {
            Some((
                format!("{label} is of type {type_} and has neither `username` nor `password`"),
                fix("add username and/or password"),
            ))
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(|v| v.as_bytes().is_empty()) => {
            Some((
                no_key("ssh-privatekey"),
                fix("put the private key under ssh-privatekey"),
            ))
        }
        "kubernetes.io/dockerconfigjson" | "kubernetes.io/dockercfg" => {
            let docker_key = if type_ == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match data.get(docker_key) {
                None => Some((
                    no_key(docker_key),
                    fix(
                        "`kubectl create secret docker-registry NAME --docker-server=... --dry-run=client -o yaml` \
                     makes one",
                    ),
                )),
                // the value is secret: say only that it is no JSON object
                Some(value)
                    if !serde_json::from_slice::<serde_json::Value>(value.as_bytes())
                        .is_ok_and(|v| v.is_object() || v.is_null()) =>
                {
                    Some((
                        format!("{label} is of type {type_} and its `{docker_key}` is not a JSON object"),
                        fix(&format!(
                            "check the file you read {docker_key} from (a docker config.json)"
                        )),
                    ))
                }
                Some(_) => None,
            }
        }
        "kubernetes.io/service-account-token"
            if annotations
                .get("kubernetes.io/service-account.name")
                .is_none_or(String::is_empty) =>
        {
            Some((
                format!(
                    "{label} is of type {type_} and has no kubernetes.io/service-account.name annotation"
                ),
                fix("annotate it with the ServiceAccount it belongs to"),
            ))
        }
        _ => None,
    };
    match problem {
        Some((message, hint)) => bail!(hinted(message, hint)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Plaintext> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Plaintext::new(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn qualified_names_follow_apimachinery() {
        for good in [
            "app",
            "a",
            "app.kubernetes.io/name",
            "example.com/A_b-c.D",
            "x/y",
            "1-2",
            &"a".repeat(63),
            &format!("{}/n", "p".repeat(253)),
        ] {
            assert_eq!(qualified_name_problem(good), None, "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("/name", "not a lowercase DNS subdomain"),
            ("example.com/", "empty"),
            ("a/b/c", "more than one"),
            ("Example.com/x", "not a lowercase DNS subdomain"),
            ("ex..com/x", "not a lowercase DNS subdomain"),
            ("-ex.com/x", "not a lowercase DNS subdomain"),
            ("has space", "only letters"),
            ("ümlaut", "only letters"),
            ("-lead", "start and end"),
            ("trail.", "start and end"),
            (&"a".repeat(64), "longer than 63"),
            (&format!("{}/n", "p".repeat(254)), "not a lowercase DNS subdomain"),
        ] {
            let got = qualified_name_problem(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(got.contains(why), "{bad}: {got}");
        }
    }

    #[test]
    fn labels_and_annotations_are_checked_as_the_api_server_does() {
        let none = BTreeMap::new();
        check_metadata("s", &map(&[("app", ""), ("tier", "db-1.a_b")]), &none).unwrap();
        // annotation keys are checked lowercased, values are free
        check_metadata("s", &none, &map(&[("Example.com/Note", "any text / at all")])).unwrap();

        let err = check_metadata("s", &map(&[("Example.com/x", "v")]), &none).unwrap_err();
        assert!(err.to_string().contains("label key `Example.com/x`"), "{err}");
        let err = check_metadata("s", &map(&[("app", "two words")]), &none).unwrap_err();
        assert!(
            err.to_string().contains("the value `two words` of label app"),
            "{err}"
        );
        let err = check_metadata("s", &map(&[("app", &"v".repeat(64))]), &none).unwrap_err();
        assert!(err.to_string().contains("longer than 63"), "{err}");
        let long_key = "k".repeat(2000);
        let err = check_metadata("s", &none, &map(&[(&long_key, "")])).unwrap_err();
        assert!(err.to_string().len() < 300, "the key is shown cut: {err}");
        let big = "x".repeat(MAX_ANNOTATION_BYTES);
        let err = check_metadata("s", &none, &map(&[("note", &big)])).unwrap_err();
        assert!(err.to_string().contains("262148 bytes"), "{err}");
        check_metadata("s", &none, &map(&[("n", &big[4..])])).unwrap();
    }

    #[test]
    fn builtin_types_need_their_keys() {
        let none = BTreeMap::new();
        let check = |t: &str, d: &[(&str, &str)]| check_type("Secret s", Some(t), &data(d), &none);
        check("kubernetes.io/tls", &[("tls.crt", "c"), ("tls.key", "k")]).unwrap();
        let err = check("kubernetes.io/tls", &[("tls.crt", "c")]).unwrap_err();
        assert!(err.to_string().contains("has no `tls.key`"), "{err}");
        check("kubernetes.io/basic-auth", &[("password", "p")]).unwrap();
        assert!(check("kubernetes.io/basic-auth", &[("user", "u")]).is_err());
        check("kubernetes.io/ssh-auth", &[("ssh-privatekey", "k")]).unwrap();
        assert!(check("kubernetes.io/ssh-auth", &[("id_ed25519", "k")]).is_err());
        assert!(check("kubernetes.io/ssh-auth", &[("ssh-privatekey", "")]).is_err());
        check(
            "kubernetes.io/dockerconfigjson",
            &[(".dockerconfigjson", r#"{"auths":{}}"#)],
        )
        .unwrap();
        assert!(check("kubernetes.io/dockerconfigjson", &[("config.json", "{}")]).is_err());
        assert!(check("kubernetes.io/dockerconfigjson", &[(".dockerconfigjson", "[1]")]).is_err());
        let err = check(
            "kubernetes.io/dockercfg",
            &[(".dockercfg", "hunter2 is not json")],
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("not a JSON object") && !text.contains("hunter2"),
            "{text}"
        );
        let err = check("kubernetes.io/service-account-token", &[("token", "t")]).unwrap_err();
        assert!(err.to_string().contains("service-account.name"), "{err}");
        check("Opaque", &[]).unwrap();
        check("example.com/custom", &[]).unwrap();
        check_type("s", None, &data(&[]), &none).unwrap();
    }

    #[test]
    fn dns_names() {
        check_dns_name("db.prod-1", "name", 253).unwrap();
        check_dns_name("prod-1", "namespace", 63).unwrap();
        for (bad, max) in [
            ("Db", 253),
            ("a..b", 253),
            ("a.-b", 253),
            ("a.b", 63),
            ("-a", 63),
            ("", 63),
        ] {
            assert!(check_dns_name(bad, "name", max).is_err(), "{bad}");
        }
    }
}
