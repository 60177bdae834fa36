//! Runs the harness's quick mode of the unseal scenario, so that `cargo test` exercises it (the figures of a
//! debug build with tiny sizes mean nothing; scripts/bench.sh runs the real thing in release).

use std::process::Command;

#[test]
fn quick_unseal_scenario_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.json");
    let status = Command::new(env!("CARGO_BIN_EXE_sealant-bench"))
        .args(["--quick", "--skip-rsa", "--scenario", "unseal", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let unseal = &json["unseal"];
    assert_eq!(unseal["status"], "done");
    for key in [
        "unseal_values_per_cpu_s",
        "unseal_values_per_wall_s",
        "x25519_ops_per_cpu_s",
        "x25519_ops_per_wall_s",
        "x25519_ladder_ops_per_cpu_s",
        "x25519_awslc_ops_per_cpu_s",
    ] {
        assert!(unseal[key].as_f64().unwrap_or(0.0) > 0.0, "{key}: {unseal}");
    }
    // the bound is the faster of the two X25519 implementations
    let bound = unseal["x25519_ops_per_cpu_s"].as_f64().unwrap();
    let fastest = unseal["x25519_ladder_ops_per_cpu_s"]
        .as_f64()
        .unwrap()
        .max(unseal["x25519_awslc_ops_per_cpu_s"].as_f64().unwrap());
    assert_eq!(bound, fastest, "{unseal}");
    assert_eq!(json["machine"]["quick"], true);
    assert!(json["machine"]["cpu"]["model"].is_string(), "{}", json["machine"]);
}
