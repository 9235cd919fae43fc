//! PostgREST's query language, as much of it as the stand-in serves, turned into parameterised SQL.
//!
//! Table and column names are only ever the ones read from the catalog for this request, quoted; every value
//! from the request is a bind parameter, cast to the column's type by PostgreSQL (so a malformed value is a
//! `22P02` error from the database, answered as 400, never a string spliced into SQL).

use axum::http::StatusCode;
use serde_json::Value;

use super::errors::RecordsApiError;

/// A table of the `public` schema as the catalog describes it.
#[derive(Debug, Clone)]
pub(super) struct Table {
    pub name: String,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone)]
pub(super) struct Column {
    pub name: String,
    /// `format_type()` of the column: a type name PostgreSQL itself produced, safe to use in a cast.
    pub sql_type: String,
}

impl Table {
    fn column(&self, name: &str) -> Result<&Column, RecordsApiError> {
        self.columns.iter().find(|c| c.name == name).ok_or_else(|| RecordsApiError::unknown_column(&self.name, name))
    }

    fn qualified(&self) -> String {
        format!("public.{}", quote_ident(&self.name))
    }
}

pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A value bound to a `$n` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Param {
    Text(String),
    TextArray(Vec<String>),
    Int(i64),
}

/// Parameterised SQL returning one JSON text per row, in order.
#[derive(Debug)]
pub(super) struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Statement {
    fn new() -> Self {
        Statement { sql: String::new(), params: Vec::new() }
    }

    /// Adds a parameter and returns its placeholder.
    fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        format!("${}", self.params.len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    Read,
    Insert,
    Update,
    Delete,
}

/// What the query string asks for.
#[derive(Debug, Default)]
pub(super) struct QueryParams {
    select: Option<Vec<String>>,
    filters: Vec<Filter>,
    order: Vec<OrderTerm>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Debug)]
struct Filter {
    column: String,
    negated: bool,
    op: FilterOp,
}

