//! Response filters: redact, remove or replace fields of JSON responses.
//!
//! Rules with `action: response_filter` compile into [`FilterEntry`]s; the
//! evaluator hands the HTTP layer one [`ResponseFilter`] holding every entry
//! of every matching rule, and the HTTP layer calls
//! [`ResponseFilter::filter_document`] on each JSON document of the
//! response. That works on the document's text in one pass (see `raw.rs`);
//! [`ResponseFilter::apply`] does the same on a decoded [`Value`] and is
//! the reference the text path is tested against.
//!
//! Response keys are matched **exactly**: dockerd writes its responses from
//! Go structs with fixed field names (`Config`, `Env`), so there is no
//! spelling variation to fold, and exact matching cannot touch an unrelated
//! user-chosen key (a label named `env`, say). "Exactly" is about the
//! decoded key: `"Con\u0066ig"` is the key `Config`, as it is to every
//! JSON decoder a client may use.

mod raw;

use serde_json::Value;

pub use raw::NotJson;

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
    /// Filters the JSON document at the start of `input` into `out` in one
    /// pass over its bytes, and returns where the document ends.
    ///
    /// The result equals, as JSON, what [`ResponseFilter::apply`] makes of
    /// the same document (any document serde_json can decode into a
    /// [`Value`]). Only what a filter path reaches is rewritten; all
    /// other bytes, whitespace included, are copied as they came. Object
    /// keys are compared after decoding their escapes, as `apply` compares
    /// them, and every occurrence of a duplicated key is filtered.
    ///
    /// `input` must start with the document (no leading whitespace);
    /// `input_ends` says that no byte will follow `input`, which matters
    /// only for a number or literal that runs to its end. Returns
    /// `Ok(None)`, with `out` unchanged, when `input` ends inside the
    /// document, and an error, with `out` unchanged, when it is not JSON.
    pub fn filter_document(
        &self,
        input: &[u8],
        input_ends: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, NotJson> {
        let paths = self.entries.iter().map(|entry| Path {
            rest: &entry.segments,
            action: &entry.action,
        });
        raw::filter_document(paths.collect(), input, input_ends, out)
    }
}

/// The part of one entry's path not yet walked.
#[derive(Clone, Copy)]
struct Path<'a> {
    rest: &'a [String],
    action: &'a FilterAction,
}

impl Path<'_> {
    /// Whether the action applies to the member this path has reached.
    fn ends_here(&self) -> bool {
        self.rest.len() == 1
    }

    /// Applies the entry to `value`, the value of the key the path has
    /// reached. A removal is for the caller to make.
    fn apply_to_member(&self, value: &mut Value) {
        if !self.ends_here() {
            apply_at(value, &self.rest[1..], self.action);
            return;
        }
        match self.action {
            FilterAction::Remove => {}
            FilterAction::Redact => redact(value),
            FilterAction::Replace(replacement) => *value = replacement.clone(),
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
mod tests;
