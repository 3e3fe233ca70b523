//! Response filters: redact, remove or replace fields of JSON responses.
//!
//! Rules with `action: response_filter` compile into [`FilterEntry`]s; the
//! evaluator hands the HTTP layer one [`ResponseFilter`] holding every entry
//! of every matching rule, and the HTTP layer calls [`ResponseFilter::apply`]
//! on each JSON document of the response.
//!
//! Response keys are matched **exactly**: dockerd writes its responses from
//! Go structs with fixed field names (`Config`, `Env`), so there is no
//! spelling variation to fold, and exact matching cannot touch an unrelated
//! user-chosen key (a label named `env`, say).

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

/// The string every redacted string becomes.
pub const REDACTED: &str = "***REDACTED***";

/// What to do with the value at a filter's path.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterAction {
    /// Keep the shape; strings become [`REDACTED`], numbers 0, booleans false.
    Redact,
    /// Delete the key.
    Remove,
    /// Set the value.
    Replace(Value),
}

/// One compiled `{field, action, replacement}` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterEntry {
    /// The dot path as written, for `explain` and `--check-config`.
    pub field: String,
    segments: Vec<String>,
    /// The action applied where the path leads.
    pub action: FilterAction,
}

impl FilterEntry {
    /// Build an entry; `field` must be a non-empty dot path without empty
    /// segments (the compiler checks this and reports the location).
    pub fn new(field: &str, action: FilterAction) -> FilterEntry {
        let segments = field.split('.').map(str::to_owned).collect();
        FilterEntry {
            field: field.to_owned(),
            segments,
            action,
        }
    }

    fn apply(&self, doc: &mut Value) {
        apply_at(doc, &self.segments, &self.action);
    }
}

/// The filters of every response_filter rule that matched one request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResponseFilter {
    entries: Vec<FilterEntry>,
    /// Names of the rules the entries came from, in evaluation order.
    pub rules: Vec<std::sync::Arc<str>>,
}

impl ResponseFilter {
    pub(crate) fn new(rule: std::sync::Arc<str>, entries: Vec<FilterEntry>) -> ResponseFilter {
        ResponseFilter {
            entries,
            rules: vec![rule],
        }
    }

    pub(crate) fn merge(&mut self, other: &ResponseFilter) {
        self.entries.extend(other.entries.iter().cloned());
        self.rules.extend(other.rules.iter().cloned());
    }

    /// Adds an entry applied after the existing ones.
    pub fn push(&mut self, entry: FilterEntry) {
        self.entries.push(entry);
    }

    /// The entries, in the order they are applied.
    pub fn entries(&self) -> &[FilterEntry] {
        &self.entries
    }

    /// Apply every entry, in order, to one JSON document.
    pub fn apply(&self, doc: &mut Value) {
        for entry in &self.entries {
            entry.apply(doc);
        }
    }
}

impl ResponseFilter {
    /// Applies every entry to one JSON document given as text, writing the
    /// result to `out`. Same result as [`ResponseFilter::apply`], but only
    /// the parts of the document a filter path reaches are decoded; the
    /// rest is copied as it came (this is the per-document cost of
    /// redaction on busy list endpoints).
    pub fn apply_raw(&self, doc: &RawValue, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let paths: Vec<Path<'_>> = self
            .entries
            .iter()
            .enumerate()
            .map(|(order, e)| Path {
                order,
                rest: &e.segments,
                action: &e.action,
            })
            .collect();
        filter_raw(doc, &paths, out)
    }
}

/// The unconsumed part of one entry's path.
#[derive(Clone, Copy)]
struct Path<'a> {
    /// Position of the entry: entries apply in order.
    order: usize,
    rest: &'a [String],
    action: &'a FilterAction,
}

fn filter_raw(
    raw: &RawValue,
    paths: &[Path<'_>],
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let text = raw.get();
    if paths.is_empty() {
        out.extend_from_slice(text.as_bytes());
        return Ok(());
    }
    match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push(b'[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                filter_raw(item, paths, out)?;
            }
            out.push(b']');
        }
        Some(b'{') => {
            let RawObject(pairs) = serde_json::from_str(text)?;
            out.push(b'{');
            let mut first = true;
            for (key, value) in &pairs {
                let touches = |p: &&Path<'_>| p.rest[0] == "*" || p.rest[0] == key.as_ref();
                if !first {
                    out.push(b',');
                }
                if !paths.iter().any(|p| touches(&p)) {
                    // The common case: no filter reaches this member.
                    first = false;
                    serde_json::to_writer(&mut *out, key.as_ref())?;
                    out.push(b':');
                    out.extend_from_slice(value.get().as_bytes());
                    continue;
                }
                let touching: Vec<Path<'_>> = paths.iter().filter(touches).copied().collect();
                let mut piece = Vec::new();
                if touching.iter().any(|p| p.rest.len() == 1) {
                    // An action ends at this key: decode just this value and
                    // apply the entries in their order, as `apply` would.
                    match act_in_order(value, &touching)? {
                        Some(result) => serde_json::to_writer(&mut piece, &result)?,
                        None => {
                            // Removed: take back the separator written above.
                            if !first {
                                out.pop();
                            }
                            continue;
                        }
                    }
                } else {
                    let deeper: Vec<Path<'_>> = touching
                        .iter()
                        .map(|p| Path {
                            rest: &p.rest[1..],
                            ..*p
                        })
                        .collect();
                    filter_raw(value, &deeper, &mut piece)?;
                }
                first = false;
                serde_json::to_writer(&mut *out, key.as_ref())?;
                out.push(b':');
                out.extend_from_slice(&piece);
            }
            out.push(b'}');
        }
        _ => out.extend_from_slice(text.as_bytes()),
    }
    Ok(())
}

