//! The real agent runtimes, installed from the package registries into one project-local
//! directory and found there by bare program name.
//!
//! Layout of the runtimes directory (default `<data_dir>/runtimes`):
//!
//! ```text
//! npm/                      npm prefix: Claude Code and Codex (pinned, --save-exact)
//!   node_modules/@anthropic-ai/claude-code-linux-x64/claude      native ELF
//!   node_modules/@openai/codex-linux-x64/vendor/<triple>/bin/codex static binary
//! python/                   venv with openai-agents (pinned)
//! lib/bridle_agents_runtime.py
//! bin/claude, bin/codex     relative symlinks to the binaries above
//! bin/bridle-agents-runtime launcher: venv python + lib/bridle_agents_runtime.py
//! .install.lock             exclusive lock while installing
//! ```
//!
//! Everything a runtime needs lives inside the directory (node and the base Python come from
//! the system), links are relative, and directories are 0755, so the sandbox can bind-mount the
//! directory read-only anywhere and run the binaries as an unprivileged user.
//!
//! This module is self-contained (std, anyhow, serde_json): test crates include it with
//! `#[path]` to install runtimes without linking the whole server.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};

/// Pinned Claude Code version (npm `@anthropic-ai/claude-code`).
pub const CLAUDE_CODE_VERSION: &str = "2.1.332";
/// Pinned Codex version (npm `@openai/codex`).
pub const CODEX_VERSION: &str = "0.171.0";
/// Pinned OpenAI Agents SDK version (PyPI `openai-agents`).
pub const OPENAI_AGENTS_VERSION: &str = "0.24.0";

/// The resident openai-agents runtime program, copied into the runtimes dir at install time.
/// Read from the plugin's source tree so the installed copy follows edits to it.
pub const AGENTS_RUNTIME_SOURCE: &str = include_str!("../../plugins/openai-agents/runtime/bridle_agents_runtime.py");

/// Environment variable that overrides the Python used to create the venv.
pub const PYTHON_ENV: &str = "BRIDLE_PYTHON";

/// One installable runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    ClaudeCode,
    Codex,
    OpenaiAgents,
}

impl Runtime {
    pub const ALL: [Runtime; 3] = [Runtime::ClaudeCode, Runtime::Codex, Runtime::OpenaiAgents];

    /// The bare program name launch plans use.
    pub fn program(self) -> &'static str {
        match self {
            Runtime::ClaudeCode => "claude",
            Runtime::Codex => "codex",
            Runtime::OpenaiAgents => "bridle-agents-runtime",
        }
    }

    /// Short name for CLIs (`bridle runtimes install claude codex openai-agents`).
    pub fn name(self) -> &'static str {
        match self {
            Runtime::ClaudeCode => "claude",
            Runtime::Codex => "codex",
            Runtime::OpenaiAgents => "openai-agents",
        }
    }

    /// Registry package name.
    pub fn package(self) -> &'static str {
        match self {
            Runtime::ClaudeCode => "@anthropic-ai/claude-code",
            Runtime::Codex => "@openai/codex",
            Runtime::OpenaiAgents => "openai-agents",
        }
    }

    /// Pinned version.
    pub fn version(self) -> &'static str {
        match self {
            Runtime::ClaudeCode => CLAUDE_CODE_VERSION,
            Runtime::Codex => CODEX_VERSION,
            Runtime::OpenaiAgents => OPENAI_AGENTS_VERSION,
        }
    }

    /// Parse a CLI name, program name or package name.
    pub fn parse(s: &str) -> Option<Runtime> {
        match s.trim() {
            "claude" | "claude-code" | "@anthropic-ai/claude-code" => Some(Runtime::ClaudeCode),
            "codex" | "@openai/codex" => Some(Runtime::Codex),
            "openai-agents" | "bridle-agents-runtime" | "agents" => Some(Runtime::OpenaiAgents),
            _ => None,
        }
    }

    /// The runtime a bare program name belongs to.
    pub fn from_program(program: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.program() == program)
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`Runtimes::status`] knows about one runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeStatus {
    pub runtime: Runtime,
    /// Bare program name (`claude`, `codex`, `bridle-agents-runtime`).
    pub program: &'static str,
    pub pinned_version: &'static str,
    /// Version found on disk, if any.
    pub installed_version: Option<String>,
    /// Absolute path of the program when it is installed and usable.
    pub path: Option<PathBuf>,
    /// Why it is not ready (missing, wrong version, stub binary, ...); `None` when ready.
    pub problem: Option<String>,
    /// The command that fixes it.
    pub fix: String,
}

