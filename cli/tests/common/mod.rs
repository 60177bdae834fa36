//! Shared helpers for the `sealant` integration tests: a temp-dir sandbox that runs the built binary.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// Environment variables the CLI reads (and KUBECONFIG); cleared for every run so the caller's shell cannot
/// leak in.
pub const SEALANT_ENV: &[&str] = &[
    "SEALANT_RECIPIENT",
    "SEALANT_RECIPIENTS_FILE",
    "SEALANT_SCOPE",
    "SEALANT_NAMESPACE",
    "SEALANT_IDENTITY",
    "SEALANT_FORMAT",
    "SEALANT_CONTEXT",
    "SEALANT_CONTROLLER_NAMESPACE",
    "SEALANT_CONTROLLER_NAME",
    "SEALANT_CONTROLLER_PORT",
    "KUBECONFIG",
];

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sealant")
}

/// The result of one run.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub args: Vec<String>,
}

impl Out {
    pub fn stdout(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    fn describe(&self) -> String {
        format!(
            "sealant {:?}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args,
            self.code,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }

    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success\n{}", self.describe());
        assert!(!self.stderr.contains("panicked"), "{}", self.describe());
        self
    }

    /// Asserts exit 1 with an `error:` line, no panic, and returns self.
    #[track_caller]
    pub fn fails(&self) -> &Self {
        assert_eq!(self.code, Some(1), "expected exit 1\n{}", self.describe());
        assert!(
            self.stderr.starts_with("error:") || self.stderr.contains("\nerror:"),
            "no `error:` line\n{}",
            self.describe()
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.describe());
        self
    }

    /// Asserts a failure that carries a `hint:` line.
    #[track_caller]
    pub fn fails_with_hint(&self) -> &Self {
        self.fails();
        assert!(
            self.stderr.lines().any(|l| l.starts_with("hint: ")),
            "no `hint:` line\n{}",
            self.describe()
        );
        self
    }

    /// Asserts stderr contains every needle.
    #[track_caller]
    pub fn stderr_has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}\n{}", self.describe());
        }
        self
    }
}

/// A temporary directory in which the binary runs (its cwd), with helpers for files and keys.
#[derive(Debug)]
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("sealant-cli-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating parent directories).
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    pub fn read_bytes(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Runs `sealant ARGS` in the sandbox with `stdin`, with the SEALANT_* environment cleared.
    pub fn run(&self, args: &[&str], stdin: impl AsRef<[u8]>) -> Out {
        self.run_env(args, stdin, &[])
    }

    /// Like [`Sandbox::run`], with extra environment variables.
    pub fn run_env(&self, args: &[&str], stdin: impl AsRef<[u8]>, env: &[(&str, &str)]) -> Out {
        self.run_in(self.root(), args, stdin, env)
    }

    /// Runs in a given directory.
    pub fn run_in(&self, cwd: &Path, args: &[&str], stdin: impl AsRef<[u8]>, env: &[(&str, &str)]) -> Out {
        run_program(bin(), cwd, args, stdin.as_ref(), env)
    }

    /// `sealant keygen -o FILE`; returns the recipient printed on stdout.
    pub fn keygen(&self, rel: &str) -> String {
        let out = self.run(&["keygen", "-o", rel], "");
        out.ok();
        let r = out.stdout().trim().to_owned();
        assert!(r.starts_with("age1"), "keygen printed {r:?}");
        r
    }

    /// The fingerprint `sealant seal` records for `recipient` in spec.recipients.
    pub fn fingerprint(&self, recipient: &str) -> String {
        let out = self.run(
            &["seal", "-r", recipient, "--scope", "cluster-wide"],
            secret_yaml("fp", None, &[("k", "v")]),
        );
        out.ok();
        let doc = &docs(&out.stdout())[0];
        let fps = string_list(&doc["spec"]["recipients"]);
        assert_eq!(fps.len(), 1);
        fps[0].clone()
    }

    /// Runs `sealant unseal -i IDENTITY` on `sealed` (YAML text on stdin); returns the result.
    pub fn unseal(&self, identity: &str, sealed: &str) -> Out {
        self.run(&["unseal", "-i", identity], sealed)
    }

    /// Unseals and returns the decoded data of every Secret, in order. Panics when unseal fails.
    #[track_caller]
    pub fn unseal_data(&self, identity: &str, sealed: &str) -> Vec<BTreeMap<String, Vec<u8>>> {
        let out = self.unseal(identity, sealed);
        out.ok();
        docs(&out.stdout()).iter().map(secret_data).collect()
    }
}

/// Runs a program with stdin, capturing everything.
pub fn run_program(program: &str, cwd: &Path, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in SEALANT_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The program may exit without reading its input; a broken pipe is fine.
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Out {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

/// A v1 Secret as YAML with `stringData`.
pub fn secret_yaml(name: &str, namespace: Option<&str>, string_data: &[(&str, &str)]) -> String {
    let mut s = format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n");
    if let Some(ns) = namespace {
        s.push_str(&format!("  namespace: {ns}\n"));
    }
    s.push_str("stringData:\n");
    for (k, v) in string_data {
        s.push_str(&format!("  {k}: {}\n", serde_json::to_string(v).unwrap()));
    }
    s
}

/// A v1 Secret as YAML with base64 `data`.
pub fn secret_yaml_data(name: &str, namespace: Option<&str>, data: &[(&str, &[u8])]) -> String {
    let mut s = format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n");
    if let Some(ns) = namespace {
        s.push_str(&format!("  namespace: {ns}\n"));
    }
    s.push_str("data:\n");
    for (k, v) in data {
        s.push_str(&format!("  {k}: \"{}\"\n", STANDARD.encode(v)));
    }
    s
}

/// Parses a YAML (or JSON) stream into documents.
#[track_caller]
pub fn docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

pub fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The decoded `data` of a Secret document.
pub fn secret_data(doc: &Value) -> BTreeMap<String, Vec<u8>> {
    doc["data"]
        .as_object()
        .unwrap_or_else(|| panic!("no data in {doc}"))
        .iter()
        .map(|(k, v)| (k.clone(), STANDARD.decode(v.as_str().unwrap()).unwrap()))
        .collect()
}

/// The `spec.encryptedData` of a SealedSecret document.
pub fn encrypted(doc: &Value) -> BTreeMap<String, String> {
    doc["spec"]["encryptedData"]
        .as_object()
        .unwrap_or_else(|| panic!("no encryptedData in {doc}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    STANDARD.decode(text.trim()).expect("base64")
}

/// Names of entries in `dir` starting with `.sealant-` (leftover temporary files).
pub fn temp_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".sealant-"))
        .collect()
}

/// Every file under `dir` with its bytes, for before/after comparisons.
pub fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}