/// Applies the entries touching one key in entry order; `None` when one of
/// them removes the key.
fn act_in_order(raw: &RawValue, touching: &[Path<'_>]) -> Result<Option<Value>, serde_json::Error> {
    let mut ordered = touching.to_vec();
    ordered.sort_by_key(|p| p.order);
    let mut value: Value = serde_json::from_str(raw.get())?;
    for path in ordered {
        if path.rest.len() > 1 {
            apply_at(&mut value, &path.rest[1..], path.action);
            continue;
        }
        match path.action {
            FilterAction::Remove => return Ok(None),
            FilterAction::Redact => redact(&mut value),
            FilterAction::Replace(replacement) => value = replacement.clone(),
        }
    }
    Ok(Some(value))
}

/// An object's members in document order, values left undecoded.
struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(key)) = map.next_key()? {
                    let value: &'de RawValue = map.next_value()?;
                    pairs.push((key, value));
                }
                Ok(RawObject(pairs))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

fn apply_at(value: &mut Value, segments: &[String], action: &FilterAction) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    match value {
        Value::Array(items) => {
            for item in items {
                apply_at(item, segments, action);
            }
        }
        Value::Object(map) if rest.is_empty() => {
            if first == "*" {
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    act_on_key(map, &key, action);
                }
            } else {
                act_on_key(map, first, action);
            }
        }
        Value::Object(map) => {
            if first == "*" {
                map.values_mut()
                    .for_each(|child| apply_at(child, rest, action));
            } else if let Some(child) = map.get_mut(first.as_str()) {
                apply_at(child, rest, action);
            }
        }
        _ => {}
    }
}

fn act_on_key(map: &mut serde_json::Map<String, Value>, key: &str, action: &FilterAction) {
    match action {
        FilterAction::Remove => {
            map.shift_remove(key);
        }
        FilterAction::Redact => {
            if let Some(value) = map.get_mut(key) {
                redact(value);
            }
        }
        FilterAction::Replace(replacement) => {
            if let Some(value) = map.get_mut(key) {
                *value = replacement.clone();
            }
        }
    }
}

