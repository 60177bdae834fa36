//! `spec.template.data` of SealedSecrets and ExternalSecrets: keys rendered from the other values, e.g.
//! `postgres://{{ .username }}:{{ .password }}@db:5432/app`. A placeholder is `{{ .KEY }}` (spaces optional)
//! where KEY is a data key of the SealedSecret; `{{ "{{" }}` writes a literal `{{`.

use std::collections::BTreeMap;

use sealant_seal::Plaintext;
use zeroize::Zeroizing;

/// Why a template cannot be rendered. Carries key names and positions only, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template for key {key}: `{{{{` at byte {at} is never closed with `}}}}`")]
    Unclosed { key: String, at: usize },
    #[error("template for key {key}: `{{{{{expr}}}}}` is not a placeholder; write `{{{{ .KEY }}}}`")]
    BadPlaceholder { key: String, expr: String },
    #[error("template for key {key} uses `{missing}`, which is not a key of this SealedSecret")]
    UnknownKey { key: String, missing: String },
}

/// Renders one template over `values`.
pub fn render(
    key: &str,
    template: &str,
    values: &BTreeMap<String, Plaintext>,
) -> Result<Plaintext, TemplateError> {
    let mut out = Zeroizing::new(Vec::with_capacity(template.len()));
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| TemplateError::Unclosed {
            key: key.to_owned(),
            at: offset + start,
        })?;
        let expr = after[..end].trim();
        if expr == "\"{{\"" {
            out.extend_from_slice(b"{{");
        } else {
            let name = expr
                .strip_prefix('.')
                .filter(|n| {
                    !n.is_empty()
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                })
                .ok_or_else(|| TemplateError::BadPlaceholder {
                    key: key.to_owned(),
                    expr: expr.to_owned(),
                })?;
            let value = values.get(name).ok_or_else(|| TemplateError::UnknownKey {
                key: key.to_owned(),
                missing: name.to_owned(),
            })?;
            out.extend_from_slice(value.as_bytes());
        }
        let consumed = start + 2 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(Plaintext::new(std::mem::take(&mut *out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<String, Plaintext> {
        [("user", "app"), ("password", "s3cret"), ("db-host", "db.prod")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Plaintext::new(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn renders_placeholders() {
        let out = render(
            "url",
            "postgres://{{ .user }}:{{.password}}@{{ .db-host }}:5432",
            &values(),
        )
        .unwrap();
        assert_eq!(out.as_bytes(), b"postgres://app:s3cret@db.prod:5432");
        assert_eq!(
            render("k", "no placeholders", &values()).unwrap().as_bytes(),
            b"no placeholders"
        );
        assert_eq!(
            render("k", r#"{{ "{{" }} .user }}"#, &values())
                .unwrap()
                .as_bytes(),
            b"{{ .user }}"
        );
    }

    #[test]
    fn errors_name_keys_not_values() {
        let e = render("url", "x {{ .nope }}", &values()).unwrap_err();
        assert_eq!(
            e,
            TemplateError::UnknownKey {
                key: "url".into(),
                missing: "nope".into()
            }
        );
        assert!(matches!(
            render("url", "x {{ .user ", &values()),
            Err(TemplateError::Unclosed { at: 2, .. })
        ));
        let e = render("url", "{{ password }}", &values()).unwrap_err();
        assert!(matches!(e, TemplateError::BadPlaceholder { .. }));
        assert!(!e.to_string().contains("s3cret"));
    }
}
