//! Reading the files under a path out of a commit's tree.

use gix::ObjectId;
use gix::bstr::ByteSlice as _;

use crate::{GitError, ManifestFile};

/// How many symlinks in a row are followed before giving up on a link.
const MAX_LINK_HOPS: usize = 8;

/// `path` as components: `""`, `"."`, `"/"` and `"./"` are the root; `..` is refused.
pub(crate) fn normalize_path(path: &str) -> Result<Vec<String>, GitError> {
    let mut components = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                return Err(GitError::invalid_input(format!(
                    "path `{path}` must not contain `..`"
                )));
            }
            other => components.push(other.to_owned()),
        }
    }
    Ok(components)
}

/// One tree entry, owned.
struct Entry {
    name: String,
    mode: gix::object::tree::EntryMode,
    id: ObjectId,
}

fn entries(repo: &gix::Repository, tree: ObjectId) -> Result<Vec<Entry>, GitError> {
    let tree = repo
        .find_tree(tree)
        .map_err(|err| GitError::other(format!("cannot read tree {tree}: {err}")))?;
    let decoded = tree
        .decode()
        .map_err(|err| GitError::other(format!("cannot decode tree {}: {err}", tree.id)))?;
    Ok(decoded
        .entries
        .iter()
        .map(|entry| Entry {
            name: entry.filename.to_str_lossy().into_owned(),
            mode: entry.mode,
            id: entry.oid.to_owned(),
        })
        .collect())
}

fn lookup(repo: &gix::Repository, tree: ObjectId, name: &str) -> Result<Option<Entry>, GitError> {
    Ok(entries(repo, tree)?.into_iter().find(|entry| entry.name == name))
}

fn blob(repo: &gix::Repository, id: ObjectId) -> Result<Vec<u8>, GitError> {
    Ok(repo
        .find_object(id)
        .map_err(|err| GitError::other(format!("cannot read blob {id}: {err}")))?
        .detach()
        .data)
}

fn blob_size(repo: &gix::Repository, id: ObjectId) -> Result<u64, GitError> {
    repo.find_header(id)
        .map(|header| header.size())
        .map_err(|err| GitError::other(format!("cannot read blob {id}: {err}")))
}

/// Where a symlink leads.
enum LinkTarget {
    File(ObjectId),
    Outside,
    Directory,
    Missing,
    TooDeep,
}

/// Follows the symlink at `dir/…` with contents `target`, staying inside the tree `root`.
fn resolve_link(
    repo: &gix::Repository,
    root: ObjectId,
    dir: &[String],
    target: &[u8],
    hops: usize,
) -> Result<LinkTarget, GitError> {
    if hops >= MAX_LINK_HOPS {
        return Ok(LinkTarget::TooDeep);
    }
    let Ok(target) = target.to_str() else {
        return Ok(LinkTarget::Missing);
    };
    if target.starts_with('/') {
        return Ok(LinkTarget::Outside);
    }
    let mut components: Vec<String> = dir.to_vec();
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if components.pop().is_none() {
                    return Ok(LinkTarget::Outside);
                }
            }
            other => components.push(other.to_owned()),
        }
    }
    let Some((last, parents)) = components.split_last() else {
        return Ok(LinkTarget::Directory);
    };
    let mut tree = root;
    for (depth, component) in parents.iter().enumerate() {
        match lookup(repo, tree, component)? {
            Some(entry) if entry.mode.is_tree() => tree = entry.id,
            Some(entry) if entry.mode.is_link() => {
                // A symlinked directory on the way: resolve it and continue from there only if it is a tree.
                let inner = blob(repo, entry.id)?;
                let mut rest: Vec<u8> = inner;
                for component in &components[depth + 1..] {
                    rest.push(b'/');
                    rest.extend_from_slice(component.as_bytes());
                }
                return resolve_link(repo, root, &components[..depth], &rest, hops + 1);
            }
            Some(_) | None => return Ok(LinkTarget::Missing),
        }
    }
    match lookup(repo, tree, last)? {
        Some(entry) if entry.mode.is_blob() => Ok(LinkTarget::File(entry.id)),
        Some(entry) if entry.mode.is_link() => {
            let inner = blob(repo, entry.id)?;
            resolve_link(repo, root, parents, &inner, hops + 1)
        }
        Some(entry) if entry.mode.is_tree() => Ok(LinkTarget::Directory),
        Some(_) | None => Ok(LinkTarget::Missing),
    }
}

/// Every file under `path` in `commit`, sorted by path, at most `max` bytes together.
pub(crate) fn read(
    repo: &gix::Repository,
    commit: ObjectId,
    path: &[String],
    max: u64,
) -> Result<Vec<ManifestFile>, GitError> {
    let shown = if path.is_empty() {
        ".".to_owned()
    } else {
        path.join("/")
    };
    let root = repo
        .find_commit(commit)
        .and_then(|commit| commit.tree_id().map(|id| id.detach()))
        .map_err(|err| GitError::other(format!("cannot read commit {commit}: {err}")))?;

    let mut files = Vec::new();
    let mut total = 0u64;
    let mut add = |path: String, id: ObjectId, files: &mut Vec<ManifestFile>| -> Result<(), GitError> {
        total = total.saturating_add(blob_size(repo, id)?);
        if total > max {
            return Err(GitError::TooLarge {
                path: shown.clone(),
                limit: max,
            });
        }
        files.push(ManifestFile {
            path,
            contents: blob(repo, id)?,
        });
        Ok(())
    };

    // Walk down to `path`.
    let mut start = root;
    for (depth, component) in path.iter().enumerate() {
        let entry =
            lookup(repo, start, component)?.ok_or_else(|| GitError::not_found(format!("path `{shown}`")))?;
        let is_last = depth + 1 == path.len();
        if entry.mode.is_tree() {
            start = entry.id;
        } else if is_last && entry.mode.is_blob() {
            add(shown.clone(), entry.id, &mut files)?;
            return Ok(files);
        } else {
            return Err(GitError::not_found(format!("path `{shown}`")));
        }
    }

    // Walk the subtree.
    let mut stack = vec![(start, path.to_vec())];
    while let Some((tree, dir)) = stack.pop() {
        for entry in entries(repo, tree)? {
            let mut components = dir.clone();
            components.push(entry.name.clone());
            let file_path = components.join("/");
            if entry.mode.is_tree() {
                stack.push((entry.id, components));
            } else if entry.mode.is_blob() {
                add(file_path, entry.id, &mut files)?;
            } else if entry.mode.is_link() {
                let target = blob(repo, entry.id)?;
                match resolve_link(repo, root, &dir, &target, 0)? {
                    LinkTarget::File(id) => add(file_path, id, &mut files)?,
                    LinkTarget::Outside => {
                        tracing::warn!(path = %file_path, "skipping a symlink that points outside the repository")
                    }
                    LinkTarget::Directory => {
                        tracing::debug!(path = %file_path, "skipping a symlink to a directory")
                    }
                    LinkTarget::Missing | LinkTarget::TooDeep => {
                        tracing::debug!(path = %file_path, "skipping a dangling symlink")
                    }
                }
            } else {
                tracing::debug!(path = %file_path, "skipping a submodule");
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        assert!(normalize_path("").unwrap().is_empty());
        assert!(normalize_path(".").unwrap().is_empty());
        assert!(normalize_path("/").unwrap().is_empty());
        assert_eq!(normalize_path("./deploy//prod/").unwrap(), ["deploy", "prod"]);
        assert!(matches!(
            normalize_path("deploy/../..").unwrap_err(),
            GitError::InvalidInput { .. }
        ));
    }
}
