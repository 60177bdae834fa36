//! `sealant`: seal Kubernetes Secrets so they can be committed to Git.

mod cluster;
mod cmd;
mod config;
mod files;

use sealant_cli::{Format, docs, error, k8s, secret};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sealant_seal::Scope;

/// Seal Kubernetes Secrets with age (X25519) so they can be committed to Git.
///
/// Only the cluster (or whoever holds an identity the values were sealed to) can open them.
#[derive(Debug, Parser)]
#[command(name = "sealant", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an age X25519 identity (private key) and print its recipient (public key)
    Keygen(KeygenArgs),
    /// Seal Secrets (YAML or JSON, several documents allowed) into SealedSecrets
    Seal(SealArgs),
    /// Open SealedSecrets back into Secrets with an identity file (recovery)
    Unseal(UnsealArgs),
    /// Re-seal SealedSecrets to new recipients (offline with --identity) or to the cluster's newest key
    /// (online, through the controller), over files or directory trees
    Reencrypt(ReencryptArgs),
    /// The cluster's recipients (public keys) to seal to
    #[command(subcommand)]
    Recipients(RecipientsCommand),
    /// Ask the cluster's controller whether it can unseal SealedSecrets
    Verify(VerifyArgs),
    /// The controller's sealing keys
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print shell completions
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Write the identity to FILE (created with mode 0600) and print only the recipient
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Overwrite FILE if it exists
    #[arg(long)]
    force: bool,
}

/// Where recipients come from: flags, else the `.sealant.yaml` creation rule matching the output path.
#[derive(Debug, Args, Clone, Default)]
pub struct RecipientArgs {
    /// Seal to this age recipient (public key `age1…`); repeat for several clusters or a backup key
    #[arg(
        short,
        long = "recipient",
        value_name = "RECIPIENT",
        env = "SEALANT_RECIPIENT",
        value_delimiter = ','
    )]
    pub recipients: Vec<String>,
    /// Seal to every recipient in FILE (one `age1…` per line, `#` comments)
    #[arg(short = 'R', long, value_name = "FILE", env = "SEALANT_RECIPIENTS_FILE")]
    pub recipients_file: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct SealArgs {
    /// Read the Secret(s) from FILE instead of standard input
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Write to FILE (atomically) instead of standard output
    #[arg(short, long, value_name = "FILE", conflicts_with = "merge_into")]
    output: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value = "yaml", env = "SEALANT_FORMAT")]
    format: Format,
    #[command(flatten)]
    recipients: RecipientArgs,
    /// Where the values may be unsealed [default: strict, or the matching .sealant.yaml rule]
    #[arg(long, value_name = "SCOPE", env = "SEALANT_SCOPE", value_parser = parse_scope)]
    scope: Option<Scope>,
    /// Namespace of the Secret (must agree with metadata.namespace when both are set)
    #[arg(short, long, env = "SEALANT_NAMESPACE")]
    namespace: Option<String>,
    /// Name of the Secret (must agree with metadata.name when both are set)
    #[arg(long)]
    name: Option<String>,
    /// Seal one raw value (from --from-file or standard input) and print only the sealed text
    #[arg(long, conflicts_with_all = ["input", "merge_into", "output"])]
    raw: bool,
    /// With --raw: the data key the value is for
    #[arg(long, requires = "raw")]
    key: Option<String>,
    /// With --raw: read the value from FILE instead of standard input
    #[arg(long, value_name = "FILE", requires = "raw")]
    from_file: Option<PathBuf>,
    /// Seal only the Secret's keys into this existing SealedSecret file, keeping its other values as they are
    #[arg(long, value_name = "FILE")]
    merge_into: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct UnsealArgs {
    /// Identity file (age format, as written by `sealant keygen` or `sealant keys backup`)
    #[arg(short, long, value_name = "FILE", env = "SEALANT_IDENTITY")]
    identity: Vec<PathBuf>,
    /// Read the SealedSecret(s) from FILE instead of standard input
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value = "yaml", env = "SEALANT_FORMAT")]
    format: Format,
    /// Open one raw sealed value from standard input and print the value itself
    #[arg(long, conflicts_with = "input")]
    raw: bool,
    /// With --raw: the namespace the value is used in
    #[arg(short, long, requires = "raw")]
    namespace: Option<String>,
    /// With --raw: the name of the Secret the value is used in
    #[arg(long, requires = "raw")]
    name: Option<String>,
    /// With --raw: the data key the value is used under
    #[arg(long, requires = "raw")]
    key: Option<String>,
}

#[derive(Debug, Args)]
struct ReencryptArgs {
    /// Identity file that opens the current values (offline mode); without it, the controller re-seals to
    /// its newest key (online mode)
    #[arg(short, long, value_name = "FILE", env = "SEALANT_IDENTITY")]
    identity: Vec<PathBuf>,
    #[command(flatten)]
    recipients: RecipientArgs,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
    /// Files or directories to re-seal in place (YAML/JSON; directories are walked); standard input to
    /// standard output when none is given
    paths: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum RecipientsCommand {
    /// Fetch the recipients the controller publishes (through your kubeconfig) and save them to a file
    Fetch {
        /// Save to FILE [default: ~/.cache/sealant/recipients/CONTEXT.txt]
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        cluster: cluster::ClusterArgs,
    },
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Read the SealedSecret(s) from FILE instead of standard input
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    input: Option<PathBuf>,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Save the controller's key Secrets (restore with `kubectl apply -f`); keep the file secret
    Backup {
        /// Write to FILE (mode 0600) instead of standard output
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Write a plain age identity file (for `sealant unseal -i`) instead of Secrets
        #[arg(long)]
        identity_file: bool,
        #[command(flatten)]
        cluster: cluster::ClusterArgs,
    },
}

#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell to print completions for
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse::<Scope>().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Keygen(a) => cmd::keygen::run(a.output.as_deref(), a.force),
        Command::Seal(a) => cmd::seal::run(cmd::seal::Options {
            input: a.input,
            output: a.output,
            format: a.format,
            recipients: a.recipients,
            scope: a.scope,
            namespace: a.namespace,
            name: a.name,
            raw: a.raw,
            key: a.key,
            from_file: a.from_file,
            merge_into: a.merge_into,
        }),
        Command::Unseal(a) => cmd::unseal::run(cmd::unseal::Options {
            identities: a.identity,
            input: a.input,
            format: a.format,
            raw: a.raw,
            namespace: a.namespace,
            name: a.name,
            key: a.key,
        }),
        Command::Reencrypt(a) => cmd::reencrypt::run(&a.identity, &a.recipients, &a.cluster, &a.paths),
        Command::Recipients(RecipientsCommand::Fetch { output, cluster }) => {
            cmd::cluster_cmds::recipients_fetch(&cluster, output.as_deref())
        }
        Command::Verify(a) => cmd::cluster_cmds::verify(&a.cluster, a.input.as_deref()),
        Command::Keys(KeysCommand::Backup {
            output,
            identity_file,
            cluster,
        }) => cmd::cluster_cmds::keys_backup(&cluster, output.as_deref(), identity_file),
        Command::Completions(a) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut command, "sealant", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error::report(&e);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
