//! `.sealant.yaml`: repository rules that choose recipients (and scope) by output path, like SOPS's
//! creation_rules. Found by walking up from the output path.
//!
//! ```yaml
//! creation_rules:
//!   - path_regex: ^clusters/prod/        # matched against the path relative to this file; optional
//!     recipients: [age1…, age1…]         # inline recipients
//!     recipients_file: keys/prod.txt     # and/or a recipients file, relative to this file
//!     scope: strict                      # optional: strict | namespace-wide | cluster-wide
//! ```
//! The first rule that matches wins.

use std::path::{Component, Path, PathBuf};

use anyhow::{Result, bail};
use regex::Regex;
use sealant_seal::{Recipient, Scope, parse_recipients};
use serde::Deserialize;

use crate::RecipientArgs;
use crate::error::hinted;
use crate::files::read_file;

pub const CONFIG_FILE: &str = ".sealant.yaml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    creation_rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    path_regex: Option<String>,
    #[serde(default)]
    recipients: Vec<String>,
    recipients_file: Option<PathBuf>,
    scope: Option<String>,
}

/// Recipients and scope chosen for one output.
#[derive(Debug)]
pub struct Choice {
    pub recipients: Vec<Recipient>,
    pub scope: Scope,
}

fn absolute(p: &Path) -> PathBuf {
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The nearest `.sealant.yaml` at or above `anchor` (a file that may not exist yet, or a directory).
pub fn find(anchor: &Path) -> Option<PathBuf> {
    let anchor = absolute(anchor);
    let start = if anchor.is_dir() {
        anchor.as_path()
    } else {
        anchor.parent()?
    };
    start
        .ancestors()
        .map(|d| d.join(CONFIG_FILE))
        .find(|c| c.is_file())
}

fn recipients_from_flags(args: &RecipientArgs) -> Result<Vec<Recipient>> {
    let mut out = Vec::new();
    for r in &args.recipients {
        out.push(r.parse::<Recipient>().map_err(|e| {
            hinted(
                e.to_string(),
                "pass the cluster's public key (`age1…`), not a fingerprint or private key",
            )
        })?);
    }
    for f in &args.recipients_file {
        let text = read_file(f, "--recipients-file")?;
        let rs = parse_recipients(&text).map_err(|e| {
            hinted(
                format!("{}: {e}", f.display()),
                "put one `age1…` recipient per line",
            )
        })?;
        if rs.is_empty() {
            bail!(hinted(
                format!("{} holds no recipients", f.display()),
                "put one `age1…` recipient per line"
            ));
        }
        out.extend(rs);
    }
    Ok(out)
}

/// Chooses recipients and scope for output at `anchor`: flags first, then the matching `.sealant.yaml` rule.
pub fn choose(args: &RecipientArgs, scope_flag: Option<Scope>, anchor: &Path) -> Result<Choice> {
    let from_flags = recipients_from_flags(args)?;
    let rule = match find(anchor) {
        Some(path) => matching_rule(&path, anchor)?,
        None => None,
    };
    let (rule_recipients, rule_scope) = rule.unwrap_or_default();
    let recipients = if from_flags.is_empty() {
        rule_recipients
    } else {
        from_flags
    };
    if recipients.is_empty() {
        bail!(hinted(
            "no recipients to seal to",
            format!(
                "pass --recipient age1… or --recipients-file FILE (get the cluster's with `sealant recipients \
                 fetch`), or add a creation rule to {CONFIG_FILE} in the repository"
            ),
        ));
    }
    Ok(Choice {
        recipients,
        scope: scope_flag.or(rule_scope).unwrap_or_default(),
    })
}

type RuleChoice = (Vec<Recipient>, Option<Scope>);

fn matching_rule(config: &Path, anchor: &Path) -> Result<Option<RuleChoice>> {
    let text = read_file(config, CONFIG_FILE)?;
    let file: ConfigFile = serde_saphyr::from_str(&text).map_err(|e| {
        hinted(
            format!(
                "{} is not a valid sealant config: {}",
                config.display(),
                crate::docs::yaml_error(&e)
            ),
            "it takes `creation_rules:` entries with path_regex, recipients, recipients_file and scope",
        )
    })?;
    let base = config.parent().unwrap_or(Path::new("/"));
    let anchor = absolute(anchor);
    let rel = anchor.strip_prefix(base).unwrap_or(&anchor);
    let rel = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    for (i, rule) in file.creation_rules.iter().enumerate() {
        let what = || format!("{} creation_rules[{i}]", config.display());
        if let Some(re) = &rule.path_regex {
            let re = Regex::new(re).map_err(|e| {
                hinted(
                    format!("{}: bad path_regex: {e}", what()),
                    "fix the regular expression",
                )
            })?;
            if !re.is_match(&rel) {
                continue;
            }
        }
        let mut recipients = Vec::new();
        for r in &rule.recipients {
            recipients.push(
                r.parse::<Recipient>()
                    .map_err(|e| hinted(format!("{}: {e}", what()), "use `age1…` public keys"))?,
            );
        }
        if let Some(f) = &rule.recipients_file {
            let path = base.join(f);
            let text = read_file(&path, "recipients_file")?;
            recipients.extend(
                parse_recipients(&text)
                    .map_err(|e| hinted(format!("{}: {e}", path.display()), "put one `age1…` per line"))?,
            );
        }
        let scope = match &rule.scope {
            Some(s) => Some(
                s.parse::<Scope>()
                    .map_err(|e| hinted(format!("{}: {e}", what()), "fix the scope"))?,
            ),
            None => None,
        };
        if recipients.is_empty() {
            bail!(hinted(
                format!("{} matches but names no recipients", what()),
                "add recipients or recipients_file"
            ));
        }
        return Ok(Some((recipients, scope)));
    }
    Ok(None)
}
