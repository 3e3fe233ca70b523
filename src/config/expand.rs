//! `${NAME}` expansion over the raw configuration text.
//!
//! Runs before YAML parsing, so a variable may supply any part of the file.
//! `$${` writes a literal `${`. An unset variable expands to the empty
//! string and is reported so `--check-config` can warn about it.

/// Result of expanding one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub text: String,
    /// Names referenced but unset, in order of first use.
    pub unset: Vec<String>,
    /// Names referenced and set (for the sources listing).
    pub used: Vec<String>,
}

/// Problems that make the text unusable: `${` without `}` or a bad name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    pub line: usize,
    pub what: String,
}

/// Expand every `${NAME}` in `text` with `env`.
pub fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, Vec<ExpandError>> {
    let mut out = String::with_capacity(text.len());
    let mut unset: Vec<String> = Vec::new();
    let mut used: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
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
            if !valid_name(name) {
                errors.push(ExpandError {
                    line,
                    what: format!(
                        "\"${{{name}}}\" is not a valid \
                    variable reference (letters, digits and _, not starting with a digit)"
                    ),
                });
            } else {
                match env(name) {
                    Some(value) => {
                        out.push_str(&value);
                        push_unique(&mut used, name);
                    }
                    None => push_unique(&mut unset, name),
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(Expanded {
            text: out,
            unset,
            used,
        })
    } else {
        Err(errors)
    }
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
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_and_reports_unset_ones() {
        let out = expand("a: ${TOKEN}\nb: x${MISSING}y\nc: ${MISSING}", &env).unwrap();
        assert_eq!(out.text, "a: s3cret\nb: xy\nc: ");
        assert_eq!(out.unset, vec!["MISSING".to_owned()]);
        assert_eq!(out.used, vec!["TOKEN".to_owned()]);
    }

    #[test]
    fn double_dollar_escapes_a_literal_reference() {
        let out = expand("a: $${TOKEN} costs $5 and $$ ${EMPTY}.", &env).unwrap();
        assert_eq!(out.text, "a: ${TOKEN} costs $5 and $$ .");
        assert!(out.unset.is_empty());
    }

    #[test]
    fn reports_unclosed_and_invalid_references_with_lines() {
        let errors = expand("a: 1\nb: ${1BAD}\nc: ${OPEN", &env).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, 2);
        assert_eq!(errors[1].line, 3);
    }
}
