//! Fetching from real Git repositories over `file://` and over HTTP (`git http-backend`).

mod support;

use std::time::{Duration, Instant};

use sealant_gitsource::{Auth, Fetcher, GitError, Reference, Snapshot, Source};
use support::{Blackhole, GitHttpServer, Repos, ServerAuth, all_files, closed_port};
use zeroize::Zeroizing;

const TIMEOUT: Duration = Duration::from_secs(20);

fn source(url: &str, reference: Reference) -> Source {
    Source {
        url: url.to_owned(),
        reference,
        auth: Auth::None,
        timeout: TIMEOUT,
    }
}

fn branch(name: &str) -> Reference {
    Reference::Branch(name.to_owned())
}

fn paths(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.files.iter().map(|file| file.path.as_str()).collect()
}

fn contents<'a>(snapshot: &'a Snapshot, path: &str) -> &'a str {
    let file = snapshot
        .files
        .iter()
        .find(|file| file.path == path)
        .unwrap_or_else(|| panic!("{path} is not in the snapshot: {:?}", paths(snapshot)));
    std::str::from_utf8(&file.contents).unwrap()
}

/// A repository with two commits on `main`, an annotated tag `v1` and a lightweight tag `light` on the first,
/// and a branch `other`. Returns (first, second) commit ids.
fn populate(repo: &support::Repo<'_>) -> (String, String) {
    repo.write("README.md", "# demo\n")
        .write("deploy/app.yaml", "kind: Deployment\n")
        .write("deploy/base/kustomization.yaml", "resources: []\n")
        .write("deploy/base/cm.json", "{}\n")
        .write("other/ignored.yaml", "kind: ConfigMap\n");
    let first = repo.commit("first");
    repo.git(&["tag", "-a", "v1", "-m", "release 1"]);
    repo.git(&["tag", "light"]);
    repo.git(&["branch", "other"]);
    repo.write("deploy/app.yaml", "kind: Deployment\nreplicas: 2\n");
    let second = repo.commit("second");
    (first, second)
}

/// Branch, tag (annotated and lightweight) and commit checkouts, and path filtering, against `url`.
fn check_references(fetcher: &Fetcher, url: &str, repo: &support::Repo<'_>, first: &str, second: &str) {
    let main = fetcher.remote_revision(&source(url, branch("main"))).unwrap();
    assert_eq!(main, second);
    assert_eq!(main, repo.rev_parse("main"));

    let snapshot = fetcher
        .checkout(&source(url, branch("main")), &main, "deploy")
        .unwrap();
    assert_eq!(snapshot.revision, second);
    assert_eq!(
        paths(&snapshot),
        [
            "deploy/app.yaml",
            "deploy/base/cm.json",
            "deploy/base/kustomization.yaml"
        ]
    );
    assert_eq!(
        contents(&snapshot, "deploy/app.yaml"),
        "kind: Deployment\nreplicas: 2\n"
    );

    // Annotated tags are peeled to the commit.
    let tag = Reference::Tag("v1".into());
    let v1 = fetcher.remote_revision(&source(url, tag.clone())).unwrap();
    assert_eq!(v1, first);
    assert_eq!(v1, repo.rev_parse("v1^{commit}"));
    assert_ne!(
        repo.rev_parse("v1"),
        first,
        "v1 must be an annotated tag for this test"
    );
    let snapshot = fetcher.checkout(&source(url, tag), &v1, "./deploy/").unwrap();
    assert_eq!(contents(&snapshot, "deploy/app.yaml"), "kind: Deployment\n");

    let light = fetcher
        .remote_revision(&source(url, Reference::Tag("refs/tags/light".into())))
        .unwrap();
    assert_eq!(light, first);
    assert_eq!(
        fetcher.remote_revision(&source(url, branch("other"))).unwrap(),
        first
    );

    // A commit is returned as is, and checked out even though no ref points at it any more... here `first` is
    // still reachable from `main`, so the server serves it by id.
    let commit = Reference::Commit(first.to_uppercase());
    assert_eq!(
        fetcher.remote_revision(&source(url, commit.clone())).unwrap(),
        first
    );
    let snapshot = fetcher.checkout(&source(url, commit), first, "").unwrap();
    assert_eq!(snapshot.revision, first);
    assert_eq!(
        paths(&snapshot),
        [
            "README.md",
            "deploy/app.yaml",
            "deploy/base/cm.json",
            "deploy/base/kustomization.yaml",
            "other/ignored.yaml"
        ]
    );
    // A single file as the path.
    let snapshot = fetcher
        .checkout(&source(url, branch("main")), second, "deploy/base/cm.json")
        .unwrap();
    assert_eq!(paths(&snapshot), ["deploy/base/cm.json"]);
}

