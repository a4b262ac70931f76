//! The `bridle` command: the server and its operator tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bridle::config::{Config, LogFormat, Overrides};

#[derive(Parser)]
#[command(name = "bridle", version, about = "A self-hostable Managed Agents server")]
struct Cli {
    /// TOML config file (settings also come from BRIDLE_* env variables).
    #[arg(long, global = true, env = "BRIDLE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, secret key, node id, plugin cache).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite://... or postgres://...
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    Serve {
        /// Listen address, e.g. 127.0.0.1:4040.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Environments: the keys self-hosted workers poll with, and the package layers on this
    /// node's sandbox dir.
    Environments {
        #[command(subcommand)]
        command: EnvironmentsCommand,
    },
    /// List the configured harness plugins, or inspect a component file.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Install and inspect the agent runtimes (Claude Code, codex, openai-agents).
    Runtimes {
        #[command(subcommand)]
        command: RuntimesCommand,
    },
    /// Sessions on a running server: list them, or follow one's events.
    Sessions {
        #[command(subcommand)]
        command: bridle::cli::SessionsCommand,
    },
    /// Check runtimes, sandbox support, database, plugins and permissions; says what to fix.
    Doctor(bridle::cli::doctor::DoctorArgs),
    /// Print the OpenAPI document of the HTTP API (regenerates host/openapi.json).
    Openapi,
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Every configured engine: version, execution model, API shape, source.
    List,
    /// What a `.wasm` component declares and whether this server can load it.
    Inspect {
        /// Path to a `.wasm` component.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum RuntimesCommand {
    /// Install the pinned runtimes (all, or those named) into `runtimes_dir`.
    Install {
        /// claude, codex or openai-agents; default: all.
        names: Vec<String>,
    },
    /// Show what is installed and what is missing.
    List,
}

#[derive(Subcommand)]
enum EnvironmentsCommand {
    /// Environment keys: a worker (the SDKs' EnvironmentWorker) authenticates with one.
    Keys {
        #[command(subcommand)]
        command: EnvironmentKeysCommand,
    },
    /// List the package layers under `sessions.sandbox_dir` (size, last use, build log); evict by the limits.
    Layers(bridle::cli::layers::LayersArgs),
}

#[derive(Subcommand)]
enum EnvironmentKeysCommand {
    /// Create a key for one self-hosted environment and print it (only once).
    Create {
        /// The environment (`env_...`); it must be self_hosted.
        environment_id: String,
        /// A label shown by `environments keys list`.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List environment keys (never their secret).
    List {
        /// Only this environment's keys.
        #[arg(long)]
        environment: Option<String>,
    },
    /// Revoke an environment key by id: workers using it get 401 at once.
    Revoke {
        /// Key id (`envkey_...`, as `environments keys list` shows).
        id: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (only once).
    Create {
        /// A label shown by `keys list`.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List keys (never their secret).
    List,
    /// Revoke a key by id.
    Revoke {
        /// Key id (`apikey_...`, as `keys list` shows).
        id: String,
    },
}

fn init_tracing(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BRIDLE_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut overrides = Overrides {
        data_dir: cli.data_dir,
        database_url: cli.database_url,
        log_format: cli.log_format.map(|f| match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }),
        ..Default::default()
    };
    if let Command::Serve { listen } = &cli.command {
        overrides.listen = *listen;
    }
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    // The commands for people print their own findings; logs only for real trouble.
    let quiet = matches!(
        cli.command,
        Command::Sessions { .. } | Command::Doctor(_) | Command::Plugins { .. } | Command::Environments { .. }
    );
    init_tracing(config.log_format, if quiet { "error" } else { "info,sqlx=warn" });
    match cli.command {
        Command::Serve { .. } => bridle::server::serve(config).await,
        Command::Openapi => {
            print!("{}", bridle::api::openapi::document_json());
            Ok(())
        }
        Command::Sessions { command } => bridle::cli::sessions(&config, command).await,
        Command::Doctor(args) => bridle::cli::doctor(&config, args).await,
        Command::Environments { command: EnvironmentsCommand::Layers(args) } => {
            bridle::cli::environments(&config, bridle::cli::EnvironmentsCommand::Layers(args))
        }
        Command::Plugins { command: PluginsCommand::Inspect { file } } => {
            let desc = tokio::task::spawn_blocking(move || bridle_harness::inspect(&file)).await??;
            println!("{desc}");
            Ok(())
        }
        Command::Plugins { command: PluginsCommand::List } => {
            let runtime = bridle::server::harness_runtime(&config).await?;
            println!("{:<16} {:<9} {:<18} {:<20} {:<9} SOURCE", "ENGINE", "VERSION", "MODEL", "API", "CONTRACT");
            for e in runtime.registry().entries() {
                match &e.plugin {
                    Ok(p) => {
                        let info = p.info();
                        println!(
                            "{:<16} {:<9} {:<18} {:<20} {:<9} {}",
                            e.engine,
                            info.version,
                            format!("{:?}", info.execution_model),
                            format!("{:?}", info.api_shape),
                            p.contract_version(),
                            e.source
                        );
                    }
                    Err(err) => println!("{:<16} unavailable: {err}", e.engine),
                }
            }
            Ok(())
        }
        Command::Runtimes { command } => {
            use bridle::runtimes::{Runtime, Runtimes};
            let runtimes = Runtimes::new(&config.runtimes_dir);
            match command {
                RuntimesCommand::Install { names } => {
                    let which = if names.is_empty() {
                        Runtime::ALL.to_vec()
                    } else {
                        names
                            .iter()
                            .map(|n| {
                                Runtime::parse(n).ok_or_else(|| {
                                    anyhow::anyhow!("unknown runtime `{n}`; expected claude, codex or openai-agents")
                                })
                            })
                            .collect::<anyhow::Result<Vec<_>>>()?
                    };
                    let r = runtimes.clone();
                    tokio::task::spawn_blocking(move || r.install(&which)).await??;
                    for st in runtimes.status() {
                        println!("{st}");
                    }
                }
                RuntimesCommand::List => {
                    for st in runtimes.status() {
                        println!("{st}");
                    }
                }
            }
            Ok(())
        }
        Command::Environments { command: EnvironmentsCommand::Keys { command } } => {
            let store = bridle::server::open_store(&config).await?;
            environment_keys(&store, command).await
        }
        Command::Keys { command } => {
            let store = bridle::server::open_store(&config).await?;
            match command {
                KeysCommand::Create { name } => {
                    let (row, raw) = bridle::keys::create_key(&store, &name).await?;
                    eprintln!("created API key {} ({name}); it is shown only this once:", row.id);
                    println!("{raw}");
                }
                KeysCommand::List => {
                    println!("{:<34} {:<16} {:<20} {:<28} STATUS", "ID", "NAME", "KEY", "CREATED");
                    for k in store.list_api_keys().await? {
                        let status = if k.revoked_at.is_some() { "revoked" } else { "active" };
                        println!(
                            "{:<34} {:<16} {:<20} {:<28} {status}",
                            k.id,
                            k.name,
                            k.hint,
                            bridle::time::rfc3339(k.created_at)
                        );
                    }
                }
                KeysCommand::Revoke { id } => {
                    anyhow::ensure!(
                        store.revoke_api_key(&id, bridle::time::now_micros()).await?,
                        "no active API key with id {id}"
                    );
                    eprintln!("revoked {id}");
                }
            }
            Ok(())
        }
    }
}

async fn environment_keys(store: &bridle::store::Store, command: EnvironmentKeysCommand) -> anyhow::Result<()> {
    use bridle::model::environments::Environment;
    use bridle::store::Table;
    match command {
        EnvironmentKeysCommand::Create { environment_id, name } => {
            let env = store
                .get_doc::<Environment>(Table::Environments, &environment_id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no environment `{environment_id}`"))?;
            anyhow::ensure!(
                env.doc.config.is_self_hosted(),
                "environment `{environment_id}` is a cloud environment: only self_hosted environments have workers"
            );
            let (row, raw) = bridle::keys::create_environment_key(store, &environment_id, &name).await?;
            eprintln!("created environment key {} ({name}) for {environment_id}; it is shown only this once:", row.id);
            println!("{raw}");
        }
        EnvironmentKeysCommand::List { environment } => {
            println!("{:<36} {:<36} {:<16} {:<24} {:<28} STATUS", "ID", "ENVIRONMENT", "NAME", "KEY", "CREATED");
            for k in store.list_environment_keys(environment.as_deref()).await? {
                let status = if k.revoked_at.is_some() { "revoked" } else { "active" };
                println!(
                    "{:<36} {:<36} {:<16} {:<24} {:<28} {status}",
                    k.id,
                    k.environment_id,
                    k.name,
                    k.hint,
                    bridle::time::rfc3339(k.created_at)
                );
            }
        }
        EnvironmentKeysCommand::Revoke { id } => {
            anyhow::ensure!(
                store.revoke_environment_key(&id, bridle::time::now_micros()).await?,
                "no active environment key with id {id}"
            );
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // Inside a sandbox this binary doubles as its init process.
    bridle_sandbox::init::run_if_init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
