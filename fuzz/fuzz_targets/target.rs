//! Path canonicalisation: an accepted target's path is clean (no dot or
//! empty segments, no '%', no control characters, no second prefix).
#![no_main]

use docker_api_proxy::http::target::canonicalize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = canonicalize(data) else { return };
    let path = &target.path;
    assert!(path.starts_with('/'));
    assert!(!path.contains('%'));
    assert!(!path.contains('\\'));
    assert!(!path.contains("//"));
    assert!(!path.chars().any(|c| c.is_control()));
    for segment in path.split('/') {
        assert!(segment != "." && segment != "..");
    }
    assert!(target.api_version.chars().all(|c| c.is_ascii_digit() || c == '.'));
});
