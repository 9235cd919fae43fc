//! The stand-in's error answers, in the two shapes a real InsForge produces: its own
//! `{error, message, statusCode, nextActions?}` (authentication, table names, request bodies) and PostgREST's
//! `{code, details, hint, message}` (everything the database or the query parser refuses), with PostgREST's
//! SQLSTATE → HTTP status table.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug)]
pub(super) struct RecordsApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl RecordsApiError {
    pub fn insforge(status: StatusCode, error: &str, message: impl Into<String>, next_actions: &str) -> Self {
        RecordsApiError {
            status,
            body: json!({
                "error": error,
                "message": message.into(),
                "statusCode": status.as_u16(),
                "nextActions": next_actions,
            }),
        }
    }

    /// InsForge's shape without `nextActions`: an `AppError` thrown without one, whose `undefined` field
    /// `res.json` leaves out (InsForge v2.3.1 `backend/src/utils/response.ts`, `errorResponse`).
    pub fn insforge_bare(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        RecordsApiError {
            status,
            body: json!({ "error": error, "message": message.into(), "statusCode": status.as_u16() }),
        }
    }

    pub fn postgrest(status: StatusCode, code: &str, message: impl Into<String>, details: Option<String>) -> Self {
        RecordsApiError {
            status,
            body: json!({ "code": code, "details": details, "hint": null, "message": message.into() }),
        }
    }

    pub fn no_token() -> Self {
        Self::insforge(
            StatusCode::UNAUTHORIZED,
            "AUTH_INVALID_CREDENTIALS",
            "No token provided",
            "Check the token is valid or login to get a new token.",
        )
    }

    /// "Invalid token" and "Invalid token subject": thrown by `TokenManager.verifyToken` without `nextActions`
    /// (InsForge v2.3.1 `backend/src/infra/security/token.manager.ts`), and passed on as they are by the `auth.ts`
    /// middleware, which adds its own `nextActions` only to errors that are not `AppError`s.
    pub fn invalid_token(message: &str) -> Self {
        Self::insforge_bare(StatusCode::UNAUTHORIZED, "AUTH_UNAUTHORIZED", message)
    }

    pub fn invalid_api_key() -> Self {
        Self::insforge(
            StatusCode::UNAUTHORIZED,
            "AUTH_INVALID_API_KEY",
            "Invalid API key",
            "Check the API key is valid or generate a new API key.",
        )
    }

    /// A role InsForge cannot route (docs/insforge.md §2.4): thrown by its proxy service, without `nextActions`.
    pub fn invalid_role() -> Self {
        Self::insforge_bare(StatusCode::FORBIDDEN, "AUTH_UNAUTHORIZED", "Invalid user role claim")
    }

    /// A table name with a double quote or a control character, which InsForge refuses before asking PostgREST.
    pub fn invalid_table_name() -> Self {
        Self::insforge_bare(
            StatusCode::BAD_REQUEST,
            "DATABASE_VALIDATION_ERROR",
            "Invalid table name: cannot contain quotes or control characters",
        )
    }

    /// A table PostgREST does not know: InsForge passes PostgREST 12's answer through, 404 with an empty object
    /// (docs/insforge.md §3.2; `PGRST205` only came with PostgREST 13).
    pub fn unknown_table() -> Self {
        RecordsApiError { status: StatusCode::NOT_FOUND, body: json!({}) }
    }

    /// An injected failure, which touches nothing: worded as InsForge words a request that never reached PostgREST
    /// (its proxy's connection refused, `postgrest-proxy.service.ts`), so that a client may read it as such.
    pub fn injected(status: StatusCode) -> Self {
        Self::insforge(
            status,
            "INTERNAL_ERROR",
            format!("connect ECONNREFUSED 127.0.0.1:5430 (injected failure {}, InsForge stand-in)", status.as_u16()),
            "Retry later.",
        )
    }

