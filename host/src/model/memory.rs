//! Memory stores: named containers of text memories at paths, each change
//! kept as a memory version (`client.beta.memory_stores`, with `.memories`
//! and `.memory_versions`). The wire types, and the pure rules the routes
//! apply: path and prefix validation, the content digest, and list
//! roll-ups of deeper paths into `memory_prefix` items with their page
//! tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::UnicodeNormalization;
use utoipa::ToSchema;

use super::common::{Invalid, Metadata, MetadataPatch, Validate, check_len, check_metadata};

/// A memory's content is at most 100 kB.
pub const MAX_CONTENT_BYTES: usize = 102_400;
/// A path is at most 1,024 bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// A path has 1 to 20 segments.
pub const MAX_SEGMENTS: usize = 20;
/// `view=full` lists hold at most this many items per page.
pub const FULL_VIEW_PAGE: i64 = 20;

// ---------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryStoreCreate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<super::common::MetadataSchema>)]
    pub metadata: Option<Metadata>,
}

impl Validate for MemoryStoreCreate {
    fn validate(&self) -> Result<(), Invalid> {
        check_store_name("name", &self.name)?;
        if let Some(d) = &self.description {
            check_len("description", d, 0, 1024)?;
        }
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        Ok(())
    }
}

/// `null` and an absent field both keep the current value (an empty
/// `description` clears it).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryStoreUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<super::common::MetadataPatchSchema>)]
    pub metadata: Option<MetadataPatch>,
}

impl Validate for MemoryStoreUpdate {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(n) = &self.name {
            check_store_name("name", n)?;
        }
        if let Some(d) = &self.description {
            check_len("description", d, 0, 1024)?;
        }
        Ok(())
    }
}

