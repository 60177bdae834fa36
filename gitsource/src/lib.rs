//! sealant's Git source for GitSync: ask a remote which commit a branch or tag points at, fetch that commit with
//! [gix](https://docs.rs/gix) into a local cache and return the files under a path.
//!
//! This crate has no Kubernetes dependency: the controller resolves credentials from Secrets and hands over plain
//! values in a [`Source`]. Everything here is blocking; the controller calls it from `spawn_blocking`.
//!
//! * [`Fetcher::remote_revision`] is a `git ls-remote`: one round trip, no objects fetched. The controller skips
//!   the rest when the revision did not change.
//! * [`Fetcher::checkout`] fetches the commit (shallow, depth 1) into a bare repository kept per URL under the
//!   cache directory, unless it is already there, and reads the files out of the commit's tree. A commit that
//!   was fetched once is served from the cache without any network call.
//!
//! URLs may be `https://`, `http://`, `file://`, `ssh://` or scp-like (`git@host:org/repo.git`). HTTP goes through
//! gix's reqwest transport with rustls (ring); ssh through the system `ssh` program. Credentials never go into a
//! URL that is stored: Basic credentials and Bearer tokens are sent as an `Authorization` header (kept in memory
//! only; redirects are not followed then), an ssh key is written to a private temporary file for the duration of
//! the call. The cache repositories are opened isolated (no system, global or environment configuration, no
//! credential helpers, never a prompt).
//! Errors and logs never contain them (see [`GitError`]).

mod error;
mod remote;
mod snapshot;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, mpsc};
use std::time::Duration;

use zeroize::Zeroizing;

pub use error::GitError;

/// The default cap on the total size of the files a [`Snapshot`] returns (64 MiB).
pub const DEFAULT_MAX_TOTAL_SIZE: u64 = 64 * 1024 * 1024;

/// The timeout used when a [`Source`] has a zero timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where to fetch from, what, and how to authenticate.
#[derive(Debug, Clone)]
pub struct Source {
    /// `https://`, `http://`, `file://`, `ssh://` or scp-like (`git@host:org/repo.git`). Userinfo in an
    /// `http(s)` URL is taken as Basic credentials (when `auth` is [`Auth::None`]) and removed from the URL.
    pub url: String,
    pub reference: Reference,
    pub auth: Auth,
    /// The longest a whole call ([`Fetcher::remote_revision`] or [`Fetcher::checkout`]) may take. Zero means
    /// [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
}

/// What to follow on the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A branch name, e.g. `main` (`refs/heads/main` is accepted too).
    Branch(String),
    /// A tag name, e.g. `v1.2.0` (`refs/tags/v1.2.0` is accepted too). Annotated tags are peeled to their commit.
    Tag(String),
    /// A full 40-hex commit id.
    Commit(String),
}

/// Credentials for the remote. `Debug` never prints them.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// HTTP Basic, sent as an `Authorization` header with every request (also over plain `http://`).
    Basic {
        username: String,
        password: Zeroizing<String>,
    },
    /// An HTTP `Authorization: Bearer` token, sent with every request.
    Bearer(Zeroizing<String>),
    /// An ssh private key (OpenSSH or PEM format) and the `known_hosts` lines to trust; the host key is checked
    /// strictly.
    Ssh {
        identity: Zeroizing<String>,
        known_hosts: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"[REDACTED]")
                .finish(),
            Auth::Bearer(_) => f.write_str("Bearer([REDACTED])"),
            Auth::Ssh { .. } => f
                .debug_struct("Ssh")
                .field("identity", &"[REDACTED]")
                .finish_non_exhaustive(),
        }
    }
}

/// The files of one commit under one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The commit id (40 hex).
    pub revision: String,
    /// Every regular file under the path (recursively), sorted by path. Symlinks to files inside the repository
    /// are returned with the target's contents; symlinks leaving the repository, symlinked directories and
    /// submodules are skipped.
    pub files: Vec<ManifestFile>,
}

/// One file of a [`Snapshot`].
#[derive(Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// Relative to the repository root, `/`-separated.
    pub path: String,
    pub contents: Vec<u8>,
}

impl fmt::Debug for ManifestFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManifestFile")
            .field("path", &self.path)
            .field("len", &self.contents.len())
            .finish()
    }
}

/// Fetches revisions into a cache: one bare repository per URL under `cache_dir`, named by a hash of the URL
/// (without credentials), reused across calls and across `Fetcher`s.
///
/// Calls for the same URL are serialised within the process; calls for different URLs run in parallel.
#[derive(Debug, Clone)]
pub struct Fetcher {
    cache_dir: PathBuf,
    max_total_size: u64,
}

