//! Scenario 2: `sealant seal` of a 10-key Secret as a whole process, next to the reference `age` tool encrypting
//! the same 10 values to the same recipient: once per value (10 processes, as age would be used to seal values
//! one by one) and once over all values concatenated (1 process, the floor of process start-up plus one age file).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sealant_seal::Identity;
use serde_json::json;

use crate::Settings;
use crate::report::Report;

fn run_once(cmd: &mut Command, stdin: &[u8]) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    child.stdin.take().context("stdin")?.write_all(stdin)?;
    let out = child.wait_with_output()?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(s: &Settings, report: &mut Report) -> Result<()> {
    let sealant = s.bin_dir.join("sealant");
    if !sealant.exists() {
        bail!(
            "{} not found (build it: cargo build --release --workspace --bins)",
            sealant.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let identity = Identity::generate();
    let recipient = identity.recipient().to_string();
    let recipients_file = dir.path().join("recipients.txt");
    std::fs::write(&recipients_file, format!("{recipient}\n"))?;

    let values: Vec<String> = (0..10).map(|i| format!("value-{i}-{}", "x".repeat(24))).collect();
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\n  namespace: bench\nstringData:\n",
    );
    for (i, v) in values.iter().enumerate() {
        yaml.push_str(&format!("  key{i}: \"{v}\"\n"));
    }
    let all_values = values.concat();

    let sealant_cmd = |p: &Path| {
        let mut c = Command::new(&sealant);
        c.arg("seal").arg("-R").arg(p);
        c
    };
    let age_cmd = || {
        let mut c = Command::new("age");
        c.arg("-r").arg(&recipient);
        c
    };
    // warm the page cache for both binaries
    run_once(&mut sealant_cmd(&recipients_file), yaml.as_bytes())?;
    run_once(&mut age_cmd(), b"warm").context("the reference `age` tool (is it installed?)")?;

    let (mut t_sealant, mut t_age_each, mut t_age_once) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..s.runs {
        let t = Instant::now();
        run_once(&mut sealant_cmd(&recipients_file), yaml.as_bytes())?;
        t_sealant.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        for v in &values {
            run_once(&mut age_cmd(), v.as_bytes())?;
        }
        t_age_each.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        run_once(&mut age_cmd(), all_values.as_bytes())?;
        t_age_once.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (ms, me, mo) = (
        median_ms(t_sealant.clone()),
        median_ms(t_age_each.clone()),
        median_ms(t_age_once.clone()),
    );
    let age_version = Command::new("age")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();

    report.row(
        "seal-cli",
        "sealant seal, 10-key Secret (ms, median)",
        format!("{ms:.2}"),
        "",
    );
    report.row(
        "seal-cli",
        "age -r, once per value x10 (ms, median)",
        format!("{me:.2}"),
        "",
    );
    report.row(
        "seal-cli",
        "age -r, all 10 values in one file (ms)",
        format!("{mo:.2}"),
        "",
    );
    report.row(
        "seal-cli",
        "age per value / sealant seal",
        format!("{:.1}x", me / ms),
        "",
    );
    report.row(
        "seal-cli",
        "age one file / sealant seal",
        format!("{:.2}x", mo / ms),
        "",
    );
    report.scenario(
        "seal_cli",
        json!({
            "status": "done",
            "runs": s.runs,
            "values": values.len(),
            "age_version": age_version,
            "sealant_seal_ms_median": ms,
            "age_per_value_x10_ms_median": me,
            "age_all_values_one_file_ms_median": mo,
            "age_per_value_over_sealant": me / ms,
            "age_one_file_over_sealant": mo / ms,
            "sealant_seal_ms": t_sealant,
            "age_per_value_x10_ms": t_age_each,
            "age_all_values_one_file_ms": t_age_once,
        }),
    );
    Ok(())
}