#[derive(Debug)]
enum FilterOp {
    Compare(&'static str, String),
    Like { case_insensitive: bool, pattern: String },
    Is(&'static str),
    In(Vec<String>),
}

#[derive(Debug)]
struct OrderTerm {
    column: String,
    descending: bool,
    nulls: Option<&'static str>,
}

impl QueryParams {
    /// Parses decoded query pairs against the table. Unknown columns and malformed operators are 400s.
    pub fn parse(table: &Table, pairs: &[(String, String)], operation: Operation) -> Result<Self, RecordsApiError> {
        refuse_repeated_reserved_keys(table, pairs)?;
        let mut params = QueryParams::default();
        for (key, value) in pairs {
            match key.as_str() {
                "select" => params.select = parse_select(table, value)?,
                "order" if operation == Operation::Read => params.order = parse_order(table, value)?,
                "limit" if operation == Operation::Read => params.limit = Some(parse_count("limit", value)?),
                "offset" if operation == Operation::Read => params.offset = Some(parse_count("offset", value)?),
                "order" | "limit" | "offset" | "columns" | "on_conflict" | "or" | "and" | "not" => {
                    return Err(RecordsApiError::parse(format!(
                        "\"{key}\" is not supported by the InsForge stand-in here"
                    )));
                }
                column => {
                    table.column(column)?;
                    params.filters.push(parse_filter(column, value)?);
                }
            }
        }
        Ok(params)
    }
}

/// The keys PostgREST reads by name rather than as a column filter.
const RESERVED_KEYS: [&str; 4] = ["select", "order", "limit", "offset"];

/// InsForge re-serialises the query string through qs and axios, which turn a repeated key into `key[]`
/// (docs/insforge.md §1.2). PostgREST then no longer recognises `order[]` (or `select[]`, `limit[]`, `offset[]`) as
/// the reserved key and reads it as a filter on a column of that name: a value that is no filter (`title.asc`,
/// `10`) is a 400 `PGRST100`, and one that is (`eq.1`) a 400 `42703` for the missing column. Taking one of the
/// values instead would hide a request that cannot work in production.
fn refuse_repeated_reserved_keys(table: &Table, pairs: &[(String, String)]) -> Result<(), RecordsApiError> {
    for reserved in RESERVED_KEYS {
        let mut values = pairs.iter().filter(|(key, _)| key == reserved).map(|(_, value)| value.as_str());
        let (Some(first), Some(_)) = (values.next(), values.next()) else { continue };
        if parse_filter(reserved, first).is_ok() {
            return Err(RecordsApiError::unknown_column(&table.name, reserved));
        }
        let unexpected = first.chars().next().map_or_else(|| "end of input".to_owned(), |c| format!("\"{c}\""));
        return Err(RecordsApiError::postgrest(
            StatusCode::BAD_REQUEST,
            "PGRST100",
            format!("\"failed to parse filter ({first})\" (line 1, column 1)"),
            Some(format!("unexpected {unexpected} expecting \"not\" or operator (eq, gt, ...)")),
        ));
    }
    Ok(())
}

fn parse_select(table: &Table, value: &str) -> Result<Option<Vec<String>>, RecordsApiError> {
    let value = value.trim();
    if value.is_empty() || value == "*" {
        return Ok(None);
    }
    let mut columns = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() || item.contains(['(', ')', ':']) {
            return Err(RecordsApiError::parse(format!("failed to parse select parameter ({value})")));
        }
        columns.push(table.column(item)?.name.clone());
    }
    Ok(Some(columns))
}

fn parse_order(table: &Table, value: &str) -> Result<Vec<OrderTerm>, RecordsApiError> {
    let mut terms = Vec::new();
    for item in value.split(',') {
        let mut parts = item.split('.');
        let column = parts.next().unwrap_or_default();
        if column.is_empty() {
            return Err(RecordsApiError::parse(format!("failed to parse order ({value})")));
        }
        let column = table.column(column)?.name.clone();
        let mut term = OrderTerm { column, descending: false, nulls: None };
        for modifier in parts {
            match modifier {
                "asc" => term.descending = false,
                "desc" => term.descending = true,
                "nullsfirst" => term.nulls = Some("NULLS FIRST"),
                "nullslast" => term.nulls = Some("NULLS LAST"),
                _ => return Err(RecordsApiError::parse(format!("failed to parse order ({value})"))),
            }
        }
        terms.push(term);
    }
    Ok(terms)
}

fn parse_count(name: &str, value: &str) -> Result<i64, RecordsApiError> {
    value.parse::<u32>().map(i64::from).map_err(|_| {
        RecordsApiError::parse(format!("failed to parse {name}: \"{value}\" is not a non-negative integer"))
    })
}

fn parse_filter(column: &str, value: &str) -> Result<Filter, RecordsApiError> {
    let bad = || RecordsApiError::parse(format!("failed to parse filter ({column}={value})"));
    let (negated, rest) = match value.strip_prefix("not.") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (operator, operand) = rest.split_once('.').ok_or_else(bad)?;
    let op = match operator {
        "eq" => FilterOp::Compare("=", operand.to_owned()),
        "neq" => FilterOp::Compare("<>", operand.to_owned()),
        "gt" => FilterOp::Compare(">", operand.to_owned()),
        "gte" => FilterOp::Compare(">=", operand.to_owned()),
        "lt" => FilterOp::Compare("<", operand.to_owned()),
        "lte" => FilterOp::Compare("<=", operand.to_owned()),
        // PostgREST lets `*` stand for `%`, which is awkward in URLs.
        "like" => FilterOp::Like { case_insensitive: false, pattern: operand.replace('*', "%") },
        "ilike" => FilterOp::Like { case_insensitive: true, pattern: operand.replace('*', "%") },
        "is" => FilterOp::Is(match operand.to_ascii_lowercase().as_str() {
            "null" => "NULL",
            "true" => "TRUE",
            "false" => "FALSE",
            "unknown" => "UNKNOWN",
            _ => return Err(bad()),
        }),
        "in" => FilterOp::In(parse_in_list(operand).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    Ok(Filter { column: column.to_owned(), negated, op })
}

/// `(a,b,"c,d","say \"hi\"")` → the items. Double quotes protect `,` `(` `)`; backslash escapes inside them.
fn parse_in_list(operand: &str) -> Option<Vec<String>> {
    let inner = operand.strip_prefix('(')?.strip_suffix(')')?;
    let mut items = Vec::new();
    if inner.is_empty() {
        return Some(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => item.push(chars.next()?),
                    '"' => break,
                    c => item.push(c),
                }
            }
            match chars.next() {
                None => {
                    items.push(item);
                    return Some(items);
                }
                Some(',') => items.push(item),
                Some(_) => return None,
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        items.push(item);
                        return Some(items);
                    }
                    Some(',') => {
                        items.push(item);
                        break;
                    }
                    Some('(' | ')' | '"') => return None,
                    Some(c) => item.push(c),
                }
            }
        }
    }
}