/// 1 to 255 characters, no control characters.
pub fn check_store_name(field: &str, name: &str) -> Result<(), Invalid> {
    check_len(field, name, 1, 255)?;
    if name.chars().any(char::is_control) {
        return Err(Invalid::new(format!("{field}: must not contain control characters")));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemoryStore {
    pub id: String,
    #[schema(required)]
    pub archived_at: Option<String>,
    pub created_at: String,
    pub description: String,
    #[schema(value_type = super::common::MetadataSchema)]
    pub metadata: Metadata,
    pub name: String,
    #[serde(rename = "type")]
    #[schema(pattern = "^memory_store$")]
    pub kind: String,
    pub updated_at: String,
}

// ---------------------------------------------------------------------------------------------
// Memories
// ---------------------------------------------------------------------------------------------

/// `view`: whether memories and versions in a response carry `content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Basic,
    Full,
}

impl View {
    /// `None` for a value the API does not define.
    pub fn parse(s: &str) -> Option<View> {
        match s {
            "basic" => Some(View::Basic),
            "full" => Some(View::Full),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryCreate {
    /// `null` is refused: pass `""` for an empty memory.
    #[schema(required)]
    pub content: Option<String>,
    pub path: String,
}

impl Validate for MemoryCreate {
    fn validate(&self) -> Result<(), Invalid> {
        check_path("path", &self.path)?;
        match &self.content {
            None => Err(Invalid::new("content: must be a string; pass \"\" to create an empty memory")),
            Some(c) => check_content("content", c),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryUpdate {
    /// New content; absent or `null` keeps it.
    #[serde(default)]
    pub content: Option<String>,
    /// New path (a rename); absent or `null` keeps it.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub precondition: Option<Precondition>,
}

impl Validate for MemoryUpdate {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(p) = &self.path {
            check_path("path", p)?;
        }
        if let Some(c) = &self.content {
            check_content("content", c)?;
        }
        if let Some(Precondition::ContentSha256 { content_sha256 }) = &self.precondition {
            check_sha256("precondition.content_sha256", content_sha256)?;
        }
        Ok(())
    }
}

/// A condition the memory must meet for an update to apply.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Precondition {
    ContentSha256 { content_sha256: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Memory {
    pub id: String,
    /// `null` with `view=basic`.
    #[schema(required)]
    pub content: Option<String>,
    pub content_sha256: String,
    pub content_size_bytes: i64,
    pub created_at: String,
    pub memory_store_id: String,
    pub memory_version_id: String,
    pub path: String,
    #[serde(rename = "type")]
    #[schema(pattern = "^memory$")]
    pub kind: String,
    pub updated_at: String,
}

/// A directory marker in a list: it stands for the memories below `path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemoryPrefix {
    pub path: String,
    #[serde(rename = "type")]
    #[schema(pattern = "^memory_prefix$")]
    pub kind: String,
}

/// One item of a memories list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MemoryListItem {
    Memory(Memory),
    Prefix(MemoryPrefix),
}

// ---------------------------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------------------------

/// What a version records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Created,
    Modified,
    Deleted,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Created => "created",
            Operation::Modified => "modified",
            Operation::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        match s {
            "created" => Some(Operation::Created),
            "modified" => Some(Operation::Modified),
            "deleted" => Some(Operation::Deleted),
            _ => None,
        }
    }
}

/// Who made a change. Bridle's writers are API keys (and, once stores are
/// mounted into sandboxes, sessions); it has no users or service accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    ApiActor { api_key_id: String },
    SessionActor { session_id: String },
}

impl Actor {
    /// The stored pair (kind, id).
    pub fn to_parts(&self) -> (&'static str, &str) {
        match self {
            Actor::ApiActor { api_key_id } => ("api_actor", api_key_id),
            Actor::SessionActor { session_id } => ("session_actor", session_id),
        }
    }

    pub fn from_parts(kind: &str, id: String) -> Option<Actor> {
        match kind {
            "api_actor" => Some(Actor::ApiActor { api_key_id: id }),
            "session_actor" => Some(Actor::SessionActor { session_id: id }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemoryVersion {
    pub id: String,
    #[schema(required)]
    pub content: Option<String>,
    #[schema(required)]
    pub content_sha256: Option<String>,
    #[schema(required)]
    pub content_size_bytes: Option<i64>,
    pub created_at: String,
    #[schema(required)]
    pub created_by: Option<Actor>,
    pub memory_id: String,
    pub memory_store_id: String,
    pub operation: Operation,
    #[schema(required)]
    pub path: Option<String>,
    #[schema(required)]
    pub redacted_at: Option<String>,
    #[schema(required)]
    pub redacted_by: Option<Actor>,
    #[serde(rename = "type")]
    #[schema(pattern = "^memory_version$")]
    pub kind: String,
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

/// Lowercase hex SHA-256 of the UTF-8 bytes, without normalization.
pub fn content_sha256(content: &str) -> String {
    hex::encode(Sha256::digest(content.as_bytes()))
}

pub fn check_content(field: &str, content: &str) -> Result<(), Invalid> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(Invalid::new(format!(
            "{field}: a memory holds at most {MAX_CONTENT_BYTES} bytes of UTF-8, got {}",
            content.len()
        )));
    }
    Ok(())
}

pub fn check_sha256(field: &str, s: &str) -> Result<(), Invalid> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(Invalid::new(format!("{field}: must be 64 lowercase hexadecimal characters, got `{s}`")));
    }
    Ok(())
}

/// Characters no path may hold: control and format characters, and the
/// line and paragraph separators.
fn forbidden_char(c: char) -> bool {
    matches!(get_general_category(c), GeneralCategory::Control | GeneralCategory::Format)
        || c == '\u{2028}'
        || c == '\u{2029}'
}

/// Characters a path and a prefix share rules on: bytes, characters, NFC.
fn check_chars(field: &str, path: &str) -> Result<(), Invalid> {
    if path.len() > MAX_PATH_BYTES {
        return Err(Invalid::new(format!("{field}: at most {MAX_PATH_BYTES} bytes, got {}", path.len())));
    }
    if let Some(c) = path.chars().find(|c| forbidden_char(*c)) {
        return Err(Invalid::new(format!(
            "{field}: must not contain control or format characters or line/paragraph separators (found U+{:04X})",
            c as u32
        )));
    }
    if !unicode_normalization::is_nfc(path) {
        let nfc: String = path.nfc().collect();
        return Err(Invalid::new(format!("{field}: must be in Unicode Normalization Form C (NFC: `{nfc}`)")));
    }
    Ok(())
}

/// The segments of `rest` (a path without its leading `/`), each checked.
fn check_segments(field: &str, rest: &str) -> Result<usize, Invalid> {
    let mut n = 0;
    for seg in rest.split('/') {
        n += 1;
        match seg {
            "" => return Err(Invalid::new(format!("{field}: segments must not be empty (no `//`, no trailing `/`)"))),
            "." | ".." => return Err(Invalid::new(format!("{field}: segments must not be `.` or `..`"))),
            _ => {}
        }
    }
    if n > MAX_SEGMENTS {
        return Err(Invalid::new(format!("{field}: at most {MAX_SEGMENTS} segments, got {n}")));
    }
    Ok(n)
}

/// A memory's path: `/` then 1 to 20 non-empty segments that are not `.` or
/// `..`; NFC, no control or format characters, at most 1,024 bytes.
pub fn check_path(field: &str, path: &str) -> Result<(), Invalid> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Invalid::new(format!("{field}: must start with `/`, got `{path}`")));
    };
    check_chars(field, path)?;
    check_segments(field, rest)?;
    Ok(())
}

