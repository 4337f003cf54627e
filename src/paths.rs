//! Where a daemon keeps its state and its control socket, and where the CLI looks for a
//! running daemon when it is given neither `--data` nor `--socket`.
//!
//! As a systemd service (the unit in `scripts/ptt-node.service`) systemd hands the daemon its
//! directories in `STATE_DIRECTORY` (`/var/lib/ptt-node`), `RUNTIME_DIRECTORY`
//! (`/run/ptt-node`) and `CONFIGURATION_DIRECTORY` (`/etc/ptt-node`). Run by hand, it uses
//! the per-user XDG directories. Everything here is a pure function of an [`Env`] so the
//! rules are tested without touching the process environment.

use std::path::{Path, PathBuf};

/// The control socket's file name.
pub const SOCKET: &str = "control.sock";
/// The configuration file's name in a configuration directory.
pub const CONFIG: &str = "ptt-node.toml";
/// Where the service's control socket is (its `RuntimeDirectory`).
pub const SERVICE_RUN_DIR: &str = "/run/ptt-node";

/// The environment variables the defaults depend on.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `PTT_NODE_DATA`: the data directory.
    pub data: Option<PathBuf>,
    /// `PTT_NODE_SOCKET`: the control socket (daemon and CLI).
    pub socket: Option<PathBuf>,
    /// `PTT_NODE_CONFIG`: the configuration file of `ptt-node run`.
    pub config: Option<PathBuf>,
    /// systemd's `STATE_DIRECTORY` (first entry).
    pub state_directory: Option<PathBuf>,
    /// systemd's `RUNTIME_DIRECTORY` (first entry).
    pub runtime_directory: Option<PathBuf>,
    /// systemd's `CONFIGURATION_DIRECTORY` (first entry).
    pub configuration_directory: Option<PathBuf>,
    /// `XDG_STATE_HOME`.
    pub xdg_state_home: Option<PathBuf>,
    /// `XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
}

