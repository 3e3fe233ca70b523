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
