//! Skills: what an upload must look like, and the archive it is kept as.
//!
//! A skill version is a directory of files with a `SKILL.md` at its root whose
//! YAML front matter names the skill and says what it is for, as the Skills
//! API defines it. It is kept as one zip archive (what `download` returns and
//! what is unpacked into a session's sandbox).

use std::io::{Cursor, Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::common::Invalid;

/// The largest skill version (all its files together), as in Anthropic's API.
pub const MAX_SKILL_BYTES: usize = 8 << 20;
/// The most files one version may hold.
pub const MAX_SKILL_FILES: usize = 1000;
const MAX_NAME: usize = 64;
const MAX_DESCRIPTION: usize = 1024;
const MAX_DISPLAY_NAME: usize = 255;
/// Names Anthropic reserves for its own skills.
const RESERVED_WORDS: &[&str] = &["anthropic", "claude"];

/// One validated upload: the skill's slug, its description and its files
/// (paths relative to the skill's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillUpload {
    pub name: String,
    pub description: String,
    /// The `name` of the front matter when it has one (the display name's default).
    pub title: Option<String>,
    pub files: Vec<(String, Vec<u8>)>,
}

#[derive(Deserialize)]
struct FrontMatter {
    name: Option<String>,
    description: Option<String>,
}

/// Check one path of an upload; returns its segments.
fn segments(path: &str) -> Result<Vec<&str>, Invalid> {
    let bad = |why: &str| Invalid::new(format!("files: `{path}` {why}"));
    if path.is_empty() || path.len() > 1024 {
        return Err(bad("must be a relative path of 1 to 1024 bytes"));
    }
    if path.contains('\\') || path.contains('\0') || path.chars().any(char::is_control) {
        return Err(bad("contains a backslash or a control character"));
    }
    if path.starts_with('/') {
        return Err(bad("is absolute; give paths relative to the skill, e.g. `my-skill/SKILL.md`"));
    }
    let segs: Vec<&str> = path.split('/').collect();
    if segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(bad("has an empty, `.` or `..` segment"));
    }
    Ok(segs)
}

/// Validate uploaded files (`(filename as sent, bytes)`) into a skill.
pub fn parse_upload(files: Vec<(String, Vec<u8>)>) -> Result<SkillUpload, Invalid> {
    if files.is_empty() {
        return Err(Invalid::new("files: at least one file is required, including `<skill>/SKILL.md`"));
    }
    if files.len() > MAX_SKILL_FILES {
        return Err(Invalid::new(format!("files: at most {MAX_SKILL_FILES} files per skill version")));
    }
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    if total > MAX_SKILL_BYTES {
        return Err(Invalid::new(format!(
            "files: {total} bytes in all; a skill version holds at most {MAX_SKILL_BYTES}"
        )));
    }
    let mut top: Option<String> = None;
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let segs = segments(&path)?;
        if segs.len() < 2 {
            return Err(Invalid::new(format!(
                "files: `{path}` is not inside the skill's directory; every file must be under one top-level \
                 directory, e.g. `my-skill/SKILL.md`"
            )));
        }
        match &top {
            None => top = Some(segs[0].to_owned()),
            Some(t) if t != segs[0] => {
                return Err(Invalid::new(format!(
                    "files: all files must be in the same top-level directory; found `{t}/` and `{}/`",
                    segs[0]
                )));
            }
            Some(_) => {}
        }
        let rel = segs[1..].join("/");
        if out.iter().any(|(p, _)| *p == rel) {
            return Err(Invalid::new(format!("files: `{path}` is given twice")));
        }
        out.push((rel, bytes));
    }
    let dir = top.unwrap_or_default();
    let skill_md = out
        .iter()
        .find(|(p, _)| p == "SKILL.md")
        .ok_or_else(|| Invalid::new(format!("files: no `{dir}/SKILL.md`; a skill needs a SKILL.md at its root")))?;
    let text = std::str::from_utf8(&skill_md.1).map_err(|_| Invalid::new("SKILL.md: not UTF-8 text"))?;
    let fm = front_matter(text)?;
    let name = match fm.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => n.to_owned(),
        None => dir.clone(),
    };
    check_name(&name)?;
    let description = fm.description.as_deref().map(str::trim).unwrap_or_default().to_owned();
    if description.is_empty() || description.len() > MAX_DESCRIPTION {
        return Err(Invalid::new(format!(
            "SKILL.md: the front matter needs a `description` of 1 to {MAX_DESCRIPTION} characters (what the skill \
             does and when to use it)"
        )));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(SkillUpload { name, description, title: fm.name.map(|n| n.trim().to_owned()), files: out })
}

