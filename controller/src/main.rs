//! `sealant-controller`: not runnable yet. The reconcilers arrive with issue 4 (SealedSecrets), issue 5
//! (ExternalSecrets) and issue 6 (GitSync); until then this binary says so and exits with an error.

fn main() -> std::process::ExitCode {
    eprintln!(
        "error: sealant-controller cannot run yet: only its build step exists so far\n\
         hint: use `sealant seal` to seal and `sealant unseal --identity FILE` to open SealedSecrets meanwhile"
    );
    std::process::ExitCode::FAILURE
}
