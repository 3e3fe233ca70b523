//! The config loader: any text gives a config or a list of located errors,
//! never a panic.
#![no_main]

use docker_api_proxy::config::{load_from_str, Overrides};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |name: &str| (name == "DOCKER_PROXY_TOKEN").then(|| "t0ken".to_string());
    match load_from_str(text, &env, &Overrides::default()) {
        Ok(_) => {}
        Err(errors) => assert!(!errors.0.is_empty()),
    }
});
