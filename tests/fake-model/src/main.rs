//! `bridle-fake-model --listen 127.0.0.1:PORT [--token TOKEN] [--scenario FILE]`: the
//! scripted fake model server for manual runs and the offline demo.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use bridle_fake_model::{Config, FakeModel, Scenario};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Scripted fake Anthropic Messages / OpenAI Responses server (loopback only)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8765")]
    listen: SocketAddr,
    /// Credential every model request must carry (x-api-key or Bearer).
    #[arg(long, env = "BRIDLE_FAKE_MODEL_TOKEN")]
    token: Option<String>,
    /// JSON file: the default scenario for unregistered model names.
    #[arg(long)]
    scenario: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let default_scenario = match &args.scenario {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(serde_json::from_str::<Scenario>(&text).with_context(|| format!("parsing {}", p.display()))?)
        }
        None => None,
    };
    let fm = FakeModel::bind(args.listen, Config { token: args.token, default_scenario })
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!("bridle-fake-model listening on {}", fm.base_url());
    println!("  Anthropic: ANTHROPIC_BASE_URL={}", fm.base_url());
    println!("  OpenAI:    base_url={}", fm.openai_base_url());
    tokio::signal::ctrl_c().await.context("waiting for ctrl-c")?;
    Ok(())
}
