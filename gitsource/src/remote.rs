//! Talking to the remote with gix: URL checks, the cache repository, credentials, ls-refs and fetch.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use base64::Engine as _;
use gix::ObjectId;
use gix::bstr::ByteSlice as _;
use gix::credentials::helper::Action;
use gix::credentials::protocol::Outcome;
use gix::protocol::transport::client::blocking_io::http;
use gix::remote::Direction;
use gix::remote::fetch::Shallow;
use zeroize::Zeroizing;

use crate::error::redact;
use crate::{Auth, DEFAULT_TIMEOUT, GitError, Reference, Source};

/// Where the fetched commit is recorded in the cache repository (so the next fetch can tell the server what we
/// already have).
const FETCHED_REF: &str = "refs/sealant/fetched";

/// A [`Source`] checked and split into what the transport needs.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The URL without credentials.
    url: gix::Url,
    /// The URL for messages and logs (without credentials).
    pub(crate) display_url: String,
    auth: Auth,
    pub(crate) timeout: Duration,
    /// The bare repository caching this URL.
    repo_dir: PathBuf,
}

impl Prepared {
    pub(crate) fn new(source: &Source, cache_dir: &Path) -> Result<Self, GitError> {
        let mut auth = source.auth.clone();
        let invalid = |detail: &str| GitError::InvalidUrl {
            detail: format!("{}: {detail}", redact(&source.url, &[])),
        };
        if source.url.trim().is_empty() {
            return Err(invalid("empty"));
        }
        let mut url = gix::url::parse(source.url.trim().as_bytes().as_bstr())
            .map_err(|_| invalid("cannot be parsed"))?;
        use gix::url::Scheme;
        match url.scheme {
            Scheme::Http | Scheme::Https => {
                if url.host().is_none_or(str::is_empty) {
                    return Err(invalid("no host"));
                }
                if let Some(password) = url.password().map(ToOwned::to_owned) {
                    let username = url.user().unwrap_or_default().to_owned();
                    if matches!(auth, Auth::None) {
                        auth = Auth::Basic {
                            username,
                            password: Zeroizing::new(password),
                        };
                    }
                    url.set_password(None);
                    url.set_user(None);
                } else if url.user().is_some() && matches!(auth, Auth::None) {
                    // A user name alone is useless over HTTP without a password; keep it out of the cache key.
                    url.set_user(None);
                }
                if matches!(auth, Auth::Ssh { .. }) {
                    return Err(invalid("ssh credentials cannot be used with an http(s) URL"));
                }
            }
            Scheme::Ssh => {
                if url.password().is_some() {
                    return Err(invalid("ssh URLs cannot carry a password"));
                }
                if matches!(auth, Auth::Basic { .. } | Auth::Bearer(_)) {
                    return Err(invalid(
                        "basic or bearer credentials cannot be used with an ssh URL",
                    ));
                }
            }
            Scheme::File => {
                if !matches!(auth, Auth::None) {
                    return Err(invalid("credentials cannot be used with a file URL"));
                }
            }
            _ => return Err(invalid("unsupported scheme (use https, http, ssh or file)")),
        }
        let display_url = redact(&url.to_bstring().to_str_lossy(), &[]);
        let repo_dir = cache_dir.join(url_key(&url)?);
        let timeout = if source.timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            source.timeout
        };
        Ok(Prepared {
            url,
            display_url,
            auth,
            timeout,
            repo_dir,
        })
    }

    fn is_http(&self) -> bool {
        matches!(self.url.scheme, gix::url::Scheme::Http | gix::url::Scheme::Https)
    }

    /// The secrets to scrub from any text that leaves this crate (including the Basic header's encoding).
    fn secrets(&self) -> Vec<Zeroizing<String>> {
        match &self.auth {
            Auth::None => vec![],
            Auth::Basic { username, password } => {
                let pair = Zeroizing::new(format!("{username}:{}", password.as_str()));
                vec![
                    password.clone(),
                    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())),
                ]
            }
            Auth::Bearer(token) => vec![token.clone()],
            Auth::Ssh { identity, .. } => identity
                .lines()
                .filter(|line| line.len() >= 16)
                .map(|line| Zeroizing::new(line.to_owned()))
                .collect(),
        }
    }

    fn redact(&self, text: &str) -> String {
        let secrets = self.secrets();
        let secrets: Vec<&str> = secrets.iter().map(|secret| secret.as_str()).collect();
        redact(text, &secrets)
    }

    /// Maps a gix error to a [`GitError`] without any credential in its text.
    fn classify(&self, what: &str, err: &gix::Error) -> GitError {
        let mut text = String::new();
        for cause in err.iter_errors() {
            let cause = cause.to_string();
            if !text.contains(&cause) {
                if !text.is_empty() {
                    text.push_str(": ");
                }
                text.push_str(&cause);
            }
        }
        let mut text = self.redact(&text);
        if text.len() > 1000 {
            let mut cut = 1000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        let detail = format!("{what} {}: {text}", self.display_url);
        let lower = text.to_ascii_lowercase();
        if err.is_unauthenticated()
            || err.is_permission_denied()
            || lower.contains("status 401")
            || lower.contains("status 403")
            || lower.contains("authentication")
            || lower.contains("permission denied")
            || lower.contains("host key verification failed")
            || lower.contains("credentials")
        {
            return GitError::Auth { detail };
        }
        if lower.contains("status 404")
            || lower.contains("does not appear to be a git repository")
            || lower.contains("repository not found")
            || lower.contains("not a git repository")
            || lower.contains("could not be opened")
            || (!self.is_http() && lower.contains("no such file"))
        {
            return GitError::NotFound {
                what: format!("repository {}", self.display_url),
            };
        }
        if err.is_retryable()
            || err.can_retry_lenient()
            || lower.contains("connection refused")
            || lower.contains("timed out")
            || lower.contains("could not resolve")
            || lower.contains("dns error")
            || lower.contains("status 5")
            || lower.contains("connection reset")
            || lower.contains("connection closed")
            || lower.contains("could not read from remote repository")
        {
            return GitError::Unreachable { detail };
        }
        if err.is_cancelled() {
            return GitError::Unreachable {
                detail: format!("{what} {}: interrupted", self.display_url),
            };
        }
        GitError::Other { detail }
    }

    /// Opens (creating it if needed) the cache repository with only its own configuration plus the overrides this
    /// call needs. Nothing about credentials is written to its config file.
    fn open_repo(&self, ssh: Option<&SshFiles>) -> Result<gix::Repository, GitError> {
        if !self.repo_dir.join("HEAD").is_file() {
            create_bare(&self.repo_dir)?;
        }
        let mut overrides: Vec<String> = vec!["gitoxide.userAgent=sealant".into()];
        if self.url.scheme == gix::url::Scheme::Ssh {
            overrides.push(format!("core.sshCommand={}", ssh_command(ssh, self.timeout)));
            overrides.push("ssh.variant=ssh".into());
        }
        let options = gix::open::Options::isolated().config_overrides(overrides);
        gix::open_opts(&self.repo_dir, options).map_err(|err| {
            GitError::other(format!(
                "cannot open the cache repository {}: {}",
                self.repo_dir.display(),
                self.redact(&err.to_string())
            ))
        })
    }

    /// Connects an anonymous remote with `refspecs` and runs `f` on the connection.
    fn with_connection<T>(
        &self,
        repo: &gix::Repository,
        refspecs: &[String],
        f: impl FnOnce(Connection<'_, '_, '_>) -> Result<T, gix::Error>,
        what: &str,
    ) -> Result<T, GitError> {
        let remote = repo
            .remote_at(self.url.clone())
            .and_then(|remote| remote.with_refspecs(refspecs.iter().map(String::as_str), Direction::Fetch))
            .map(|remote| remote.with_fetch_tags(gix::remote::fetch::Tags::None))
            .map_err(|err| self.classify(what, &err))?;
        let connection = remote
            .connect(Direction::Fetch)
            .map_err(|err| self.classify(what, &err))?;
        let mut connection = connection.with_credentials(no_credentials);
        if self.is_http() {
            let options = self.http_options(repo)?;
            connection = connection.with_transport_options(options);
        }
        f(connection).map_err(|err| self.classify(what, &err))
    }

    /// The repository's HTTP options (from its isolated config) plus our timeouts, the Bearer header and the
    /// reqwest client settings.
    fn http_options(&self, repo: &gix::Repository) -> Result<Box<dyn std::any::Any>, GitError> {
        install_crypto_provider();
        let url = self.url.to_bstring();
        let mut options = repo
            .transport_options(url.as_bstr(), None)
            .map_err(|err| self.classify("configuring the transport for", &err))?
            .unwrap_or_else(|| Box::new(http::Options::default()));
        let http_options = options
            .downcast_mut::<http::Options>()
            .ok_or_else(|| GitError::other("unexpected transport options type"))?;
        // Credentials go in as a header on every request (gix's credential callback refuses plain http, and a
        // header saves the 401 round trip). gix does not follow redirects when headers are configured, so they
        // never reach another host.
        match &self.auth {
            Auth::Basic { username, password } => {
                let pair = Zeroizing::new(format!("{username}:{}", password.as_str()));
                let encoded =
                    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
                http_options
                    .extra_headers
                    .push(format!("Authorization: Basic {}", encoded.as_str()));
            }
            Auth::Bearer(token) => http_options
                .extra_headers
                .push(format!("Authorization: Bearer {}", token.as_str())),
            Auth::None | Auth::Ssh { .. } => {}
        }
        let timeout = self.timeout;
        let connect_timeout = timeout.min(Duration::from_secs(30));
        http_options.connect_timeout = Some(connect_timeout);
        http_options.user_agent = Some(format!("sealant/{}", env!("CARGO_PKG_VERSION")));
        let backend = http::reqwest::Options {
            configure_client: Some(Box::new(move |builder| {
                Ok(builder.timeout(timeout).connect_timeout(connect_timeout))
            })),
            configure_request: None,
        };
        http_options.backend = Some(Arc::new(Mutex::new(backend)));
        Ok(options)
    }
}

type Connection<'remote, 'auth, 'repo> = gix::remote::Connection<
    'remote,
    'auth,
    'repo,
    Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>,
>;

/// Answers gix's credential requests: never any (no helpers, no prompts), as the credentials already went out as
/// a header; a 401 is then an authentication failure.
fn no_credentials(_action: Action) -> gix::Result<Option<Outcome>> {
    Ok(None)
}

/// reqwest is built with rustls but no crypto provider of its own: use ring, process-wide, unless the process
/// already chose one.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

/// The cache directory name of a URL: the hex SHA-1 of the URL without credentials.
fn url_key(url: &gix::Url) -> Result<String, GitError> {
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(&url.to_bstring());
    let id = hasher
        .try_finalize()
        .map_err(|err| GitError::other(format!("cannot hash the URL: {err}")))?;
    Ok(id.to_string())
}

/// Creates a bare repository at `dir` atomically (in a sibling directory, then renamed).
fn create_bare(dir: &Path) -> Result<(), GitError> {
    let parent = dir
        .parent()
        .ok_or_else(|| GitError::other("the cache repository has no parent directory"))?;
    std::fs::create_dir_all(parent).map_err(|err| {
        GitError::other(format!(
            "cannot create the cache directory {}: {err}",
            parent.display()
        ))
    })?;
    let staging = tempfile::Builder::new()
        .prefix(".init-")
        .tempdir_in(parent)
        .map_err(|err| {
            GitError::other(format!(
                "cannot create a directory in {}: {err}",
                parent.display()
            ))
        })?;
    let tmp = staging.path().join("repo");
    gix::create::into(&tmp, gix::create::Kind::Bare, gix::create::Options::default())
        .map_err(|err| GitError::other(format!("cannot create the cache repository: {err}")))?;
    if dir.exists() {
        // Created concurrently by another process; use theirs.
        return Ok(());
    }
    if let Err(err) = std::fs::rename(&tmp, dir)
        && !dir.join("HEAD").is_file()
    {
        return Err(GitError::other(format!(
            "cannot create the cache repository {}: {err}",
            dir.display()
        )));
    }
    Ok(())
}

/// The ssh private key and known hosts, in a private temporary directory for the duration of one call.
#[derive(Debug)]
pub(crate) struct SshFiles {
    _dir: tempfile::TempDir,
    identity: PathBuf,
    known_hosts: PathBuf,
}

impl SshFiles {
    fn write(auth: &Auth) -> Result<Option<SshFiles>, GitError> {
        let Auth::Ssh {
            identity,
            known_hosts,
        } = auth
        else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("sealant-ssh-")
            .tempdir()
            .map_err(|err| GitError::other(format!("cannot create a temporary directory: {err}")))?;
        let identity_path = dir.path().join("identity");
        let known_hosts_path = dir.path().join("known_hosts");
        let mut key = Zeroizing::new(identity.as_str().to_owned());
        if !key.ends_with('\n') {
            key.push('\n');
        }
        write_private(&identity_path, key.as_bytes())?;
        write_private(&known_hosts_path, known_hosts.as_bytes())?;
        Ok(Some(SshFiles {
            _dir: dir,
            identity: identity_path,
            known_hosts: known_hosts_path,
        }))
    }
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), GitError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| GitError::other(format!("cannot write {}: {err}", path.display())))?;
    file.write_all(contents)
        .map_err(|err| GitError::other(format!("cannot write {}: {err}", path.display())))
}

