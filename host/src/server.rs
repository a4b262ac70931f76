//! Start-up and shutdown of `bridle serve`.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::bus::Bus;
use crate::config::Config;
use crate::secrets::SecretBox;
use crate::store::Store;

/// Create the data dir (0700: it holds the key and the database) and open
/// the store.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    prepare_data_dir(config)?;
    Store::connect(&config.database_url()).await
}

pub fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting permissions of {}", dir.display()))?;
    Ok(())
}

/// Everything the API needs, from config.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let store = open_store(&config).await?;
    let secrets = SecretBox::load_or_create(config.secret_key.as_deref(), &config.data_dir)?;
    let limiter = api::auth::limiter(config.rate_limit_per_second);
    Ok(AppState { store, bus: Arc::new(Bus::default()), secrets, config: Arc::new(config), limiter })
}

/// Run the server until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let state = build_state(config).await?;
    if state.store.count_active_api_keys().await? == 0 {
        let (row, raw) = crate::keys::create_key(&state.store, "initial").await?;
        // Printed once, to the terminal; only the hash is stored.
        eprintln!(
            "\nNo API key existed, so one was created ({}). Keep it; it is not shown again:\n\n    {raw}\n",
            row.id
        );
    }
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        database = ?state.store.backend(),
        data_dir = %state.config.data_dir.display(),
        "bridle listening on http://{addr}"
    );
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server error")?;
    tracing::info!("bridle stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
