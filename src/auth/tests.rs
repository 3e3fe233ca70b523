use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::TokenEntry;
use crate::tls::test_certs::TestCa;

const CI_TOKEN: &str = "ci-token-0123456789abcdef";
const DEPLOY_TOKEN: &str = "deploy-token-fedcba9876543210";
const SECRET: &str = "shared-secret-value";

fn client(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn default_lockout() -> Lockout {
    Lockout {
        failures: 10,
        window: Duration::from_secs(60),
        duration: Duration::from_secs(300),
    }
}

fn token(token: &str, role: &str, name: Option<&str>) -> TokenEntry {
    TokenEntry {
        token: token.to_owned(),
        role: role.to_owned(),
        name: name.map(str::to_owned),
    }
}

fn bearer(tokens: Vec<TokenEntry>, secret: Option<&str>) -> Authenticator {
    let mode = AuthMode::Bearer {
        tokens,
        secret: secret.map(str::to_owned),
    };
    Authenticator::new(&mode, &default_lockout(), Arc::new(LockoutTable::new()))
}

fn standard_bearer() -> Authenticator {
    bearer(
        vec![
            token(CI_TOKEN, "ci", Some("ci-runners")),
            token(DEPLOY_TOKEN, "deploy", None),
        ],
        Some(SECRET),
    )
}

fn with_header(auth: &Authenticator, ip: IpAddr, header: &str, now: Instant) -> AuthOutcome {
    auth.authenticate(ip, Some(header.as_bytes()), None, now)
}

fn role_of(outcome: &AuthOutcome) -> Option<&str> {
    match outcome {
        AuthOutcome::Ok(identity) => identity.role.as_deref(),
        other => panic!("expected success, got {other:?}"),
    }
}

fn identity(role: Option<&str>, name: Option<&str>) -> AuthOutcome {
    AuthOutcome::Ok(Identity {
        role: role.map(Arc::from),
        name: name.map(Arc::from),
    })
}

// === modes ===

#[test]
fn open_mode_gives_identity_without_role() {
    let auth = Authenticator::new(&AuthMode::None, &default_lockout(), Arc::default());
    let now = Instant::now();
    assert_eq!(
        auth.authenticate(client(1), None, None, now),
        identity(None, None)
    );
    assert_eq!(
        with_header(&auth, client(1), "Bearer anything", now),
        identity(None, None)
    );
    assert!(auth.is_open());
}

#[test]
fn fail_closed_refuses_every_request_with_configuration_message() {
    let mode = AuthMode::FailClosed {
        reason: "config file has no auth section".to_owned(),
    };
    let auth = Authenticator::new(&mode, &default_lockout(), Arc::default());
    let now = Instant::now();
    let leaf = TestCa::new("ca").issue(Some("anyone"), &[]);

    for outcome in [
        auth.authenticate(client(1), None, None, now),
        with_header(&auth, client(1), &format!("Bearer {SECRET}"), now),
        auth.authenticate(client(1), None, Some(&leaf.cert_der), now),
    ] {
        assert_eq!(outcome, AuthOutcome::Unauthorized(NOT_CONFIGURED));
    }
    assert!(NOT_CONFIGURED.contains("not configured"));
    assert!(!auth.is_open());
}

#[test]
fn bearer_without_usable_credential_fails_closed() {
    let auth = bearer(vec![token("", "admin", None)], Some(""));
    let outcome = with_header(&auth, client(1), "Bearer ", Instant::now());
    assert_eq!(outcome, AuthOutcome::Unauthorized(NOT_CONFIGURED));
    let outcome = with_header(&auth, client(1), "Bearer x", Instant::now());
    assert_eq!(outcome, AuthOutcome::Unauthorized(NOT_CONFIGURED));
}

// === bearer ===

#[test]
fn bearer_token_gives_its_role_and_name() {
    let auth = standard_bearer();
    let now = Instant::now();
    let outcome = with_header(&auth, client(1), &format!("Bearer {CI_TOKEN}"), now);
    assert_eq!(outcome, identity(Some("ci"), Some("ci-runners")));
    let outcome = with_header(&auth, client(1), &format!("Bearer {DEPLOY_TOKEN}"), now);
    assert_eq!(outcome, identity(Some("deploy"), None));
}

#[test]
fn shared_secret_gives_admin_role() {
    let auth = standard_bearer();
    let outcome = with_header(
        &auth,
        client(1),
        &format!("Bearer {SECRET}"),
        Instant::now(),
    );
    assert_eq!(outcome, identity(Some("admin"), None));
}

#[test]
fn token_role_wins_over_secret_with_same_value() {
    let auth = bearer(
        vec![token(SECRET, "readonly", Some("same-as-secret"))],
        Some(SECRET),
    );
    let outcome = with_header(
        &auth,
        client(1),
        &format!("Bearer {SECRET}"),
        Instant::now(),
    );
    assert_eq!(outcome, identity(Some("readonly"), Some("same-as-secret")));
}

#[test]
fn first_listed_token_wins_for_repeated_values() {
    let auth = bearer(
        vec![
            token(CI_TOKEN, "first", None),
            token(CI_TOKEN, "second", None),
        ],
        None,
    );
    let outcome = with_header(
        &auth,
        client(1),
        &format!("Bearer {CI_TOKEN}"),
        Instant::now(),
    );
    assert_eq!(role_of(&outcome), Some("first"));
}

#[test]
fn bearer_scheme_is_case_insensitive_and_tolerates_whitespace() {
    let auth = standard_bearer();
    let now = Instant::now();
    for header in [
        format!("Bearer {CI_TOKEN}"),
        format!("bearer {CI_TOKEN}"),
        format!("BEARER {CI_TOKEN}"),
        format!("bEaReR {CI_TOKEN}"),
        format!("Bearer   {CI_TOKEN}"),
        format!("Bearer\t{CI_TOKEN}"),
        format!("  Bearer {CI_TOKEN} \t"),
    ] {
        let outcome = with_header(&auth, client(1), &header, now);
        assert_eq!(role_of(&outcome), Some("ci"), "header {header:?}");
    }
}

#[test]
fn other_schemes_are_refused() {
    let auth = standard_bearer();
    let now = Instant::now();
    for header in [
        "Basic dXNlcjpwYXNz",
        "Token abc",
        &format!("Bearer{CI_TOKEN}"),
        "",
    ] {
        let outcome = with_header(&auth, client(1), header, now);
        assert_eq!(
            outcome,
            AuthOutcome::Unauthorized(WRONG_SCHEME),
            "header {header:?}"
        );
    }
}

#[test]
fn malformed_bearer_headers_are_refused() {
    let auth = standard_bearer();
    let now = Instant::now();
    for header in ["Bearer", "Bearer   ", &format!("Bearer {CI_TOKEN} extra")] {
        let outcome = with_header(&auth, client(1), header, now);
        assert_eq!(
            outcome,
            AuthOutcome::Unauthorized(MALFORMED_TOKEN),
            "header {header:?}"
        );
    }
    let control = format!("Bearer {CI_TOKEN}\u{1}");
    let outcome = with_header(&auth, client(1), &control, now);
    assert_eq!(outcome, AuthOutcome::Unauthorized(MALFORMED_TOKEN));
}

#[test]
fn missing_header_is_refused() {
    let auth = standard_bearer();
    let outcome = auth.authenticate(client(1), None, None, Instant::now());
    assert_eq!(outcome, AuthOutcome::Unauthorized(MISSING_TOKEN));
}

#[test]
fn wrong_tokens_are_refused_including_prefixes_and_extensions() {
    let auth = standard_bearer();
    let now = Instant::now();
    let wrong = [
        "nope".to_owned(),
        CI_TOKEN[..CI_TOKEN.len() - 1].to_owned(),
        format!("{CI_TOKEN}0"),
        CI_TOKEN.to_uppercase(),
        SECRET[1..].to_owned(),
    ];
    for presented in &wrong {
        let outcome = with_header(&auth, client(1), &format!("Bearer {presented}"), now);
        assert_eq!(
            outcome,
            AuthOutcome::Unauthorized(INVALID_TOKEN),
            "token {presented:?}"
        );
    }
}

#[test]
fn non_utf8_token_is_refused_without_panic() {
    let auth = standard_bearer();
    let header = b"Bearer \xff\xfe\xfd";
    let outcome = auth.authenticate(client(1), Some(header), None, Instant::now());
    assert_eq!(outcome, AuthOutcome::Unauthorized(INVALID_TOKEN));
}

#[test]
fn refusal_messages_never_contain_the_presented_token() {
    let auth = standard_bearer();
    let now = Instant::now();
    let presented = "guess-0123456789abcdef";
    let headers = [
        format!("Bearer {presented}"),
        format!("Basic {presented}"),
        format!("Bearer {presented} {presented}"),
    ];
    for header in &headers {
        match with_header(&auth, client(2), header, now) {
            AuthOutcome::Unauthorized(message) => {
                assert!(!message.contains(presented), "{message}");
                assert!(
                    !message.contains(CI_TOKEN) && !message.contains(SECRET),
                    "{message}"
                );
            }
            other => panic!("expected refusal, got {other:?}"),
        }
    }
}

// === mTLS ===

fn mtls(map: &[(&str, &str)], default_role: Option<&str>) -> Authenticator {
    let mode = AuthMode::Mtls {
        cert_role_map: map
            .iter()
            .map(|(p, r)| ((*p).to_owned(), (*r).to_owned()))
            .collect(),
        default_role: default_role.map(str::to_owned),
    };
    Authenticator::new(&mode, &default_lockout(), Arc::default())
}

fn with_cert(auth: &Authenticator, cn: Option<&str>, dns: &[&str]) -> AuthOutcome {
    let leaf = TestCa::new("client ca").issue(cn, dns);
    auth.authenticate(client(1), None, Some(&leaf.cert_der), Instant::now())
}

#[test]
fn mtls_without_certificate_is_refused() {
    let auth = mtls(&[], Some("user"));
    let outcome = auth.authenticate(client(1), None, None, Instant::now());
    assert_eq!(outcome, AuthOutcome::Unauthorized(CERT_REQUIRED));
}

#[test]
fn mtls_ignores_bearer_tokens() {
    let auth = mtls(&[], Some("user"));
    let header = format!("Bearer {SECRET}");
    let outcome = auth.authenticate(client(1), Some(header.as_bytes()), None, Instant::now());
    assert_eq!(outcome, AuthOutcome::Unauthorized(CERT_REQUIRED));
}

#[test]
fn mtls_unreadable_certificate_is_refused_without_panic() {
    let auth = mtls(&[], Some("user"));
    let outcome = auth.authenticate(client(1), None, Some(b"\x30\x03garbage"), Instant::now());
    assert_eq!(outcome, AuthOutcome::Unauthorized(CERT_UNREADABLE));
}

#[test]
fn mtls_maps_role_by_common_name() {
    let auth = mtls(&[("deployer", "deploy"), ("ci-runner", "ci")], Some("user"));
    let outcome = with_cert(&auth, Some("ci-runner"), &[]);
    assert_eq!(outcome, identity(Some("ci"), Some("ci-runner")));
}

#[test]
fn mtls_maps_role_by_dns_san() {
    let auth = mtls(&[("runner7.ci.example.com", "ci")], None);
    let outcome = with_cert(
        &auth,
        Some("some-host"),
        &["other.example.org", "runner7.ci.example.com"],
    );
    assert_eq!(outcome, identity(Some("ci"), Some("some-host")));
}

#[test]
fn mtls_first_map_entry_matching_any_name_wins() {
    // The SAN matches the first entry, the CN the second: map order decides.
    let auth = mtls(
        &[("build.example.com", "builder"), ("ci-runner", "ci")],
        None,
    );
    let outcome = with_cert(&auth, Some("ci-runner"), &["build.example.com"]);
    assert_eq!(role_of(&outcome), Some("builder"));
}

#[test]
fn mtls_wildcard_matches_exactly_one_label() {
    let auth = mtls(&[("*.ci.example.com", "ci")], Some("fallback"));
    assert_eq!(
        role_of(&with_cert(&auth, None, &["a.ci.example.com"])),
        Some("ci")
    );
    assert_eq!(
        role_of(&with_cert(&auth, None, &["a.b.ci.example.com"])),
        Some("fallback")
    );
    assert_eq!(
        role_of(&with_cert(&auth, None, &["ci.example.com"])),
        Some("fallback")
    );
    assert_eq!(
        role_of(&with_cert(&auth, Some("x.ci.example.com"), &[])),
        Some("ci")
    );
}

#[test]
fn name_patterns_follow_the_one_label_rule() {
    assert!(name_matches("*.example.com", "a.example.com"));
    assert!(name_matches("*.example.com", "A.EXAMPLE.com"));
    assert!(!name_matches("*.example.com", "a.b.example.com"));
    assert!(!name_matches("*.example.com", "example.com"));
    assert!(!name_matches("*.example.com", ".example.com"));
    assert!(!name_matches("*.example.com", "aexample.com"));
    assert!(!name_matches("*.", "a."));
    assert!(name_matches("ci-runner", "CI-Runner"));
    assert!(!name_matches("ci-runner", "ci-runner2"));
    assert!(!name_matches("a*.example.com", "ab.example.com"));
}

#[test]
fn mtls_uses_default_role_when_nothing_matches() {
    let auth = mtls(&[("deployer", "deploy")], Some("user"));
    let outcome = with_cert(&auth, Some("ci-runner"), &["runner.example.com"]);
    assert_eq!(outcome, identity(Some("user"), Some("ci-runner")));
}

#[test]
fn mtls_falls_back_to_common_name_as_role() {
    let auth = mtls(&[("deployer", "deploy")], None);
    let outcome = with_cert(&auth, Some("ci-runner"), &[]);
    assert_eq!(outcome, identity(Some("ci-runner"), Some("ci-runner")));
}

#[test]
fn mtls_without_common_name_or_match_has_no_role() {
    let auth = mtls(&[("deployer", "deploy")], None);
    let outcome = with_cert(&auth, None, &["runner.example.com"]);
    assert_eq!(outcome, identity(None, None));
}

#[test]
fn certificate_names_are_read_from_der() {
    let leaf = TestCa::new("ca").issue(Some("ci-runner"), &["a.example.com", "b.example.com"]);
    let names = CertNames::from_der(&leaf.cert_der).expect("parsable certificate");
    assert_eq!(names.common_name.as_deref(), Some("ci-runner"));
    assert_eq!(names.dns_names, ["a.example.com", "b.example.com"]);
}

// === lockout ===

fn fail(auth: &Authenticator, ip: IpAddr, now: Instant) -> AuthOutcome {
    with_header(auth, ip, "Bearer wrong-guess", now)
}

fn valid(auth: &Authenticator, ip: IpAddr, now: Instant) -> AuthOutcome {
    with_header(auth, ip, &format!("Bearer {CI_TOKEN}"), now)
}

#[test]
fn tenth_failure_locks_out_and_eleventh_attempt_gets_retry_after() {
    let auth = standard_bearer();
    let now = Instant::now();
    for attempt in 1..=10 {
        let outcome = fail(&auth, client(1), now);
        assert_eq!(
            outcome,
            AuthOutcome::Unauthorized(INVALID_TOKEN),
            "attempt {attempt}"
        );
    }
    assert_eq!(
        fail(&auth, client(1), now),
        AuthOutcome::LockedOut { retry_after: 300 }
    );
}

#[test]
fn valid_token_is_refused_while_locked_out() {
    let auth = standard_bearer();
    let now = Instant::now();
    for _ in 0..10 {
        fail(&auth, client(1), now);
    }
    let later = now + Duration::from_millis(100_500);
    assert_eq!(
        valid(&auth, client(1), later),
        AuthOutcome::LockedOut { retry_after: 200 }
    );
}

/// A failure recorded after another core started the lockout (the race
/// between `retry_after` and `record_failure`) is not counted and reports
/// the running lockout, so concurrent guesses get 429, not 401.
#[test]
fn failure_recorded_after_another_core_locked_out_reports_the_lockout() {
    let table = LockoutTable::new();
    let settings = default_lockout();
    let now = Instant::now();
    for _ in 0..9 {
        assert_eq!(
            table.record_failure(client(1), &settings, now),
            Recorded::Counted
        );
    }
    assert_eq!(
        table.record_failure(client(1), &settings, now),
        Recorded::LockoutStarted
    );
    assert_eq!(
        table.record_failure(client(1), &settings, now + Duration::from_secs(1)),
        Recorded::AlreadyLocked { retry_after: 299 }
    );
    assert_eq!(
        table.retry_after(client(1), &settings, now + Duration::from_secs(1)),
        Some(299)
    );
}

#[test]
fn lockout_does_not_affect_other_addresses() {
    let auth = standard_bearer();
    let now = Instant::now();
    for _ in 0..10 {
        fail(&auth, client(1), now);
    }
    assert_eq!(role_of(&valid(&auth, client(2), now)), Some("ci"));
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_eq!(role_of(&valid(&auth, v6, now)), Some("ci"));
}

#[test]
fn lockout_ends_after_its_duration() {
    let auth = standard_bearer();
    let now = Instant::now();
    for _ in 0..10 {
        fail(&auth, client(1), now);
    }
    let just_before = now + Duration::from_millis(299_999);
    assert_eq!(
        valid(&auth, client(1), just_before),
        AuthOutcome::LockedOut { retry_after: 1 }
    );
    let after = now + Duration::from_secs(300);
    assert_eq!(role_of(&valid(&auth, client(1), after)), Some("ci"));
    // The counter starts from zero again.
    for _ in 0..9 {
        fail(&auth, client(1), after);
    }
    assert_eq!(role_of(&valid(&auth, client(1), after)), Some("ci"));
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    let auth = standard_bearer();
    let start = Instant::now();
    for _ in 0..9 {
        fail(&auth, client(1), start);
    }
    let later = start + Duration::from_secs(61);
    assert_eq!(
        fail(&auth, client(1), later),
        AuthOutcome::Unauthorized(INVALID_TOKEN)
    );
    assert_eq!(role_of(&valid(&auth, client(1), later)), Some("ci"));
}

#[test]
fn window_slides_over_the_most_recent_failures() {
    let auth = standard_bearer();
    let start = Instant::now();
    for i in 0..9 {
        fail(&auth, client(1), start + Duration::from_secs(i * 5));
    }
    // 61 s after the first failure: eight of the nine are still inside.
    let at = start + Duration::from_secs(61);
    fail(&auth, client(1), at);
    assert_eq!(role_of(&valid(&auth, client(1), at)), Some("ci"));
    fail(&auth, client(1), at);
    assert!(matches!(
        valid(&auth, client(1), at),
        AuthOutcome::LockedOut { .. }
    ));
}

#[test]
fn missing_header_does_not_count_as_failed_attempt() {
    let auth = standard_bearer();
    let now = Instant::now();
    for _ in 0..20 {
        let outcome = auth.authenticate(client(1), None, None, now);
        assert_eq!(outcome, AuthOutcome::Unauthorized(MISSING_TOKEN));
    }
    assert_eq!(role_of(&valid(&auth, client(1), now)), Some("ci"));
}

#[test]
fn wrong_scheme_counts_as_failed_attempt() {
    let auth = standard_bearer();
    let now = Instant::now();
    for _ in 0..10 {
        with_header(&auth, client(1), "Basic dXNlcjpwYXNz", now);
    }
    assert!(matches!(
        valid(&auth, client(1), now),
        AuthOutcome::LockedOut { .. }
    ));
}

#[test]
fn lockout_is_shared_across_threads() {
    let auth = Arc::new(standard_bearer());
    let now = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let auth = Arc::clone(&auth);
            std::thread::spawn(move || {
                for _ in 0..5 {
                    fail(&auth, client(9), now);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker thread finishes");
    }
    assert_eq!(
        valid(&auth, client(9), now),
        AuthOutcome::LockedOut { retry_after: 300 }
    );
}

#[test]
fn lockout_survives_a_reload_sharing_the_table() {
    let table = Arc::new(LockoutTable::new());
    let mode = AuthMode::Bearer {
        tokens: vec![token(CI_TOKEN, "ci", None)],
        secret: None,
    };
    let before = Authenticator::new(&mode, &default_lockout(), Arc::clone(&table));
    let now = Instant::now();
    for _ in 0..10 {
        fail(&before, client(1), now);
    }
    let after = Authenticator::new(&mode, &default_lockout(), table);
    assert_eq!(
        valid(&after, client(1), now),
        AuthOutcome::LockedOut { retry_after: 300 }
    );
}

#[test]
fn zero_failures_disables_lockout() {
    let lockout = Lockout {
        failures: 0,
        ..default_lockout()
    };
    let mode = AuthMode::Bearer {
        tokens: vec![token(CI_TOKEN, "ci", None)],
        secret: None,
    };
    let auth = Authenticator::new(&mode, &lockout, Arc::default());
    let now = Instant::now();
    for _ in 0..50 {
        fail(&auth, client(1), now);
    }
    assert_eq!(role_of(&valid(&auth, client(1), now)), Some("ci"));
}

#[test]
fn sweep_drops_idle_clients_and_keeps_active_ones() {
    let table = Arc::new(LockoutTable::new());
    let mode = AuthMode::Bearer {
        tokens: vec![token(CI_TOKEN, "ci", None)],
        secret: None,
    };
    let auth = Authenticator::new(&mode, &default_lockout(), Arc::clone(&table));
    let start = Instant::now();
    fail(&auth, client(1), start);
    for _ in 0..10 {
        fail(&auth, client(2), start);
    }
    fail(&auth, client(3), start + Duration::from_secs(100));
    assert_eq!(table.len(), 3);

    // 120 s on: client 1's failure left the window, client 2 is still
    // locked out, client 3's failure is recent.
    assert_eq!(auth.sweep_lockouts(start + Duration::from_secs(120)), 1);
    assert_eq!(table.len(), 2);
    assert!(matches!(
        valid(&auth, client(2), start + Duration::from_secs(120)),
        AuthOutcome::LockedOut { .. }
    ));

    assert_eq!(auth.sweep_lockouts(start + Duration::from_secs(400)), 2);
    assert!(table.is_empty());

    // An emptied table still notices the next lockout: the check skips the
    // map only while no client is tracked.
    let later = start + Duration::from_secs(500);
    for _ in 0..10 {
        fail(&auth, client(4), later);
    }
    assert!(matches!(
        valid(&auth, client(4), later),
        AuthOutcome::LockedOut { .. }
    ));
    assert!(matches!(valid(&auth, client(5), later), AuthOutcome::Ok(_)));
}

#[test]
fn more_than_one_authorization_header_is_an_error() {
    let one: [(&str, &[u8]); 2] = [("Host", b"h"), ("authorization", b"Bearer a")];
    assert_eq!(
        single_authorization(one.into_iter()),
        Ok(Some(&b"Bearer a"[..]))
    );
    let none: [(&str, &[u8]); 1] = [("Host", b"h")];
    assert_eq!(single_authorization(none.into_iter()), Ok(None));
    let two: [(&str, &[u8]); 3] = [
        ("Authorization", b"Bearer good"),
        ("Host", b"h"),
        ("AUTHORIZATION", b"Bearer wrong"),
    ];
    assert_eq!(
        single_authorization(two.into_iter()),
        Err(REPEATED_AUTHORIZATION)
    );
    // Even two identical values: one header, one credential.
    let same: [(&str, &[u8]); 2] = [
        ("authorization", b"Bearer a"),
        ("authorization", b"Bearer a"),
    ];
    assert!(single_authorization(same.into_iter()).is_err());
}