    /// InsForge's answer when its connection to PostgREST broke during a write: the error middleware's default for
    /// an axios error without a response (InsForge v2.3.1 `backend/src/api/middlewares/error.ts`), whose message is
    /// Node's ("socket hang up"); no `nextActions`. The write may have committed before the connection broke.
    pub fn connection_lost() -> Self {
        Self::insforge_bare(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "socket hang up")
    }

    /// A query-string PostgREST could not parse.
    pub fn parse(message: impl Into<String>) -> Self {
        Self::postgrest(StatusCode::BAD_REQUEST, "PGRST100", message, None)
    }

    pub fn invalid_body(message: &str) -> Self {
        Self::postgrest(StatusCode::BAD_REQUEST, "PGRST102", message, None)
    }

    pub fn unknown_column(table: &str, column: &str) -> Self {
        Self::postgrest(StatusCode::BAD_REQUEST, "42703", format!("column {table}.{column} does not exist"), None)
    }

    pub fn column_not_in_payload(table: &str, column: &str) -> Self {
        Self::postgrest(
            StatusCode::BAD_REQUEST,
            "PGRST204",
            format!("Could not find the '{column}' column of '{table}' in the schema cache"),
            None,
        )
    }

    /// An error from PostgreSQL, mapped the way PostgREST maps it.
    pub fn database(error: &sqlx::Error, role_is_anon: bool) -> Self {
        let Some(db) = error.as_database_error() else {
            return Self::postgrest(
                StatusCode::SERVICE_UNAVAILABLE,
                "PGRST001",
                "Database client error. Retrying the connection.",
                Some(error.to_string()),
            );
        };
        let code = db.code().map(|c| c.into_owned()).unwrap_or_else(|| "XX000".to_owned());
        let (details, hint) = match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            Some(pg) => (pg.detail().map(str::to_owned), pg.hint().map(str::to_owned)),
            None => (None, None),
        };
        if code == "PGRST" {
            return Self::raised_pgrst(db.message(), details.as_deref());
        }
        let status = status_for_sqlstate(&code, db.message(), role_is_anon);
        RecordsApiError {
            status,
            body: json!({ "code": code, "details": details, "hint": hint, "message": db.message() }),
        }
    }

    /// `RAISE SQLSTATE 'PGRST' USING message = '{"code":…,"message":…}', detail = '{"status":…,"headers":{…}}'`:
    /// the function chooses the status and the body (PostgREST v12.2.12 `src/PostgREST/Error.hs`,
    /// `parseRaisePGRST`). Headers it asks for are not sent: InsForge copies no PostgREST header onto an error.
    /// When either JSON is malformed, PostgREST answers 500 `PGRST121` instead.
    fn raised_pgrst(message: &str, detail: Option<&str>) -> Self {
        let parse_error = |details: String, hint: &str| {
            Self::postgrest(
                StatusCode::INTERNAL_SERVER_ERROR,
                "PGRST121",
                "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error",
                Some(details),
            )
            .with_hint(hint)
        };
        const MESSAGE_HINT: &str = "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and optional keys: 'details', 'hint'.";
        const DETAIL_HINT: &str =
            "DETAIL must be a JSON object with obligatory keys: 'status', 'headers' and optional key: 'status_text'.";
        let Some(body) = parse_raise_message(message) else {
            return parse_error(format!("Invalid JSON value for MESSAGE: '{message}'"), MESSAGE_HINT);
        };
        let Some(detail) = detail else {
            return parse_error("DETAIL is missing in the RAISE statement".to_owned(), DETAIL_HINT);
        };
        let Some(status) = parse_raise_status(detail) else {
            return parse_error(format!("Invalid JSON value for DETAIL: '{detail}'"), DETAIL_HINT);
        };
        RecordsApiError { status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body }
    }

    fn with_hint(mut self, hint: &str) -> Self {
        self.body["hint"] = Value::from(hint);
        self
    }
}

