//! The table printed at the end and the JSON file the scenarios write into.

use std::path::Path;

use serde_json::{Map, Value, json};

/// One printed row.
#[derive(Debug)]
struct Row {
    scenario: String,
    metric: String,
    value: String,
    target: String,
}

/// Results of this run, merged into the JSON file's earlier content (one key per scenario).
#[derive(Debug)]
pub struct Report {
    json: Map<String, Value>,
    rows: Vec<Row>,
}

/// Load averages (1, 5, 15 min) from /proc/loadavg, to say how busy the machine was.
pub fn loadavg() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let v: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    json!(v)
}

/// The CPU model /proc/cpuinfo names (figures differ by CPU, and the X25519 rates by its vector units).
fn cpu_model() -> Value {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim())
        })
        .unwrap_or("unknown");
    let flags: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("flags")?.split_once(':').map(|(_, f)| f))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|f| ["adx", "bmi2", "avx2", "avx512ifma", "sha_ni", "aes"].contains(f))
        .collect();
    json!({"model": model, "flags": flags})
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Report {
    pub fn load(path: &Path, quick: bool) -> Report {
        let json = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        let mut r = Report {
            json,
            rows: Vec::new(),
        };
        r.json.insert(
            "machine".into(),
            json!({
                "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                "cpu": cpu_model(),
                "loadavg_at_start": loadavg(),
                "unix_time": unix_now(),
                "quick": quick,
                "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            }),
        );
        r
    }

    /// Records a scenario's numbers (replacing an earlier run's).
    pub fn scenario(&mut self, name: &str, mut value: Value) {
        if let Some(o) = value.as_object_mut() {
            o.insert("loadavg_at_end".into(), loadavg());
            o.insert("unix_time".into(), json!(unix_now()));
        }
        self.json.insert(name.into(), value);
    }

    /// Adds a row to the printed table.
    pub fn row(&mut self, scenario: &str, metric: &str, value: String, target: &str) {
        self.rows.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            target: target.into(),
        });
    }

    pub fn failed(&mut self, name: &str, why: &str) {
        self.json
            .insert(name.into(), json!({"status": "failed", "error": why}));
        self.row(name, "status", format!("FAILED: {why}"), "");
    }

    pub fn print(&self) {
        let w = |f: fn(&Row) -> &str, h: &str| {
            self.rows
                .iter()
                .map(|r| f(r).len())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        };
        let (a, b, c) = (
            w(|r| &r.scenario, "scenario"),
            w(|r| &r.metric, "metric"),
            w(|r| &r.value, "value"),
        );
        println!("{:a$}  {:b$}  {:c$}  target", "scenario", "metric", "value");
        println!("{}", "-".repeat(a + b + c + 14));
        for r in &self.rows {
            println!("{:a$}  {:b$}  {:c$}  {}", r.scenario, r.metric, r.value, r.target);
        }
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(&Value::Object(self.json.clone()))?;
        std::fs::write(path, text + "\n")?;
        Ok(())
    }
}