/// The `ssh` command line: never prompt, strict host keys when we were given known hosts, bounded connect time.
fn ssh_command(files: Option<&SshFiles>, timeout: Duration) -> String {
    let connect = timeout.as_secs().clamp(1, 30);
    let mut command = format!(
        "ssh -o BatchMode=yes -o ConnectTimeout={connect} -o ServerAliveInterval=10 -o ServerAliveCountMax=2"
    );
    if let Some(files) = files {
        command.push_str(&format!(
            " -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile='{}' -i '{}'",
            files.known_hosts.display(),
            files.identity.display()
        ));
    }
    command
}

/// A full, lower-case 40-hex commit id.
pub(crate) fn parse_commit_id(id: &str) -> Result<ObjectId, GitError> {
    let id = id.trim();
    if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GitError::invalid_input(format!(
            "`{id}` is not a full 40-hex commit id"
        )));
    }
    ObjectId::from_hex(id.to_ascii_lowercase().as_bytes())
        .map_err(|err| GitError::invalid_input(format!("`{id}` is not a commit id: {err}")))
}

/// The full ref name of a branch or tag, checked.
fn full_ref_name(reference: &Reference) -> Result<(String, String), GitError> {
    let (prefix, kind, name) = match reference {
        Reference::Branch(name) => ("refs/heads/", "branch", name),
        Reference::Tag(name) => ("refs/tags/", "tag", name),
        Reference::Commit(_) => unreachable!("commits are not looked up"),
    };
    let short = name.trim().strip_prefix(prefix).unwrap_or(name.trim());
    let full = format!("{prefix}{short}");
    let valid = !short.is_empty()
        && !short.contains(['*', '?', '[', '\\', ':', '^', '~', ' '])
        && !short.starts_with(['-', '+'])
        && !short.contains("..")
        && gix::refs::FullName::try_from(full.as_str()).is_ok();
    if !valid {
        return Err(GitError::invalid_input(format!(
            "`{name}` is not a valid {kind} name"
        )));
    }
    Ok((full, format!("{kind} `{short}`")))
}

