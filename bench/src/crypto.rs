//! Scenario 1: unseal throughput on one thread, next to the raw X25519 bound (one Diffie-Hellman per value is the
//! floor of any age unseal) and RSA-4096 OAEP-SHA256 decrypt (what Bitnami's controller pays per value), all
//! measured in this run on the same core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand_core::{OsRng, RngCore};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey, sha2::Sha256};
use sealant_seal::{Identity, Keyring, Scope, Target, seal};
use serde_json::json;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::Settings;
use crate::report::Report;

/// Nanoseconds this thread has spent on a CPU (`/proc/thread-self/schedstat`, first field), when readable.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// One measurement: operations per wall-clock second and per second on a CPU (the thread's own run time, so
/// other processes on the machine do not lower it; None where the kernel does not report it).
#[derive(Debug, Clone, Copy)]
struct Rate {
    wall: f64,
    cpu: Option<f64>,
}

/// Runs `f` (which does `per_call` operations) until `min` has passed.
fn rate(min: Duration, per_call: usize, mut f: impl FnMut()) -> Rate {
    f(); // warm-up
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < min {
        f();
        ops += per_call as u64;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu_start, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => Some(ops as f64 / ((b - a) as f64 / 1e9)),
        _ => None,
    };
    Rate {
        wall: ops as f64 / wall,
        cpu,
    }
}

/// The medians of the wall-clock and on-CPU rates of several rounds (the on-CPU one falls back to wall-clock).
fn medians(rounds: &[Rate]) -> (f64, f64) {
    let wall = median(rounds.iter().map(|r| r.wall).collect());
    let cpu = median(rounds.iter().map(|r| r.cpu.unwrap_or(r.wall)).collect());
    (wall, cpu)
}

