//! Refusal of form bodies, judged by the `Content-Type` the engine reads.
//!
//! dockerd's handlers read parameters with `r.Form.Get` and `r.FormValue`,
//! and Go's `net/http` fills those from an `application/x-www-form-urlencoded`
//! body (`ParseForm`) or a `multipart/form-data` body (`ParseMultipartForm`,
//! called by `FormValue`), overriding the query that rules checked (SPEC
//! section 5). [`check`] is called by `admit` before any rule runs.
//!
//! Go finds the media type with `mime.ParseMediaType`: the part before `;`,
//! lower-cased with Unicode simple case mapping and trimmed of Unicode
//! whitespace. Rather than copy those tables, a media type that is not
//! plain ASCII once ASCII whitespace is trimmed is refused, and a plain
//! ASCII one compares case-insensitively, which is then exactly Go's result.

/// The two media types whose bodies Go merges into `r.Form`.
const FORM_TYPES: &[&[u8]] = &[b"application/x-www-form-urlencoded", b"multipart/form-data"];

/// Why a request's `Content-Type` is refused; each maps to 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormRefusal {
    /// Several `Content-Type` field lines that are not all equal.
    Conflicting,
    /// The media type holds non-ASCII or control characters.
    NotPlainAscii,
    /// `application/x-www-form-urlencoded`.
    UrlEncoded,
    /// `multipart/form-data`.
    Multipart,
}

impl FormRefusal {
    /// The message the client sees: what, why, and how to fix it.
    pub fn message(&self) -> &'static str {
        match self {
            FormRefusal::Conflicting => {
                "request has several different Content-Type headers: the engine reads only \
                 the first, so the proxy cannot tell how the body will be read; send one \
                 Content-Type header"
            }
            FormRefusal::NotPlainAscii => {
                "request Content-Type has non-ASCII or control characters in its media type: \
                 the engine would normalise them and could read the body as a form; send a \
                 plain media type such as application/json"
            }
            FormRefusal::UrlEncoded => {
                "form-encoded request bodies are refused: the engine would read parameters \
                 from them that rules cannot see; send them in the query"
            }
            FormRefusal::Multipart => {
                "multipart/form-data request bodies are refused: the engine would read \
                 parameters from them that rules cannot see; send them in the query"
            }
        }
    }
}

/// Refuses a request, given its header fields, whose body the engine could
/// read as a form.
pub fn check(headers: &[(&str, &[u8])]) -> Result<(), FormRefusal> {
    let mut values = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| *value);
    let Some(first) = values.next() else {
        return Ok(());
    };
    // Go's Header.Get takes the first line; differing lines are ambiguous.
    if values.any(|other| other != first) {
        return Err(FormRefusal::Conflicting);
    }
    check_value(first)
}

/// Judges one `Content-Type` value as Go's `mime.ParseMediaType` reads it.
fn check_value(value: &[u8]) -> Result<(), FormRefusal> {
    let media = value.split(|&b| b == b';').next().unwrap_or(b"");
    let media = trim_go_ascii(media);
    if media
        .iter()
        .any(|&b| !(b == b' ' || b == b'\t' || b.is_ascii_graphic()))
    {
        return Err(FormRefusal::NotPlainAscii);
    }
    match FORM_TYPES
        .iter()
        .position(|form| media.eq_ignore_ascii_case(form))
    {
        Some(0) => Err(FormRefusal::UrlEncoded),
        Some(_) => Err(FormRefusal::Multipart),
        None => Ok(()),
    }
}

/// Trims the ASCII whitespace Go's `strings.TrimSpace` trims, including
/// the vertical tab that `u8::is_ascii_whitespace` leaves.
fn trim_go_ascii(bytes: &[u8]) -> &[u8] {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
    let start = bytes.iter().position(|b| !space(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_url_encoded_in_any_ascii_case_and_with_parameters() {
        for value in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-Urlencoded; charset=utf-8",
            "  application/x-www-form-urlencoded\t;x=1",
            "application/x-www-form-urlencoded\x0b",
            "application/x-www-form-urlencoded;",
        ] {
            assert_eq!(
                check_value(value.as_bytes()),
                Err(FormRefusal::UrlEncoded),
                "{value:?}"
            );
        }
    }

    #[test]
    fn refuses_multipart_form_data() {
        for value in [
            "multipart/form-data; boundary=x",
            "MULTIPART/FORM-DATA",
            " multipart/form-data ;boundary=\"a b\"",
        ] {
            assert_eq!(
                check_value(value.as_bytes()),
                Err(FormRefusal::Multipart),
                "{value:?}"
            );
        }
    }

    #[test]
    fn refuses_media_types_go_would_normalise_with_unicode_rules() {
        // Go trims U+00A0, U+0085, U+2003, U+3000 and lower-cases U+0130
        // to "i"; each of these is a form body for dockerd.
        for value in [
            "\u{a0}application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded\u{85}",
            "\u{2003}multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded\u{3000};charset=utf-8",
            "applİcation/x-www-form-urlencoded",
            "application/json\u{a0}",
        ] {
            assert_eq!(
                check_value(value.as_bytes()),
                Err(FormRefusal::NotPlainAscii),
                "{value:?}"
            );
        }
        assert_eq!(
            check_value(b"application/x-www-form-urlencoded\xff"),
            Err(FormRefusal::NotPlainAscii)
        );
        assert_eq!(
            check_value(b"application/\x01json"),
            Err(FormRefusal::NotPlainAscii)
        );
    }

    #[test]
    fn accepts_other_media_types_and_non_ascii_parameters() {
        for value in [
            "",
            "application/json",
            "application/json; charset=utf-8",
            "application/x-tar",
            "text/plain",
            "application/x-www-form-urlencodedx",
            // Only the media type decides; Go ignores broken parameters
            // when it picks the media type.
            "application/json; name=\u{e9}",
        ] {
            assert_eq!(check_value(value.as_bytes()), Ok(()), "{value:?}");
        }
    }

    fn check_head(headers: &str) -> Result<(), FormRefusal> {
        let raw = format!("POST /build HTTP/1.1\r\nHost: docker\r\n{headers}\r\n");
        match crate::http::head::parse_request(raw.as_bytes(), 64 * 1024) {
            Ok(Some(head)) => check(&head.headers().collect::<Vec<_>>()),
            other => panic!("test head did not parse: {other:?}"),
        }
    }

    #[test]
    fn judges_repeated_content_type_headers() {
        assert_eq!(check_head(""), Ok(()));
        assert_eq!(
            check_head("Content-Type: application/json\r\ncontent-type: application/json\r\n"),
            Ok(())
        );
        assert_eq!(
            check_head(
                "Content-Type: application/json\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\n"
            ),
            Err(FormRefusal::Conflicting)
        );
        assert_eq!(
            check_head(
                "content-type: multipart/form-data; boundary=x\r\n\
                 Content-Type: application/json\r\n"
            ),
            Err(FormRefusal::Conflicting)
        );
        assert_eq!(
            check_head("Content-Type: multipart/form-data; boundary=x\r\n"),
            Err(FormRefusal::Multipart)
        );
    }
}