#[test]
fn file_url_branch_tag_and_commit() {
    let repos = Repos::new();
    let repo = repos.init("demo");
    let (first, second) = populate(&repo);
    let fetcher = Fetcher::new(repos.scratch("cache"));
    check_references(&fetcher, &repo.file_url(), &repo, &first, &second);
    assert_shallow(&fetcher);
}

#[test]
fn http_branch_tag_and_commit() {
    let repos = Repos::new();
    let repo = repos.init("demo");
    let (first, second) = populate(&repo);
    let server = GitHttpServer::start(repos.root(), ServerAuth::None);
    let fetcher = Fetcher::new(repos.scratch("cache"));
    check_references(&fetcher, &server.url("demo"), &repo, &first, &second);
    assert!(server.count(200) > 0);

    // Checking out a cached revision makes no request at all.
    let requests = server.count(200);
    let src = source(&server.url("demo"), branch("main"));
    fetcher.checkout(&src, &second, "deploy").unwrap();
    fetcher.checkout(&src, &first, "").unwrap();
    assert_eq!(server.count(200), requests);
    assert_shallow(&fetcher);
}

/// Every cache repository is shallow (fetched with depth 1).
fn assert_shallow(fetcher: &Fetcher) {
    let repos: Vec<_> = std::fs::read_dir(fetcher.cache_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("HEAD").is_file())
        .collect();
    assert_eq!(repos.len(), 1, "{repos:?}");
    for repo in repos {
        assert!(
            repo.join("shallow").is_file(),
            "{} is not shallow",
            repo.display()
        );
    }
}

#[test]
fn new_commits_move_the_revision_and_deleted_files_disappear() {
    let repos = Repos::new();
    let repo = repos.init("demo");
    let (_, second) = populate(&repo);
    let server = GitHttpServer::start(repos.root(), ServerAuth::None);
    let fetcher = Fetcher::new(repos.scratch("cache"));
    for url in [server.url("demo"), repo.file_url()] {
        let src = source(&url, branch("main"));
        assert_eq!(fetcher.remote_revision(&src).unwrap(), second);
        let before = fetcher.checkout(&src, &second, "deploy").unwrap();
        assert!(paths(&before).contains(&"deploy/base/cm.json"));
    }

    repo.remove("deploy/base/cm.json");
    repo.write("deploy/new.yml", "kind: Service\n");
    let third = repo.commit("third");
    assert_ne!(third, second);
    for url in [server.url("demo"), repo.file_url()] {
        let src = source(&url, branch("main"));
        let revision = fetcher.remote_revision(&src).unwrap();
        assert_eq!(revision, third);
        assert_eq!(revision, repo.rev_parse("HEAD"));
        let after = fetcher.checkout(&src, &revision, "deploy").unwrap();
        assert_eq!(
            paths(&after),
            [
                "deploy/app.yaml",
                "deploy/base/kustomization.yaml",
                "deploy/new.yml"
            ]
        );
        // The older revision is still there to check out.
        let old = fetcher.checkout(&src, &second, "deploy").unwrap();
        assert!(paths(&old).contains(&"deploy/base/cm.json"));
    }
}

#[test]
fn unknown_branch_tag_commit_path_and_repository_are_not_found() {
    let repos = Repos::new();
    let repo = repos.init("demo");
    let (_, second) = populate(&repo);
    let server = GitHttpServer::start(repos.root(), ServerAuth::None);
    let fetcher = Fetcher::new(repos.scratch("cache"));
    for url in [server.url("demo"), repo.file_url()] {
        let err = fetcher
            .remote_revision(&source(&url, branch("nope")))
            .unwrap_err();
        assert!(
            matches!(&err, GitError::NotFound { what } if what.contains("branch `nope`")),
            "{err:?}"
        );
        let err = fetcher
            .remote_revision(&source(&url, Reference::Tag("v9".into())))
            .unwrap_err();
        assert!(
            matches!(&err, GitError::NotFound { what } if what.contains("tag `v9`")),
            "{err:?}"
        );

        let missing = "0123456789abcdef0123456789abcdef01234567";
        let err = fetcher
            .checkout(&source(&url, Reference::Commit(missing.into())), missing, "")
            .unwrap_err();
        assert!(
            matches!(&err, GitError::NotFound { what } if what.contains(missing)),
            "{err:?}"
        );

        let err = fetcher
            .checkout(&source(&url, branch("main")), &second, "deploy/nowhere")
            .unwrap_err();
        assert!(
            matches!(&err, GitError::NotFound { what } if what.contains("deploy/nowhere")),
            "{err:?}"
        );
    }

    let err = fetcher
        .remote_revision(&source(&server.url("absent"), branch("main")))
        .unwrap_err();
    assert!(matches!(err, GitError::NotFound { .. }), "{err:?}");
    let absent = format!("file://{}", repos.root().join("absent").display());
    let err = fetcher
        .remote_revision(&source(&absent, branch("main")))
        .unwrap_err();
    assert!(matches!(err, GitError::NotFound { .. }), "{err:?}");
}