/// The columns and rows of an insert body: one object or an array of objects, all with the same keys.
#[derive(Debug)]
pub(super) struct InsertBody {
    columns: Vec<String>,
    rows: Value,
}

impl InsertBody {
    /// `body` is what Express parsed (see `body`): always an object or an array.
    pub fn parse(table: &Table, body: &Value) -> Result<Self, RecordsApiError> {
        let rows = match body {
            Value::Array(rows) => rows.clone(),
            object @ Value::Object(_) => vec![object.clone()],
            _ => return Err(RecordsApiError::invalid_body("A JSON object or an array of objects is required")),
        };
        let mut columns: Option<Vec<String>> = None;
        for row in &rows {
            let Value::Object(object) = row else {
                return Err(RecordsApiError::invalid_body("A JSON object or an array of objects is required"));
            };
            let mut keys: Vec<String> = object.keys().cloned().collect();
            keys.sort();
            match &columns {
                None => columns = Some(keys),
                Some(first) if *first != keys => {
                    return Err(RecordsApiError::invalid_body("All object keys must match"));
                }
                Some(_) => {}
            }
        }
        let columns = columns.unwrap_or_default();
        for column in &columns {
            if table.column(column).is_err() {
                return Err(RecordsApiError::column_not_in_payload(&table.name, column));
            }
        }
        Ok(InsertBody { columns, rows: Value::Array(rows) })
    }

    pub fn is_empty(&self) -> bool {
        self.rows.as_array().is_none_or(Vec::is_empty)
    }
}

/// The columns of a PATCH body, which must be one object.
#[derive(Debug)]
pub(super) struct UpdateBody {
    columns: Vec<String>,
    row: Value,
}

impl UpdateBody {
    pub fn parse(table: &Table, body: &Value) -> Result<Self, RecordsApiError> {
        let Value::Object(object) = body else {
            return Err(RecordsApiError::invalid_body("A JSON object is required to update rows"));
        };
        let columns: Vec<String> = object.keys().cloned().collect();
        for column in &columns {
            if table.column(column).is_err() {
                return Err(RecordsApiError::column_not_in_payload(&table.name, column));
            }
        }
        Ok(UpdateBody { columns, row: body.clone() })
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
}

/// `WHERE` conditions on `_t` for the filters, binding every value.
fn where_clause(table: &Table, filters: &[Filter], statement: &mut Statement) -> Result<String, RecordsApiError> {
    let mut conditions = Vec::new();
    for filter in filters {
        let column = table.column(&filter.column)?;
        let target = format!("_t.{}", quote_ident(&column.name));
        let condition = match &filter.op {
            FilterOp::Compare(operator, value) => {
                let placeholder = statement.bind(Param::Text(value.clone()));
                format!("{target} {operator} CAST({placeholder} AS {})", column.sql_type)
            }
            FilterOp::Like { case_insensitive, pattern } => {
                let placeholder = statement.bind(Param::Text(pattern.clone()));
                let operator = if *case_insensitive { "ILIKE" } else { "LIKE" };
                format!("{target}::text {operator} {placeholder}")
            }
            FilterOp::Is(literal) => format!("{target} IS {literal}"),
            FilterOp::In(values) => {
                let placeholder = statement.bind(Param::TextArray(values.clone()));
                format!("{target} = ANY(CAST({placeholder} AS {}[]))", column.sql_type)
            }
        };
        conditions.push(if filter.negated { format!("NOT ({condition})") } else { condition });
    }
    Ok(if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) })
}

/// The JSON of one row `alias`, restricted to the selected columns.
fn row_json(alias: &str, select: &Option<Vec<String>>) -> String {
    match select {
        None => format!("to_json({alias})::text"),
        Some(columns) => {
            let list: Vec<String> = columns.iter().map(|c| format!("{alias}.{}", quote_ident(c))).collect();
            format!("(SELECT to_json(_s) FROM (SELECT {}) AS _s)::text", list.join(", "))
        }
    }
}

