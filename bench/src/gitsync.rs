//! Scenario 6: GitSync of a 1,000-object tree (first apply, then no-change reconciles and the writes they make)
//! next to `kubectl apply --server-side` of the same tree against the same devcluster. devcluster serves HTTPS
//! here, since kubectl sends bearer tokens only over TLS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::Settings;
use crate::cluster::{Controller, wait_until};
use crate::report::Report;

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl")?;
    if let Some(text) = stdin {
        child.stdin.take().context("stdin")?.write_all(text.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

fn kubectl_ok(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let out = kubectl(kubeconfig, args, stdin)?;
    if !out.status.success() {
        bail!(
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(repo)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `sealant_reconcile_duration_seconds_{sum,count}` of the gitsync controller from /metrics.
fn reconcile_stats(addr: SocketAddr) -> Option<(f64, u64)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let value = |name: &str| -> Option<f64> {
        let prefix = format!("sealant_reconcile_duration_seconds_{name}{{controller=\"gitsync\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((value("sum").unwrap_or(0.0), value("count").unwrap_or(0.0) as u64))
}

/// Object `i` of the tree: ConfigMaps, and every third a Deployment; no namespace (set by the applier).
fn manifest(i: usize) -> String {
    if i % 3 == 2 {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\n  labels: {{app: web-{i}}}\n\
             spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web-{i}}}}}\n  template:\n    metadata: \
             {{labels: {{app: web-{i}}}}}\n    spec: {{containers: [{{name: app, image: \"registry.example/app:{i}\"}}]}}\n"
        )
    } else {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg-{i}\n  labels: {{app: bench}}\ndata:\n  \
             index: \"{i}\"\n  settings.conf: |\n    listen = 0.0.0.0:{}\n    workers = 4\n",
            8000 + i
        )
    }
}

pub fn run(s: &Settings, report: &mut Report) -> Result<()> {
    let bin = s.bin_dir.join("sealant-controller");
    if !bin.exists() {
        bail!(
            "{} not found (build it: cargo build --release --workspace --bins)",
            bin.display()
        );
    }
    let n = s.git_objects;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let opts = sealant_devcluster::Options {
        kubeconfig: Some(kubeconfig.clone()),
        ..Default::default()
    };
    let handle = runtime.block_on(sealant_devcluster::DevCluster::start(opts))?;
    let result = scenario(s, n, &bin, &kubeconfig, dir.path(), &handle, report);
    runtime.block_on(handle.shutdown());
    result
}

fn scenario(
    s: &Settings,
    n: usize,
    bin: &Path,
    kubeconfig: &Path,
    dir: &Path,
    handle: &sealant_devcluster::Handle,
    report: &mut Report,
) -> Result<()> {
    for (file, crd) in sealant_crds::all_crds() {
        let path = dir.join(file);
        std::fs::write(&path, sealant_crds::crd_yaml(&crd))?;
        kubectl_ok(kubeconfig, &["apply", "-f", path.to_str().unwrap()], None)?;
    }
    for ns in ["sealant", "bench-git", "bench-kubectl"] {
        kubectl_ok(kubeconfig, &["create", "namespace", ns], None)?;
    }

    // the repository: one file per object under deploy/
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("deploy"))?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    for i in 0..n {
        std::fs::write(repo.join(format!("deploy/obj-{i:04}.yaml")), manifest(i))?;
    }
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "tree"])?;
    let head = git(&repo, &["rev-parse", "HEAD"])?;

    let ctl = Controller::start(bin, kubeconfig, dir, "gitsync")?;
    wait_until("the controller's /metrics", Duration::from_secs(60), || {
        Ok(reconcile_stats(ctl.addr).map(|_| ()))
    })?;
    let interval = if s.quick { "1s" } else { "5s" };
    let gitsync = |suspend: bool| {
        format!(
            "apiVersion: sealant.dev/v1\nkind: GitSync\nmetadata: {{name: tree, namespace: bench-git}}\nspec:\n  \
             url: file://{}\n  ref: {{branch: main}}\n  path: deploy\n  interval: {interval}\n  prune: true\n  \
             targetNamespace: bench-git\n  suspend: {suspend}\n",
            repo.display()
        )
    };

    // first apply: from creating the GitSync until its first reconcile is counted, and the controller's own
    // measure of that reconcile
    let start = Instant::now();
    kubectl_ok(kubeconfig, &["apply", "-f", "-"], Some(&gitsync(false)))?;
    // the GitSync exists from here (kubectl's own start-up, discovery and request are before)
    let created = Instant::now();
    let (first_sum, _) = wait_until("the first GitSync reconcile", Duration::from_secs(600), || {
        Ok(reconcile_stats(ctl.addr).filter(|(_, c)| *c >= 1))
    })?;
    let with_kubectl = start.elapsed().as_secs_f64();
    let first_wall = created.elapsed().as_secs_f64();
    let status: serde_json::Value = serde_json::from_str(&kubectl_ok(
        kubeconfig,
        &["get", "gitsync", "tree", "-n", "bench-git", "-o", "json"],
        None,
    )?)?;
    if status["status"]["lastAppliedRevision"] != head.as_str() {
        bail!("the first reconcile did not apply {head}: {}", status["status"]);
    }
    let applied = status["status"]["inventory"]["entries"]
        .as_array()
        .map_or(0, Vec::len);

    // no-change reconciles: the periodic ones, over a few intervals
    std::thread::sleep(Duration::from_millis(500));
    let (sum1, count1) = reconcile_stats(ctl.addr).context("metrics")?;
    let rv1 = handle.resource_version();
    let cycles = if s.quick { 2 } else { 4 };
    let (sum2, count2) = wait_until("no-change reconciles", Duration::from_secs(120), || {
        Ok(reconcile_stats(ctl.addr).filter(|(_, c)| *c >= count1 + cycles))
    })?;
    let rv2 = handle.resource_version();
    let no_change_s = (sum2 - sum1) / (count2 - count1) as f64;
    let gitsync_writes = rv2 - rv1;
    let (hwm_kib, _) = ctl.memory_kib();

    // quiet the GitSync so that it does not compete with kubectl
    kubectl_ok(kubeconfig, &["apply", "-f", "-"], Some(&gitsync(true)))?;
    std::thread::sleep(Duration::from_secs(1));
    drop(ctl);

    let tree = repo.join("deploy");
    let apply = || -> Result<f64> {
        let t = Instant::now();
        kubectl_ok(
            kubeconfig,
            &[
                "apply",
                "--server-side",
                "-n",
                "bench-kubectl",
                "-f",
                tree.to_str().unwrap(),
            ],
            None,
        )?;
        Ok(t.elapsed().as_secs_f64())
    };
    let kubectl_first = apply()?;
    let rv3 = handle.resource_version();
    let kubectl_second = apply()?;
    let kubectl_writes = handle.resource_version() - rv3;

    report.row(
        "gitsync",
        &format!("GitSync first apply, {n} objects (s)"),
        format!("{first_wall:.2} ({with_kubectl:.2} with the kubectl run creating it)"),
        "",
    );
    report.row(
        "gitsync",
        "kubectl apply --server-side, first (s)",
        format!("{kubectl_first:.2}"),
        "",
    );
    report.row(
        "gitsync",
        "kubectl first / GitSync first",
        format!(
            "{:.1}x ({:.1}x)",
            kubectl_first / first_wall,
            kubectl_first / with_kubectl
        ),
        ">= 2x",
    );
    report.row(
        "gitsync",
        "GitSync no-change reconcile (s)",
        format!("{no_change_s:.3}"),
        "",
    );
    report.row(
        "gitsync",
        "kubectl apply --server-side, no change (s)",
        format!("{kubectl_second:.2}"),
        "",
    );
    report.row(
        "gitsync",
        "kubectl no change / GitSync no change",
        format!("{:.1}x", kubectl_second / no_change_s),
        ">= 2x",
    );
    report.row(
        "gitsync",
        &format!("writes in {} no-change reconciles", count2 - count1),
        format!("{gitsync_writes}"),
        "0",
    );
    report.row(
        "gitsync",
        "writes by a no-change kubectl apply",
        format!("{kubectl_writes}"),
        "",
    );
    report.scenario(
        "gitsync",
        json!({
            "status": "done",
            "objects": n,
            "objects_applied": applied,
            "tree": "one file per object: 2/3 ConfigMaps, 1/3 Deployments, no namespace in the files",
            "gitsync_first_apply_s": first_wall,
            "gitsync_first_apply_s_with_kubectl_creating_it": with_kubectl,
            "gitsync_first_reconcile_s_controller_measured": first_sum,
            "gitsync_no_change_reconcile_s_mean": no_change_s,
            "gitsync_no_change_reconciles": count2 - count1,
            "gitsync_no_change_writes": gitsync_writes,
            "controller_peak_rss_mib": hwm_kib as f64 / 1024.0,
            "kubectl_first_apply_s": kubectl_first,
            "kubectl_no_change_apply_s": kubectl_second,
            "kubectl_no_change_writes": kubectl_writes,
            "first_ratio_kubectl_over_gitsync": kubectl_first / first_wall,
            "first_ratio_kubectl_over_gitsync_with_kubectl_creating_it": kubectl_first / with_kubectl,
            "no_change_ratio_kubectl_over_gitsync": kubectl_second / no_change_s,
            "note": "GitSync first apply is timed from the end of the `kubectl apply` that creates the GitSync \
                     (and, in the _with_kubectl_ figures, from its start) until the controller counts its first \
                     reconcile (includes the git fetch and the metrics polling); the no-change figure is \
                     the controller's own mean reconcile time over periodic reconciles; writes are devcluster \
                     resourceVersion increments in the window. kubectl figures are whole-process times.",
        }),
    );
    Ok(())
}
