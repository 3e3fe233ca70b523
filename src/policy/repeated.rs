//! Refusal of query parameters and headers that a rule names and the
//! request repeats with different values.
//!
//! Rules judge every value of a field (SPEC section 4), but dockerd reads
//! one: `r.Form.Get` and `r.Header.Get` return the first. With
//! `fromImage=evil&fromImage=mirror.example/x`, a deny rule `not_matches
//! ^mirror\.` sees a matching value and lets the request pass, and the
//! engine pulls `evil`. [`Policy::check_repeats`] is called by the HTTP
//! layer before evaluation; the names it looks at are collected once by
//! [`RepeatGuard::collect`] when the policy compiles.

use std::borrow::Cow;
use std::fmt;

use super::condition::{decode_component, Node};
use super::{Policy, Request, Rule};

/// The query parameter and header names some rule condition reads.
#[derive(Debug, Default)]
pub(crate) struct RepeatGuard {
    /// Query parameter names, exact (Go's `url.Values` is case-sensitive).
    query: Vec<String>,
    /// Header names, lower-cased.
    headers: Vec<String>,
}

impl RepeatGuard {
    /// Collects the names every condition of `rules` reads, at any depth.
    pub(crate) fn collect(rules: &[Rule]) -> RepeatGuard {
        let mut leaves = Vec::new();
        rules
            .iter()
            .flat_map(|rule| &rule.conditions)
            .for_each(|node: &Node| node.leaves(&mut leaves));
        let mut guard = RepeatGuard::default();
        for leaf in leaves {
            if let Some(name) = leaf.query_name() {
                guard.query.push(name.to_owned());
            }
            if let Some(name) = leaf.header_name() {
                guard.headers.push(name.to_owned());
            }
        }
        for names in [&mut guard.query, &mut guard.headers] {
            names.sort();
            names.dedup();
        }
        guard
    }
}

/// A rule-named field repeated with different values; answered with 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatedField {
    /// "query parameter" or "header".
    pub kind: &'static str,
    pub name: String,
    /// How many times it appears.
    pub count: usize,
}

impl fmt::Display for RepeatedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} \"{}\" appears {} times with different values: the engine would read only \
             one of them, so a policy rule cannot judge it; send it once",
            self.kind, self.name, self.count
        )
    }
}

impl std::error::Error for RepeatedField {}

impl Policy {
    /// Refuses a request that repeats, with different values, a query
    /// parameter or header some rule names. Repeats with equal values, and
    /// repeats of names no rule reads, pass. Allocates nothing unless a
    /// key, or a value of a named parameter, is percent-encoded.
    pub fn check_repeats(&self, req: &Request) -> Result<(), RepeatedField> {
        if !req.query.is_empty() {
            for name in &self.repeats.query {
                if let Some(count) = differing_query(req.query, name) {
                    return Err(RepeatedField {
                        kind: "query parameter",
                        name: name.clone(),
                        count,
                    });
                }
            }
        }
        for name in &self.repeats.headers {
            if let Some(count) = differing_header(req.headers, name) {
                return Err(RepeatedField {
                    kind: "header",
                    name: name.clone(),
                    count,
                });
            }
        }
        Ok(())
    }
}

/// The number of values of `name` when they are not all equal, decoded as
/// `condition::query_values` decodes them.
fn differing_query(query: &str, name: &str) -> Option<usize> {
    let mut first: Option<Cow<'_, str>> = None;
    let mut count = 0;
    let mut differ = false;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key.contains(';') || decode_component(key).as_deref() != Some(name) {
            continue;
        }
        let Some(value) = decode_component(value) else {
            continue;
        };
        count += 1;
        match &first {
            None => first = Some(value),
            Some(seen) => differ |= *seen != value,
        }
    }
    differ.then_some(count)
}

/// The number of field lines named `name` when their values differ.
fn differing_header(headers: &[(&str, &[u8])], name: &str) -> Option<usize> {
    let mut values = headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| *value);
    let first = values.next()?;
    let mut count = 1;
    let mut differ = false;
    for value in values {
        count += 1;
        differ |= value != first;
    }
    differ.then_some(count)
}