/// A list's `path_prefix`: `/`, or whole segments between `/`s (`/notes/`).
pub fn check_prefix(field: &str, prefix: &str) -> Result<(), Invalid> {
    if !prefix.starts_with('/') || !prefix.ends_with('/') {
        return Err(Invalid::new(format!("{field}: must start and end with `/` (e.g. `/notes/`), got `{prefix}`")));
    }
    check_chars(field, prefix)?;
    // `/` alone is the whole store; otherwise the segments between the slashes.
    if prefix.len() > 1 {
        check_segments(field, &prefix[1..prefix.len() - 1])?;
    }
    Ok(())
}

/// The smallest string above every path that starts with `prefix` (which
/// ends with `/`): `/a/` → `/a0`, as `0` follows `/` in byte order. Paths
/// compare as bytes, so a prefix's paths are the range `[prefix, end)`.
pub fn prefix_end(prefix: &str) -> String {
    debug_assert!(prefix.ends_with('/'));
    format!("{}0", &prefix[..prefix.len() - 1])
}

/// What a list shows of one path below `prefix` at `depth` (0: everything):
/// the memory itself, or the `memory_prefix` that stands for it.
pub fn roll_up(prefix: &str, depth: usize, path: &str) -> Rolled {
    let rest = path.strip_prefix(prefix).unwrap_or(path);
    if depth == 0 {
        return Rolled::Memory;
    }
    // The end of the `depth`-th segment below the prefix, if the path goes deeper.
    let mut cut = None;
    let mut seen = 0;
    for (i, b) in rest.bytes().enumerate() {
        if b == b'/' {
            seen += 1;
            if seen == depth {
                cut = Some(i);
                break;
            }
        }
    }
    match cut {
        None => Rolled::Memory,
        Some(i) => Rolled::Prefix(format!("{prefix}{}/", &rest[..i])),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rolled {
    Memory,
    Prefix(String),
}

/// Where a memories page resumes: after this memory path, or after every
/// path below this prefix. A memory path never ends with `/`, a prefix
/// always does.
pub fn resume_bound(after: &str) -> (String, bool) {
    if after.ends_with('/') { (prefix_end(after), true) } else { (after.to_owned(), false) }
}

/// A memories page token: the list it belongs to and the last item shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryCursor {
    /// The list's `path_prefix` and `depth`.
    pub prefix: String,
    pub depth: usize,
    /// The last item's path.
    pub after: String,
}

impl MemoryCursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decode a token and check it belongs to the list asked for.
    pub fn decode(token: &str, prefix: &str, depth: usize) -> Result<MemoryCursor, Invalid> {
        let bad = || Invalid::new("query parameter `page` is not a valid page token of a memories list");
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let c: MemoryCursor = serde_json::from_slice(&raw).map_err(|_| bad())?;
        if c.prefix != prefix || c.depth != depth {
            return Err(Invalid::new(format!(
                "query parameter `page` belongs to the list with path_prefix `{}` and depth {}; repeat the request \
                 with those or start without `page`",
                c.prefix, c.depth
            )));
        }
        Ok(c)
    }
}

/// Builds one page of a memories list from paths in byte order: consecutive
/// paths that roll up into the same prefix make one item.
#[derive(Debug)]
pub struct PageBuilder<T> {
    prefix: String,
    depth: usize,
    limit: usize,
    items: Vec<Item<T>>,
    /// An item beyond `limit` was seen: there is a next page.
    pub more: bool,
}

/// A page item: a memory (with what the caller keeps of it) or a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item<T> {
    Memory(String, T),
    Prefix(String),
}

impl<T> Item<T> {
    pub fn path(&self) -> &str {
        match self {
            Item::Memory(p, _) | Item::Prefix(p) => p,
        }
    }
}

impl<T> PageBuilder<T> {
    pub fn new(prefix: &str, depth: usize, limit: usize) -> Self {
        PageBuilder { prefix: prefix.to_owned(), depth, limit, items: Vec::new(), more: false }
    }

    /// Add the next path; `false` once the page is full (stop feeding it).
    pub fn push(&mut self, path: String, value: T) -> bool {
        if self.more {
            return false;
        }
        let item = match roll_up(&self.prefix, self.depth, &path) {
            Rolled::Memory => Item::Memory(path, value),
            Rolled::Prefix(p) => {
                if self.items.last().is_some_and(|last| last.path() == p) {
                    return true;
                }
                Item::Prefix(p)
            }
        };
        if self.items.len() == self.limit {
            self.more = true;
            return false;
        }
        self.items.push(item);
        true
    }

