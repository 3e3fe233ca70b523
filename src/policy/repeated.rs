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

use std::fmt;

use super::condition::{query_keys, query_values, Node};
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
    /// repeats of names no rule reads, pass. One pass over the query
    /// decodes each key once; values are decoded only for a named key that
    /// appears twice. Allocates nothing unless a key is percent-encoded.
    pub fn check_repeats(&self, req: &Request) -> Result<(), RepeatedField> {
        let refusal = |kind, name: &str, count| RepeatedField {
            kind,
            name: name.to_owned(),
            count,
        };
        if let Some((name, count)) = self.repeats.differing_query(req.query) {
            return Err(refusal("query parameter", name, count));
        }
        for name in &self.repeats.headers {
            let values = req
                .headers
                .iter()
                .filter(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| *value);
            if let Some(count) = differing(values) {
                return Err(refusal("header", name, count));
            }
        }
        Ok(())
    }
}

impl RepeatGuard {
    /// The first named query parameter whose values differ, and how many
    /// values it has.
    fn differing_query(&self, query: &str) -> Option<(&str, usize)> {
        if self.query.is_empty() {
            return None;
        }
        // Bit i: name i was seen once. Names past 64 are compared on every
        // sight, which only costs time for a policy naming that many.
        let mut seen = 0u64;
        for (key, _) in query_keys(query) {
            let Ok(i) = self.query.binary_search_by(|name| name.as_str().cmp(&key)) else {
                continue;
            };
            let bit = 1u64.checked_shl(i as u32).unwrap_or(0);
            if seen & bit == 0 && bit != 0 {
                seen |= bit;
                continue;
            }
            let name = self.query[i].as_str();
            if let Some(count) = differing(query_values(query, name)) {
                return Some((name, count));
            }
        }
        None
    }
}

/// The number of `values` when they are not all equal.
fn differing<T: PartialEq>(mut values: impl Iterator<Item = T>) -> Option<usize> {
    let first = values.next()?;
    let mut count = 1;
    let mut differ = false;
    for value in values {
        count += 1;
        differ |= value != first;
    }
    differ.then_some(count)
}
