//! What InsForge makes of a request body before the records route (or PostgREST) sees it.
//!
//! InsForge mounts Express's `express.json()` in front of every API route (InsForge v2.3.1
//! `backend/src/server.ts`), and the records route forwards the parsed `req.body`, not the bytes. body-parser
//! (`lib/types/json.js`, with type-is and media-typer) parses a body only when its `Content-Type` is exactly
//! `application/json` (any case, any well-formed parameters); for any other type, or none, `req.body` stays `{}`,
//! and that `{}` is what a POST or PATCH sends to PostgREST: a row of column defaults (or a not-null violation),
//! or an update of nothing. A JSON body that does not parse is refused by InsForge itself, before authentication,
//! in InsForge's own shape (`backend/src/api/middlewares/error.ts`).

use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value};

use super::errors::RecordsApiError;

/// `req.body` as Express leaves it.
pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Value, RecordsApiError> {
    let empty = || Ok(Value::Object(Map::new()));
    // type-is's `hasBody`: a body is announced by `Transfer-Encoding` or `Content-Length`, whatever its length.
    if !headers.contains_key(header::TRANSFER_ENCODING) && !headers.contains_key(header::CONTENT_LENGTH) {
        return empty();
    }
    let Some(charset) = headers.get(header::CONTENT_TYPE).and_then(|value| json_charset(value.as_bytes())) else {
        return empty();
    };
    // RFC 7159 §8.1, as body-parser asserts it: 415 `charset.unsupported`, which InsForge's error middleware turns
    // into a 500 `INTERNAL_ERROR` with the error's message (it has no branch for that error type).
    if !charset.is_empty() && !charset.starts_with("utf-") {
        return Err(RecordsApiError::insforge_bare(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("unsupported charset \"{}\"", charset.to_ascii_uppercase()),
        ));
    }
    // raw-body decodes with iconv-lite, which replaces malformed UTF-8 and strips a byte-order mark. (Other
    // `utf-` charsets are read as UTF-8 here; InsForge would decode UTF-16 or UTF-32.)
    let text = String::from_utf8_lossy(body);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.is_empty() {
        return empty();
    }
    // `strict: true` (the default): only an object or an array, after JSON whitespace.
    let first = text.trim_start_matches([' ', '\t', '\n', '\r']).chars().next();
    if !matches!(first, Some('{' | '[')) {
        return Err(invalid_json(format!(
            "Unexpected token {} in JSON at position {}",
            first.map_or_else(String::new, String::from),
            text.len() - text.trim_start_matches([' ', '\t', '\n', '\r']).len()
        )));
    }
    // (The message is serde_json's, not V8's: nobody should parse it.)
    serde_json::from_str(text).map_err(|error| invalid_json(format!("{error} in JSON")))
}

/// body-parser's `SyntaxError`, answered by InsForge's error middleware.
fn invalid_json(message: String) -> RecordsApiError {
    RecordsApiError::insforge(
        StatusCode::BAD_REQUEST,
        "INVALID_INPUT",
        message,
        "Please ensure your request body contains valid JSON",
    )
}

/// When the media type is `application/json` as media-typer 0.3 parses it (type-is then compares the type and
/// subtype and nothing else), the `charset` parameter, lower-cased (`""` when absent). `None` for any other type,
/// and for a header media-typer refuses (a parameter without `=`, a dangling `;`, …): type-is then says "not
/// JSON".
fn json_charset(value: &[u8]) -> Option<String> {
    let (media_type, mut rest) = match value.iter().position(|&b| b == b';') {
        Some(index) => value.split_at(index),
        None => (value, &[][..]),
    };
    let media_type = trim_spaces(media_type);
    if !media_type.eq_ignore_ascii_case(b"application/json") {
        return None;
    }
    let mut charset = String::new();
    // Each parameter: `; *token *= *(token|quoted-string) *`, back to back up to the end of the header.
    while !rest.is_empty() {
        rest = rest.strip_prefix(b";")?;
        rest = skip_spaces(rest);
        let key_len = rest.iter().take_while(|&&b| is_token(b)).count();
        if key_len == 0 {
            return None;
        }
        let key = &rest[..key_len];
        rest = skip_spaces(&rest[key_len..]);
        rest = skip_spaces(rest.strip_prefix(b"=")?);
        let parsed;
        (parsed, rest) = parameter_value(rest)?;
        rest = skip_spaces(rest);
        if key.eq_ignore_ascii_case(b"charset") {
            charset = String::from_utf8_lossy(&parsed).to_ascii_lowercase();
        }
    }
    Some(charset)
}

/// A token, or a quoted string with its `\x` escapes resolved; and what follows it.
fn parameter_value(input: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let Some(mut rest) = input.strip_prefix(b"\"") else {
        let len = input.iter().take_while(|&&b| is_token(b)).count();
        return (len > 0).then(|| (input[..len].to_vec(), &input[len..]));
    };
    let mut value = Vec::new();
    loop {
        match *rest {
            [b'"', ref after @ ..] => return Some((value, after)),
            [b'\\', escaped @ 0x20..=0x7e, ref after @ ..] => {
                value.push(escaped);
                rest = after;
            }
            [b @ (b' ' | b'!' | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff), ref after @ ..] => {
                value.push(b);
                rest = after;
            }
            _ => return None,
        }
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn skip_spaces(input: &[u8]) -> &[u8] {
    let len = input.iter().take_while(|&&b| b == b' ').count();
    &input[len..]
}

fn trim_spaces(input: &[u8]) -> &[u8] {
    let input = skip_spaces(input);
    let len = input.iter().rev().take_while(|&&b| b == b' ').count();
    &input[..input.len() - len]
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("15"));
        if let Some(content_type) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).expect("header"));
        }
        headers
    }

    #[test]
    fn only_application_json_is_parsed() {
        let body = br#"{"title":"x"}"#;
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json ; charset = \"utf-8\" ",
            "application/json; charset=utf-8; q=1",
        ] {
            assert_eq!(parse(&headers(Some(json)), body).expect(json), json!({ "title": "x" }), "{json}");
        }
        for other in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/vnd.api+json"),
            Some("application/merge-patch+json"),
            Some("application/jsonx"),
            Some("application/json;"),
            Some("application/json; charset"),
            Some("application/json, text/plain"),
        ] {
            assert_eq!(parse(&headers(other), body).expect("an empty object"), json!({}), "{other:?}");
        }
        assert_eq!(parse(&HeaderMap::new(), body).expect("no body announced"), json!({}));
    }

    #[test]
    fn json_bodies_are_parsed_as_body_parser_does() {
        let json = headers(Some("application/json"));
        assert_eq!(parse(&json, b"").expect("empty"), json!({}));
        assert_eq!(parse(&json, "\u{feff} [1]".as_bytes()).expect("a BOM is stripped"), json!([1]));
        for refused in [&b"{not json"[..], b"\"a string\"", b"42", b"null", b" ", b"[1"] {
            let error = parse(&json, refused).expect_err("refused");
            assert_eq!(error.status, 400);
            assert_eq!(error.body["error"], "INVALID_INPUT", "{}", String::from_utf8_lossy(refused));
            assert_eq!(error.body["nextActions"], "Please ensure your request body contains valid JSON");
        }
        let latin1 = parse(&headers(Some("application/json; charset=latin1")), b"{}").expect_err("unsupported");
        assert_eq!(latin1.status, 500);
        assert_eq!(
            latin1.body,
            json!({ "error": "INTERNAL_ERROR", "message": "unsupported charset \"LATIN1\"", "statusCode": 500 })
        );
    }
}