fn redact(value: &mut Value) {
    match value {
        Value::String(text) => *text = REDACTED.to_owned(),
        Value::Number(number) => *number = serde_json::Number::from(0),
        Value::Bool(flag) => *flag = false,
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::Object(map) => map.values_mut().for_each(redact),
        Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(entries: Vec<FilterEntry>) -> ResponseFilter {
        ResponseFilter::new("r".into(), entries)
    }

    /// `apply_raw` must give exactly what `apply` gives.
    fn assert_raw_matches(f: &ResponseFilter, doc: &Value) {
        let mut expected = doc.clone();
        f.apply(&mut expected);
        let text = serde_json::to_string(doc).unwrap();
        let raw: &RawValue = serde_json::from_str(&text).unwrap();
        let mut out = Vec::new();
        f.apply_raw(raw, &mut out).unwrap();
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, expected, "doc {text}");
    }

    #[test]
    fn raw_application_matches_value_application() {
        let docs = [
            json!({"Config": {"Env": ["A=1"], "Cmd": ["sh"], "Image": "x"}, "Id": "1"}),
            json!([{"Config": {"Env": ["A=1"]}}, {"Config": null}, 5, "s", {"x": {"Env": 1}}]),
            json!({"Labels": {"a": "1", "b": {"c": true}}, "Config": {"Env": {"K": 1.5}}}),
            json!({"NetworkSettings": {"Networks": {"n1": {"IPAddress": "1"}, "n2": {}}}}),
            json!({"Config": [{"Env": ["x"]}, [{"Env": "y"}]], "Env": "top"}),
            json!({"weird \"key\"": {"Env": ["z"]}, "Config": "scalar"}),
        ];
        let entry_sets = vec![
            vec![FilterEntry::new("Config.Env", FilterAction::Redact)],
            vec![FilterEntry::new("Labels.*", FilterAction::Remove)],
            vec![FilterEntry::new(
                "*.Env",
                FilterAction::Replace(json!("hidden")),
            )],
            vec![
                FilterEntry::new("Config.Env", FilterAction::Redact),
                FilterEntry::new("Config", FilterAction::Remove),
            ],
            vec![
                FilterEntry::new("Config", FilterAction::Replace(json!({"Env": ["new"]}))),
                FilterEntry::new("Config.Env", FilterAction::Redact),
            ],
            vec![FilterEntry::new(
                "NetworkSettings.Networks.*.IPAddress",
                FilterAction::Redact,
            )],
            vec![
                FilterEntry::new("Env", FilterAction::Remove),
                FilterEntry::new("*", FilterAction::Redact),
            ],
        ];
        for entries in entry_sets {
            let f = filter(entries);
            for doc in &docs {
                assert_raw_matches(&f, doc);
            }
        }
    }

    #[test]
    fn raw_application_copies_untouched_parts_verbatim() {
        let f = filter(vec![FilterEntry::new("Config.Env", FilterAction::Redact)]);
        let text = r#"{"Id":"abc","Size":1.50e3,"Config":{"Env":["S=1"],"Image":"x"}}"#;
        let raw: &RawValue = serde_json::from_str(text).unwrap();
        let mut out = Vec::new();
        f.apply_raw(raw, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"Id":"abc","Size":1.50e3,"Config":{"Env":["***REDACTED***"],"Image":"x"}}"#
        );
    }

    #[test]
    fn redact_keeps_shape_of_nested_values() {
        let f = filter(vec![FilterEntry::new("Config.Env", FilterAction::Redact)]);
        let mut doc = json!({"Config": {"Env": ["A=1", "B=2"], "Image": "x"}});
        f.apply(&mut doc);
        assert_eq!(
            doc,
            json!({"Config": {"Env": [REDACTED, REDACTED], "Image": "x"}})
        );

        let f = filter(vec![FilterEntry::new("a", FilterAction::Redact)]);
        let mut doc = json!({"a": {"s": "x", "n": 5, "b": true, "z": null, "l": [1.5, "y"]}});
        f.apply(&mut doc);
        assert_eq!(
            doc,
            json!({"a": {"s": REDACTED, "n": 0, "b": false, "z": null, "l": [0, REDACTED]}})
        );
    }

    #[test]
    fn applies_to_every_element_of_list_responses() {
        let f = filter(vec![FilterEntry::new(
            "Labels.secret",
            FilterAction::Remove,
        )]);
        let mut doc =
            json!([{"Labels": {"secret": "1", "k": "v"}}, {"Labels": {"secret": "2"}}, {"x": 1}]);
        f.apply(&mut doc);
        assert_eq!(
            doc,
            json!([{"Labels": {"k": "v"}}, {"Labels": {}}, {"x": 1}])
        );
    }

    #[test]
    fn star_matches_every_key() {
        let f = filter(vec![FilterEntry::new(
            "NetworkSettings.Networks.*.IPAddress",
            FilterAction::Replace(json!("hidden")),
        )]);
        let mut doc = json!({"NetworkSettings": {"Networks": {
            "bridge": {"IPAddress": "172.17.0.2"}, "ci": {"IPAddress": "10.0.0.2"}}}});
        f.apply(&mut doc);
        assert_eq!(
            doc["NetworkSettings"]["Networks"]["bridge"]["IPAddress"],
            "hidden"
        );
        assert_eq!(
            doc["NetworkSettings"]["Networks"]["ci"]["IPAddress"],
            "hidden"
        );

        let f = filter(vec![FilterEntry::new("Labels.*", FilterAction::Redact)]);
        let mut doc = json!({"Labels": {"a": "1", "b": "2"}});
        f.apply(&mut doc);
        assert_eq!(doc, json!({"Labels": {"a": REDACTED, "b": REDACTED}}));
    }

    #[test]
    fn response_keys_match_exactly() {
        let f = filter(vec![FilterEntry::new("Config.Env", FilterAction::Remove)]);
        let mut doc = json!({"config": {"env": ["A=1"]}});
        f.apply(&mut doc);
        assert_eq!(doc, json!({"config": {"env": ["A=1"]}}));
    }

    #[test]
    fn replace_does_not_create_missing_keys() {
        let f = filter(vec![FilterEntry::new(
            "A.B",
            FilterAction::Replace(json!(1)),
        )]);
        let mut doc = json!({"A": {}});
        f.apply(&mut doc);
        assert_eq!(doc, json!({"A": {}}));
    }

    #[test]
    fn merged_filters_apply_in_order() {
        let mut f = filter(vec![FilterEntry::new(
            "A",
            FilterAction::Replace(json!("x")),
        )]);
        f.merge(&filter(vec![FilterEntry::new("A", FilterAction::Redact)]));
        let mut doc = json!({"A": 1});
        f.apply(&mut doc);
        assert_eq!(doc, json!({"A": REDACTED}));
        assert_eq!(f.rules.len(), 2);
    }
}
