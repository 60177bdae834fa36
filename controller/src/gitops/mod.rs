//! GitSync: fetch (gitsource) -> load and validate every manifest (nothing is applied when one is bad) ->
//! staged server-side apply (CRDs, Namespaces and ClusterRoles; then secrets; then the rest) -> prune ->
//! status with the inventory.

pub mod apply;
/// The manifest loader (its own crate, so the fuzz targets build without the controller).
pub use sealant_manifests as load;
pub mod reconcile;
pub mod stage;
