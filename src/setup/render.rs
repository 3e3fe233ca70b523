//! A small YAML writer for the files the wizard produces.
//!
//! The wizard builds the config as a [`Node`] tree and prints it in block
//! style. Strings are written as double-quoted JSON strings (valid YAML) with
//! every `${` escaped as `$${`, so nothing the operator typed is expanded as
//! an environment variable; [`Node::Raw`] carries the few things written
//! verbatim: `${NAME}` references, booleans and numbers.

use std::fmt::Write;

/// One YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A mapping; keys are plain identifiers and keep their order.
    Map(Vec<(&'static str, Node)>),
    /// A sequence.
    List(Vec<Node>),
    /// A string, quoted and escaped on output.
    Str(String),
    /// Text written as is: `${NAME}` references, booleans, numbers.
    Raw(String),
}

impl Node {
    /// A string node.
    pub fn str(text: impl Into<String>) -> Node {
        Node::Str(text.into())
    }

    /// A mapping node from `(key, value)` pairs.
    pub fn map(entries: impl IntoIterator<Item = (&'static str, Node)>) -> Node {
        Node::Map(entries.into_iter().collect())
    }

    /// A reference to environment variable `name`, expanded when loading.
    pub fn env(name: &str) -> Node {
        Node::Raw(format!("\"${{{name}}}\""))
    }
}

/// Quote `text` as a YAML double-quoted scalar that loads back unchanged.
pub fn quote(text: &str) -> String {
    let json = serde_json::to_string(text).expect("a String always serialises to JSON");
    json.replace("${", "$${")
}

/// Write `node` (a mapping) as a YAML document body.
pub fn to_yaml(node: &Node) -> String {
    let mut out = String::new();
    write_node(&mut out, node, 0);
    out
}

fn write_node(out: &mut String, node: &Node, indent: usize) {
    match node {
        Node::Map(entries) => {
            for (key, value) in entries {
                write_entry(out, key, value, indent);
            }
        }
        Node::List(items) => {
            for item in items {
                write_item(out, item, indent);
            }
        }
        Node::Str(_) | Node::Raw(_) => {
            let _ = writeln!(out, "{:indent$}{}", "", scalar(node));
        }
    }
}

fn write_entry(out: &mut String, key: &str, value: &Node, indent: usize) {
    match value {
        Node::Map(entries) if entries.is_empty() => {
            let _ = writeln!(out, "{:indent$}{key}: {{}}", "");
        }
        Node::List(items) if items.is_empty() => {
            let _ = writeln!(out, "{:indent$}{key}: []", "");
        }
        Node::Map(_) | Node::List(_) => {
            let _ = writeln!(out, "{:indent$}{key}:", "");
            write_node(out, value, indent + 2);
        }
        _ => {
            let _ = writeln!(out, "{:indent$}{key}: {}", "", scalar(value));
        }
    }
}

/// A list item: the first key of a mapping shares the `- ` line.
fn write_item(out: &mut String, item: &Node, indent: usize) {
    match item {
        Node::Map(entries) if !entries.is_empty() => {
            let mut nested = String::new();
            write_node(&mut nested, item, indent + 2);
            let body = &nested[indent + 2..];
            let _ = write!(out, "{:indent$}- {body}", "");
        }
        Node::Str(_) | Node::Raw(_) => {
            let _ = writeln!(out, "{:indent$}- {}", "", scalar(item));
        }
        _ => {
            let _ = writeln!(out, "{:indent$}-", "");
            write_node(out, item, indent + 2);
        }
    }
}

fn scalar(node: &Node) -> String {
    match node {
        Node::Str(text) => quote(text),
        Node::Raw(text) => text.clone(),
        Node::Map(_) | Node::List(_) => unreachable!("scalar() is only called on scalars"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_nested_lists_of_maps_in_block_style() {
        let node = Node::map([(
            "rules",
            Node::List(vec![Node::map([
                ("name", Node::str("a")),
                (
                    "conditions",
                    Node::List(vec![Node::map([(
                        "or",
                        Node::List(vec![Node::map([("field", Node::str("path"))])]),
                    )])]),
                ),
            ])]),
        )]);
        assert_eq!(
            to_yaml(&node),
            "rules:\n  - name: \"a\"\n    conditions:\n      - or:\n          - field: \"path\"\n"
        );
    }

    #[test]
    fn escapes_variable_syntax_in_strings_but_not_in_references() {
        assert_eq!(quote("a${B}\"\\"), "\"a$${B}\\\"\\\\\"");
        assert_eq!(
            to_yaml(&Node::map([("token", Node::env("T"))])),
            "token: \"${T}\"\n"
        );
    }
}
