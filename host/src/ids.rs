//! Object identifiers: a type prefix (`agent_`, `sesn_`, ...) and a ULID, so
//! ids sort by creation time and a wrong-kind id is caught by its prefix.

use ulid::Ulid;

/// The id prefixes of the Managed Agents object kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Agent,
    Environment,
    Session,
    Event,
    Vault,
    Credential,
    File,
    SessionResource,
    SessionThread,
    Skill,
    MemoryStore,
    Memory,
    MemoryVersion,
    ApiKey,
    EnvironmentKey,
    Work,
    Request,
}

impl Kind {
    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::Agent => "agent_",
            Kind::Environment => "env_",
            Kind::Session => "sesn_",
            Kind::Event => "sevt_",
            Kind::Vault => "vlt_",
            Kind::Credential => "vcrd_",
            Kind::File => "file_",
            Kind::SessionResource => "sesrsc_",
            Kind::SessionThread => "sthr_",
            Kind::Skill => "skill_",
            Kind::MemoryStore => "memstore_",
            Kind::Memory => "mem_",
            Kind::MemoryVersion => "memver_",
            Kind::ApiKey => "apikey_",
            Kind::EnvironmentKey => "envkey_",
            Kind::Work => "work_",
            Kind::Request => "req_",
        }
    }

    /// The noun used in error messages.
    pub const fn noun(self) -> &'static str {
        match self {
            Kind::Agent => "agent",
            Kind::Environment => "environment",
            Kind::Session => "session",
            Kind::Event => "event",
            Kind::Vault => "vault",
            Kind::Credential => "credential",
            Kind::File => "file",
            Kind::SessionResource => "session resource",
            Kind::SessionThread => "session thread",
            Kind::Skill => "skill",
            Kind::MemoryStore => "memory store",
            Kind::Memory => "memory",
            Kind::MemoryVersion => "memory version",
            Kind::ApiKey => "API key",
            Kind::EnvironmentKey => "environment key",
            Kind::Work => "work item",
            Kind::Request => "request",
        }
    }
}

/// A fresh id of the given kind.
pub fn new_id(kind: Kind) -> String {
    format!("{}{}", kind.prefix(), Ulid::new())
}

/// Whether `id` looks like an id of `kind` (prefix and a plausible body).
pub fn has_kind(id: &str, kind: Kind) -> bool {
    id.strip_prefix(kind.prefix())
        .is_some_and(|rest| !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_are_recognised() {
        let id = new_id(Kind::Session);
        assert!(id.starts_with("sesn_"));
        assert!(has_kind(&id, Kind::Session));
        assert!(!has_kind(&id, Kind::Agent));
        assert!(!has_kind("sesn_", Kind::Session));
        assert!(!has_kind("sesn_a/b", Kind::Session));
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = new_id(Kind::Event);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(Kind::Event);
        assert!(a < b);
    }
}
