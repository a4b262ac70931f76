//! `bridle environments layers`: the package layers under `sessions.sandbox_dir` (size, last
//! use, build log), a layer's build log (`--log`), and eviction by the configured size and age limits.

use clap::Args;

use super::say;
use crate::config::Config;
use crate::packages::layer;

#[derive(Args, Debug)]
pub struct LayersArgs {
    /// Evict now by `sessions.package_layers_max_bytes` and `sessions.package_layer_max_age_secs`
    /// (a server also does after each build).
    #[arg(long)]
    pub evict: bool,
    /// Print the build log of layer KEY (kept for failed builds too, until that key's next
    /// build) instead of the list.
    #[arg(long, value_name = "KEY")]
    pub log: Option<String>,
}

pub fn layers(config: &Config, args: LayersArgs) -> anyhow::Result<()> {
    let dir = &config.sessions.sandbox_dir;
    if let Some(key) = &args.log {
        let text = layer::read_log(dir, key)?;
        print!("{text}");
        return Ok(());
    }
    if args.evict {
        for key in layer::evict(dir, config.sessions.eviction())? {
            say(&format!("evicted {key}"));
        }
    }
    let layers = layer::list(&dir.join("layers"))?;
    say(&format!("{:<34} {:>10} {:<27} LOG", "LAYER", "MIB", "LAST USED"));
    for l in layers.iter().rev() {
        let micros = l.last_used.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
        say(&format!(
            "{:<34} {:>10.1} {:<27} {}",
            l.key,
            l.bytes as f64 / (1 << 20) as f64,
            crate::time::rfc3339(micros),
            layer::log_path(dir, &l.key).display()
        ));
    }
    Ok(())
}