#[test]
fn invalid_input_is_refused() {
    let repos = Repos::new();
    let fetcher = Fetcher::new(repos.scratch("cache"));
    let err = fetcher.remote_revision(&source("", branch("main"))).unwrap_err();
    assert!(matches!(err, GitError::InvalidUrl { .. }), "{err:?}");
    let err = fetcher
        .remote_revision(&source("ftp://example.com/repo.git", branch("main")))
        .unwrap_err();
    assert!(matches!(err, GitError::InvalidUrl { .. }), "{err:?}");
    let err = fetcher
        .remote_revision(&source("file:///tmp/x", Reference::Commit("abc123".into())))
        .unwrap_err();
    assert!(matches!(err, GitError::InvalidInput { .. }), "{err:?}");
    let err = fetcher
        .remote_revision(&source("file:///tmp/x", branch("a..b")))
        .unwrap_err();
    assert!(matches!(err, GitError::InvalidInput { .. }), "{err:?}");
    let err = fetcher
        .checkout(&source("file:///tmp/x", branch("main")), "abc", "")
        .unwrap_err();
    assert!(matches!(err, GitError::InvalidInput { .. }), "{err:?}");
}

#[test]
fn basic_auth() {
    let repos = Repos::new();
    let repo = repos.init("demo");
    let (_, second) = populate(&repo);
    let password = "correct-horse-battery-staple";
    let server = GitHttpServer::start(
        repos.root(),
        ServerAuth::Basic {
            username: "alice".into(),
            password: password.into(),
        },
    );
    let cache = repos.scratch("cache");
    let fetcher = Fetcher::new(&cache);
    let mut src = source(&server.url("demo"), branch("main"));

    // No credentials.
    let err = fetcher.remote_revision(&src).unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");

    // Wrong password: Auth, and the password is nowhere in the error.
    let wrong = "wrong-password-1234";
    src.auth = Auth::Basic {
        username: "alice".into(),
        password: Zeroizing::new(wrong.into()),
    };
    let err = fetcher.remote_revision(&src).unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(wrong), "{err:?}");
    let err = fetcher.checkout(&src, &second, "").unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(wrong), "{err:?}");

    // Wrong password in the URL's userinfo: redacted too.
    let with_userinfo = server.url("demo").replace("://", &format!("://alice:{wrong}@"));
    let err = fetcher
        .remote_revision(&source(&with_userinfo, branch("main")))
        .unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(wrong), "{err:?}");

    // Right password.
    src.auth = Auth::Basic {
        username: "alice".into(),
        password: Zeroizing::new(password.into()),
    };
    assert!(!format!("{src:?}").contains(password));
    assert_eq!(fetcher.remote_revision(&src).unwrap(), second);
    let snapshot = fetcher.checkout(&src, &second, "deploy").unwrap();
    assert_eq!(snapshot.files.len(), 3);
    assert!(server.count(401) >= 3);

    // And from the URL's userinfo.
    let with_userinfo = server
        .url("demo")
        .replace("://", &format!("://alice:{password}@"));
    assert_eq!(
        fetcher
            .remote_revision(&source(&with_userinfo, branch("main")))
            .unwrap(),
        second
    );

    // Nothing in the cache holds the password.
    for file in all_files(&cache) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(password.len()).any(|w| w == password.as_bytes()),
            "{} contains the password",
            file.display()
        );
    }
}