impl Env {
    /// Reads the process environment. Empty values count as unset; systemd's directory
    /// variables may list several paths separated by `:`, of which the first is used.
    pub fn from_process() -> Self {
        fn var(k: &str) -> Option<PathBuf> {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        }
        fn first(k: &str) -> Option<PathBuf> {
            let v = std::env::var(k).ok()?;
            v.split(':')
                .next()
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        }
        Env {
            data: var("PTT_NODE_DATA"),
            socket: var("PTT_NODE_SOCKET"),
            config: var("PTT_NODE_CONFIG"),
            state_directory: first("STATE_DIRECTORY"),
            runtime_directory: first("RUNTIME_DIRECTORY"),
            configuration_directory: first("CONFIGURATION_DIRECTORY"),
            xdg_state_home: var("XDG_STATE_HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            home: var("HOME"),
        }
    }

    /// The per-user data directory: `$XDG_STATE_HOME/ptt-node`, else
    /// `~/.local/state/ptt-node`.
    fn user_data_dir(&self) -> Option<PathBuf> {
        if let Some(d) = &self.xdg_state_home {
            return Some(d.join("ptt-node"));
        }
        self.home.as_ref().map(|h| h.join(".local/state/ptt-node"))
    }

    /// The data directory when none is given: `$PTT_NODE_DATA`, else the service's state
    /// directory, else the per-user one, else `/var/lib/ptt-node`.
    pub fn default_data_dir(&self) -> PathBuf {
        self.data
            .clone()
            .or_else(|| self.state_directory.clone())
            .or_else(|| self.user_data_dir())
            .unwrap_or_else(|| PathBuf::from("/var/lib/ptt-node"))
    }

    /// Where a daemon with data directory `data` puts its control socket when none is
    /// given: `$PTT_NODE_SOCKET`, else the service's runtime directory, else `DATA`.
    pub fn daemon_socket(&self, data: &Path) -> PathBuf {
        if let Some(s) = &self.socket {
            return s.clone();
        }
        match &self.runtime_directory {
            Some(r) => r.join(SOCKET),
            None => data.join(SOCKET),
        }
    }

    /// Whether the socket is the service's, shared with the members of its group (mode
    /// 0660 in a 0750 directory) so that operators need not be root to use the CLI.
    pub fn group_socket(&self, socket: &Path) -> bool {
        self.socket.is_none()
            && self
                .runtime_directory
                .as_ref()
                .is_some_and(|r| socket == r.join(SOCKET))
    }

    /// The configuration file `ptt-node run` reads when `--config` is not given:
    /// `$PTT_NODE_CONFIG`, else `ptt-node.toml` in the service's configuration directory;
    /// a by-hand run reads none unless told.
    pub fn default_config(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            self.configuration_directory
                .as_ref()
                .map(|d| d.join(CONFIG))
        })
    }

    /// The sockets the CLI tries, in order, when it is given neither `--socket` nor
    /// `--data`: `$PTT_NODE_SOCKET` alone when set, else `$PTT_NODE_DATA`'s alone when
    /// set, else the per-user daemon's and then the service's.
    pub fn client_sockets(&self) -> Vec<PathBuf> {
        if let Some(s) = &self.socket {
            return vec![s.clone()];
        }
        if let Some(d) = &self.data {
            return vec![d.join(SOCKET)];
        }
        let mut v = Vec::new();
        if let Some(d) = self.user_data_dir() {
            v.push(d.join(SOCKET));
        }
        v.push(Path::new(SERVICE_RUN_DIR).join(SOCKET));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn a_service_uses_the_directories_systemd_gives_it() {
        let e = Env {
            state_directory: Some(p("/var/lib/ptt-node")),
            runtime_directory: Some(p("/run/ptt-node")),
            configuration_directory: Some(p("/etc/ptt-node")),
            home: Some(p("/nonexistent")),
            ..Env::default()
        };
        let data = e.default_data_dir();
        assert_eq!(data, p("/var/lib/ptt-node"));
        let sock = e.daemon_socket(&data);
        assert_eq!(sock, p("/run/ptt-node/control.sock"));
        assert!(e.group_socket(&sock));
        assert!(!e.group_socket(&p("/elsewhere/control.sock")));
        assert_eq!(e.default_config(), Some(p("/etc/ptt-node/ptt-node.toml")));
    }

    #[test]
    fn a_user_run_uses_xdg_directories_and_reads_no_configuration_unless_told() {
        let e = Env {
            home: Some(p("/home/ann")),
            ..Env::default()
        };
        let data = e.default_data_dir();
        assert_eq!(data, p("/home/ann/.local/state/ptt-node"));
        assert_eq!(
            e.daemon_socket(&data),
            p("/home/ann/.local/state/ptt-node/control.sock")
        );
        assert!(!e.group_socket(&e.daemon_socket(&data)));
        assert_eq!(e.default_config(), None);
        let x = Env {
            xdg_state_home: Some(p("/xdg")),
            config: Some(p("/cfg.toml")),
            ..e.clone()
        };
        assert_eq!(x.default_data_dir(), p("/xdg/ptt-node"));
        assert_eq!(x.default_config(), Some(p("/cfg.toml")));
        // Nothing at all: the system path.
        assert_eq!(Env::default().default_data_dir(), p("/var/lib/ptt-node"));
    }

    #[test]
    fn the_cli_tries_the_users_daemon_then_the_service() {
        let e = Env {
            home: Some(p("/home/ann")),
            ..Env::default()
        };
        assert_eq!(
            e.client_sockets(),
            vec![
                p("/home/ann/.local/state/ptt-node/control.sock"),
                p("/run/ptt-node/control.sock")
            ]
        );
        // An explicit variable is the only place looked at.
        let d = Env {
            data: Some(p("/d")),
            ..e.clone()
        };
        assert_eq!(d.client_sockets(), vec![p("/d/control.sock")]);
        let s = Env {
            socket: Some(p("/s.sock")),
            ..d.clone()
        };
        assert_eq!(s.client_sockets(), vec![p("/s.sock")]);
        assert_eq!(s.daemon_socket(&p("/d")), p("/s.sock"));
        assert!(!s.group_socket(&p("/s.sock")));
        // No HOME: only the service.
        assert_eq!(
            Env::default().client_sockets(),
            vec![p("/run/ptt-node/control.sock")]
        );
    }
}