/// The YAML between the leading `---` lines of SKILL.md.
fn front_matter(text: &str) -> Result<FrontMatter, Invalid> {
    let missing = || {
        Invalid::new(
            "SKILL.md: it must start with YAML front matter between `---` lines, with `name` and `description`",
        )
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text.strip_prefix("---").ok_or_else(missing)?;
    let rest = rest.strip_prefix("\r\n").or_else(|| rest.strip_prefix('\n')).ok_or_else(missing)?;
    let end = rest.lines().scan(0usize, |at, line| {
        let start = *at;
        *at += line.len() + 1;
        Some((start, line))
    });
    let close = end.into_iter().find(|(_, l)| l.trim_end() == "---").map(|(i, _)| i).ok_or_else(missing)?;
    serde_yaml_ng::from_str::<FrontMatter>(&rest[..close])
        .map_err(|e| Invalid::new(format!("SKILL.md: the front matter is not valid YAML: {e}")))
}

/// A skill's slug: lowercase letters, digits and hyphens.
pub fn check_name(name: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(Invalid::new(format!(
            "SKILL.md: name `{name}` must be 1 to {MAX_NAME} lowercase letters, digits and hyphens (kebab-case)"
        )));
    }
    if let Some(w) = RESERVED_WORDS.iter().find(|w| name.contains(*w)) {
        return Err(Invalid::new(format!("SKILL.md: name `{name}` contains the reserved word `{w}`")));
    }
    Ok(())
}

/// A display name as given (one line, at most 255 characters).
pub fn check_display_name(name: &str) -> Result<(), Invalid> {
    if name.trim().is_empty() || name.chars().count() > MAX_DISPLAY_NAME || name.contains(['\n', '\r']) {
        return Err(Invalid::new(format!("display_name: must be one line of 1 to {MAX_DISPLAY_NAME} characters")));
    }
    Ok(())
}

/// The archive of a version: `<name>/<path>` entries, deflated.
pub fn archive(upload: &SkillUpload) -> anyhow::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (path, bytes) in &upload.files {
        zip.start_file(format!("{}/{path}", upload.name), opts)?;
        zip.write_all(bytes)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// The files of an archive made by [`archive`], paths relative to the skill.
pub fn unpack(name: &str, archive: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut zip = zip::ZipArchive::new(Cursor::new(archive))?;
    let prefix = format!("{name}/");
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut f = zip.by_index(i)?;
        let path = f.name()?.into_owned();
        let rel =
            path.strip_prefix(&prefix).ok_or_else(|| anyhow::anyhow!("archive entry `{path}` outside `{name}/`"))?;
        segments(rel).map_err(|e| anyhow::anyhow!("archive entry `{path}`: {}", e.0))?;
        let mut bytes = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut bytes)?;
        out.push((rel.to_owned(), bytes));
    }
    Ok(out)
}

/// A skill as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Skill {
    pub id: String,
    pub created_at: String,
    pub display_name: String,
    pub latest_version_id: String,
    /// Always `custom` here: Anthropic's own skills cannot be fetched.
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub updated_at: String,
}

/// A skill version as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkillVersion {
    /// Also the version's Unix epoch timestamp in microseconds, so the
    /// `skills-2025-10-02` beta's timestamp addressing finds it too.
    pub id: String,
    pub created_at: String,
    pub description: String,
    pub name: String,
    pub skill_id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// An agent's `skills` entry once resolved: the version pinned.
