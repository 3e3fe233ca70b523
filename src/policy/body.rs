//! JSON request bodies as dockerd's Go `encoding/json` decoder reads them.
//!
//! The HTTP layer buffers a body only when [`super::Policy::needs_body`]
//! says a rule needs it, then calls [`JsonBody::parse`] once; conditions on
//! `body.A.B` look values up here.
//!
//! # Why this shape
//!
//! dockerd decodes request bodies into Go structs with `encoding/json`. That
//! decoder matches an object key to a struct field case-insensitively, using
//! Unicode *simple* case folding (`bytes.EqualFold`), and when one object
//! holds several keys that fold to the same field, the **last** one wins.
//! A proxy that looks keys up exactly would see `HostConfig.Privileged:
//! false` while dockerd honours a later `hostconfig.privileged: true`.
//!
//! We therefore:
//!
//! - parse with `serde_json` through our own visitor, which sees every key of
//!   every object in order (a plain `serde_json::Value` keeps only one of two
//!   equal keys, silently);
//! - reject, with a 400-class [`BodyError`], any object in which two keys are
//!   equal or equal after simple case folding, so there is never a question
//!   of which one dockerd uses;
//! - reject trailing data after the JSON value (Go's decoder in dockerd reads
//!   one value; anything after it must not be something we did not inspect);
//! - look keys up by folded comparison, so `body.HostConfig.Binds` finds
//!   `hostconfig.binds`, `HOSTCONFIG.BINDS` and `Hoſtconfig` (U+017F LONG S
//!   folds to `s`), and `body.Kernel...` finds `\u{212A}ernel` (KELVIN SIGN
//!   folds to `k`).
//!
//! Folding: Go folds a rune to the smallest rune of its `unicode.SimpleFold`
//! orbit. We compute an equivalent key per character as
//! `lower(upper(c))` when both mappings are single characters; this puts
//! every rune of a simple-fold orbit on the same key (`K`, `k`, U+212A →
//! `k`; `S`, `s`, U+017F → `s`; `Σ`, `σ`, `ς` → `σ`). The one place where
//! full upper/lower case mappings join runes that simple folding keeps apart
//! is Turkish dotless/dotted i (U+0131, U+0130): Go does not fold them with
//! `i`, so neither do we.
//!
//! Go map-typed fields (`Labels`, `DriverOpts`) are matched exactly by Go;
//! we fold there too. That can only make a rule see more keys, and the
//! ambiguity check then refuses objects such as `{"o": .., "O": ..}` that Go
//! would accept; we accept that strictness.
//!
//! Nested depth is bounded by `serde_json`'s recursion limit (128), so a
//! hostile body cannot exhaust the stack. Strings with lone surrogate escapes
//! are rejected by `serde_json` (Go would replace them with U+FFFD); we fail
//! closed there as well.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a request body could not be inspected; the client gets a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is not one valid JSON value.
    #[error("request body is not valid JSON: {0}")]
    Invalid(String),
    /// Bytes follow the JSON value.
    #[error("request body has data after the JSON value: {0}")]
    TrailingData(String),
    /// Two keys of one object are equal or differ only by letter case.
    #[error(
        "request body is ambiguous: keys {first:?} and {second:?} in one object \
             name the same field for the Docker Engine"
    )]
    AmbiguousKey { first: String, second: String },
}

/// A parsed request body whose object keys are unambiguous under folding.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonBody {
    root: Value,
}

impl JsonBody {
    /// Parse `bytes` as exactly one JSON value, refusing ambiguous keys.
    pub fn parse(bytes: &[u8]) -> Result<JsonBody, BodyError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let checked = Checked::deserialize(&mut deserializer).map_err(classify)?;
        deserializer
            .end()
            .map_err(|e| BodyError::TrailingData(e.to_string()))?;
        Ok(JsonBody { root: checked.0 })
    }

    /// The whole document.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// Values at `segments`, matching keys the way dockerd does.
    ///
    /// A numeric segment indexes an array; a non-numeric segment that meets
    /// an array applies to every element (so `HostConfig.Mounts.Type` sees
    /// the type of every mount).
    pub(crate) fn lookup<'a>(&'a self, segments: &[Segment], out: &mut Vec<&'a Value>) {
        lookup_in(&self.root, segments, out);
    }
}

/// One compiled step of a body path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub text: String,
    pub folded: String,
    pub index: Option<usize>,
}

impl Segment {
    pub(crate) fn new(text: &str) -> Segment {
        Segment {
            text: text.to_owned(),
            folded: fold(text),
            index: text.parse().ok(),
        }
    }
}

fn lookup_in<'a>(value: &'a Value, segments: &[Segment], out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = segments.split_first() else {
        out.push(value);
        return;
    };
    match value {
        Value::Object(map) => {
            let found = map.iter().find(|(key, _)| fold_eq(key, &first.folded));
            if let Some((_, child)) = found {
                lookup_in(child, rest, out);
            }
        }
        Value::Array(items) => match first.index {
            Some(index) => {
                if let Some(child) = items.get(index) {
                    lookup_in(child, rest, out);
                }
            }
            None => items.iter().for_each(|item| lookup_in(item, segments, out)),
        },
        _ => {}
    }
}

/// Fold one character for key comparison (see the module doc).
pub(crate) fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    if c == '\u{130}' || c == '\u{131}' {
        return c;
    }
    let upper = single(c.to_uppercase()).unwrap_or(c);
    single(upper.to_lowercase()).unwrap_or(c)
}

fn single(mut iter: impl Iterator<Item = char>) -> Option<char> {
    let first = iter.next()?;
    iter.next().is_none().then_some(first)
}

/// Fold a whole key.
pub(crate) fn fold(text: &str) -> String {
    text.chars().map(fold_char).collect()
}

fn fold_eq(key: &str, folded: &str) -> bool {
    let mut left = key.chars().map(fold_char);
    let mut right = folded.chars();
    loop {
        match (left.next(), right.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

const AMBIGUOUS_MARK: &str = "\u{0}ambiguous\u{0}";

fn classify(error: serde_json::Error) -> BodyError {
    let text = error.to_string();
    match text.strip_prefix(AMBIGUOUS_MARK) {
        Some(rest) => {
            let mut parts = rest.splitn(2, '\u{0}');
            let first = parts.next().unwrap_or_default().to_owned();
            let second = parts.next().unwrap_or_default();
            let second = second
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_owned();
            BodyError::AmbiguousKey { first, second }
        }
        None => BodyError::Invalid(text),
    }
}

/// A JSON value built by a visitor that sees every key.
struct Checked(Value);

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Checked, E> {
        Ok(Checked(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Checked, E> {
        Ok(Checked(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Checked, E> {
        Ok(Checked(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Checked, E> {
        Ok(Checked(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_str<E>(self, v: &str) -> Result<Checked, E> {
        Ok(Checked(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Checked, E> {
        Ok(Checked(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Checked, E> {
        Ok(Checked(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Checked, D::Error> {
        Checked::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let mut items = Vec::new();
        while let Some(Checked(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Checked(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Checked, A::Error> {
        let mut map = Map::new();
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = access.next_key::<String>()? {
            let folded = fold(&key);
            if !seen.insert(folded.clone()) {
                let first = map
                    .keys()
                    .find(|k| fold(k) == folded)
                    .cloned()
                    .unwrap_or_default();
                return Err(de::Error::custom(format!(
                    "{AMBIGUOUS_MARK}{first}\u{0}{key}"
                )));
            }
            let Checked(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Checked(Value::Object(map)))
    }
}