impl Fetcher {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Fetcher {
            cache_dir: cache_dir.into(),
            max_total_size: DEFAULT_MAX_TOTAL_SIZE,
        }
    }

    /// Caps the total size of the files one [`Fetcher::checkout`] returns (default [`DEFAULT_MAX_TOTAL_SIZE`]).
    pub fn with_max_total_size(mut self, bytes: u64) -> Self {
        self.max_total_size = bytes;
        self
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Asks the remote which commit `source.reference` points at, without fetching objects (like `git
    /// ls-remote`). A [`Reference::Commit`] is returned as is (lower-cased) after checking its format, without
    /// contacting the remote.
    pub fn remote_revision(&self, source: &Source) -> Result<String, GitError> {
        let prepared = remote::Prepared::new(source, &self.cache_dir)?;
        if let Reference::Commit(id) = &source.reference {
            return remote::parse_commit_id(id).map(|id| id.to_string());
        }
        let reference = source.reference.clone();
        let url = prepared.display_url.clone();
        let timeout = prepared.timeout;
        let started = std::time::Instant::now();
        let result = with_deadline(timeout, &url, move |interrupt| {
            remote::remote_revision(&prepared, &reference, interrupt)
        });
        match &result {
            Ok(revision) => {
                tracing::debug!(url = %url, revision = %revision, elapsed_ms = started.elapsed().as_millis() as u64, "git remote revision")
            }
            Err(err) => {
                tracing::debug!(url = %url, kind = err.kind(), error = %err, "git remote revision failed")
            }
        }
        result
    }

    /// Fetches `revision` (a full commit id, usually from [`Fetcher::remote_revision`]) unless it is already in
    /// the cache, and returns the files under `path` (`""`, `"."` or `"/"` for the whole repository).
    ///
    /// The fetch is shallow (depth 1) and asks for the commit itself, which servers speaking protocol v2 allow;
    /// when the server refuses, all branches and tags are fetched (full history) and the commit looked up there.
    pub fn checkout(&self, source: &Source, revision: &str, path: &str) -> Result<Snapshot, GitError> {
        let prepared = remote::Prepared::new(source, &self.cache_dir)?;
        let commit = remote::parse_commit_id(revision)?;
        let path = snapshot::normalize_path(path)?;
        let max = self.max_total_size;
        let url = prepared.display_url.clone();
        let timeout = prepared.timeout;
        let started = std::time::Instant::now();
        let result = with_deadline(timeout, &url, move |interrupt| {
            let repo = remote::fetch_commit(&prepared, commit, interrupt)?;
            let files = snapshot::read(&repo, commit, &path, max)?;
            Ok(Snapshot {
                revision: commit.to_string(),
                files,
            })
        });
        match &result {
            Ok(snapshot) => tracing::debug!(
                url = %url,
                revision = %snapshot.revision,
                files = snapshot.files.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "git checkout"
            ),
            Err(err) => tracing::debug!(url = %url, kind = err.kind(), error = %err, "git checkout failed"),
        }
        result
    }
}

/// Locks per cache repository, so that two calls for the same URL do not fetch into it at once.
static REPO_LOCKS: LazyLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = LazyLock::new(Default::default);

pub(crate) fn repo_lock(dir: &Path) -> Arc<Mutex<()>> {
    let mut locks = REPO_LOCKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    locks.entry(dir.to_path_buf()).or_default().clone()
}

/// Runs `work` on its own thread and gives up after `timeout`: the caller gets [`GitError::Unreachable`], the
/// work is told to stop (pack reception checks the flag) and its HTTP requests time out on their own.
fn with_deadline<T: Send + 'static>(
    timeout: Duration,
    url: &str,
    work: impl FnOnce(&AtomicBool) -> Result<T, GitError> + Send + 'static,
) -> Result<T, GitError> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel(1);
    let flag = interrupt.clone();
    std::thread::Builder::new()
        .name("sealant-git".into())
        .spawn(move || {
            let _ = tx.send(work(&flag));
        })
        .map_err(|err| GitError::other(format!("cannot start a thread: {err}")))?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            interrupt.store(true, Ordering::Relaxed);
            tracing::warn!(url = %url, timeout_ms = timeout.as_millis() as u64, "git operation timed out");
            Err(GitError::Unreachable {
                detail: format!("{url}: timed out after {}", humanize(timeout)),
            })
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(GitError::other("the git worker thread panicked")),
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
