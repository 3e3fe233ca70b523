//! Runs every committed fuzz seed (fuzz/seeds/) through the parsers the
//! fuzz targets exercise, so past crashes stay fixed in the ordinary suite.

use std::path::Path;

use docker_api_proxy::config::{load_from_str, Overrides};
use docker_api_proxy::http::chunked::ChunkedScanner;
use docker_api_proxy::http::head::{parse_request, parse_response};
use docker_api_proxy::http::target::canonicalize;
use docker_api_proxy::policy::JsonBody;

fn seeds(kind: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(kind);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

#[test]
fn head_seeds_parse_within_their_input() {
    for seed in seeds("head") {
        if let Ok(Some(head)) = parse_request(&seed, 64 * 1024) {
            assert!(head.len() <= seed.len());
        }
        if let Ok(Some(head)) = parse_response(&seed, 64 * 1024) {
            assert!(head.len() <= seed.len());
        }
    }
}

#[test]
fn chunked_seeds_scan_the_same_in_one_piece_or_byte_by_byte() {
    for seed in seeds("chunked") {
        let body = &seed[1..];
        let mut whole = ChunkedScanner::new();
        let whole_result = whole.scan(body, None).map(|_| whole.is_done());
        let mut bytes = ChunkedScanner::new();
        let mut bytes_result = Ok(false);
        for byte in body {
            if bytes.is_done() {
                break;
            }
            if let Err(e) = bytes.scan(std::slice::from_ref(byte), None) {
                bytes_result = Err(e);
                break;
            }
            bytes_result = Ok(bytes.is_done());
        }
        assert_eq!(whole_result.is_ok(), bytes_result.is_ok(), "{seed:?}");
        if let (Ok(a), Ok(b)) = (whole_result, bytes_result) {
            assert_eq!(a, b);
        }
    }
}

#[test]
fn target_seeds_never_canonicalise_to_unclean_paths() {
    for seed in seeds("target") {
        if let Ok(target) = canonicalize(&seed) {
            assert!(!target.path.contains('%') && !target.path.contains("//"));
            assert!(
                !target.path.chars().any(char::is_control),
                "{:?}",
                target.path
            );
            assert!(target.path.split('/').all(|s| s != "." && s != ".."));
        }
    }
}

#[test]
fn body_seeds_parse_or_fail_cleanly() {
    let results: Vec<bool> = seeds("body")
        .iter()
        .map(|s| JsonBody::parse(s).is_ok())
        .collect();
    // The seeds hold one accepted create body and one ambiguous body.
    assert!(
        results.contains(&true) && results.contains(&false),
        "{results:?}"
    );
}

#[test]
fn config_seeds_load_or_report_located_errors() {
    let env = |name: &str| {
        name.starts_with("DOCKER_PROXY_")
            .then(|| "t0ken".to_string())
    };
    for seed in seeds("config") {
        let text = String::from_utf8_lossy(&seed);
        if let Err(errors) = load_from_str(&text, &env, &Overrides::default()) {
            assert!(errors.0.iter().all(|e| !e.location.is_empty()), "{errors}");
        }
    }
}

#[test]
fn filter_seeds_filter_like_the_reference_filter() {
    use docker_api_proxy::policy::{FilterAction, FilterEntry, ResponseFilter};
    use serde_json::Value;

    let sets: [&[(&str, FilterAction)]; 5] = [
        &[("Config.Env", FilterAction::Redact)],
        &[
            ("Labels", FilterAction::Remove),
            ("*.Env", FilterAction::Redact),
        ],
        &[(
            "Config",
            FilterAction::Replace(serde_json::json!({"x": [1, "y"]})),
        )],
        &[("*", FilterAction::Redact)],
        &[
            ("a.b", FilterAction::Remove),
            ("a", FilterAction::Redact),
            ("a.*.c", FilterAction::Replace(Value::Null)),
        ],
    ];
    for seed in seeds("filter") {
        let (choice, doc) = seed.split_first().unwrap();
        let mut filter = ResponseFilter::default();
        for (field, action) in sets[*choice as usize % sets.len()] {
            filter.push(FilterEntry::new(field, action.clone()));
        }
        let mut out = Vec::new();
        let result = filter.filter_document(doc, true, &mut out);
        match serde_json::from_slice::<Value>(doc) {
            Ok(mut expected) => {
                assert_eq!(result.ok().flatten(), Some(doc.len()), "{seed:?}");
                filter.apply(&mut expected);
                assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), expected);
            }
            // Too large for an f64: serde_json refuses it, the filter
            // copies it as it came when no path reaches it.
            Err(e) if e.to_string().contains("number out of range") => {
                assert!(result.is_ok(), "{seed:?}");
            }
            Err(_) => assert!(!matches!(result, Ok(Some(end)) if end == doc.len())),
        }
    }
}
