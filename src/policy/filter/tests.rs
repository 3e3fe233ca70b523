use super::*;
use serde_json::json;

fn filter(entries: Vec<FilterEntry>) -> ResponseFilter {
    ResponseFilter::new("r".into(), entries)
}

fn entry(field: &str, action: FilterAction) -> FilterEntry {
    FilterEntry::new(field, action)
}

/// The text path's output for a whole document.
fn filter_text(f: &ResponseFilter, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let end = f.filter_document(text, true, &mut out);
    let end = end.unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(text)));
    assert_eq!(end, Some(text.len()), "{}", String::from_utf8_lossy(text));
    out
}

/// The text path must give what the Value path gives, as JSON.
fn assert_paths_agree(f: &ResponseFilter, text: &str) {
    let mut expected: Value = serde_json::from_str(text).unwrap();
    f.apply(&mut expected);
    let out = filter_text(f, text.as_bytes());
    let got: Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    assert_eq!(got, expected, "doc {text}\nfilters {:?}", f.entries());
}

/// Filters `doc` both ways, checks they agree and returns the result.
fn apply_both(f: &ResponseFilter, mut doc: Value) -> Value {
    assert_paths_agree(f, &doc.to_string());
    f.apply(&mut doc);
    doc
}

#[test]
fn raw_application_matches_value_application() {
    let docs = [
        json!({"Config": {"Env": ["A=1"], "Cmd": ["sh"], "Image": "x"}, "Id": "1"}).to_string(),
        json!([{"Config": {"Env": ["A=1"]}}, {"Config": null}, 5, "s", {"x": {"Env": 1}}])
            .to_string(),
        json!({"Labels": {"a": "1", "b": {"c": true}}, "Config": {"Env": {"K": 1.5}}}).to_string(),
        json!({"NetworkSettings": {"Networks": {"n1": {"IPAddress": "1"}, "n2": {}}}}).to_string(),
        json!({"Config": [{"Env": ["x"]}, [{"Env": "y"}]], "Env": "top"}).to_string(),
        json!({"weird \"key\"": {"Env": ["z"]}, "Config": "scalar"}).to_string(),
        // Arrays of objects, arrays in arrays, and every kind of scalar.
        r#"[{"Config":{"Env":["a",1,-2.5e3,true,false,null]},"Labels":{"x":"1"}},
            {"Config":{"Env":[]}},[{"Config":{"Env":{"k":[{"v":"s"}]}}}],[],{}]"#
            .to_owned(),
        // Keys spelled with escapes are the keys they decode to.
        r#"{"Con\u0066ig":{"\u0045nv":["secret"],"Cmd":"c"},"Labels":{"a\"b":"c","\\":1}}"#
            .to_owned(),
        // Duplicated keys: a decoder keeps the last one; we filter all.
        r#"{"Config":{"Env":["a"]},"Labels":1,"Config":{"Env":["b"],"Cmd":1},"Labels":{"k":2}}"#
            .to_owned(),
        // Whitespace of every kind between tokens.
        "{ \"Config\" :\r\n\t{\"Env\" : [ \"a\" , \"b\" ] ,\"Cmd\":[\"x\"] } ,\n \"Id\":\"1\" }"
            .to_owned(),
        r#"{"NetworkSettings":{"Networks":{"a":{"IPAddress":"1","Gw":{"x":1}},
            "b":[{"IPAddress":2},{"IPAddress":{"v":[true]}}],"c":"scalar"}}}"#
            .to_owned(),
        format!(
            r#"{{"Labels":{{"é":"ü","k":"\ud83d\ude00","😀":"x"}},"Env":"{}"}}"#,
            '\u{10ffff}'
        ),
    ];
    let entry_sets = vec![
        vec![entry("Config.Env", FilterAction::Redact)],
        vec![entry("Labels.*", FilterAction::Remove)],
        vec![entry("*.Env", FilterAction::Replace(json!("hidden")))],
        vec![
            entry("Config.Env", FilterAction::Redact),
            entry("Config", FilterAction::Remove),
        ],
        vec![
            entry("Config", FilterAction::Replace(json!({"Env": ["new"]}))),
            entry("Config.Env", FilterAction::Redact),
        ],
        vec![entry(
            "NetworkSettings.Networks.*.IPAddress",
            FilterAction::Redact,
        )],
        vec![
            entry("Env", FilterAction::Remove),
            entry("*", FilterAction::Redact),
        ],
        vec![entry("*.*", FilterAction::Redact)],
        vec![entry("*", FilterAction::Remove)],
        vec![entry("Labels.*", FilterAction::Replace(json!({"a": [1]})))],
        vec![
            entry("Config.Env", FilterAction::Remove),
            entry("Config", FilterAction::Redact),
        ],
        vec![
            entry("Config", FilterAction::Redact),
            entry("Config.Env", FilterAction::Replace(json!("x"))),
        ],
        vec![
            entry("Config.Env", FilterAction::Replace(json!([1]))),
            entry("Config.Env", FilterAction::Redact),
            entry("Config.Cmd", FilterAction::Remove),
            entry("Labels", FilterAction::Redact),
        ],
        vec![
            entry("Config", FilterAction::Replace(json!(1))),
            entry("Config", FilterAction::Remove),
        ],
        vec![
            entry("*", FilterAction::Replace(json!({"Env": "e"}))),
            entry("Config.Env", FilterAction::Redact),
        ],
        vec![entry(
            "NetworkSettings.Networks.*.IPAddress",
            FilterAction::Remove,
        )],
        vec![entry("NetworkSettings.*.*.*", FilterAction::Redact)],
    ];
    for entries in entry_sets {
        let f = filter(entries);
        for doc in &docs {
            assert_paths_agree(&f, doc);
        }
    }
}

