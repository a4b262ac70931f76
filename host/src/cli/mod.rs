//! Commands for people at a terminal: `bridle sessions list|tail` (HTTP clients of a running
//! server) and `bridle doctor` (checks this machine and config).

pub mod client;
pub mod doctor;
pub mod layers;
pub mod sessions;
pub mod tail;

use std::io::IsTerminal;

use clap::{Args, Subcommand};

use crate::config::Config;

/// Where the server is and how to authenticate (`bridle sessions ...`).
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Base URL of a running server; default: the configured listen address.
    #[arg(long, env = "BRIDLE_BASE_URL")]
    pub url: Option<String>,
    /// API key (`bridle keys create` makes one).
    #[arg(long, env = "BRIDLE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// List sessions, newest first.
    List(sessions::ListArgs),
    /// Print a session's events, then follow the live stream.
    Tail(tail::TailArgs),
}

/// Run `bridle sessions ...`.
pub async fn sessions(config: &Config, command: SessionsCommand) -> anyhow::Result<()> {
    match command {
        SessionsCommand::List(args) => sessions::list(config, args).await,
        SessionsCommand::Tail(args) => tail::tail(config, args).await,
    }
}

#[derive(Subcommand, Debug)]
pub enum EnvironmentsCommand {
    /// List the package layers under `sessions.sandbox_dir` (size, last use, build log).
    Layers(layers::LayersArgs),
}

/// Run `bridle environments ...`.
pub fn environments(config: &Config, command: EnvironmentsCommand) -> anyhow::Result<()> {
    match command {
        EnvironmentsCommand::Layers(args) => layers::layers(config, args),
    }
}

/// Run `bridle doctor`; fails when any check failed.
pub async fn doctor(config: &Config, args: doctor::DoctorArgs) -> anyhow::Result<()> {
    let checks = doctor::run(config).await;
    let failed = doctor::print(&checks, fancy_output(args.no_color));
    anyhow::ensure!(failed == 0, "{failed} check(s) failed; see the fixes above");
    Ok(())
}

/// Colours and spinners only for a person at a terminal: stdout is a TTY, and neither
/// `--no-color` nor `NO_COLOR` (https://no-color.org) asks for plain text.
pub fn fancy_output(no_color: bool) -> bool {
    let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && !no_color_env && std::io::stdout().is_terminal()
}

/// Print a line to stdout. A reader that went away (`bridle sessions list | head`) ends the
/// command quietly instead of panicking in `println!`.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}")
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}
