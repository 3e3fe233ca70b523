//! Response filtering: the one-pass filter agrees with the reference filter
//! on a decoded `Value` for every document serde_json accepts, and whatever
//! it accepts serde_json accepts too.
#![no_main]

use docker_api_proxy::policy::{FilterAction, FilterEntry, ResponseFilter};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Filter sets picked by the first input byte.
fn filter(choice: u8) -> ResponseFilter {
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
    let mut filter = ResponseFilter::default();
    for (field, action) in sets[choice as usize % sets.len()] {
        filter.push(FilterEntry::new(field, action.clone()));
    }
    filter
}

fn is_decoder_limit(e: &serde_json::Error) -> bool {
    let message = e.to_string();
    message.contains("recursion limit") || message.contains("number out of range")
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, doc)) = data.split_first() else {
        return;
    };
    let filter = filter(choice);
    let mut out = Vec::new();
    let result = filter.filter_document(doc, true, &mut out);
    let reference = serde_json::from_slice::<Value>(doc);
    match (result, reference) {
        (Ok(Some(end)), _) => {
            let mut expected: Value = match serde_json::from_slice(&doc[..end]) {
                Ok(value) => value,
                // Limits of serde_json's decoder, not of the JSON grammar:
                // deep nesting no filter path enters and numbers too large
                // for an f64 are copied as they came.
                Err(e) if is_decoder_limit(&e) => return,
                Err(e) => panic!("filtered a document serde_json refuses: {e}"),
            };
            filter.apply(&mut expected);
            let got: Value = serde_json::from_slice(&out).expect("filtered output is JSON");
            assert_eq!(got, expected);
        }
        (Ok(None), Ok(_)) => panic!("a whole document was taken as incomplete"),
        (Err(_), Ok(_)) if !doc.first().is_some_and(u8::is_ascii_whitespace) => {
            panic!("refused a document serde_json accepts")
        }
        _ => {}
    }
});