    /// Where to read on after `last` (the last path fed in): past every
    /// path of the prefix the page ends with when `last` is one of them
    /// (they would all roll up into it), else just after `last`.
    pub fn read_on_after(&self, last: &str) -> (String, bool) {
        match self.items.last() {
            Some(Item::Prefix(p)) if last.starts_with(p.as_str()) => (prefix_end(p), true),
            _ => (last.to_owned(), false),
        }
    }

    /// The page's items and, when there is more, the next page's token.
    pub fn finish(self) -> (Vec<Item<T>>, Option<String>) {
        let next = match (self.more, self.items.last()) {
            (true, Some(last)) => {
                Some(MemoryCursor { prefix: self.prefix, depth: self.depth, after: last.path().to_owned() }.encode())
            }
            _ => None,
        };
        (self.items, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_sdk_rules() {
        let long_seg = "a".repeat(1023);
        let too_long = format!("/{}", "a".repeat(1024));
        let twenty = "/a".repeat(20);
        let twenty_one = "/a".repeat(21);
        let decomposed = "/cafe\u{301}.md";
        for (path, ok) in [
            ("/notes.md", true),
            ("/projects/foo/notes.md", true),
            ("/Projects/Foo", true),
            ("/café.md", true),
            ("/a b/c-d_e.txt", true),
            ("/...", true),
            ("/.hidden", true),
            (&format!("/{long_seg}"), true),
            (&too_long, false),
            (&twenty, true),
            (&twenty_one, false),
            ("", false),
            ("/", false),
            ("notes.md", false),
            ("/a//b", false),
            ("/a/", false),
            ("/a/./b", false),
            ("/a/../b", false),
            ("/..", false),
            ("/a\nb", false),
            ("/a\tb", false),
            ("/a\u{200b}b", false),
            ("/a\u{feff}b", false),
            ("/a\u{2028}b", false),
            ("/a\u{2029}b", false),
            ("/a\u{202e}b", false),
            (decomposed, false),
        ] {
            assert_eq!(check_path("path", path).is_ok(), ok, "{path:?}: {:?}", check_path("path", path));
        }
        let e = check_path("path", decomposed).unwrap_err();
        assert!(e.0.contains("Normalization Form C"), "{e}");
        assert!(check_path("path", "/a\u{0}").unwrap_err().0.contains("U+0000"));
    }

    #[test]
    fn prefixes_are_whole_segments() {
        for (prefix, ok) in [
            ("/", true),
            ("/notes/", true),
            ("/a/b/", true),
            ("/notes", false),
            ("notes/", false),
            ("//", false),
            ("/a//", false),
            ("/../", false),
            ("", false),
        ] {
            assert_eq!(check_prefix("path_prefix", prefix).is_ok(), ok, "{prefix:?}");
        }
        assert_eq!(prefix_end("/notes/"), "/notes0");
        assert_eq!(prefix_end("/"), "0");
        // Every path below the prefix sorts before its end, a sibling with a longer name does not.
        for p in ["/notes/a", "/notes/\u{10ffff}", "/notes/z/z"] {
            assert!(p > "/notes/" && p < prefix_end("/notes/").as_str(), "{p}");
        }
        assert!("/notes-archive/a" < "/notes/" && "/notes0" <= "/notes0/a");
    }

    #[test]
    fn content_rules_and_digest() {
        assert_eq!(content_sha256(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(content_sha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(check_content("content", &"x".repeat(MAX_CONTENT_BYTES)).is_ok());
        assert!(check_content("content", &"x".repeat(MAX_CONTENT_BYTES + 1)).is_err());
        // Bytes, not characters: 34,134 three-byte characters are 102,402 bytes.
        assert!(check_content("content", &"€".repeat(34_134)).is_err());
        assert!(check_sha256("s", &content_sha256("x")).is_ok());
        assert!(check_sha256("s", &content_sha256("x").to_uppercase()).is_err());
        assert!(check_sha256("s", "abc").is_err());
    }

    #[test]
    fn deeper_paths_roll_up_at_the_depth() {
        for (prefix, depth, path, want) in [
            ("/", 0, "/a/b/c", None),
            ("/", 1, "/a", None),
            ("/", 1, "/a/b", Some("/a/")),
            ("/", 1, "/a/b/c", Some("/a/")),
            ("/", 2, "/a/b", None),
            ("/", 2, "/a/b/c", Some("/a/b/")),
            ("/a/", 1, "/a/b", None),
            ("/a/", 1, "/a/b/c/d", Some("/a/b/")),
            ("/a/", 2, "/a/b/c/d", Some("/a/b/c/")),
        ] {
            let got = roll_up(prefix, depth, path);
            let want = want.map_or(Rolled::Memory, |p: &str| Rolled::Prefix(p.into()));
            assert_eq!(got, want, "{prefix} depth {depth}: {path}");
        }
    }

    fn page(prefix: &str, depth: usize, limit: usize, paths: &[&str]) -> (Vec<String>, Option<String>) {
        let mut b = PageBuilder::new(prefix, depth, limit);
        for p in paths {
            if !b.push(p.to_string(), ()) {
                break;
            }
        }
        let (items, next) = b.finish();
        let shown = items
            .iter()
            .map(|i| match i {
                Item::Memory(p, ()) => p.clone(),
                Item::Prefix(p) => format!("{p}*"),
            })
            .collect();
        (shown, next)
    }

    /// Sorted as the store returns them (bytes).
    const TREE: &[&str] = &["/a-b.md", "/a.md", "/a/x", "/a/y/z", "/b", "/c/d", "/c/e"];

    #[test]
    fn pages_count_prefixes_and_end_exactly() {
        let (all, next) = page("/", 1, 10, TREE);
        assert_eq!(all, ["/a-b.md", "/a.md", "/a/*", "/b", "/c/*"]);
        assert_eq!(next, None);
        // Exactly full: no next page (a token must never lead to an empty page).
        let (items, next) = page("/", 1, 5, TREE);
        assert_eq!(items.len(), 5);
        assert_eq!(next, None);
        // One short: the next page resumes after the last item, a prefix.
        let (items, next) = page("/", 1, 3, TREE);
        assert_eq!(items, ["/a-b.md", "/a.md", "/a/*"]);
        let cursor = MemoryCursor::decode(&next.unwrap(), "/", 1).unwrap();
        assert_eq!(cursor.after, "/a/");
        let (bound, inclusive) = resume_bound(&cursor.after);
        assert_eq!((bound.as_str(), inclusive), ("/a0", true));
        let rest: Vec<&str> = TREE
            .iter()
            .copied()
            .filter(|p| if inclusive { *p >= bound.as_str() } else { *p > bound.as_str() })
            .collect();
        assert_eq!(page("/", 1, 3, &rest), (vec!["/b".to_string(), "/c/*".to_string()], None));
        // After a memory the bound is exclusive.
        assert_eq!(resume_bound("/a.md"), ("/a.md".to_string(), false));
        // depth 0: every memory, no prefixes.
        let (items, next) = page("/", 0, 100, TREE);
        assert_eq!(items.len(), TREE.len());
        assert!(next.is_none());
        let (items, _) = page("/", 0, 1, TREE);
        assert_eq!(items, ["/a-b.md"]);
    }

    #[test]
    fn reading_on_skips_a_rolled_up_directory() {
        let mut b = PageBuilder::new("/", 1, 10);
        b.push("/a/x".to_string(), ());
        assert_eq!(b.read_on_after("/a/x"), ("/a0".to_string(), true));
        b.push("/b".to_string(), ());
        assert_eq!(b.read_on_after("/b"), ("/b".to_string(), false));
        let mut flat = PageBuilder::new("/", 0, 10);
        flat.push("/a/x".to_string(), ());
        assert_eq!(flat.read_on_after("/a/x"), ("/a/x".to_string(), false));
    }

    #[test]
    fn page_tokens_belong_to_their_list() {
        let t = MemoryCursor { prefix: "/a/".into(), depth: 1, after: "/a/b".into() }.encode();
        assert_eq!(MemoryCursor::decode(&t, "/a/", 1).unwrap().after, "/a/b");
        assert!(MemoryCursor::decode(&t, "/", 1).unwrap_err().0.contains("path_prefix `/a/`"));
        assert!(MemoryCursor::decode(&t, "/a/", 0).is_err());
        assert!(MemoryCursor::decode("not-a-token", "/a/", 1).is_err());
    }

    #[test]
    fn actors_round_trip_their_wire_shape() {
        let a = Actor::ApiActor { api_key_id: "apikey_1".into() };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"type": "api_actor", "api_key_id": "apikey_1"})
        );
        let (k, id) = a.to_parts();
        assert_eq!(Actor::from_parts(k, id.to_owned()), Some(a));
        assert_eq!(Actor::from_parts("user_actor", "u".into()), None);
    }
}