/// `git ls-remote <url> <ref>`: the commit the branch or tag points at (tags peeled).
pub(crate) fn remote_revision(
    prepared: &Prepared,
    reference: &Reference,
    _interrupt: &AtomicBool,
) -> Result<String, GitError> {
    let (full, what) = full_ref_name(reference)?;
    let lock = crate::repo_lock(&prepared.repo_dir);
    let _guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let ssh = SshFiles::write(&prepared.auth)?;
    let repo = prepared.open_repo(ssh.as_ref())?;
    let ref_map = prepared.with_connection(
        &repo,
        std::slice::from_ref(&full),
        |connection| {
            let (ref_map, _handshake) =
                connection.ref_map(gix::progress::Discard, gix::remote::ref_map::Options::default())?;
            Ok(ref_map)
        },
        "listing references of",
    )?;
    let id = ref_map
        .remote_refs
        .iter()
        .find_map(|remote_ref| {
            let (name, target, peeled) = remote_ref.unpack();
            (name == full.as_bytes().as_bstr()).then(|| peeled.or(target).map(ToOwned::to_owned))
        })
        .flatten()
        .ok_or_else(|| GitError::not_found(what))?;
    Ok(id.to_string())
}

/// Makes sure `commit` is in the cache repository, fetching it if needed, and returns the repository.
pub(crate) fn fetch_commit(
    prepared: &Prepared,
    commit: ObjectId,
    interrupt: &AtomicBool,
) -> Result<gix::Repository, GitError> {
    let lock = crate::repo_lock(&prepared.repo_dir);
    let _guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let ssh = SshFiles::write(&prepared.auth)?;
    let repo = prepared.open_repo(ssh.as_ref())?;
    if has_commit(&repo, commit) {
        tracing::debug!(url = %prepared.display_url, revision = %commit, "git commit already cached");
        return Ok(repo);
    }
    // Ask for the commit itself, one level deep (protocol v2 servers serve any reachable object).
    let by_id = format!("+{commit}:{FETCHED_REF}");
    let shallow = Shallow::DepthAtRemote(1.try_into().expect("non-zero"));
    let first = prepared.with_connection(
        &repo,
        std::slice::from_ref(&by_id),
        |connection| fetch(connection, shallow, interrupt),
        "fetching from",
    );
    let repo = reopen(prepared, &repo, ssh.as_ref())?;
    match first {
        Ok(()) if has_commit(&repo, commit) => return Ok(repo),
        Ok(()) => {}
        Err(err @ GitError::Auth { .. }) => return Err(err),
        Err(err) if interrupt.load(std::sync::atomic::Ordering::Relaxed) => return Err(err),
        // Servers refusing an unadvertised object may hang up while we still write (a broken pipe, which looks
        // like a network failure): fall back in every other case; a server that is really gone fails again.
        Err(err) => {
            tracing::debug!(url = %prepared.display_url, revision = %commit, error = %err, "git fetch by commit id refused; fetching all branches and tags");
        }
    }
    // Fall back to everything the server advertises, with full history.
    let specs = [
        "+refs/heads/*:refs/sealant/heads/*".to_owned(),
        "+refs/tags/*:refs/sealant/tags/*".to_owned(),
    ];
    let is_shallow = repo.is_shallow().unwrap_or(false);
    let shallow = if is_shallow {
        Shallow::undo()
    } else {
        Shallow::NoChange
    };
    prepared.with_connection(
        &repo,
        &specs,
        |connection| fetch(connection, shallow, interrupt),
        "fetching from",
    )?;
    let repo = reopen(prepared, &repo, ssh.as_ref())?;
    if has_commit(&repo, commit) {
        Ok(repo)
    } else {
        Err(GitError::not_found(format!("commit `{commit}`")))
    }
}