/// The body a `PGRST` raise asks for: `code` and `message` strings, `details` and `hint` strings or absent.
fn parse_raise_message(message: &str) -> Option<Value> {
    let Value::Object(object) = serde_json::from_str::<Value>(message).ok()? else {
        return None;
    };
    let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
    let optional = |key: &str| match object.get(key) {
        None | Some(Value::Null) => Some(Value::Null),
        Some(Value::String(text)) => Some(Value::from(text.as_str())),
        Some(_) => None,
    };
    Some(
        json!({ "code": text("code")?, "message": text("message")?, "details": optional("details")?, "hint": optional("hint")? }),
    )
}

/// The status a `PGRST` raise asks for: `status` an integer, `headers` an object of strings, `status_text` a
/// string or absent.
fn parse_raise_status(detail: &str) -> Option<u16> {
    let Value::Object(object) = serde_json::from_str::<Value>(detail).ok()? else {
        return None;
    };
    let headers = object.get("headers")?.as_object()?;
    if !headers.values().all(Value::is_string)
        || !matches!(object.get("status_text"), None | Some(Value::Null | Value::String(_)))
    {
        return None;
    }
    let status = object.get("status")?;
    let status = status.as_i64().or_else(|| status.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))?;
    // A status no HTTP server could send becomes 500 (the caller's fallback) rather than a parse error.
    Some(u16::try_from(status).unwrap_or(0))
}