#[test]
fn bearer_token() {
    let repos = Repos::new();
    let repo = repos.init("demo");
    let (_, second) = populate(&repo);
    let token = "tok-9f8e7d6c5b4a";
    let server = GitHttpServer::start(repos.root(), ServerAuth::Bearer(token.into()));
    let cache = repos.scratch("cache");
    let fetcher = Fetcher::new(&cache);
    let mut src = source(&server.url("demo"), branch("main"));
    src.auth = Auth::Bearer(Zeroizing::new("tok-wrong-000".into()));
    let err = fetcher.remote_revision(&src).unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("tok-wrong-000"), "{err:?}");

    src.auth = Auth::Bearer(Zeroizing::new(token.into()));
    assert!(!format!("{src:?}").contains(token));
    assert_eq!(fetcher.remote_revision(&src).unwrap(), second);
    let snapshot = fetcher.checkout(&src, &second, "deploy/base").unwrap();
    assert_eq!(
        paths(&snapshot),
        ["deploy/base/cm.json", "deploy/base/kustomization.yaml"]
    );
    for file in all_files(&cache) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{} contains the token",
            file.display()
        );
    }
}

#[test]
fn stopped_server_is_unreachable_but_cached_revisions_still_check_out() {
    let repos = Repos::new();
    let repo = repos.init("demo");
    let (first, second) = populate(&repo);
    let mut server = GitHttpServer::start(repos.root(), ServerAuth::None);
    let url = server.url("demo");
    let fetcher = Fetcher::new(repos.scratch("cache"));
    let src = source(&url, branch("main"));
    let revision = fetcher.remote_revision(&src).unwrap();
    assert_eq!(revision, second);
    let online = fetcher.checkout(&src, &revision, "deploy").unwrap();

    server.stop();
    let err = fetcher.remote_revision(&src).unwrap_err();
    assert!(matches!(err, GitError::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());
    // The first commit was never fetched (depth 1), so it needs the server.
    let err = fetcher.checkout(&src, &first, "deploy").unwrap_err();
    assert!(matches!(err, GitError::Unreachable { .. }), "{err:?}");

    // A new Fetcher on the same cache directory serves the fetched revision without the server.
    let offline = Fetcher::new(fetcher.cache_dir())
        .checkout(&src, &revision, "deploy")
        .unwrap();
    assert_eq!(offline, online);

    let err = fetcher
        .remote_revision(&source(
            &format!("http://127.0.0.1:{}/demo", closed_port()),
            branch("main"),
        ))
        .unwrap_err();
    assert!(matches!(err, GitError::Unreachable { .. }), "{err:?}");
}

#[test]
fn a_server_that_never_answers_times_out() {
    let repos = Repos::new();
    let blackhole = Blackhole::start();
    let fetcher = Fetcher::new(repos.scratch("cache"));
    let mut src = source(
        &format!("http://127.0.0.1:{}/demo", blackhole.port),
        branch("main"),
    );
    src.timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = fetcher.remote_revision(&src).unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, GitError::Unreachable { .. }), "{err:?}");
    assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");

    let started = Instant::now();
    let revision = "0123456789abcdef0123456789abcdef01234567";
    let err = fetcher.checkout(&src, revision, "").unwrap_err();
    assert!(matches!(err, GitError::Unreachable { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn total_size_is_capped() {
    let repos = Repos::new();
    let repo = repos.init("demo");
    repo.write("small/a.yaml", "a: 1\n");
    repo.write("big/blob.yaml", vec![b'x'; 300 * 1024]);
    repo.write("big/blob2.yaml", vec![b'y'; 300 * 1024]);
    let commit = repo.commit("big");
    let fetcher = Fetcher::new(repos.scratch("cache")).with_max_total_size(512 * 1024);
    let src = source(&repo.file_url(), branch("main"));
    let err = fetcher.checkout(&src, &commit, "big").unwrap_err();
    assert!(
        matches!(&err, GitError::TooLarge { path, limit } if path == "big" && *limit == 512 * 1024),
        "{err:?}"
    );
    assert!(err.to_string().contains("524288"), "{err}");
    // Each file alone fits, as does the small directory.
    assert_eq!(fetcher.checkout(&src, &commit, "small").unwrap().files.len(), 1);
    assert_eq!(
        fetcher.checkout(&src, &commit, "big/blob.yaml").unwrap().files[0]
            .contents
            .len(),
        300 * 1024
    );
}

#[test]
fn symlinks_inside_are_followed_and_outside_skipped() {
    let repos = Repos::new();
    let repo = repos.init("demo");
    repo.write("shared/common.yaml", "kind: Namespace\n")
        .write("deploy/app.yaml", "kind: Deployment\n")
        .symlink("deploy/common.yaml", "../shared/common.yaml")
        .symlink("deploy/passwd", "../../../../etc/passwd")
        .symlink("deploy/absolute", "/etc/passwd")
        .symlink("deploy/dangling.yaml", "missing.yaml")
        .symlink("deploy/dir", "../shared");
    let commit = repo.commit("links");
    let fetcher = Fetcher::new(repos.scratch("cache"));
    let snapshot = fetcher
        .checkout(&source(&repo.file_url(), branch("main")), &commit, "deploy")
        .unwrap();
    assert_eq!(paths(&snapshot), ["deploy/app.yaml", "deploy/common.yaml"]);
    assert_eq!(contents(&snapshot, "deploy/common.yaml"), "kind: Namespace\n");
}

#[test]
fn ssh_to_a_closed_port_is_unreachable_and_keys_stay_private() {
    let repos = Repos::new();
    let fetcher = Fetcher::new(repos.scratch("cache"));
    let identity = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-but-secret-material-0123456789\n-----END OPENSSH PRIVATE KEY-----\n";
    let mut src = source(
        &format!("ssh://git@127.0.0.1:{}/demo.git", closed_port()),
        branch("main"),
    );
    src.auth = Auth::Ssh {
        identity: Zeroizing::new(identity.into()),
        known_hosts: String::new(),
    };
    src.timeout = Duration::from_secs(10);
    assert!(!format!("{src:?}").contains("secret-material"));
    let err = fetcher.remote_revision(&src).unwrap_err();
    assert!(matches!(err, GitError::Unreachable { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("secret-material"), "{err:?}");
}

#[test]
fn a_server_refusing_unadvertised_commits_gets_a_full_fetch() {
    let repos = Repos::new();
    let repo = repos.init("demo");
    let (first, second) = populate(&repo);
    let server = GitHttpServer::start_v0(repos.root());
    let fetcher = Fetcher::new(repos.scratch("cache"));
    let src = source(&server.url("demo"), branch("main"));
    assert_eq!(fetcher.remote_revision(&src).unwrap(), second);
    // `first` is no branch tip: protocol v0 refuses it by id, so everything is fetched.
    let snapshot = fetcher.checkout(&src, &first, "deploy").unwrap();
    assert_eq!(contents(&snapshot, "deploy/app.yaml"), "kind: Deployment\n");
    let snapshot = fetcher.checkout(&src, &second, "deploy").unwrap();
    assert_eq!(
        contents(&snapshot, "deploy/app.yaml"),
        "kind: Deployment\nreplicas: 2\n"
    );
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let err = fetcher.checkout(&src, missing, "").unwrap_err();
    assert!(
        matches!(&err, GitError::NotFound { what } if what.contains(missing)),
        "{err:?}"
    );
}

#[test]
fn ssh_with_an_identity_and_known_hosts() {
    let sshd = support::Sshd::start();
    let repos = Repos::new();
    let repo = repos.init("over-ssh");
    repo.write("deploy/a.yaml", "kind: A\n");
    let first = repo.commit("first");
    let fetcher = Fetcher::new(repos.scratch("cache"));
    let mut s = source(&sshd.url(&repos.root().join("over-ssh")), branch("main"));
    s.auth = Auth::Ssh {
        identity: Zeroizing::new(sshd.identity()),
        known_hosts: sshd.known_hosts(),
    };
    assert_eq!(fetcher.remote_revision(&s).unwrap(), first);
    let snap = fetcher.checkout(&s, &first, "deploy").unwrap();
    assert_eq!(contents(&snap, "deploy/a.yaml"), "kind: A\n");

    // a host key that is not the server's, or a key the server does not accept, is refused (gix sees only the
    // ssh program hanging up, so these come back as Unreachable, not Auth), and the key never shows
    let other = support::Sshd::start();
    let wrong_host = other
        .known_hosts()
        .replace(&other.port.to_string(), &sshd.port.to_string());
    for (identity, known_hosts) in [
        (sshd.identity(), wrong_host),
        (other.identity(), sshd.known_hosts()),
    ] {
        s.auth = Auth::Ssh {
            identity: Zeroizing::new(identity),
            known_hosts,
        };
        let err = Fetcher::new(repos.scratch("other-cache"))
            .remote_revision(&s)
            .unwrap_err();
        assert!(
            matches!(err, GitError::Auth { .. } | GitError::Unreachable { .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");
    }
}
