//! The sealant benchmark harness (issue 8). Every timing is taken in the same run as the figure it is compared
//! with, and reported as a ratio next to the raw numbers. Run it in release through `scripts/bench.sh`; `--quick`
//! runs tiny sizes so that `cargo test` exercises the code.

mod cluster;
mod crypto;
mod external;
mod gitsync;
mod report;
mod seal_cli;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use crate::report::Report;

/// A scenario of issue 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Unseal throughput in process (one core) next to the X25519 bound and RSA-4096 OAEP decrypt.
    Unseal,
    /// `sealant seal` of a 10-key Secret as a process next to the reference `age` tool.
    SealCli,
    /// SealedSecret create -> Secret visible latency (p50/p99) against devcluster and the release controller.
    Latency,
    /// Controller cold start over many SealedSecrets already in devcluster, and its peak RSS.
    ColdStart,
    /// ExternalSecrets over moto (AWS) and OpenBao (Vault): provider calls per refresh cycle, peak RSS.
    External,
    /// GitSync of a 1,000-object tree next to `kubectl apply --server-side` of the same tree.
    Gitsync,
}

#[derive(Debug, Parser)]
#[command(
    name = "sealant-bench",
    about = "sealant benchmarks: prints a table and writes JSON"
)]
struct Args {
    /// Tiny sizes (for `cargo test`); the figures mean nothing.
    #[arg(long)]
    quick: bool,
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// The JSON file to write (results of the scenarios run are merged into it).
    #[arg(long, default_value = "bench/results.json")]
    out: PathBuf,
    /// Where the `sealant` and `sealant-controller` binaries are (default: next to this executable).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Skip the RSA comparison (RSA key generation is slow in a debug build).
    #[arg(long)]
    skip_rsa: bool,
    /// Runs of each process in the seal-cli scenario (the median is reported).
    #[arg(long, default_value_t = 21)]
    runs: usize,
    /// SealedSecrets in devcluster before the controller starts (cold-start scenario).
    #[arg(long, default_value_t = 10_000)]
    cold_objects: usize,
    /// Create -> visible samples (latency scenario).
    #[arg(long, default_value_t = 500)]
    latency_samples: usize,
    /// Objects in the GitSync tree.
    #[arg(long, default_value_t = 1_000)]
    git_objects: usize,
    /// ExternalSecrets (external scenario).
    #[arg(long, default_value_t = 2_000)]
    external_objects: usize,
    /// Distinct AWS keys they read (external scenario).
    #[arg(long, default_value_t = 100)]
    external_keys: usize,
}

#[derive(Debug)]
pub struct Settings {
    pub quick: bool,
    pub skip_rsa: bool,
    pub bin_dir: PathBuf,
    pub runs: usize,
    pub cold_objects: usize,
    pub latency_samples: usize,
    pub git_objects: usize,
    pub external_objects: usize,
    pub external_keys: usize,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealant-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    let settings = Settings {
        quick: args.quick,
        skip_rsa: args.skip_rsa,
        bin_dir,
        runs: if args.quick { 3 } else { args.runs.max(1) },
        cold_objects: if args.quick { 100 } else { args.cold_objects },
        latency_samples: if args.quick { 20 } else { args.latency_samples },
        git_objects: if args.quick { 30 } else { args.git_objects },
        external_objects: args.external_objects,
        external_keys: args.external_keys.max(1),
    };
    let scenarios = if args.scenario.is_empty() {
        vec![
            Scenario::Unseal,
            Scenario::SealCli,
            Scenario::Latency,
            Scenario::ColdStart,
            Scenario::External,
            Scenario::Gitsync,
        ]
    } else {
        args.scenario
    };
    let mut report = Report::load(&args.out, settings.quick);
    let mut failed = false;
    let mut cluster_done = false;
    for s in &scenarios {
        let result = match s {
            Scenario::Unseal => crypto::run(&settings, &mut report),
            Scenario::SealCli => seal_cli::run(&settings, &mut report),
            Scenario::Latency | Scenario::ColdStart => {
                // both share one devcluster and controller key; run them together once
                if cluster_done {
                    Ok(())
                } else {
                    cluster_done = true;
                    cluster::run(
                        &settings,
                        scenarios.contains(&Scenario::Latency),
                        scenarios.contains(&Scenario::ColdStart),
                        &mut report,
                    )
                }
            }
            Scenario::External => external::run(&settings, &mut report),
            Scenario::Gitsync => gitsync::run(&settings, &mut report),
        };
        if let Err(e) = result {
            eprintln!("sealant-bench: scenario {s:?} failed: {e:#}");
            report.failed(&format!("{s:?}").to_lowercase(), &format!("{e:#}"));
            failed = true;
        }
    }
    report.print();
    report.save(&args.out)?;
    eprintln!("wrote {}", args.out.display());
    if failed {
        anyhow::bail!("a scenario failed");
    }
    Ok(())
}
