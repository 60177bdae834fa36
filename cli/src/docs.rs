//! Reading and writing multi-document YAML/JSON manifests.

use anyhow::Result;
use serde_json::Value;

use crate::Format;
use crate::error::hinted;

/// Parses every document of a YAML or JSON stream; `kind: List` documents are flattened into their items and
/// empty documents are dropped.
///
/// JSON is read by the YAML parser too, except what YAML refuses: a key longer than 1024 characters is not a
/// YAML implicit key, yet valid JSON (and what sealant itself writes for such a Secret). Text the YAML parser
/// refuses is read again as a stream of JSON values; when that fails as well, the YAML error is the one told.
pub fn parse_documents(text: &str, source: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = match serde_saphyr::from_multiple(text) {
        Ok(docs) => docs,
        Err(e) => json_stream(text).ok_or_else(|| {
            hinted(
                format!("{source} is not valid YAML or JSON: {}", yaml_error(&e)),
                yaml_hint(&e),
            )
        })?,
    };
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        if doc.is_null() {
            continue;
        }
        if doc
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"))
            && let Some(items) = doc.get("items").and_then(Value::as_array)
        {
            out.extend(items.iter().cloned());
            continue;
        }
        out.push(doc);
    }
    Ok(out)
}

/// `text` as one or more JSON values one after the other (a byte order mark, which YAML allows, skipped), or
/// None if it is not that.
fn json_stream(text: &str) -> Option<Vec<Value>> {
    serde_json::Deserializer::from_str(text.trim_start_matches('\u{feff}'))
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

/// What to do about a YAML parser error: a syntax error is fixed where it is; an input over the parser's limits
/// (nesting depth, alias expansion, size: the guards against YAML bombs) is not a syntax problem at all.
pub fn yaml_hint(e: &serde_saphyr::Error) -> &'static str {
    let mut e = e.without_snippet();
    while let serde_saphyr::Error::AliasError { error, .. } = e {
        e = error.without_snippet();
    }
    let over_limit = match e {
        serde_saphyr::Error::Budget { .. } => true,
        serde_saphyr::Error::IOError { cause } => cause.kind() == std::io::ErrorKind::FileTooLarge,
        serde_saphyr::Error::ExternalMessage { source, .. } => matches!(
            &**source,
            serde_saphyr::ExternalMessageSource::Parser(scan)
                if matches!(scan.kind(), serde_saphyr::granit_parser::ErrorKind::RecursionLimitExceeded)
        ),
        _ => false,
    };
    if over_limit {
        "the document is nested deeper, expands more aliases or is bigger than a manifest should be (limits \
             against YAML bombs): flatten it, write the values out instead of `*alias` references, or split it \
             into several files"
    } else {
        "fix the syntax at that line and column (indentation and `key: value` pairs are the usual suspects)"
    }
}

/// A YAML parser error as text, without the parser's own `error: ` prefix (ours already says it) and without
/// the input lines the parser quotes after its first line: those are Secret values.
pub fn yaml_error(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// The `kind` and `apiVersion` of a document, for messages.
pub fn kind_of(doc: &Value) -> (&str, &str) {
    (
        doc.get("kind").and_then(Value::as_str).unwrap_or("<no kind>"),
        doc.get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("<no apiVersion>"),
    )
}

/// Renders documents: YAML documents separated by `---`, or JSON (a `List` when there are several).
pub fn render(docs: &[Value], format: Format) -> Result<String> {
    match format {
        Format::Yaml => {
            let mut out = String::new();
            for (i, doc) in docs.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&to_yaml(doc)?);
            }
            Ok(out)
        }
        Format::Json => {
            let value = match docs {
                [one] => one.clone(),
                many => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": many}),
            };
            Ok(serde_json::to_string_pretty(&value)? + "\n")
        }
    }
}

/// YAML with every string as a plain or quoted scalar (no folded blocks), so sealed values stay on one line.
pub fn to_yaml(doc: &Value) -> Result<String> {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.prefer_block_scalars = false;
    let text = serde_saphyr::to_string_with_options(doc, options)?;
    Ok(if text.ends_with('\n') { text } else { text + "\n" })
}

/// One document of a YAML stream as written, with the separator line that preceded it (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub separator: Option<String>,
    pub body: String,
}

/// Splits YAML text at `---` lines, keeping the exact text of each document so documents that are not
/// rewritten stay byte-identical. A document may start on the `---` line itself (`--- {kind: …}`, `--- |`):
/// then the separator is only the marker and its blanks, and the rest of the line is the document's.
pub fn split_segments(text: &str) -> Vec<Segment> {
    let mut segments = vec![Segment {
        separator: None,
        body: String::new(),
    }];
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_separator = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if is_separator {
            let after = line[3..].trim_start_matches([' ', '\t']);
            let rest = after.trim_end_matches(['\n', '\r']);
            let cut = if rest.is_empty() || rest.starts_with('#') {
                line.len()
            } else {
                line.len() - after.len()
            };
            segments.push(Segment {
                separator: Some(line[..cut].to_owned()),
                body: line[cut..].to_owned(),
            });
        } else {
            segments.last_mut().expect("never empty").body.push_str(line);
        }
    }
    segments
}

pub fn join_segments(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        if let Some(sep) = &s.separator {
            out.push_str(sep);
        }
        out.push_str(&s.body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_exactly() {
        let text = "# head\na: 1\n---\nb: 2\n--- # c\nc: 3\n---\n";
        let segs = split_segments(text);
        assert_eq!(segs.len(), 4);
        assert_eq!(segs[1].body, "b: 2\n");
        assert_eq!(join_segments(&segs), text);

        let text = "a: 1\n--- {kind: SealedSecret}\n---\tb: 2\n";
        let segs = split_segments(text);
        assert_eq!(segs[1].separator.as_deref(), Some("--- "));
        assert_eq!(segs[1].body, "{kind: SealedSecret}\n");
        assert_eq!(segs[2].body, "b: 2\n");
        assert_eq!(join_segments(&segs), text);
    }

    #[test]
    fn lists_are_flattened_and_empty_docs_dropped() {
        let docs =
            parse_documents("---\n---\nkind: List\nitems: [{a: 1}, {b: 2}]\n---\nc: 3\n", "t").unwrap();
        assert_eq!(docs.len(), 3);
    }

    #[test]
    fn json_that_yaml_refuses_parses() {
        // Keys over 1024 characters are no YAML implicit keys; JSON has no such limit.
        let key = "k".repeat(1100);
        let text =
            format!("{{\"kind\": \"Secret\", \"metadata\": {{\"annotations\": {{\"{key}\": \"v\"}}}}}}\n");
        assert!(
            serde_saphyr::from_multiple::<Value>(&text).is_err(),
            "the YAML parser took it after all"
        );
        let docs = parse_documents(&text, "t").unwrap();
        assert_eq!(docs[0]["metadata"]["annotations"][&key], "v");
        // Two JSON values one after the other are two documents.
        let docs = parse_documents(&format!("{text}{text}"), "t").unwrap();
        assert_eq!(docs.len(), 2);
        // Broken JSON still gets the YAML parser's message and hint.
        let e = parse_documents(&text[..text.len() - 3], "t").unwrap_err();
        assert!(format!("{e:#}").contains("t is not valid YAML or JSON"), "{e:#}");
    }

    #[test]
    fn json_input_parses() {
        let docs = parse_documents(r#"{"kind": "Secret", "data": {"a": "Yg=="}}"#, "t").unwrap();
        assert_eq!(docs[0]["data"]["a"], "Yg==");
    }
}