#[test]
fn raw_application_copies_untouched_parts_verbatim() {
    let f = filter(vec![entry("Config.Env", FilterAction::Redact)]);
    let text = r#"{"Id":"abc","Size":1.50e3,"Config":{"Env":["S=1"],"Image":"x"}}"#;
    assert_eq!(
        String::from_utf8(filter_text(&f, text.as_bytes())).unwrap(),
        r#"{"Id":"abc","Size":1.50e3,"Config":{"Env":["***REDACTED***"],"Image":"x"}}"#
    );

    // Redaction rewrites only the scalars; spacing, keys, escapes and
    // literals that stay are kept as they came.
    let text = "{ \"\\u0049d\" : \"a\\/b\" ,\n\"Config\" : { \"Env\" : [ \"S=1\" , 2.0 ,\
                true , false , null , { \"k\\n\" : -1E+2 } ] } }";
    assert_eq!(
        String::from_utf8(filter_text(&f, text.as_bytes())).unwrap(),
        "{ \"\\u0049d\" : \"a\\/b\" ,\n\"Config\" : { \"Env\" : [ \"***REDACTED***\" , 0 ,\
         false , false , null , { \"k\\n\" : 0 } ] } }"
    );

    // With no filter at all, or one that reaches nothing, nothing changes.
    for f in [
        filter(vec![]),
        filter(vec![entry("Nowhere.*", FilterAction::Remove)]),
    ] {
        assert_eq!(filter_text(&f, text.as_bytes()), text.as_bytes());
    }
}

#[test]
fn escaped_keys_match_the_key_they_decode_to() {
    let f = filter(vec![entry("Config.Env", FilterAction::Redact)]);
    let text = br#"{"Con\u0066ig":{"\u0045nv":["A=1"]},"config":{"env":["B=2"]}}"#;
    assert_eq!(
        String::from_utf8(filter_text(&f, text)).unwrap(),
        r#"{"Con\u0066ig":{"\u0045nv":["***REDACTED***"]},"config":{"env":["B=2"]}}"#
    );
}