pub fn agent_entry(skill_id: &str, version: &str) -> Value {
    json!({"type": "custom", "skill_id": skill_id, "version": version})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(front: &str) -> Vec<u8> {
        format!("---\n{front}\n---\n# Body\nDo the thing.\n").into_bytes()
    }

    fn upload(files: &[(&str, Vec<u8>)]) -> Result<SkillUpload, String> {
        parse_upload(files.iter().map(|(p, b)| (p.to_string(), b.clone())).collect()).map_err(|e| e.0)
    }

    #[test]
    fn a_good_upload_names_the_skill_from_its_front_matter() {
        let s = upload(&[
            ("pdf-tools/SKILL.md", md("name: pdf-tools\ndescription: Fill PDF forms. Use for PDFs.")),
            ("pdf-tools/scripts/fill.py", b"print(1)".to_vec()),
        ])
        .unwrap();
        assert_eq!(s.name, "pdf-tools");
        assert_eq!(s.description, "Fill PDF forms. Use for PDFs.");
        assert_eq!(s.files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["SKILL.md", "scripts/fill.py"]);
        let zip = archive(&s).unwrap();
        assert_eq!(unpack("pdf-tools", &zip).unwrap(), s.files);
    }

    #[test]
    fn the_directory_names_a_skill_whose_front_matter_does_not() {
        let s = upload(&[("csv-helper/SKILL.md", md("description: >\n  Clean CSV files,\n  quickly."))]).unwrap();
        assert_eq!(s.name, "csv-helper");
        assert_eq!(s.description, "Clean CSV files, quickly.");
        assert_eq!(s.title, None);
    }

    #[test]
    fn bad_uploads_say_what_is_wrong() {
        let ok = md("name: x\ndescription: d");
        type Upload<'a> = Vec<(&'a str, Vec<u8>)>;
        let cases: Vec<(Upload, &str)> = vec![
            (vec![], "at least one file"),
            (vec![("SKILL.md", ok.clone())], "not inside the skill's directory"),
            (vec![("a/SKILL.md", ok.clone()), ("b/x.txt", vec![])], "same top-level directory"),
            (vec![("a/notes.txt", vec![])], "no `a/SKILL.md`"),
            (vec![("a/../SKILL.md", ok.clone())], "`..` segment"),
            (vec![("/a/SKILL.md", ok.clone())], "is absolute"),
            (vec![("a\\SKILL.md", ok.clone())], "backslash"),
            (vec![("a/SKILL.md", ok.clone()), ("a/SKILL.md", ok.clone())], "given twice"),
            (vec![("a/SKILL.md", b"# no front matter".to_vec())], "front matter"),
            (vec![("a/SKILL.md", b"---\nname: a\n".to_vec())], "front matter"),
            (vec![("a/SKILL.md", md("name: [unclosed"))], "not valid YAML"),
            (vec![("a/SKILL.md", md("name: Bad_Name\ndescription: d"))], "kebab-case"),
            (vec![("a/SKILL.md", md("name: my-claude-skill\ndescription: d"))], "reserved word `claude`"),
            (vec![("a/SKILL.md", md("name: a"))], "`description`"),
            (vec![("a/SKILL.md", vec![0xff, 0xfe])], "not UTF-8"),
            (vec![("a/SKILL.md", ok.clone()), ("a/big", vec![0; MAX_SKILL_BYTES])], "at most"),
        ];
        for (files, want) in cases {
            let names: Vec<&str> = files.iter().map(|f| f.0).collect();
            let err = upload(&files).expect_err(&format!("{names:?} should be refused"));
            assert!(err.contains(want), "{names:?}: `{err}` should mention `{want}`");
        }
    }

    #[test]
    fn names_follow_the_slug_rules() {
        for good in ["a", "pdf-tools", "x1-2", &"a".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a b", &"a".repeat(65), "anthropic-x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
