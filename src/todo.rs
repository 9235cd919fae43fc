//! The todo domain: what a todo is, and the few inputs that must be checked before they travel anywhere.
//!
//! Inputs are parsed at the edge ("parse, don't validate"): once a [`Title`], [`TodoPatch`] or [`Page`] exists it
//! is known to be valid, so the InsForge client and the HTTP layer never re-check them. A [`Title`] is what the
//! database's title rule (`authbridge_rls.title_as_stored`, migrations/0021) accepts, no more and no less: it is
//! enforced again there for anyone who writes without going through this type (a test compares the two character
//! by character).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The longest title, in characters (Unicode scalar values, not bytes), after trimming.
pub const MAX_TITLE_CHARS: usize = 500;
/// Page size when the caller does not ask for one.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// The largest page anyone gets, whatever they ask for: one request must not be able to pull a whole table.
pub const MAX_PAGE_LIMIT: u32 = 100;

/// A todo as the app shows it. Who may see or change it is the database's business (RLS); `user_id` (its author)
/// and `organization_id` (the organization it is shared with, `None` for a personal todo) are carried so that an
/// organization's shared list can say who wrote what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todo {
    pub id: Uuid,
    pub title: String,
    pub is_complete: bool,
    pub user_id: String,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Where a todo lives: the user's own list, or an organization's shared one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Space {
    Personal,
    Organization(String),
}

impl Space {
    /// The `organization_id` column's value for this space.
    pub fn organization_id(&self) -> Option<&str> {
        match self {
            Space::Personal => None,
            Space::Organization(id) => Some(id),
        }
    }
}

/// A todo title that satisfies the rule: surrounding whitespace trimmed, then 1 to 500 characters, with no control
/// character but tab, line feed and carriage return.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Title(String);

/// Why a title was refused, as a sentence a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TitleError {
    #[error("Title can't be blank or invisible.")]
    Blank,
    #[error("Title is too long ({chars} characters, {max} at most).", max = MAX_TITLE_CHARS)]
    TooLong { chars: usize },
    #[error("Title can't contain control characters (such as NUL); tabs and line breaks are fine.")]
    ControlCharacter,
}

impl Title {
    pub fn parse(raw: &str) -> Result<Title, TitleError> {
        // `str::trim` removes Unicode White_Space; the database refuses the same set around a title (0021).
        let trimmed = raw.trim();
        // A title of zero-width spaces, joiners or direction marks would be a todo nobody can see on the page (the
        // database refuses it too since 0021; rows stored before are read as they are).
        if is_invisible(trimmed) {
            return Err(TitleError::Blank);
        }
        let chars = trimmed.chars().count();
        if chars > MAX_TITLE_CHARS {
            return Err(TitleError::TooLong { chars });
        }
        // PostgreSQL's text cannot hold NUL (InsForge would refuse the row with an error the user cannot act on),
        // and the other control characters are invisible on the page. Tabs and line breaks are text people type.
        if trimmed.chars().any(is_refused_control) {
            return Err(TitleError::ControlCharacter);
        }
        Ok(Title(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The control characters a title may not hold: all but tabs and line breaks, which are text people type.
pub fn is_refused_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Whether `text` would show nothing on a page: empty, white space, or characters that render as nothing.
pub fn is_invisible(text: &str) -> bool {
    text.chars().all(|c| c.is_whitespace() || shows_nothing(c))
}

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt): characters that render as nothing unless
/// something else is there (soft hyphen, zero-width spaces and joiners, direction marks and isolates, variation
/// selectors, the byte-order mark, Hangul fillers, tags); and two that are not in it but show nothing either, the
/// blank Braille pattern (the usual way to fake an empty name) and the interlinear annotation controls. The same
/// list is in the database's title rule (`migrations/0021_title_check_as_stored.sql`): change both.
fn shows_nothing(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{34F}'
            | '\u{61C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
            | '\u{2800}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

impl TryFrom<String> for Title {
    type Error = TitleError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Title::parse(&raw)
    }
}

impl From<Title> for String {
    fn from(title: Title) -> String {
        title.0
    }
}

/// A change to a todo: a new title, a new completion state, or both. Serialises to exactly the fields that
/// change, which is the PATCH body InsForge expects; absent fields are left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TodoPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Title>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_complete: Option<bool>,
}

impl TodoPatch {
    /// A patch that changes nothing; the client refuses it as invalid input rather than sending a no-op.
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.is_complete.is_none()
    }

    /// The part of this patch that would change `todo` (empty: it is already so).
    pub fn beyond(&self, todo: &Todo) -> TodoPatch {
        TodoPatch {
            title: self.title.clone().filter(|title| title.as_str() != todo.title),
            is_complete: self.is_complete.filter(|done| *done != todo.is_complete),
        }
    }
}

/// Which slice of a list to fetch. Always valid: the limit is between 1 and [`MAX_PAGE_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    limit: u32,
    offset: u32,
}

