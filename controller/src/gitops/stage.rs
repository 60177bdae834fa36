//! Apply order and prune selection.

use std::collections::BTreeSet;

use super::load::{Object, ObjectId};

/// The stages objects are applied in: cluster definitions first (and waited for), then secrets (and waited
/// for), then everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Definitions,
    Secrets,
    Workloads,
}

pub fn stage_of(group: &str, kind: &str) -> Stage {
    match (group, kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition")
        | ("", "Namespace")
        | ("rbac.authorization.k8s.io", "ClusterRole") => Stage::Definitions,
        ("sealant.dev", "SealedSecret" | "ExternalSecret") | ("", "Secret" | "ConfigMap") => Stage::Secrets,
        _ => Stage::Workloads,
    }
}

/// The objects in apply order (stable within a stage).
pub fn ordered(objects: &[Object]) -> Vec<(Stage, &Object)> {
    let mut out: Vec<(Stage, &Object)> = objects
        .iter()
        .map(|o| (stage_of(o.group(), &o.kind), o))
        .collect();
    out.sort_by_key(|(s, _)| *s);
    out
}

/// What prune would delete: in the previous inventory and not in the new set. Deleted in reverse stage order
/// (workloads before their namespaces and CRDs).
pub fn to_prune(previous: &[ObjectId], current: &BTreeSet<ObjectId>) -> Vec<ObjectId> {
    let mut gone: Vec<ObjectId> = previous
        .iter()
        .filter(|id| !current.contains(*id))
        .cloned()
        .collect();
    gone.sort_by_key(|id| std::cmp::Reverse(stage_of(&id.group, &id.kind)));
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(group: &str, kind: &str, name: &str) -> ObjectId {
        ObjectId {
            group: group.into(),
            kind: kind.into(),
            namespace: None,
            name: name.into(),
        }
    }

    #[test]
    fn stages() {
        assert_eq!(
            stage_of("apiextensions.k8s.io", "CustomResourceDefinition"),
            Stage::Definitions
        );
        assert_eq!(stage_of("", "Namespace"), Stage::Definitions);
        assert_eq!(stage_of("sealant.dev", "SealedSecret"), Stage::Secrets);
        assert_eq!(stage_of("", "ConfigMap"), Stage::Secrets);
        assert_eq!(stage_of("apps", "Deployment"), Stage::Workloads);
        assert_eq!(
            stage_of("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            Stage::Workloads
        );
    }

    #[test]
    fn prune_selection_and_order() {
        let prev = vec![
            id("", "Namespace", "shop"),
            id("apps", "Deployment", "web"),
            id("", "ConfigMap", "keep"),
        ];
        let now: BTreeSet<ObjectId> = [id("", "ConfigMap", "keep")].into();
        let gone = to_prune(&prev, &now);
        assert_eq!(
            gone,
            vec![id("apps", "Deployment", "web"), id("", "Namespace", "shop")]
        );
        assert!(to_prune(&prev, &prev.iter().cloned().collect()).is_empty());
    }
}