pub(super) fn select_statement(table: &Table, params: &QueryParams) -> Result<Statement, RecordsApiError> {
    let mut statement = Statement::new();
    let conditions = where_clause(table, &params.filters, &mut statement)?;
    let mut sql = format!("SELECT {} FROM {} AS _t{conditions}", row_json("_t", &params.select), table.qualified());
    if !params.order.is_empty() {
        let terms: Vec<String> = params
            .order
            .iter()
            .map(|term| {
                let mut text =
                    format!("_t.{} {}", quote_ident(&term.column), if term.descending { "DESC" } else { "ASC" });
                if let Some(nulls) = term.nulls {
                    text.push(' ');
                    text.push_str(nulls);
                }
                text
            })
            .collect();
        sql.push_str(&format!(" ORDER BY {}", terms.join(", ")));
    }
    if let Some(limit) = params.limit {
        sql.push_str(&format!(" LIMIT {}", statement.bind(Param::Int(limit))));
    }
    if let Some(offset) = params.offset {
        sql.push_str(&format!(" OFFSET {}", statement.bind(Param::Int(offset))));
    }
    statement.sql = sql;
    Ok(statement)
}

/// Only the columns present in the body get values; every other column takes its default (PostgREST's rule),
/// which is how `todos.user_id` comes from the token.
pub(super) fn insert_statement(table: &Table, body: &InsertBody, params: &QueryParams) -> Statement {
    let mut statement = Statement::new();
    let rows = statement.bind(Param::Text(body.rows.to_string()));
    let column_list: Vec<String> = body.columns.iter().map(|c| quote_ident(c)).collect();
    let insert = if column_list.is_empty() {
        // No keys at all: one row of defaults per object.
        format!("INSERT INTO {} SELECT FROM json_array_elements(CAST({rows} AS json))", table.qualified())
    } else {
        let list = column_list.join(", ");
        format!(
            "INSERT INTO {table} ({list}) SELECT {list} FROM json_populate_recordset(NULL::{table}, CAST({rows} AS json))",
            table = table.qualified()
        )
    };
    statement.sql = format!(
        "WITH _changed AS ({insert} RETURNING *) SELECT {} FROM _changed AS _c",
        row_json("_c", &params.select)
    );
    statement
}

pub(super) fn update_statement(
    table: &Table,
    body: &UpdateBody,
    params: &QueryParams,
) -> Result<Statement, RecordsApiError> {
    let mut statement = Statement::new();
    let row = statement.bind(Param::Text(body.row.to_string()));
    let conditions = where_clause(table, &params.filters, &mut statement)?;
    let assignments: Vec<String> =
        body.columns.iter().map(|c| format!("{column} = _new.{column}", column = quote_ident(c))).collect();
    statement.sql = format!(
        "WITH _changed AS (UPDATE {table} AS _t SET {assignments} FROM json_populate_record(NULL::{table}, CAST({row} AS json)) AS _new{conditions} RETURNING _t.*) SELECT {json} FROM _changed AS _c",
        table = table.qualified(),
        assignments = assignments.join(", "),
        json = row_json("_c", &params.select),
    );
    Ok(statement)
}