impl RuntimeStatus {
    pub fn ready(&self) -> bool {
        self.problem.is_none()
    }
}

impl fmt::Display for RuntimeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.problem, &self.path) {
            (None, Some(p)) => write!(f, "{:<14} {} {}", self.runtime.name(), self.pinned_version, p.display()),
            (problem, _) => write!(
                f,
                "{:<14} {} MISSING: {} (fix: {})",
                self.runtime.name(),
                self.pinned_version,
                problem.as_deref().unwrap_or("not installed"),
                self.fix
            ),
        }
    }
}

/// The runtimes directory.
#[derive(Clone, Debug)]
pub struct Runtimes {
    dir: PathBuf,
}

impl Runtimes {
    pub fn new(dir: impl Into<PathBuf>) -> Runtimes {
        Runtimes { dir: dir.into() }
    }

    /// `<data_dir>/runtimes`, the default location.
    pub fn in_data_dir(data_dir: &Path) -> Runtimes {
        Runtimes::new(data_dir.join("runtimes"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/bin`: every program by its bare name (handy as a `PATH` entry).
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    fn npm_prefix(&self) -> PathBuf {
        self.dir.join("npm")
    }

    fn node_modules(&self) -> PathBuf {
        self.npm_prefix().join("node_modules")
    }

    fn venv(&self) -> PathBuf {
        self.dir.join("python")
    }

    fn agents_script(&self) -> PathBuf {
        self.dir.join("lib").join("bridle_agents_runtime.py")
    }

    /// Map a bare program name (`claude`, `codex`, `bridle-agents-runtime`) to the absolute
    /// path of the installed binary. `None` for other names or when it is not installed.
    pub fn resolve(&self, program: &str) -> Option<PathBuf> {
        let runtime = Runtime::from_program(program)?;
        let status = self.status_of(runtime);
        if status.ready() { status.path } else { None }
    }

    /// Every runtime's state, for `bridle doctor` / `bridle runtimes list`.
    pub fn status(&self) -> Vec<RuntimeStatus> {
        Runtime::ALL.into_iter().map(|r| self.status_of(r)).collect()
    }

    /// One runtime's state. Cheap: reads package metadata, spawns nothing.
    pub fn status_of(&self, runtime: Runtime) -> RuntimeStatus {
        let (installed_version, path, problem) = match runtime {
            Runtime::ClaudeCode => self.check_claude(),
            Runtime::Codex => self.check_codex(),
            Runtime::OpenaiAgents => self.check_agents(),
        };
        let path = path.map(|p| absolute(&p));
        RuntimeStatus {
            runtime,
            program: runtime.program(),
            pinned_version: runtime.version(),
            installed_version,
            path,
            problem,
            fix: format!("bridle runtimes install {} (runtimes dir {})", runtime.name(), self.dir.display()),
        }
    }

    fn check_claude(&self) -> (Option<String>, Option<PathBuf>, Option<String>) {
        let nm = self.node_modules();
        let version = package_version(&nm.join("@anthropic-ai/claude-code"));
        if let Some(p) = version_problem(Runtime::ClaudeCode, version.as_deref()) {
            return (version, None, Some(p));
        }
        // The native binary is the platform optional dependency; `bin/claude.exe` is only a
        // stub until the postinstall copies the binary over it (runtimes.md A.6).
        let Some(platform) = claude_platform_package() else {
            return (version, None, Some(format!("no Claude Code binary for {}", std::env::consts::ARCH)));
        };
        let candidates = [nm.join(platform).join("claude"), nm.join("@anthropic-ai/claude-code/bin/claude.exe")];
        match candidates.iter().find(|p| is_elf(p)) {
            Some(p) => (version, Some(p.clone()), None),
            None => (
                version,
                None,
                Some(format!("native binary missing ({} not installed and bin/claude.exe is the stub)", platform)),
            ),
        }
    }

    fn check_codex(&self) -> (Option<String>, Option<PathBuf>, Option<String>) {
        let nm = self.node_modules();
        let version = package_version(&nm.join("@openai/codex"));
        if let Some(p) = version_problem(Runtime::Codex, version.as_deref()) {
            return (version, None, Some(p));
        }
        let Some((platform, triple)) = codex_platform() else {
            return (version, None, Some(format!("no Codex binary for {}", std::env::consts::ARCH)));
        };
        let bin = nm.join(platform).join("vendor").join(triple).join("bin/codex");
        if is_elf(&bin) {
            (version, Some(bin), None)
        } else {
            (version, None, Some(format!("native binary missing: {}", bin.display())))
        }
    }

    fn check_agents(&self) -> (Option<String>, Option<PathBuf>, Option<String>) {
        let version = venv_package_version(&self.venv(), "openai_agents");
        if let Some(p) = version_problem(Runtime::OpenaiAgents, version.as_deref()) {
            return (version, None, Some(p));
        }
        if !is_executable(&self.venv().join("bin/python")) {
            return (version, None, Some("venv python missing".into()));
        }
        match fs::read_to_string(self.agents_script()) {
            Ok(s) if s == AGENTS_RUNTIME_SOURCE => {}
            Ok(_) => return (version, None, Some("runtime program is out of date".into())),
            Err(_) => return (version, None, Some("runtime program missing".into())),
        }
        let launcher = self.bin_dir().join(Runtime::OpenaiAgents.program());
        match fs::read_to_string(&launcher) {
            Ok(s) if s == AGENTS_LAUNCHER && is_executable(&launcher) => (version, Some(launcher), None),
            _ => (version, None, Some("launcher missing".into())),
        }
    }

    /// Install what is missing of `which` at the pinned versions. Idempotent: a runtime
    /// already installed is left alone. Holds `<dir>/.install.lock` so parallel processes
    /// (test binaries) never install concurrently. Blocking (spawns npm / pip); call it from
    /// `spawn_blocking` in async code.
    pub fn install(&self, which: &[Runtime]) -> Result<()> {
        let pending: Vec<Runtime> = which.iter().copied().filter(|r| !self.status_of(*r).ready()).collect();
        if pending.is_empty() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir).with_context(|| format!("creating runtimes dir {}", self.dir.display()))?;
        set_mode(&self.dir, 0o755)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".install.lock"))
            .context("opening the install lock")?;
        lock.lock().context("taking the install lock")?;
        let result = self.install_locked(which);
        // Whatever happened, leave the tree usable by the sandbox's unprivileged user.
        let perms = open_up(&self.dir);
        drop(lock);
        result.and(perms)
    }

    fn install_locked(&self, which: &[Runtime]) -> Result<()> {
        // Re-check under the lock: another process may have installed meanwhile.
        let mut npm_specs = Vec::new();
        for r in [Runtime::ClaudeCode, Runtime::Codex] {
            if which.contains(&r) && !self.status_of(r).ready() {
                npm_specs.push(format!("{}@{}", r.package(), r.version()));
            }
        }
        if !npm_specs.is_empty() {
            self.npm_install(&npm_specs)?;
        }
        if which.contains(&Runtime::ClaudeCode) {
            self.finish_claude()?;
        }
        if which.contains(&Runtime::Codex) {
            let status = self.status_of(Runtime::Codex);
            if let Some(p) = status.problem {
                bail!("codex install incomplete after npm install: {p}");
            }
        }
        if which.contains(&Runtime::OpenaiAgents) && !self.status_of(Runtime::OpenaiAgents).ready() {
            self.install_agents()?;
        }
        self.link_bins(which)?;
        Ok(())
    }

    fn npm_install(&self, specs: &[String]) -> Result<()> {
        let prefix = self.npm_prefix();
        fs::create_dir_all(&prefix)?;
        let mut cmd = Command::new("npm");
        // --save-exact: package.json pins the version, and a later install of the other
        // runtime does not prune or bump this one. --include=optional: the native binaries
        // are optional dependencies.
        cmd.arg("install")
            .arg("--prefix")
            .arg(&prefix)
            .args(["--save-exact", "--include=optional", "--no-audit", "--no-fund", "--loglevel=warn"])
            .args(specs);
        run(&mut cmd)
    }

    /// The stub case: the platform package did not land or the postinstall did not run.
    fn finish_claude(&self) -> Result<()> {
        let status = self.status_of(Runtime::ClaudeCode);
        if status.ready() {
            return Ok(());
        }
        let pkg = self.node_modules().join("@anthropic-ai/claude-code");
        if pkg.join("install.cjs").is_file() {
            let mut cmd = Command::new("node");
            cmd.arg("install.cjs").current_dir(&pkg);
            run(&mut cmd).context("running Claude Code's install.cjs to replace the stub")?;
        }
        let status = self.status_of(Runtime::ClaudeCode);
        match status.problem {
            None => Ok(()),
            Some(p) => bail!("Claude Code install incomplete: {p}"),
        }
    }

    fn install_agents(&self) -> Result<()> {
        let venv = self.venv();
        if !is_executable(&venv.join("bin/python")) {
            let python = base_python();
            let mut cmd = Command::new(&python);
            cmd.arg("-m").arg("venv").arg(&venv);
            run(&mut cmd).with_context(|| format!("creating the venv with {python}"))?;
        }
        let mut cmd = Command::new(venv.join("bin/python"));
        cmd.args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q"]).arg(format!(
            "{}=={}",
            Runtime::OpenaiAgents.package(),
            OPENAI_AGENTS_VERSION
        ));
        run(&mut cmd)?;

        let script = self.agents_script();
        fs::create_dir_all(script.parent().unwrap_or(&self.dir))?;
        fs::write(&script, AGENTS_RUNTIME_SOURCE).with_context(|| format!("writing {}", script.display()))?;
        set_mode(&script, 0o644)?;
        let bin = self.bin_dir();
        fs::create_dir_all(&bin)?;
        let launcher = bin.join(Runtime::OpenaiAgents.program());
        fs::write(&launcher, AGENTS_LAUNCHER).with_context(|| format!("writing {}", launcher.display()))?;
        set_mode(&launcher, 0o755)?;
        match self.status_of(Runtime::OpenaiAgents).problem {
            None => Ok(()),
            Some(p) => bail!("openai-agents install incomplete: {p}"),
        }
    }

    /// `bin/claude` and `bin/codex` as relative links, so `<dir>/bin` works as a PATH entry
    /// wherever the directory is mounted.
    fn link_bins(&self, which: &[Runtime]) -> Result<()> {
        let bin = self.bin_dir();
        fs::create_dir_all(&bin)?;
        for r in [Runtime::ClaudeCode, Runtime::Codex] {
            if !which.contains(&r) {
                continue;
            }
            let Some(target) = self.status_of(r).path else {
                continue;
            };
            let Ok(rel) = target.strip_prefix(absolute(&self.dir)) else {
                continue;
            };
            let link = bin.join(r.program());
            let want = Path::new("..").join(rel);
            if fs::read_link(&link).ok().as_deref() == Some(want.as_path()) {
                continue;
            }
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(&want, &link).with_context(|| format!("linking {}", link.display()))?;
        }
        Ok(())
    }
}

/// Runs the venv's python on the installed runtime program, both found relative to the
/// launcher itself so the directory can be mounted at any path.
const AGENTS_LAUNCHER: &str = r#"#!/bin/sh
# Bridle's resident openai-agents runtime (written by `bridle runtimes install`).
here=$(dirname "$(readlink -f "$0")")
exec "$here/../python/bin/python" "$here/../lib/bridle_agents_runtime.py" "$@"
"#;

fn claude_platform_package() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Some("@anthropic-ai/claude-code-linux-x64"),
        "aarch64" => Some("@anthropic-ai/claude-code-linux-arm64"),
        _ => None,
    }
}

fn codex_platform() -> Option<(&'static str, &'static str)> {
    match std::env::consts::ARCH {
        "x86_64" => Some(("@openai/codex-linux-x64", "x86_64-unknown-linux-musl")),
        "aarch64" => Some(("@openai/codex-linux-arm64", "aarch64-unknown-linux-musl")),
        _ => None,
    }
}

/// The Python that creates the venv: `$BRIDLE_PYTHON`, else the system one (readable by
/// every user, unlike a per-user pyenv under a 0700 home), else `python3` on PATH.
fn base_python() -> String {
    if let Ok(p) = std::env::var(PYTHON_ENV)
        && !p.is_empty()
    {
        return p;
    }
    if is_executable(Path::new("/usr/bin/python3")) {
        return "/usr/bin/python3".into();
    }
    "python3".into()
}

fn version_problem(runtime: Runtime, found: Option<&str>) -> Option<String> {
    match found {
        None => Some("not installed".into()),
        Some(v) if v != runtime.version() => Some(format!("version {v} installed, {} pinned", runtime.version())),
        Some(_) => None,
    }
}

/// `version` from `<pkg>/package.json`.
fn package_version(pkg: &Path) -> Option<String> {
    let text = fs::read_to_string(pkg.join("package.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("version")?.as_str().map(str::to_owned)
}

/// The version of an installed distribution, from its `<name>-<version>.dist-info` directory
/// in the venv's site-packages (no interpreter start-up needed).
fn venv_package_version(venv: &Path, dist: &str) -> Option<String> {
    let lib = venv.join("lib");
    for py in fs::read_dir(&lib).ok()?.flatten() {
        let site = py.path().join("site-packages");
        let Ok(entries) = fs::read_dir(&site) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(rest) = name.strip_suffix(".dist-info")
                && let Some(version) = rest.strip_prefix(dist).and_then(|r| r.strip_prefix('-'))
            {
                return Some(version.to_owned());
            }
        }
    }
    None
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF" && is_executable(path)
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// Make every directory 0755-or-wider and every file world-readable (executables
/// world-executable), whatever umask the installers ran under. Symlinks are skipped.
fn open_up(root: &Path) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = fs::symlink_metadata(&dir)?;
        let mode = meta.permissions().mode();
        if mode & 0o755 != 0o755 {
            set_mode(&dir, (mode | 0o755) & 0o7777)?;
        }
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                let mode = entry.metadata()?.permissions().mode();
                let want = if mode & 0o100 != 0 { mode | 0o555 } else { mode | 0o444 };
                if want != mode {
                    set_mode(&entry.path(), want & 0o7777)?;
                }
            }
        }
    }
    Ok(())
}

/// Run a command to completion; on failure, the error names the command and carries the
/// tail of its output.
fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    );
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| anyhow!("cannot run `{shown}`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let s = s.trim();
        let start = s.char_indices().rev().nth(4000).map(|(i, _)| i).unwrap_or(0);
        s[start..].to_owned()
    };
    bail!("`{shown}` failed ({}):\n{}\n{}", out.status, tail(&out.stderr), tail(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, contents: &[u8], mode: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn fake_npm_pkg(root: &Path, pkg: &str, version: &str) {
        write(
            &root.join("npm/node_modules").join(pkg).join("package.json"),
            format!(r#"{{"name":"{pkg}","version":"{version}"}}"#).as_bytes(),
            0o644,
        );
    }

    const ELF: &[u8] = b"\x7fELF\x02\x01\x01rest";

    fn fake_tree(root: &Path) {
        fake_npm_pkg(root, "@anthropic-ai/claude-code", CLAUDE_CODE_VERSION);
        write(&root.join("npm/node_modules").join(claude_platform_package().unwrap()).join("claude"), ELF, 0o755);
        fake_npm_pkg(root, "@openai/codex", CODEX_VERSION);
        let (p, t) = codex_platform().unwrap();
        write(&root.join("npm/node_modules").join(p).join("vendor").join(t).join("bin/codex"), ELF, 0o755);
        fs::create_dir_all(
            root.join("python/lib/python3.11/site-packages")
                .join(format!("openai_agents-{OPENAI_AGENTS_VERSION}.dist-info")),
        )
        .unwrap();
        write(&root.join("python/bin/python"), b"#!/bin/sh\n", 0o755);
        write(&root.join("lib/bridle_agents_runtime.py"), AGENTS_RUNTIME_SOURCE.as_bytes(), 0o644);
        write(&root.join("bin/bridle-agents-runtime"), AGENTS_LAUNCHER.as_bytes(), 0o755);
    }

    #[test]
    fn resolves_bare_names_in_a_complete_tree() {
        let tmp = tempfile::tempdir().unwrap();
        fake_tree(tmp.path());
        let rt = Runtimes::new(tmp.path());
        let claude = rt.resolve("claude").unwrap();
        assert!(claude.is_absolute());
        assert!(claude.ends_with("claude-code-linux-x64/claude") || cfg!(target_arch = "aarch64"));
        assert!(rt.resolve("codex").unwrap().ends_with("bin/codex"));
        assert_eq!(
            rt.resolve("bridle-agents-runtime").unwrap(),
            absolute(&tmp.path().join("bin/bridle-agents-runtime"))
        );
        assert!(rt.status().iter().all(RuntimeStatus::ready));
    }

    #[test]
    fn unknown_and_missing_programs_resolve_to_none() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = Runtimes::new(tmp.path());
        assert_eq!(rt.resolve("bash"), None);
        assert_eq!(rt.resolve("/usr/bin/claude"), None);
        for s in rt.status() {
            assert_eq!(s.problem.as_deref(), Some("not installed"));
            assert!(s.fix.contains(s.runtime.name()), "{}", s.fix);
            assert!(s.to_string().contains("MISSING"));
        }
        assert_eq!(rt.resolve("claude"), None);
    }

    #[test]
    fn claude_stub_is_not_a_binary() {
        let tmp = tempfile::tempdir().unwrap();
        fake_npm_pkg(tmp.path(), "@anthropic-ai/claude-code", CLAUDE_CODE_VERSION);
        write(
            &tmp.path().join("npm/node_modules/@anthropic-ai/claude-code/bin/claude.exe"),
            b"#!/bin/sh\necho 'Error: claude native binary not installed.'\n",
            0o755,
        );
        let rt = Runtimes::new(tmp.path());
        assert_eq!(rt.resolve("claude"), None);
        let s = rt.status_of(Runtime::ClaudeCode);
        assert!(s.problem.unwrap().contains("stub"));
        // The postinstall having replaced the stub is good enough.
        write(&tmp.path().join("npm/node_modules/@anthropic-ai/claude-code/bin/claude.exe"), ELF, 0o755);
        assert!(rt.resolve("claude").unwrap().ends_with("bin/claude.exe"));
    }

    #[test]
    fn wrong_version_and_stale_runtime_program_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        fake_tree(tmp.path());
        fake_npm_pkg(tmp.path(), "@openai/codex", "0.1.0");
        write(&tmp.path().join("lib/bridle_agents_runtime.py"), b"old", 0o644);
        let rt = Runtimes::new(tmp.path());
        let codex = rt.status_of(Runtime::Codex);
        assert_eq!(codex.installed_version.as_deref(), Some("0.1.0"));
        assert!(codex.problem.unwrap().contains("pinned"));
        assert_eq!(rt.resolve("codex"), None);
        assert!(rt.status_of(Runtime::OpenaiAgents).problem.unwrap().contains("out of date"));
        assert!(rt.resolve("claude").is_some());
    }

    #[test]
    fn parse_accepts_cli_program_and_package_names() {
        for r in Runtime::ALL {
            assert_eq!(Runtime::parse(r.name()), Some(r));
            assert_eq!(Runtime::parse(r.program()), Some(r));
            assert_eq!(Runtime::parse(r.package()), Some(r));
        }
        assert_eq!(Runtime::parse("nope"), None);
    }

    #[test]
    fn open_up_makes_the_tree_readable() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("a/b");
        fs::create_dir_all(&d).unwrap();
        write(&d.join("x"), b"x", 0o700);
        write(&d.join("y"), b"y", 0o600);
        set_mode(&d, 0o700).unwrap();
        open_up(tmp.path()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o755);
        assert_eq!(mode(&d.join("x")), 0o755);
        assert_eq!(mode(&d.join("y")), 0o644);
    }
}