impl Page {
    /// Builds a page from what a caller asked for. Out-of-range limits are clamped, not refused, the way most
    /// list APIs behave: no limit → [`DEFAULT_PAGE_LIMIT`]; `0` → 1 (a page of nothing is never what was
    /// meant, and an empty answer would look like "you have no todos"); above [`MAX_PAGE_LIMIT`] → the maximum.
    /// The answer carries the limit actually used, so a client can see the clamp.
    pub fn new(limit: Option<u32>, offset: Option<u32>) -> Page {
        let limit = limit.unwrap_or(DEFAULT_PAGE_LIMIT).clamp(1, MAX_PAGE_LIMIT);
        Page { limit, offset: offset.unwrap_or(0) }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn offset(&self) -> u32 {
        self.offset
    }
}

impl Default for Page {
    fn default() -> Self {
        Page::new(None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made of nothing a page shows: refused like a blank one. With anything visible, the same characters stay
    /// (a joiner inside an emoji sequence, a direction mark in right-to-left text).
    #[test]
    fn a_title_of_invisible_characters_only_is_blank() {
        for invisible in [
            "\u{200B}",
            "\u{FEFF}",
            " \u{200B} \u{2060}\u{200D} ",
            "\u{AD}",
            "\u{2800}\u{2800}",
            "\u{FFF9}",
            "\u{202E}",
            "\u{E0041}",
            "\u{3164}",
        ] {
            assert_eq!(Title::parse(invisible), Err(TitleError::Blank), "{:?}", invisible.escape_unicode().to_string());
        }
        for visible in ["\u{FEFF}buy milk", "👩\u{200D}💻 deploy", "\u{200F}שלום", "x\u{FE0F}"] {
            assert!(Title::parse(visible).is_ok(), "{visible:?}");
        }
        assert_eq!(Title::parse("\u{FEFF}buy milk").expect("visible").as_str(), "\u{FEFF}buy milk");
    }

    #[test]
    fn titles_are_trimmed_and_counted_in_characters() {
        assert_eq!(Title::parse("  buy milk \n").expect("valid").as_str(), "buy milk");
        // 500 two-byte characters are 1000 bytes but a valid title.
        let accents = "é".repeat(500);
        assert_eq!(Title::parse(&accents).expect("500 chars").as_str(), accents);
        let emoji = "🦀".repeat(500);
        assert_eq!(Title::parse(&format!("  {emoji}\t")).expect("500 emoji").as_str(), emoji);
    }

    #[test]
    fn blank_and_long_titles_are_refused_with_a_sentence() {
        for blank in ["", "   ", "\t\n", "\u{a0}\u{3000}"] {
            assert_eq!(Title::parse(blank), Err(TitleError::Blank), "{blank:?}");
        }
        assert_eq!(TitleError::Blank.to_string(), "Title can't be blank or invisible.");

        let error = Title::parse(&"x".repeat(501)).expect_err("501 chars");
        assert_eq!(error, TitleError::TooLong { chars: 501 });
        assert_eq!(error.to_string(), "Title is too long (501 characters, 500 at most).");
        // Surrounding whitespace does not count against the limit.
        assert!(Title::parse(&format!("  {}  ", "x".repeat(500))).is_ok());
    }

    #[test]
    fn control_characters_are_refused_but_tabs_and_line_breaks_are_kept() {
        for hostile in ["a\0b", "\0", "\u{7}", "a\u{1b}[31mred", "a\u{7f}b", "a\u{85}b", "a\u{9b}b", "a\u{b}b"] {
            assert_eq!(Title::parse(hostile), Err(TitleError::ControlCharacter), "{hostile:?}");
        }
        assert_eq!(
            TitleError::ControlCharacter.to_string(),
            "Title can't contain control characters (such as NUL); tabs and line breaks are fine."
        );
        for fine in ["a\tb", "line one\nline two", "line one\r\nline two", r"\u0000 as six characters"] {
            assert_eq!(Title::parse(fine).expect("valid").as_str(), fine);
        }
        // Around the text, control characters that are whitespace are trimmed as before, not refused.
        assert_eq!(Title::parse("\u{b}\u{85}x\u{c}").expect("trimmed").as_str(), "x");
    }

    #[test]
    fn titles_deserialise_through_the_same_rule() {
        let title: Title = serde_json::from_str(r#"" hi ""#).expect("valid json title");
        assert_eq!(title.as_str(), "hi");
        let error = serde_json::from_str::<Title>(r#""  ""#).expect_err("blank");
        assert!(error.to_string().contains("Title can't be blank or invisible."), "{error}");
    }

    #[test]
    fn pages_default_and_clamp() {
        assert_eq!((Page::default().limit(), Page::default().offset()), (50, 0));
        assert_eq!(Page::new(Some(0), None).limit(), 1);
        assert_eq!(Page::new(Some(100), Some(7)).limit(), 100);
        assert_eq!(Page::new(Some(101), None).limit(), MAX_PAGE_LIMIT);
        assert_eq!(Page::new(Some(u32::MAX), Some(u32::MAX)).offset(), u32::MAX);
    }

    #[test]
    fn patches_serialise_only_what_changes() {
        let patch = TodoPatch { title: None, is_complete: Some(true) };
        assert_eq!(serde_json::to_string(&patch).expect("json"), r#"{"is_complete":true}"#);
        assert!(TodoPatch::default().is_empty());
        assert!(!patch.is_empty());
    }

    #[test]
    fn todos_carry_their_author_and_space() {
        let row = r#"{"id":"6f1c2a9e-8d7b-4c55-9a53-3f0e8e7a1b2c","user_id":"user_01ABC","title":"t",
            "is_complete":false,"created_at":"2025-01-02T03:04:05.123456+00:00",
            "updated_at":"2025-01-02T03:04:06+00:00","organization_id":null}"#;
        let todo: Todo = serde_json::from_str(row).expect("an InsForge row");
        let json = serde_json::to_value(&todo).expect("json");
        let keys: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys, ["created_at", "id", "is_complete", "organization_id", "title", "updated_at", "user_id"]);
        assert_eq!(json["created_at"], "2025-01-02T03:04:05.123456Z");
        assert_eq!(json["organization_id"], serde_json::Value::Null);
        assert_eq!(json["user_id"], "user_01ABC");
        assert_eq!(Space::Organization("org_1".to_owned()).organization_id(), Some("org_1"));
    }
}