fn fetch(
    connection: Connection<'_, '_, '_>,
    shallow: Shallow,
    interrupt: &AtomicBool,
) -> Result<(), gix::Error> {
    connection
        .prepare_fetch(gix::progress::Discard, gix::remote::ref_map::Options::default())?
        .with_shallow(shallow)
        .with_write_packed_refs_only(true)
        .receive(gix::progress::Discard, interrupt)?;
    Ok(())
}

/// A fresh handle, so that packs written by the fetch are seen.
fn reopen(
    prepared: &Prepared,
    repo: &gix::Repository,
    ssh: Option<&SshFiles>,
) -> Result<gix::Repository, GitError> {
    let _ = repo;
    prepared.open_repo(ssh)
}

fn has_commit(repo: &gix::Repository, commit: ObjectId) -> bool {
    repo.find_header(commit)
        .is_ok_and(|header| header.kind() == gix::object::Kind::Commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(url: &str, auth: Auth) -> Result<Prepared, GitError> {
        let source = Source {
            url: url.to_owned(),
            reference: Reference::Branch("main".into()),
            auth,
            timeout: Duration::ZERO,
        };
        Prepared::new(&source, Path::new("/cache"))
    }

    #[test]
    fn userinfo_becomes_basic_auth_and_stays_out_of_the_cache_key() {
        let with = prepare("https://bob:hunter2@example.com/org/repo.git", Auth::None).unwrap();
        let without = prepare("https://example.com/org/repo.git", Auth::None).unwrap();
        assert_eq!(with.repo_dir, without.repo_dir);
        assert_eq!(with.display_url, "https://example.com/org/repo.git");
        assert!(
            matches!(&with.auth, Auth::Basic { username, password } if username == "bob" && password.as_str() == "hunter2")
        );
        assert_eq!(with.timeout, DEFAULT_TIMEOUT);
        assert_ne!(
            prepare("https://example.com/org/other.git", Auth::None)
                .unwrap()
                .repo_dir,
            without.repo_dir
        );
    }

    #[test]
    fn schemes() {
        assert!(
            prepare("git@github.com:org/repo.git", Auth::None)
                .unwrap()
                .url
                .scheme
                == gix::url::Scheme::Ssh
        );
        assert!(prepare("ssh://git@host:2222/org/repo.git", Auth::None).is_ok());
        assert!(prepare("file:///srv/repo", Auth::None).is_ok());
        assert!(prepare("http://host/repo", Auth::Bearer(Zeroizing::new("t".into()))).is_ok());
        let err = prepare("git://host/repo", Auth::None).unwrap_err();
        assert!(matches!(err, GitError::InvalidUrl { .. }), "{err:?}");
        let err = prepare("https:///repo", Auth::None).unwrap_err();
        assert!(matches!(err, GitError::InvalidUrl { .. }), "{err:?}");
        let ssh = Auth::Ssh {
            identity: Zeroizing::new("key".into()),
            known_hosts: String::new(),
        };
        let err = prepare("https://host/repo", ssh).unwrap_err();
        assert!(matches!(err, GitError::InvalidUrl { .. }), "{err:?}");
        let err = prepare("ssh://host/repo", Auth::Bearer(Zeroizing::new("t".into()))).unwrap_err();
        assert!(matches!(err, GitError::InvalidUrl { .. }), "{err:?}");
    }

    #[test]
    fn invalid_urls_do_not_echo_credentials() {
        let err = prepare("ftp://bob:hunter2@example.com/repo", Auth::None).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn ref_names() {
        let (full, what) = full_ref_name(&Reference::Branch("refs/heads/release/1.x".into())).unwrap();
        assert_eq!(full, "refs/heads/release/1.x");
        assert_eq!(what, "branch `release/1.x`");
        for bad in ["", "a..b", "-x", "a b", "x*", "a:b"] {
            assert!(full_ref_name(&Reference::Tag(bad.into())).is_err(), "{bad}");
        }
    }

    #[test]
    fn commit_ids() {
        let id = "0123456789ABCDEF0123456789abcdef01234567";
        assert_eq!(parse_commit_id(id).unwrap().to_string(), id.to_ascii_lowercase());
        assert!(parse_commit_id("0123456").is_err());
        assert!(parse_commit_id(&"g".repeat(40)).is_err());
    }
}
