//! Request and response heads: never panic, and a parsed head's length
//! never exceeds its input.
#![no_main]

use docker_api_proxy::http::head::{parse_request, parse_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(head)) = parse_request(data, 64 * 1024) {
        assert!(head.len() <= data.len());
        let _ = head.method();
        let _ = head.headers().count();
    }
    if let Ok(Some(head)) = parse_response(data, 64 * 1024) {
        assert!(head.len() <= data.len());
        let _ = head.framing("GET");
        let _ = head.media_type();
    }
});
