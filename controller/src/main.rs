//! `sealant-controller`: not built yet. The SealedSecret, ExternalSecret and GitSync controllers arrive in
//! later milestones (see the issues); until then this binary says so and exits with an error.

fn main() {
    eprintln!(
        "error: sealant-controller is not implemented yet; use `sealant seal` / `sealant unseal` meanwhile"
    );
    std::process::exit(1);
}