/// PostgREST's SQLSTATE → HTTP status table, exactly as PostgREST v12.2.12 `src/PostgREST/Error.hs`
/// (`pgErrorStatus`) has it, in its order: the first matching line wins. `message` matters for two codes.
/// `role_is_anon` is PostgREST's "not authenticated" (`Just authRole /= configDbAnonRole`, `src/PostgREST/App.hs`).
pub(super) fn status_for_sqlstate(code: &str, message: &str, role_is_anon: bool) -> StatusCode {
    let class = code.get(..2).unwrap_or("");
    let status = match code {
        _ if class == "08" => 503, // connection exception
        _ if class == "09" => 500, // triggered action exception
        _ if class == "0L" => 403, // invalid grantor
        _ if class == "0P" => 403, // invalid role specification
        "23503" | "23505" => 409,  // foreign key, unique violation
        "25006" => 405,            // read_only_sql_transaction: a write during a GET
        // cardinality_violation: a client error only for pg-safeupdate's "DELETE requires a WHERE clause";
        // otherwise a server error ("more than one row returned by a subquery used as an expression").
        "21000" => {
            if message.ends_with("requires a WHERE clause") {
                400
            } else {
                500
            }
        }
        _ if class == "25" => 500, // invalid transaction state
        _ if class == "28" => 403, // invalid authorization specification
        _ if matches!(class, "2D" | "38" | "39" | "3B" | "40") => 500,
        "53400" => 500,                           // configuration limit exceeded
        _ if class == "53" => 503,                // insufficient resources
        _ if matches!(class, "54" | "55") => 500, // program limit exceeded, object not in prerequisite state
        "57P01" => 503,                           // terminating connection due to administrator command
        _ if matches!(class, "57" | "58" | "F0" | "HV") => 500,
        "P0001" => 400, // RAISE's default
        _ if matches!(class, "P0" | "XX") => 500,
        // PostgREST asks for XML aggregation only for XML output, which the records API never produces.
        "42883" => {
            if message.starts_with("function xmlagg(") {
                406
            } else {
                404
            }
        }
        "42P01" => 404,
        "42P17" => 500, // infinite recursion (in a policy)
        // Insufficient privilege: "who are you?" for the anonymous role, "not allowed" for everyone else.
        "42501" => {
            if role_is_anon {
                401
            } else {
                403
            }
        }
        // `RAISE SQLSTATE 'PT404'`: the status is the last three characters, with the message as reason phrase.
        _ if class == "PT" => match code[2..].parse() {
            Ok(status) if code[2..].bytes().all(|b| b.is_ascii_digit()) => status,
            _ => 500,
        },
        _ => 400,
    };
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for RecordsApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_like_postgrest() {
        // Every line of PostgREST v12.2.12's `pgErrorStatus`, with the codes whose answer differs from their
        // class's next to it.
        for (code, anon, status) in [
            ("42501", true, 401),
            ("42501", false, 403),
            ("23514", false, 400),
            ("23502", false, 400),
            ("22P02", false, 400),
            ("22001", false, 400),
            ("23505", false, 409),
            ("23503", false, 409),
            ("42P01", false, 404),
            ("42883", false, 404),
            ("42703", false, 400),
            ("42P17", false, 500),
            ("08006", false, 503),
            ("09000", false, 500),
            ("0L000", false, 403),
            ("0P000", false, 403),
            ("21000", false, 500),
            ("25006", false, 405),
            ("25P02", false, 500),
            ("28000", false, 403),
            ("2D000", false, 500),
            ("38000", false, 500),
            ("39000", false, 500),
            ("3B000", false, 500),
            ("40001", false, 500),
            ("40P01", false, 500),
            ("53300", false, 503),
            ("53200", false, 503),
            ("53400", false, 500),
            ("54000", false, 500),
            ("54001", false, 500),
            ("55P03", false, 500),
            ("57014", false, 500),
            ("57P01", false, 503),
            ("57P02", false, 500),
            ("58000", false, 500),
            ("F0000", false, 500),
            ("HV000", false, 500),
            ("P0001", false, 400),
            ("P0002", false, 500),
            ("XX000", false, 500),
            ("PT404", false, 404),
            ("PT418", true, 418),
            ("PT4X4", false, 500),
            ("PT040", false, 500),
        ] {
            assert_eq!(status_for_sqlstate(code, "some message", anon), status, "{code}");
        }
    }

    #[test]
    fn two_codes_depend_on_the_message() {
        assert_eq!(
            status_for_sqlstate("21000", "more than one row returned by a subquery used as an expression", false),
            500
        );
        assert_eq!(status_for_sqlstate("21000", "DELETE requires a WHERE clause", false), 400);
        assert_eq!(status_for_sqlstate("42883", "function public.nope() does not exist", false), 404);
        assert_eq!(status_for_sqlstate("42883", "function xmlagg(text) does not exist", false), 406);
    }

    #[test]
    fn a_pgrst_raise_chooses_its_status_and_body() {
        let raised = RecordsApiError::raised_pgrst(
            r#"{"code":"123","message":"Payment required","hint":"Upgrade"}"#,
            Some(r#"{"status":402,"headers":{"X-Powered-By":"Nerd Rage"}}"#),
        );
        assert_eq!(raised.status, 402);
        assert_eq!(
            raised.body,
            json!({ "code": "123", "message": "Payment required", "details": null, "hint": "Upgrade" })
        );

        for (message, detail, details) in [
            ("not json", Some(r#"{"status":402,"headers":{}}"#), "Invalid JSON value for MESSAGE: 'not json'"),
            (
                r#"{"message":"no code"}"#,
                Some(r#"{"status":402,"headers":{}}"#),
                r#"Invalid JSON value for MESSAGE: '{"message":"no code"}'"#,
            ),
            (r#"{"code":"1","message":"m"}"#, None, "DETAIL is missing in the RAISE statement"),
            (
                r#"{"code":"1","message":"m"}"#,
                Some(r#"{"status":402}"#),
                r#"Invalid JSON value for DETAIL: '{"status":402}'"#,
            ),
            (
                r#"{"code":"1","message":"m"}"#,
                Some(r#"{"status":"402","headers":{}}"#),
                r#"Invalid JSON value for DETAIL: '{"status":"402","headers":{}}'"#,
            ),
        ] {
            let refused = RecordsApiError::raised_pgrst(message, detail);
            assert_eq!(
                (refused.status.as_u16(), &refused.body["code"]),
                (500, &json!("PGRST121")),
                "{message} {detail:?}"
            );
            assert_eq!(refused.body["details"], details);
        }
    }

    #[test]
    fn token_errors_carry_no_next_actions() {
        for error in
            [RecordsApiError::invalid_token("Invalid token"), RecordsApiError::invalid_token("Invalid token subject")]
        {
            assert_eq!(error.status, 401);
            assert!(error.body.get("nextActions").is_none(), "{}", error.body);
        }
    }
}