pub(super) fn delete_statement(table: &Table, params: &QueryParams) -> Result<Statement, RecordsApiError> {
    let mut statement = Statement::new();
    let conditions = where_clause(table, &params.filters, &mut statement)?;
    statement.sql = format!(
        "WITH _changed AS (DELETE FROM {} AS _t{conditions} RETURNING _t.*) SELECT {} FROM _changed AS _c",
        table.qualified(),
        row_json("_c", &params.select),
    );
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn todos() -> Table {
        Table {
            name: "todos".to_owned(),
            columns: ["id:uuid", "user_id:text", "title:text", "is_complete:boolean"]
                .iter()
                .map(|c| {
                    let (name, sql_type) = c.split_once(':').expect("name:type");
                    Column { name: name.to_owned(), sql_type: sql_type.to_owned() }
                })
                .collect(),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn values_become_parameters_and_never_sql() {
        let hostile = "x'); DROP TABLE todos; --";
        let params = QueryParams::parse(
            &todos(),
            &pairs(&[("id", &format!("eq.{hostile}")), ("order", "id.desc")]),
            Operation::Read,
        )
        .expect("parses");
        let statement = select_statement(&todos(), &params).expect("builds");
        assert!(!statement.sql.contains("DROP"), "{}", statement.sql);
        assert_eq!(statement.params, [Param::Text(hostile.to_owned())]);
        assert!(statement.sql.contains(r#"_t."id" = CAST($1 AS uuid)"#), "{}", statement.sql);
        assert!(statement.sql.ends_with(r#"ORDER BY _t."id" DESC"#), "{}", statement.sql);
    }

    #[test]
    fn unknown_columns_and_operators_are_refused() {
        let table = todos();
        for (key, value) in [
            ("nope", "eq.1"),
            ("id;drop", "eq.1"),
            ("\"id\"", "eq.1"),
            ("id", "nope.1"),
            ("id", "eq"),
            ("order", "id;drop table todos"),
            ("order", "id.sideways"),
            ("select", "id,secret"),
            ("select", "id:uuid"),
            ("limit", "-1"),
            ("offset", "ten"),
        ] {
            let error = QueryParams::parse(&table, &pairs(&[(key, value)]), Operation::Read)
                .expect_err(&format!("{key}={value} must be refused"));
            assert_eq!(error.status.as_u16(), 400, "{key}={value}");
        }
    }

    /// InsForge hands PostgREST a repeated key as `key[]` (docs/insforge.md §1.2), which PostgREST reads as a filter
    /// on a column of that name: never one of the values, as a plain PostgREST would take.
    #[test]
    fn a_repeated_reserved_key_is_refused_as_postgrest_refuses_key_brackets() {
        let table = todos();
        for (key, first, second) in
            [("order", "title.asc", "id.desc"), ("limit", "10", "20"), ("offset", "0", "5"), ("select", "id", "*")]
        {
            let pairs = pairs(&[(key, first), ("id", "eq.1"), (key, second)]);
            for operation in [Operation::Read, Operation::Update, Operation::Delete] {
                let error = QueryParams::parse(&table, &pairs, operation).expect_err(&format!("{key} twice"));
                assert_eq!(error.status.as_u16(), 400, "{key}");
                assert_eq!(error.body["code"], "PGRST100", "{key}: {}", error.body);
                assert_eq!(error.body["message"], format!("\"failed to parse filter ({first})\" (line 1, column 1)"));
            }
        }
        let filter_like = pairs(&[("select", "eq.1"), ("select", "id")]);
        let error = QueryParams::parse(&table, &filter_like, Operation::Read).expect_err("select twice");
        assert_eq!(error.body["code"], "42703", "{}", error.body);
        assert!(QueryParams::parse(&table, &pairs(&[("order", "title.asc"), ("limit", "1")]), Operation::Read).is_ok());
    }

    #[test]
    fn in_lists_honour_postgrest_quoting() {
        assert_eq!(parse_in_list("(a,b)").expect("list"), ["a", "b"]);
        assert_eq!(parse_in_list(r#"("a,b","c)(",d)"#).expect("list"), ["a,b", "c)(", "d"]);
        assert_eq!(parse_in_list(r#"("say \"hi\"")"#).expect("list"), [r#"say "hi""#]);
        assert_eq!(parse_in_list("()").expect("empty"), Vec::<String>::new());
        assert!(parse_in_list("(a,(b)").is_none());
        assert!(parse_in_list("a,b").is_none());
    }

    #[test]
    fn insert_bodies_must_have_known_and_matching_keys() {
        let table = todos();
        assert!(InsertBody::parse(&table, &json!({ "title": "x" })).is_ok());
        assert!(InsertBody::parse(&table, &json!([{ "title": "x" }, { "title": "y" }])).is_ok());
        assert_eq!(
            InsertBody::parse(&table, &json!([{ "title": "x" }, { "is_complete": true }]))
                .expect_err("keys")
                .status
                .as_u16(),
            400
        );
        let unknown = InsertBody::parse(&table, &json!({ "titel": "x" })).expect_err("unknown column");
        assert_eq!(unknown.body["code"], "PGRST204");
        assert_eq!(InsertBody::parse(&table, &json!([1, 2])).expect_err("not objects").body["code"], "PGRST102");
    }
}