fn rate_json(r: &Rate) -> serde_json::Value {
    json!({"per_wall_s": r.wall, "per_cpu_s": r.cpu})
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(s: &Settings, report: &mut Report) -> Result<()> {
    let (values, min, rounds, rsa_bits) = if s.quick {
        (50, Duration::from_millis(100), 1, 2048)
    } else {
        (1_000, Duration::from_secs(2), 5, 4096)
    };

    // sealed values as the controller sees them: 32-byte values, strict scope, one recipient
    let identity = Identity::generate();
    let recipient = identity.recipient().clone();
    let fingerprints = vec![identity.fingerprint()];
    let keyring = Keyring::new([identity]);
    let names: Vec<String> = (0..values).map(|i| format!("key{i}")).collect();
    let mut sealed = Vec::with_capacity(values);
    for name in &names {
        let mut v = [0u8; 32];
        OsRng.fill_bytes(&mut v);
        let target = Target {
            namespace: "bench",
            name: "app",
            key: name,
        };
        sealed.push(seal(
            std::slice::from_ref(&recipient),
            Scope::Strict,
            &target,
            &v,
        )?);
    }
    let unseal_all = || {
        for (name, text) in names.iter().zip(&sealed) {
            let target = Target {
                namespace: "bench",
                name: "app",
                key: name,
            };
            let u = keyring.unseal(&fingerprints, &target, text).expect("unseal");
            black_box(u);
        }
    };

    // raw X25519: a fixed identity times varying ephemeral public keys, as in unsealing
    let secret = StaticSecret::random_from_rng(OsRng);
    let publics: Vec<PublicKey> = (0..64)
        .map(|_| PublicKey::from(&StaticSecret::random_from_rng(OsRng)))
        .collect();
    let ladder_all = || {
        for p in &publics {
            black_box(secret.diffie_hellman(black_box(p)));
        }
    };
    // the same function as sealant computes it (AWS-LC)
    let key = sealant_seal::DhKey::new(&secret.to_bytes()).context("AWS-LC refused an X25519 key")?;
    let shares: Vec<[u8; 32]> = publics.iter().map(|p| p.to_bytes()).collect();
    let awslc_all = || {
        for u in &shares {
            black_box(sealant_seal::shared_secret(&key, black_box(u)));
        }
    };
    if shares.iter().zip(&publics).any(|(u, p)| {
        sealant_seal::shared_secret(&key, u).as_deref() != Some(secret.diffie_hellman(p).as_bytes())
    }) {
        anyhow::bail!("the two X25519 implementations disagree");
    }

    // interleave the measurements in rounds so that load from other processes hits all of them alike
    let (mut unseal_rates, mut ladder_rates, mut awslc_rates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        unseal_rates.push(rate(min, values, unseal_all));
        ladder_rates.push(rate(min, publics.len(), ladder_all));
        awslc_rates.push(rate(min, shares.len(), awslc_all));
    }
    // per core = per second on a CPU: what the target is about, and what other load on the machine cannot lower
    let (unseal_wall, unseal_rate) = medians(&unseal_rates);
    let (ladder_wall, ladder_rate) = medians(&ladder_rates);
    let (awslc_wall, awslc_rate) = medians(&awslc_rates);
    // the bound: the fastest X25519 at hand, one of which an unseal cannot avoid
    let (bound_is, dh_rate, dh_wall, dh_rates) = if awslc_rate >= ladder_rate {
        ("aws-lc", awslc_rate, awslc_wall, &awslc_rates)
    } else {
        ("ladder", ladder_rate, ladder_wall, &ladder_rates)
    };

    let mut rsa_json = json!({"status": "skipped"});
    let mut rsa_rate = None;
    if !s.skip_rsa {
        let t = Instant::now();
        let key = RsaPrivateKey::new(&mut OsRng, rsa_bits).context("RSA key generation")?;
        let keygen = t.elapsed();
        let public = RsaPublicKey::from(&key);
        let mut value = [0u8; 32];
        OsRng.fill_bytes(&mut value);
        let ciphertext = public.encrypt(&mut OsRng, Oaep::new::<Sha256>(), &value)?;
        let mut rates = Vec::new();
        for _ in 0..rounds {
            rates.push(rate(min, 1, || {
                let plain = key
                    .decrypt(Oaep::new::<Sha256>(), black_box(&ciphertext))
                    .expect("RSA decrypt");
                black_box(plain);
            }));
        }
        let (wall, r) = medians(&rates);
        rsa_rate = Some(r);
        rsa_json = json!({
            "bits": rsa_bits,
            "padding": "OAEP-SHA256",
            "keygen_s": keygen.as_secs_f64(),
            "decrypts_per_cpu_s": r,
            "decrypts_per_wall_s": wall,
            "rounds": rates.iter().map(rate_json).collect::<Vec<_>>(),
        });
    }

    let target = 20_000.0;
    report.row(
        "unseal",
        "sealant unseal, values per CPU-second (1 thread)",
        format!("{unseal_rate:.0} (wall {unseal_wall:.0}/s)"),
        ">= 20000/core",
    );
    report.row(
        "unseal",
        "X25519 DH, x25519-dalek ladder, ops per CPU-second",
        format!("{ladder_rate:.0} (wall {ladder_wall:.0}/s)"),
        "",
    );
    report.row(
        "unseal",
        "X25519 DH, AWS-LC (what sealant unseals with), ops per CPU-second",
        format!("{awslc_rate:.0} (wall {awslc_wall:.0}/s)"),
        "",
    );
    report.row(
        "unseal",
        "unseal / fastest X25519 DH (the bound)",
        format!("{:.2}", unseal_rate / dh_rate),
        "",
    );
    if let Some(r) = rsa_rate {
        report.row(
            "unseal",
            &format!("RSA-{rsa_bits} OAEP decrypt, values per CPU-second"),
            format!("{r:.0}"),
            "",
        );
        report.row(
            "unseal",
            &format!("unseal / RSA-{rsa_bits} decrypt"),
            format!("{:.1}x", unseal_rate / r),
            "",
        );
    }
    report.scenario(
        "unseal",
        json!({
            "status": "done",
            "values": values,
            "value_bytes": 32,
            "rounds": rounds,
            "min_seconds_per_round": min.as_secs_f64(),
            "rate_basis": "per second of this thread's CPU time (/proc/thread-self/schedstat); wall-clock alongside",
            "unseal_values_per_cpu_s": unseal_rate,
            "unseal_values_per_wall_s": unseal_wall,
            "unseal_rounds": unseal_rates.iter().map(rate_json).collect::<Vec<_>>(),
            "x25519_ops_per_cpu_s": dh_rate,
            "x25519_ops_per_wall_s": dh_wall,
            "x25519_rounds": dh_rates.iter().map(rate_json).collect::<Vec<_>>(),
            "x25519_bound_is": bound_is,
            "x25519_ladder_ops_per_cpu_s": ladder_rate,
            "x25519_ladder_ops_per_wall_s": ladder_wall,
            "x25519_awslc_ops_per_cpu_s": awslc_rate,
            "x25519_awslc_ops_per_wall_s": awslc_wall,
            "x25519_ladder_rounds": ladder_rates.iter().map(rate_json).collect::<Vec<_>>(),
            "x25519_awslc_rounds": awslc_rates.iter().map(rate_json).collect::<Vec<_>>(),
            "unseal_over_x25519": unseal_rate / dh_rate,
            "rsa": rsa_json,
            "unseal_over_rsa": rsa_rate.map(|r| unseal_rate / r),
            "target_values_per_s": target,
            "meets_target": unseal_rate >= target,
        }),
    );
    Ok(())
}