#[test]
fn every_occurrence_of_a_duplicated_key_is_filtered() {
    let f = filter(vec![entry("Env", FilterAction::Redact)]);
    let text = br#"{"Env":"a","x":1,"Env":["b"]}"#;
    assert_eq!(
        filter_text(&f, text),
        br#"{"Env":"***REDACTED***","x":1,"Env":["***REDACTED***"]}"#
    );
    let f = filter(vec![entry("Config.Env", FilterAction::Remove)]);
    let text = br#"{"Config":{"Env":1,"Env":2},"Config":{"Env":3}}"#;
    assert_eq!(filter_text(&f, text), br#"{"Config":{},"Config":{}}"#);
}

#[test]
fn removing_members_leaves_separators_right() {
    let f = filter(vec![entry("x", FilterAction::Remove)]);
    let cases: [(&str, &str); 7] = [
        (r#"{"x":1}"#, r#"{}"#),
        (r#"{"x":1,"a":2}"#, r#"{"a":2}"#),
        (r#"{"a":1,"x":2}"#, r#"{"a":1}"#),
        (r#"{"a":1,"x":2,"b":3}"#, r#"{"a":1,"b":3}"#),
        (
            r#"{"x":1,"x":[2],"a":3,"x":{},"b":5,"x":"6"}"#,
            r#"{"a":3,"b":5}"#,
        ),
        ("{ \"x\" : 1 , \"a\" : 2 }", "{  \"a\" : 2 }"),
        ("{\"a\":1, \"x\":2 }", "{\"a\":1 }"),
    ];
    for (text, expected) in cases {
        let out = filter_text(&f, text.as_bytes());
        assert_eq!(String::from_utf8(out).unwrap(), expected, "{text}");
        assert_paths_agree(&f, text);
    }
}

#[test]
fn refuses_what_is_not_json() {
    let cases: &[&[u8]] = &[
        b"{\"a\":1,}",
        b"[1,]",
        b"[,1]",
        b"{,}",
        b"{\"a\" 1}",
        b"{a:1}",
        b"{\"a\":1 \"b\":2}",
        b"[1 2]",
        b"{\"a\":1]",
        b"[1}",
        b"01",
        b"[01]",
        b"[-01]",
        b"[1.]",
        b"[.5]",
        b"[1e]",
        b"[1e+]",
        b"[-]",
        b"[+1]",
        b"[NaN]",
        b"['a']",
        b"[trux]",
        b"[nul1]",
        b"[\"\x01\"]",
        b"[\"\\q\"]",
        b"[\"\\u12G4\"]",
        b"[\"\xff\"]",
        b"[\"\xc0\xaf\"]",
        b"[\"\xed\xa0\x80\"]",
        b"{\"Config\":{\"\xf4\x90\x80\x80\":1}}",
    ];
    let filters = [
        filter(vec![]),
        filter(vec![
            entry("Config.a", FilterAction::Redact),
            entry("*", FilterAction::Redact),
        ]),
    ];
    for &text in cases {
        assert!(
            serde_json::from_slice::<Value>(text).is_err(),
            "the case itself must be invalid: {}",
            String::from_utf8_lossy(text)
        );
        for f in &filters {
            let mut out = b"kept".to_vec();
            let result = f.filter_document(text, true, &mut out);
            assert!(
                result.is_err(),
                "accepted {}: {result:?}",
                String::from_utf8_lossy(text)
            );
            assert_eq!(out, b"kept");
        }
    }
}

#[test]
fn checks_every_byte_of_long_strings() {
    // Strings are scanned several bytes at a time; a bad byte must be found
    // at any offset, and a good one kept at any offset.
    let f = filter(vec![]);
    let bad: [&[u8]; 5] = [b"\xff", b"\x01", b"\x1f", b"\xc3(", b"\xe2\x82"];
    let good: [&[u8]; 5] = [
        b"\xc3\xa9",
        b"\xe2\x82\xac",
        b"\xf0\x9f\x98\x80",
        b"\\\"",
        b"~",
    ];
    for offset in 0..24 {
        let around = |middle: &[u8]| {
            let plain = b"abcdefghijklmnopqrstuvwxyz0123456789";
            [b"[\"", &plain[..offset], middle, &plain[offset..], b"\"]"].concat()
        };
        for middle in bad {
            let text = around(middle);
            assert!(serde_json::from_slice::<Value>(&text).is_err());
            let result = f.filter_document(&text, true, &mut Vec::new());
            assert!(result.is_err(), "{}", String::from_utf8_lossy(&text));
        }
        for middle in good {
            let text = around(middle);
            assert_eq!(filter_text(&f, &text), text);
        }
    }
}

#[test]
fn lone_surrogate_keys_are_refused_where_keys_are_compared() {
    // Stepping over a string only checks the escape's form; a key a filter
    // must compare is decoded, and one that cannot be is refused, as the
    // Value path refuses it.
    let text = br#"{"\ud800":1}"#;
    assert!(serde_json::from_slice::<Value>(text).is_err());
    let f = filter(vec![entry("Config", FilterAction::Redact)]);
    assert!(f.filter_document(text, true, &mut Vec::new()).is_err());
    let f = filter(vec![]);
    assert_eq!(filter_text(&f, text), text);
}

#[test]
fn a_document_cut_short_waits_for_the_rest() {
    let f = filter(vec![entry("Config.Env", FilterAction::Redact)]);
    let docs = [
        r#"{"Config":{"Env":["A=1","\u00e9 é"],"N":-1.5e-3,"T":true,"Z":null}}"#,
        r#"[{"Config":{"Env":"x"}},{"a":[1,{"b":false}]}]"#,
        r#""a \"string\" é 😀""#,
        "{ \"x\" : [ ] , \"y\" : { } }",
    ];
    for doc in docs.map(str::as_bytes) {
        for cut in 0..doc.len() {
            for input_ends in [false, true] {
                let mut out = b"kept".to_vec();
                let result = f.filter_document(&doc[..cut], input_ends, &mut out);
                assert!(
                    matches!(result, Ok(None)),
                    "{} cut at {cut}: {result:?}",
                    String::from_utf8_lossy(doc)
                );
                assert_eq!(out, b"kept");
            }
        }
    }
}

#[test]
fn a_number_at_the_end_of_the_input_may_go_on() {
    let f = filter(vec![entry("a", FilterAction::Redact)]);
    let run = |text: &[u8], input_ends: bool| {
        let mut out = Vec::new();
        let result = f.filter_document(text, input_ends, &mut out);
        (result.map_err(|e| e.to_string()), out)
    };
    assert_eq!(run(b"12", false), (Ok(None), vec![]));
    assert_eq!(run(b"12", true), (Ok(Some(2)), b"12".to_vec()));
    assert_eq!(run(b"12 3", false), (Ok(Some(2)), b"12".to_vec()));
    assert_eq!(run(b"true", false), (Ok(None), vec![]));
    assert!(run(b"12x", true).0.is_err());
}

#[test]
fn only_nesting_on_a_filters_way_is_limited() {
    let nested =
        |depth: usize, inner: &str| format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth));
    let f = filter(vec![entry("a", FilterAction::Redact)]);

    // serde_json decodes 127 levels and refuses 128; so does the walk
    // where a filter leads.
    let deepest = nested(126, r#"{"a":"s"}"#);
    assert_paths_agree(&f, &deepest);
    let too_deep = nested(127, r#"{"a":"s"}"#);
    assert!(serde_json::from_str::<Value>(&too_deep).is_err());
    let result = f.filter_document(too_deep.as_bytes(), true, &mut Vec::new());
    assert!(matches!(result, Err(NotJson::TooDeep)), "{result:?}");

    // Very deep input fails without exhausting the stack.
    let hostile = nested(100_000, "1");
    let result = f.filter_document(hostile.as_bytes(), true, &mut Vec::new());
    assert!(matches!(result, Err(NotJson::TooDeep)), "{result:?}");

    // Where no filter leads, values are stepped over without recursion.
    let untouched = format!(r#"{{"b":{}}}"#, nested(100_000, "1"));
    assert_eq!(filter_text(&f, untouched.as_bytes()), untouched.as_bytes());
}

#[test]
fn the_redaction_marker_needs_no_escaping() {
    assert_eq!(
        serde_json::to_string(REDACTED).unwrap(),
        format!("\"{REDACTED}\"")
    );
}

/// A small deterministic generator of documents and filters, so the text
/// path is compared with the Value path on many shapes nobody wrote down.
struct Generator(u64);

impl Generator {
    const KEYS: [&'static str; 6] = ["Config", "Env", "Labels", "*", "é", "k\"q"];

    fn next(&mut self) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn key(&mut self) -> &'static str {
        Self::KEYS[self.below(Self::KEYS.len())]
    }

    fn blank(&mut self, text: &mut String) {
        if self.chance(3) {
            let blanks = [" ", "\t", "\n", "\r\n", "  "];
            text.push_str(blanks[self.below(blanks.len())]);
        }
    }

    /// Writes `s` as a JSON string, escaping some characters that need no
    /// escape.
    fn string(&mut self, s: &str, text: &mut String) {
        text.push('"');
        for c in s.chars() {
            match c {
                '"' => text.push_str("\\\""),
                '\\' => text.push_str("\\\\"),
                c if c.is_ascii_control() || (c.is_ascii() && self.chance(4)) => {
                    text.push_str(&format!("\\u{:04x}", u32::from(c)));
                }
                c => text.push(c),
            }
        }
        text.push('"');
    }

    fn scalar(&mut self, text: &mut String) {
        match self.below(6) {
            0 => text.push_str("null"),
            1 => text.push_str(if self.chance(2) { "true" } else { "false" }),
            2 => text.push_str(["0", "-12", "3.25", "1e3", "-0.5E-2"][self.below(5)]),
            _ => {
                let s = ["", "secret", "A=1", "é ü", "tab\there"][self.below(5)];
                self.string(s, text);
            }
        }
    }

    fn value(&mut self, depth: usize, text: &mut String) {
        let kind = if depth == 0 { 2 } else { self.below(3) };
        match kind {
            0 => self.container(depth, '[', ']', text),
            1 => self.container(depth, '{', '}', text),
            _ => self.scalar(text),
        }
    }

    fn container(&mut self, depth: usize, open: char, close: char, text: &mut String) {
        text.push(open);
        let len = self.below(5);
        for i in 0..len {
            if i > 0 {
                text.push(',');
            }
            self.blank(text);
            if open == '{' {
                // Keys repeat often enough to exercise duplicates.
                let key = self.key();
                self.string(key, text);
                self.blank(text);
                text.push(':');
                self.blank(text);
            }
            self.value(depth - 1, text);
            self.blank(text);
        }
        text.push(close);
    }

    fn document(&mut self) -> String {
        let mut text = String::new();
        if self.chance(3) {
            self.container(5, '[', ']', &mut text);
        } else {
            self.container(5, '{', '}', &mut text);
        }
        text
    }

    fn filter(&mut self) -> ResponseFilter {
        let entries = (0..1 + self.below(3))
            .map(|_| {
                let segments: Vec<&str> = (0..1 + self.below(3)).map(|_| self.key()).collect();
                let action = match self.below(3) {
                    0 => FilterAction::Redact,
                    1 => FilterAction::Remove,
                    _ => FilterAction::Replace(json!({"Env": ["r"], "n": 1})),
                };
                entry(&segments.join("."), action)
            })
            .collect();
        filter(entries)
    }
}

#[test]
fn raw_application_matches_value_application_on_generated_documents() {
    let mut generator = Generator(0x5eed_f11e_0001);
    for _ in 0..4000 {
        let doc = generator.document();
        let f = generator.filter();
        assert_paths_agree(&f, &doc);
    }
}

#[test]
fn redact_keeps_shape_of_nested_values() {
    let f = filter(vec![entry("Config.Env", FilterAction::Redact)]);
    let doc = json!({"Config": {"Env": ["A=1", "B=2"], "Image": "x"}});
    assert_eq!(
        apply_both(&f, doc),
        json!({"Config": {"Env": [REDACTED, REDACTED], "Image": "x"}})
    );

    let f = filter(vec![entry("a", FilterAction::Redact)]);
    let doc = json!({"a": {"s": "x", "n": 5, "b": true, "z": null, "l": [1.5, "y"]}});
    assert_eq!(
        apply_both(&f, doc),
        json!({"a": {"s": REDACTED, "n": 0, "b": false, "z": null, "l": [0, REDACTED]}})
    );
}

#[test]
fn applies_to_every_element_of_list_responses() {
    let f = filter(vec![entry("Labels.secret", FilterAction::Remove)]);
    let doc = json!([{"Labels": {"secret": "1", "k": "v"}}, {"Labels": {"secret": "2"}}, {"x": 1}]);
    assert_eq!(
        apply_both(&f, doc),
        json!([{"Labels": {"k": "v"}}, {"Labels": {}}, {"x": 1}])
    );
}

#[test]
fn star_matches_every_key() {
    let f = filter(vec![entry(
        "NetworkSettings.Networks.*.IPAddress",
        FilterAction::Replace(json!("hidden")),
    )]);
    let doc = json!({"NetworkSettings": {"Networks": {
        "bridge": {"IPAddress": "172.17.0.2"}, "ci": {"IPAddress": "10.0.0.2"}}}});
    let doc = apply_both(&f, doc);
    assert_eq!(
        doc["NetworkSettings"]["Networks"]["bridge"]["IPAddress"],
        "hidden"
    );
    assert_eq!(
        doc["NetworkSettings"]["Networks"]["ci"]["IPAddress"],
        "hidden"
    );

    let f = filter(vec![entry("Labels.*", FilterAction::Redact)]);
    let doc = json!({"Labels": {"a": "1", "b": "2"}});
    assert_eq!(
        apply_both(&f, doc),
        json!({"Labels": {"a": REDACTED, "b": REDACTED}})
    );
}

#[test]
fn response_keys_match_exactly() {
    let f = filter(vec![entry("Config.Env", FilterAction::Remove)]);
    let doc = json!({"config": {"env": ["A=1"]}});
    assert_eq!(apply_both(&f, doc), json!({"config": {"env": ["A=1"]}}));
}

#[test]
fn replace_does_not_create_missing_keys() {
    let f = filter(vec![entry("A.B", FilterAction::Replace(json!(1)))]);
    assert_eq!(apply_both(&f, json!({"A": {}})), json!({"A": {}}));
}

#[test]
fn merged_filters_apply_in_order() {
    let mut f = filter(vec![entry("A", FilterAction::Replace(json!("x")))]);
    f.merge(&filter(vec![entry("A", FilterAction::Redact)]));
    assert_eq!(apply_both(&f, json!({"A": 1})), json!({"A": REDACTED}));
    assert_eq!(f.rules.len(), 2);
}
