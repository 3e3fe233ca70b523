//! Canonical request targets: the path rules see is the path dockerd routes.
//!
//! The client's request-target is decoded exactly once here, the same way
//! dockerd's router decodes it, and refused when the two could disagree
//! (SPEC section 5). The original bytes are what we forward, so both sides
//! decode the same input once.

use std::fmt;

/// A request target split into what rules match on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Percent-decoded path without the API version prefix; always starts
    /// with `/`.
    pub path: String,
    /// The version from a `/v1.41`-style prefix, empty when there is none.
    pub api_version: String,
    /// The raw query string without the `?`, not decoded.
    pub query: String,
}

/// Why a request target was refused; every variant maps to 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    NotOriginForm,
    ControlCharacter,
    Backslash,
    InvalidEscape,
    DoubleEncoding,
    EmptySegment,
    DotSegment,
    SecondVersionPrefix,
    NotUtf8,
    QuerySemicolon,
    QueryInvalidEscape,
    /// A container or exec reference that would contain `/`.
    ReferenceWithSlash,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            TargetError::NotOriginForm => "request target must be a path starting with '/'",
            TargetError::ControlCharacter => "request path contains a control character",
            TargetError::Backslash => "request path contains a backslash",
            TargetError::InvalidEscape => "request path contains an invalid percent escape",
            TargetError::DoubleEncoding => {
                "request path is percent-encoded twice ('%' left after decoding)"
            }
            TargetError::EmptySegment => "request path contains an empty segment ('//')",
            TargetError::DotSegment => "request path contains a '.' or '..' segment",
            TargetError::SecondVersionPrefix => "request path has more than one API version prefix",
            TargetError::NotUtf8 => "request path is not valid UTF-8 after decoding",
            TargetError::QuerySemicolon => {
                "query string contains ';', which the engine would silently drop"
            }
            TargetError::QueryInvalidEscape => "query string contains an invalid percent escape",
            TargetError::ReferenceWithSlash => {
                "request path names a container or exec instance by a reference containing \
                 '/' (such as the legacy link alias parent/alias): the engine resolves such \
                 a reference to another container than rules written for one path segment \
                 see; use the container's own name or ID"
            }
        };
        f.write_str(text)
    }
}

impl std::error::Error for TargetError {}

/// Splits and canonicalises a raw request-target.
pub fn canonicalize(raw: &[u8]) -> Result<Target, TargetError> {
    if raw.first() != Some(&b'/') {
        return Err(TargetError::NotOriginForm);
    }
    let (raw_path, raw_query) = match memchr::memchr(b'?', raw) {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => (raw, &raw[raw.len()..]),
    };
    let decoded = decode_path(raw_path)?;
    check_segments(&decoded)?;
    let (api_version, path) = split_version(&decoded);
    if !api_version.is_empty() && (!split_version(path).0.is_empty() || is_version_only(path)) {
        return Err(TargetError::SecondVersionPrefix);
    }
    let query = check_query(raw_query)?;
    let path = if path.is_empty() { "/" } else { path };
    Ok(Target {
        path: path.to_owned(),
        api_version: api_version.to_owned(),
        query,
    })
}

/// [`canonicalize`], then [`check_reference`] for `method`: the target
/// checks the proxy and `explain` make before authentication and rules.
pub fn canonicalize_request(method: &str, raw: &[u8]) -> Result<Target, TargetError> {
    let target = canonicalize(raw)?;
    check_reference(method, &target.path)?;
    Ok(target)
}

/// Refuses a canonical `path` under `/containers/` or `/exec/` whose
/// reference would contain `/` for dockerd's router.
///
/// dockerd routes `/containers/{name:.*}/ACTION` and `DELETE
/// /containers/{name:.*}` with a greedy pattern, and a legacy link registers
/// the name `/parent/alias`, so `/containers/parent/alias/json` inspects the
/// linked container while a rule for `^/containers/[^/]+/json$` does not
/// match. Allowed shapes: `/containers/REF` (also `json`, `create`,
/// `prune`), `/containers/REF/ACTION`, `/containers/REF/attach/ws`, and
/// `/exec/ID/ACTION`; for DELETE only `/containers/REF`.
fn check_reference(method: &str, path: &str) -> Result<(), TargetError> {
    let inner = path.strip_prefix('/').unwrap_or(path);
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    let (rest, max) = if let Some(rest) = inner.strip_prefix("containers/") {
        let max = if method.eq_ignore_ascii_case("DELETE") {
            1
        } else if rest.ends_with("/attach/ws") {
            3
        } else {
            2
        };
        (rest, max)
    } else if let Some(rest) = inner.strip_prefix("exec/") {
        (rest, 2)
    } else {
        return Ok(());
    };
    if rest.split('/').count() > max {
        return Err(TargetError::ReferenceWithSlash);
    }
    Ok(())
}

