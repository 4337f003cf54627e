//! `ptt-node run`: the flags laid over the configuration file ([`run_settings`]), turned into
//! the daemon's [`RunConfig`], and the daemon run until SIGTERM or SIGINT.
//!
//! This room only assembles the configuration and waits for the signal: everything the
//! daemon does is `crate::daemon`'s.

use super::{CliError, RunArgs};
use crate::daemon::{self, RunConfig};
use crate::net::NetConfig;

/// The settings of `ptt-node run`: its flags over its configuration file. `main` reads them
/// once, before logging starts (the file may set the log filter), and hands them to [`main`](super::main).
pub fn run_settings(a: &RunArgs) -> Result<crate::config::Settings, CliError> {
    let env = crate::paths::Env::from_process();
    // --config, else $PTT_NODE_CONFIG, else the service's configuration directory's file
    // when there is one.
    let path = a.config.clone().or_else(|| {
        env.default_config()
            .filter(|p| env.config.is_some() || p.exists())
    });
    let file = match &path {
        Some(p) => crate::config::FileConfig::load(p)?,
        None => crate::config::FileConfig::default(),
    };
    Ok(crate::config::combine(&a.overrides(), file)?)
}

/// Runs the daemon with the settings [`run_settings`] read.
pub(super) async fn run(
    a: RunArgs,
    s: Result<crate::config::Settings, CliError>,
) -> Result<(), CliError> {
    let s = s?;
    let env = crate::paths::Env::from_process();
    let data = s.data.clone().unwrap_or_else(|| env.default_data_dir());
    let socket = s.socket.clone().unwrap_or_else(|| env.daemon_socket(&data));
    let cfg = RunConfig {
        bundle: s.bundle,
        group_socket: s.socket.is_none() && env.group_socket(&socket),
        socket,
        data,
        metrics: s.metrics,
        listen: s.listen,
        peers: s.peers,
        net: NetConfig {
            mdns_interval: std::time::Duration::from_secs(s.mdns_interval_secs),
            mdns: s.mdns,
            broker: s.broker,
            // From the bundle, when the domain has a private network (set by the daemon).
            psk: None,
            // From the bundle (set by the daemon).
            domain: None,
        },
        rules: match &s.rules {
            Some(p) => crate::rules::Rules::load(p)?,
            None => crate::rules::Rules::default(),
        },
        rules_path: s.rules.clone(),
        retention: crate::store::Retention {
            max_age_us: s.retention_hours * 3600 * 1_000_000,
            max_bytes: s.retention_mib * 1024 * 1024,
        },
        ignore_own_rate_limit: a.ignore_own_rate_limit,
        no_receipts: a.no_receipts,
        max_peers: s.max_peers as usize,
        plane: s.plane.clone(),
    };
    daemon::run(cfg, shutdown_signal()).await?;
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT (Ctrl-C when those cannot be watched).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {},
                _ = i.recv() => {},
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
