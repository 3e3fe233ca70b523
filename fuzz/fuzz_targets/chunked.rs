//! The chunked scanner: the same answer however the input is split, and
//! never more bytes used than given.
#![no_main]

use docker_api_proxy::http::chunked::ChunkedScanner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let mut whole = ChunkedScanner::new();
    let mut whole_out = Vec::new();
    let whole_result = whole.scan(body, Some(&mut whole_out));

    let cut = (split as usize).min(body.len());
    let mut parts = ChunkedScanner::new();
    let mut parts_out = Vec::new();
    let first = parts.scan(&body[..cut], Some(&mut parts_out));
    let parts_result = first.and_then(|used| {
        if parts.is_done() {
            Ok(used)
        } else {
            parts.scan(&body[cut..], Some(&mut parts_out)).map(|more| used + more)
        }
    });
    match (whole_result, parts_result) {
        (Ok(a), Ok(b)) => {
            assert!(a <= body.len());
            assert_eq!(a, b);
            assert_eq!(whole.is_done(), parts.is_done());
            assert_eq!(whole_out, parts_out);
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("split changed the outcome: {a:?} vs {b:?}"),
    }
});