/// Decodes `%XX` once, refusing anything the engine could read differently.
fn decode_path(raw: &[u8]) -> Result<String, TargetError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let byte = match raw[i] {
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or(TargetError::InvalidEscape)?;
                let value = (hex_value(hex[0]).ok_or(TargetError::InvalidEscape)? << 4)
                    | hex_value(hex[1]).ok_or(TargetError::InvalidEscape)?;
                i += 3;
                if value == b'%' {
                    return Err(TargetError::DoubleEncoding);
                }
                value
            }
            other => {
                i += 1;
                other
            }
        };
        if byte < 0x20 || byte == 0x7f {
            return Err(TargetError::ControlCharacter);
        }
        if byte == b'\\' {
            return Err(TargetError::Backslash);
        }
        out.push(byte);
    }
    let path = String::from_utf8(out).map_err(|_| TargetError::NotUtf8)?;
    // C1 controls (U+0080..U+009F) arrive as two UTF-8 bytes, past the
    // byte checks above.
    if path.chars().any(char::is_control) {
        return Err(TargetError::ControlCharacter);
    }
    Ok(path)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// dockerd answers `//` and dot segments with a redirect to a cleaned path;
/// we refuse them so that the path a rule saw is the path that runs.
fn check_segments(path: &str) -> Result<(), TargetError> {
    // The leading '/' gives an empty first piece; a trailing '/' an empty
    // last one, which dockerd's router treats as the same route.
    let inner = path.strip_prefix('/').unwrap_or(path);
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if path.len() > 1 && inner.is_empty() {
        return Err(TargetError::EmptySegment);
    }
    for segment in inner.split('/') {
        match segment {
            "" if path.len() > 1 => return Err(TargetError::EmptySegment),
            "." | ".." => return Err(TargetError::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

/// Splits `/v1.41/rest` into `("1.41", "/rest")`. The engine's router takes
/// `/v` followed by digits and dots as the version.
fn split_version(path: &str) -> (&str, &str) {
    let Some(rest) = path.strip_prefix("/v") else {
        return ("", path);
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    if end == 0 || !rest[end..].starts_with('/') {
        return ("", path);
    }
    (&rest[..end], &rest[end..])
}

/// `/v1.41/v1.40` leaves `/v1.40`, a version with nothing after it.
fn is_version_only(path: &str) -> bool {
    match path.strip_prefix("/v") {
        Some(rest) => !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
        None => false,
    }
}

/// Go's query parser drops whole pairs it cannot read (a ';', a bad
/// escape), so a rule could see a value the engine ignores: refuse those.
fn check_query(raw: &[u8]) -> Result<String, TargetError> {
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b';' => return Err(TargetError::QuerySemicolon),
            b'%' => {
                let ok = raw
                    .get(i + 1..i + 3)
                    .is_some_and(|h| hex_value(h[0]).is_some() && hex_value(h[1]).is_some());
                if !ok {
                    return Err(TargetError::QueryInvalidEscape);
                }
                i += 3;
                continue;
            }
            b if b < 0x20 || b == 0x7f => return Err(TargetError::ControlCharacter),
            _ => {}
        }
        i += 1;
    }
    String::from_utf8(raw.to_vec()).map_err(|_| TargetError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(raw: &str) -> (String, String) {
        let t = canonicalize(raw.as_bytes()).unwrap();
        (t.api_version, t.path)
    }

    #[test]
    fn strips_one_version_prefix() {
        assert_eq!(
            path_of("/v1.41/containers/json"),
            ("1.41".into(), "/containers/json".into())
        );
        assert_eq!(
            path_of("/containers/json"),
            ("".into(), "/containers/json".into())
        );
        assert_eq!(
            path_of("/v1.41.0/containers/json"),
            ("1.41.0".into(), "/containers/json".into())
        );
        assert_eq!(path_of("/v1/_ping"), ("1".into(), "/_ping".into()));
    }

    #[test]
    fn keeps_query_raw_and_separate() {
        let t = canonicalize(b"/v1.41/containers/json?all=1&filters=%7B%7D").unwrap();
        assert_eq!(t.path, "/containers/json");
        assert_eq!(t.query, "all=1&filters=%7B%7D");
    }

    #[test]
    fn decodes_once() {
        assert_eq!(path_of("/containers/%63reate").1, "/containers/create");
        assert_eq!(path_of("/containers%2Fcreate").1, "/containers/create");
    }

    #[test]
    fn refuses_double_encoding() {
        assert_eq!(
            canonicalize(b"/containers/%2563reate"),
            Err(TargetError::DoubleEncoding)
        );
    }

    #[test]
    fn refuses_invalid_escapes() {
        for raw in ["/containers/%zz", "/containers/%4", "/a%"] {
            assert_eq!(
                canonicalize(raw.as_bytes()),
                Err(TargetError::InvalidEscape),
                "{raw}"
            );
        }
    }

    #[test]
    fn refuses_control_characters_raw_and_encoded() {
        assert_eq!(canonicalize(b"/a%00b"), Err(TargetError::ControlCharacter));
        assert_eq!(canonicalize(b"/a%0ab"), Err(TargetError::ControlCharacter));
        assert_eq!(canonicalize(b"/a\x01b"), Err(TargetError::ControlCharacter));
        assert_eq!(canonicalize(b"/a%7f"), Err(TargetError::ControlCharacter));
        // Found by the fuzzer: a C1 control (U+0087), raw and encoded.
        assert_eq!(
            canonicalize(b"/a\xc2\x87b"),
            Err(TargetError::ControlCharacter)
        );
        assert_eq!(
            canonicalize(b"/a%C2%87b"),
            Err(TargetError::ControlCharacter)
        );
    }

    #[test]
    fn refuses_backslash_raw_and_encoded() {
        assert_eq!(
            canonicalize(b"/containers\\create"),
            Err(TargetError::Backslash)
        );
        assert_eq!(
            canonicalize(b"/containers%5Ccreate"),
            Err(TargetError::Backslash)
        );
    }

    #[test]
    fn refuses_empty_segments() {
        for raw in [
            "//containers/create",
            "/containers//create",
            "/v1.41//containers",
            "//",
        ] {
            assert_eq!(
                canonicalize(raw.as_bytes()),
                Err(TargetError::EmptySegment),
                "{raw}"
            );
        }
        assert_eq!(
            canonicalize(b"/containers%2F%2Fcreate"),
            Err(TargetError::EmptySegment)
        );
    }

    #[test]
    fn refuses_dot_segments_raw_and_encoded() {
        for raw in [
            "/containers/../secrets",
            "/./containers/json",
            "/containers/%2e%2e/secrets",
            "/containers/%2E/json",
            "/v1.41/..",
        ] {
            assert_eq!(
                canonicalize(raw.as_bytes()),
                Err(TargetError::DotSegment),
                "{raw}"
            );
        }
    }

    #[test]
    fn refuses_second_version_prefix() {
        for raw in [
            "/v1.41/v1.41/containers/json",
            "/v1.41/v1.40",
            "/v1/v2/_ping",
        ] {
            assert_eq!(
                canonicalize(raw.as_bytes()),
                Err(TargetError::SecondVersionPrefix),
                "{raw}"
            );
        }
    }

    #[test]
    fn refuses_non_origin_form() {
        assert_eq!(canonicalize(b"*"), Err(TargetError::NotOriginForm));
        assert_eq!(
            canonicalize(b"http://x/containers/json"),
            Err(TargetError::NotOriginForm)
        );
    }

    #[test]
    fn refuses_query_the_engine_would_read_differently() {
        assert_eq!(
            canonicalize(b"/containers/json?all=1;x=2"),
            Err(TargetError::QuerySemicolon)
        );
        assert_eq!(
            canonicalize(b"/containers/json?all=%zz"),
            Err(TargetError::QueryInvalidEscape)
        );
    }

    #[test]
    fn refuses_container_references_with_a_slash() {
        for (method, path) in [
            ("GET", "/containers/parent/alias/json"),
            ("POST", "/containers/parent/alias/exec"),
            ("POST", "/containers/parent/alias/kill"),
            ("GET", "/containers/parent/alias/attach/ws"),
            ("GET", "/containers/a/b/c/logs"),
            ("POST", "/containers/parent/alias/exec/"),
            ("DELETE", "/containers/parent/alias"),
            ("delete", "/containers/parent/alias"),
            ("DELETE", "/containers/a/json"),
            ("DELETE", "/containers/a/attach/ws"),
            ("GET", "/exec/a/b/json"),
            ("POST", "/exec/a/b/start"),
        ] {
            assert_eq!(
                check_reference(method, path),
                Err(TargetError::ReferenceWithSlash),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn request_targets_are_checked_for_references_after_the_version_prefix() {
        assert_eq!(
            canonicalize_request("GET", b"/v1.41/containers/parent/alias/json").map(|_| ()),
            Err(TargetError::ReferenceWithSlash)
        );
        let target = canonicalize_request("GET", b"/v1.41/containers/abc/json?size=1").unwrap();
        assert_eq!(
            (&*target.api_version, &*target.path, &*target.query),
            ("1.41", "/containers/abc/json", "size=1")
        );
    }

    #[test]
    fn accepts_single_segment_references_and_fixed_container_paths() {
        for (method, path) in [
            ("GET", "/containers/json"),
            ("POST", "/containers/create"),
            ("POST", "/containers/prune"),
            ("GET", "/containers"),
            ("GET", "/containers/abc/json"),
            ("GET", "/containers/abc/json/"),
            ("POST", "/containers/abc/exec"),
            ("GET", "/containers/abc/attach/ws"),
            ("POST", "/containers/abc/attach"),
            ("DELETE", "/containers/abc"),
            ("DELETE", "/containers/abc/"),
            ("GET", "/exec/0123abcd/json"),
            ("POST", "/exec/0123abcd/start"),
            ("GET", "/images/library/busybox/json"),
            ("DELETE", "/images/registry.example/a/b"),
            ("GET", "/containersx/a/b/c"),
            ("GET", "/"),
        ] {
            assert_eq!(check_reference(method, path), Ok(()), "{method} {path}");
        }
    }

    #[test]
    fn version_lookalikes_are_plain_paths() {
        assert_eq!(path_of("/version"), ("".into(), "/version".into()));
        assert_eq!(path_of("/v1.41"), ("".into(), "/v1.41".into()));
        assert_eq!(path_of("/vx/_ping"), ("".into(), "/vx/_ping".into()));
    }
}
