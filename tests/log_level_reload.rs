//! A reload that changes `global.log_level` takes effect without a restart.

mod support;

use std::time::Duration;

use support::ops::get_request;
use support::FakeEngine;

#[test]
fn sighup_applies_a_changed_log_level() {
    let engine = FakeEngine::start(|conn| {
        while let Some(_request) = conn.read_request() {
            conn.respond(200, "application/json", b"{}");
        }
    });
    if std::env::var_os("RUST_LOG").is_some() {
        // RUST_LOG takes precedence over global.log_level by design.
        eprintln!("RUST_LOG is set; global.log_level reload cannot be observed");
        return;
    }
    let proxy = engine.options().start();
    assert_eq!(proxy.request(&get_request("/info", &[])).status, 200);
    assert!(
        !proxy.stderr().contains("forwarded"),
        "debug lines logged at the default level:\n{}",
        proxy.stderr()
    );

    let debug = engine.options().global("log_level: debug");
    proxy.write_config(&proxy.config_text(&debug));
    proxy.signal(libc::SIGHUP);
    proxy.wait_stderr("log level changed", Duration::from_secs(10));

    assert_eq!(proxy.request(&get_request("/info", &[])).status, 200);
    proxy.wait_stderr("forwarded", Duration::from_secs(10));
}
