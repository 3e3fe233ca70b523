//! `${NAME}` expansion in the configuration file.
//!
//! A reference stands for the variable's value as a plain string: the value
//! is never read as YAML, so `abc #def`, `!secret`, `yes`, `0123` or
//! `"quoted"` arrive exactly as they are in the environment. To do that
//! without giving up YAML's flow style (`{port: ${PORT}}`), expansion runs
//! in two steps: [`prepare`] replaces every reference in the text with an
//! inert placeholder word before parsing, and [`Prepared::apply`] swaps the
//! placeholders in the parsed string scalars for the values.
//!
//! Settings that take a number or a boolean (`port: ${PORT}`) get the value
//! converted when it is one; everywhere else the value stays a string.
//! `$${` writes a literal `${`. An unset variable expands to the empty
//! string (a whole-value reference in a numeric or boolean setting leaves
//! the setting unset) and is reported so `--check-config` can warn about
//! it. References in comments are ignored.

use serde_json::{Map, Number, Value};

use super::raw::LIMITS_KEYS;

/// Problems that make the text unusable: `${` without `}` or a bad name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    pub line: usize,
    pub what: String,
}

/// The text with placeholders, ready for the YAML parser.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub text: String,
    marker: String,
    references: Vec<(String, Option<String>)>,
}

/// Variables referenced in the parsed values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansions {
    /// Names referenced but unset, in order of first use.
    pub unset: Vec<String>,
    /// Names referenced and set (for the sources listing).
    pub used: Vec<String>,
}

/// Keys outside `global.limits` whose values are numbers (every limit is
/// one: [`LIMITS_KEYS`]).
const NUMBER_KEYS: &[&str] = &[
    "port", "workers", "failures", "window", "duration", "status", "priority", "requests",
    "period", "penalty",
];

/// Keys whose values are booleans.
const BOOL_KEYS: &[&str] = &["enabled", "require_client_cert", "dry_run"];

