//! Telling a model about the session's skills, for runtimes that do not
//! discover skills themselves (the host places them; see
//! [`crate::LaunchPlan::skills_dir`]).

use crate::Skill;

/// `system` with a section listing `skills` (placed under `dir`) appended;
/// `system` unchanged (as a JSON value: `null` when absent) without skills.
pub fn with_skills(system: Option<&str>, skills: &[Skill], dir: &str) -> serde_json::Value {
    let system = system.filter(|s| !s.is_empty());
    if skills.is_empty() {
        return system.map_or(serde_json::Value::Null, |s| s.into());
    }
    let dir = dir.trim_end_matches('/');
    let mut text = String::new();
    if let Some(s) = system {
        text.push_str(s);
        text.push_str("\n\n");
    }
    text.push_str(
        "You have skills: folders of instructions and scripts for particular tasks. Before you use one, read its \
         SKILL.md with your tools and follow it.\n",
    );
    for s in skills {
        // One line per skill: a description cannot add lines of its own.
        let description = s.description.split_whitespace().collect::<Vec<_>>().join(" ");
        text.push_str(&format!("- {}: {description} ({dir}/{}/SKILL.md)\n", s.name, s.name));
    }
    text.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(name: &str, description: &str) -> Skill {
        Skill { name: name.into(), description: description.into() }
    }

    #[test]
    fn lists_each_skill_with_its_path() {
        let out = with_skills(Some("Be brief."), &[skill("units", "Convert\nunits.")], "/mnt/session/skills/");
        let text = out.as_str().unwrap();
        assert!(text.starts_with("Be brief.\n\nYou have skills"));
        assert!(text.ends_with("- units: Convert units. (/mnt/session/skills/units/SKILL.md)\n"));
    }

    #[test]
    fn without_skills_the_system_prompt_is_unchanged() {
        assert_eq!(with_skills(Some("x"), &[], "/d"), serde_json::json!("x"));
        assert_eq!(with_skills(None, &[], "/d"), serde_json::Value::Null);
        assert_eq!(with_skills(Some(""), &[], "/d"), serde_json::Value::Null);
        assert!(with_skills(None, &[skill("a", "b")], "/d").as_str().unwrap().starts_with("You have skills"));
    }
}
