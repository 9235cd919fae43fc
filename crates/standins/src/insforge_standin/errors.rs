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

    pub fn injected(status: StatusCode) -> Self {
        Self::insforge(
            status,
            "INTERNAL_ERROR",
            format!("Injected failure {} (InsForge stand-in test control)", status.as_u16()),
            "Retry later.",
        )
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
        let status = status_for_sqlstate(&code, role_is_anon);
        RecordsApiError {
            status,
            body: json!({ "code": code, "details": details, "hint": hint, "message": db.message() }),
        }
    }
}

/// PostgREST's table (docs: "Errors" → "SQLSTATE to HTTP status").
pub(super) fn status_for_sqlstate(code: &str, role_is_anon: bool) -> StatusCode {
    let status = match code {
        "23503" | "23505" => 409,
        "25006" => 405,
        "42883" | "42P01" => 404,
        "42P17" => 500,
        "P0001" => 400,
        // Insufficient privilege: "who are you?" for the anonymous role, "not allowed" for everyone else.
        "42501" => {
            if role_is_anon {
                401
            } else {
                403
            }
        }
        _ => match code.get(..2).unwrap_or("") {
            "08" | "53" => 503,
            "0L" | "0P" | "28" => 403,
            "54" => 413,
            "09" | "25" | "2D" | "38" | "39" | "3B" | "40" | "55" | "57" | "58" | "F0" | "HV" | "P0" | "XX" => 500,
            _ => 400,
        },
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
        for (code, anon, status) in [
            ("42501", true, 401),
            ("42501", false, 403),
            ("23514", false, 400),
            ("23502", false, 400),
            ("22P02", false, 400),
            ("22001", false, 400),
            ("23505", false, 409),
            ("42P01", false, 404),
            ("42703", false, 400),
            ("53300", false, 503),
            ("XX000", false, 500),
        ] {
            assert_eq!(status_for_sqlstate(code, anon), status, "{code}");
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