/// Replace every `${NAME}` in `text` by a placeholder and look it up in `env`.
pub fn prepare(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Prepared, Vec<ExpandError>> {
    // A word that appears nowhere in the file, so no text is mistaken for a
    // placeholder.
    let marker = (0u32..)
        .map(|n| format!("DAPENV{n}Q"))
        .find(|m| !text.contains(m.as_str()))
        .expect("some marker is free");
    let mut out = String::with_capacity(text.len());
    let mut references: Vec<(String, Option<String>)> = Vec::new();
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            // Kept for `apply`, which turns it into `${`.
            out.push_str("$${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let line = text[..text.len() - tail.len()].matches('\n').count() + 1;
            let Some(end) = after.find('}') else {
                errors.push(ExpandError {
                    line,
                    what: "\"${\" without a closing \"}\"".into(),
                });
                rest = after;
                continue;
            };
            let name = &after[..end];
            if valid_name(name) {
                out.push_str(&format!("{marker}{}Z", references.len()));
                references.push((name.to_owned(), env(name)));
            } else {
                errors.push(ExpandError {
                    line,
                    what: format!(
                        "\"${{{name}}}\" is not a valid variable reference \
                        (letters, digits and _, not starting with a digit)"
                    ),
                });
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(Prepared {
            text: out,
            marker,
            references,
        })
    } else {
        Err(errors)
    }
}

/// How one string scalar came out of expansion.
struct Substituted {
    text: String,
    /// It held at least one reference.
    referenced: bool,
    /// It was exactly one reference to an unset variable.
    whole_unset: bool,
}

impl Prepared {
    /// Put the variables' values into every string (and key) of `value`.
    pub fn apply(&self, value: Value) -> (Value, Expansions) {
        let mut found = Expansions::default();
        let value = self.walk(value, None, &mut found);
        (value, found)
    }

    fn walk(&self, value: Value, key: Option<&str>, found: &mut Expansions) -> Value {
        match value {
            Value::String(text) => {
                let out = self.substitute(&text, found);
                if !out.referenced {
                    return Value::String(out.text);
                }
                typed(key, out)
            }
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|item| self.walk(item, None, found))
                    .collect(),
            ),
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                for (k, v) in map {
                    let k = self.substitute(&k, found).text;
                    let v = self.walk(v, Some(&k), found);
                    out.insert(k, v);
                }
                Value::Object(out)
            }
            other => other,
        }
    }

    fn substitute(&self, text: &str, found: &mut Expansions) -> Substituted {
        let mut out = String::with_capacity(text.len());
        let mut referenced = false;
        let mut rest = text;
        loop {
            let next_marker = rest.find(self.marker.as_str());
            let next_escape = rest.find("$${");
            let at = match (next_marker, next_escape) {
                (None, None) => break,
                (Some(m), Some(e)) => m.min(e),
                (Some(m), None) => m,
                (None, Some(e)) => e,
            };
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
                continue;
            }
            let after = &tail[self.marker.len()..];
            match self.reference(after) {
                Some((len, (name, value))) => {
                    referenced = true;
                    match value {
                        Some(value) => {
                            out.push_str(value);
                            push_unique(&mut found.used, name);
                        }
                        None => push_unique(&mut found.unset, name),
                    }
                    rest = &after[len..];
                }
                // Not one of ours (only a YAML escape could spell the marker).
                None => {
                    out.push_str(&self.marker);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        // The scalar is one reference and nothing else, to an unset variable.
        let whole_unset = text
            .strip_prefix(self.marker.as_str())
            .and_then(|after| self.reference(after).filter(|(len, _)| *len == after.len()))
            .is_some_and(|(_, (_, value))| value.is_none());
        Substituted {
            text: out,
            referenced,
            whole_unset,
        }
    }

    /// The reference whose placeholder `after` (the text following a marker)
    /// starts with, and the length of its `<index>Z` part.
    fn reference(&self, after: &str) -> Option<(usize, &(String, Option<String>))> {
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if !after[digits..].starts_with('Z') {
            return None;
        }
        let reference = self
            .references
            .get(after[..digits].parse::<usize>().ok()?)?;
        Some((digits + 1, reference))
    }
}

/// A numeric or boolean setting gets its value converted; any other stays
/// the string from the environment.
fn typed(key: Option<&str>, out: Substituted) -> Value {
    let Some(key) = key else {
        return Value::String(out.text);
    };
    let numeric = NUMBER_KEYS.contains(&key) || LIMITS_KEYS.contains(&key);
    let boolean = BOOL_KEYS.contains(&key);
    if !(numeric || boolean) {
        return Value::String(out.text);
    }
    if out.whole_unset {
        return Value::Null;
    }
    let trimmed = out.text.trim();
    if numeric {
        if let Ok(n) = trimmed.parse::<u64>() {
            return Value::Number(Number::from(n));
        }
        if let Ok(n) = trimmed.parse::<i64>() {
            return Value::Number(Number::from(n));
        }
    }
    if boolean {
        match trimmed {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
    }
    Value::String(out.text)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn push_unique(list: &mut Vec<String>, name: &str) {
    if !list.iter().any(|n| n == name) {
        list.push(name.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        let value = match name {
            "TOKEN" => "s3cret",
            "EMPTY" => "",
            "HASH" => "abc #def",
            "BANG" => "!secret",
            "YES" => "yes",
            "OCTAL" => "0123",
            "QUOTED" => "\"quoted\"",
            "COLON" => "a: b",
            "MULTI" => "line one\nline two",
            "PORT" => "2500",
            "TRUE" => "true",
            "MARKER" => "DAPENV0Q0Z",
            _ => return None,
        };
        Some(value.to_owned())
    }

    /// Parse `text` the way `resolve` does: prepare, YAML, apply.
    fn load(text: &str) -> (Value, Expansions) {
        let prepared = prepare(text, &env).unwrap();
        let value: Value = serde_saphyr::from_str(&prepared.text).unwrap();
        prepared.apply(value)
    }

    fn token(name: &str) -> Value {
        let (value, _) = load(&format!("auth:\n  tokens:\n    - token: ${{{name}}}\n"));
        value["auth"]["tokens"][0]["token"].clone()
    }

    #[test]
    fn a_value_is_always_the_exact_environment_string() {
        for (name, expected) in [
            ("HASH", "abc #def"),
            ("BANG", "!secret"),
            ("YES", "yes"),
            ("OCTAL", "0123"),
            ("QUOTED", "\"quoted\""),
            ("COLON", "a: b"),
            ("MULTI", "line one\nline two"),
            ("PORT", "2500"),
            ("TRUE", "true"),
            ("MARKER", "DAPENV0Q0Z"),
        ] {
            assert_eq!(token(name), Value::String(expected.into()), "{name}");
        }
    }

    #[test]
    fn references_inside_quoted_and_flow_scalars_expand_as_text() {
        let (value, found) = load(
            "a: \"x-${TOKEN}-${HASH}\"\n\
             b: {c: ${TOKEN}, d: '${QUOTED}'}\n\
             e: [${YES}, pre${BANG}]\n",
        );
        assert_eq!(value["a"], "x-s3cret-abc #def");
        assert_eq!(value["b"]["c"], "s3cret");
        assert_eq!(value["b"]["d"], "\"quoted\"");
        assert_eq!(value["e"][0], "yes");
        assert_eq!(value["e"][1], "pre!secret");
        assert_eq!(found.used, ["TOKEN", "HASH", "QUOTED", "YES", "BANG"]);
    }

    #[test]
    fn numeric_and_boolean_settings_are_converted() {
        let (value, _) = load("global: {port: ${PORT}, metrics: {enabled: ${TRUE}}}\n");
        assert_eq!(value["global"]["port"], 2500);
        assert_eq!(value["global"]["metrics"]["enabled"], true);
        // Every limit is a number, including ones added after this list.
        for key in LIMITS_KEYS {
            let (value, _) = load(&format!("global:\n  limits:\n    {key}: ${{PORT}}\n"));
            assert_eq!(value["global"]["limits"][key], 2500, "{key}");
        }
        // Not a number: left as a string, for the type check to report.
        let (value, _) = load("global:\n  port: ${HASH}\n");
        assert_eq!(value["global"]["port"], "abc #def");
    }

    #[test]
    fn unset_variables_expand_to_empty_and_are_reported() {
        let (value, found) = load("a: ${MISSING}\nb: x${MISSING}y\nglobal: {port: ${NOPORT}}\n");
        assert_eq!(value["a"], "");
        assert_eq!(value["b"], "xy");
        assert_eq!(value["global"]["port"], Value::Null);
        // Only a reference standing alone leaves the setting unset.
        let (value, _) = load("global: {port: \"${NOPORT} \"}\n");
        assert_eq!(value["global"]["port"], " ");
        assert_eq!(found.unset, ["MISSING", "NOPORT"]);
        assert!(found.used.is_empty());
    }

    #[test]
    fn double_dollar_escapes_a_literal_reference() {
        let (value, found) = load("a: \"$${TOKEN} costs $5 and $$ ${EMPTY}.\"\n");
        assert_eq!(value["a"], "${TOKEN} costs $5 and $$ .");
        assert!(found.unset.is_empty());
        // An escape sequence inside a value is not unescaped again.
        let (value, _) = load("a: ${QUOTED}$${X}\n");
        assert_eq!(value["a"], "\"quoted\"${X}");
    }

    #[test]
    fn references_in_comments_are_ignored() {
        let (value, found) = load("# uses ${MISSING}\na: 1 # ${TOKEN}\n");
        assert_eq!(value["a"], 1);
        assert_eq!(found, Expansions::default());
    }

    #[test]
    fn reports_unclosed_and_invalid_references_with_lines() {
        let errors = prepare("a: 1\nb: ${1BAD}\nc: ${OPEN", &env).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, 2);
        assert_eq!(errors[1].line, 3);
    }
}
