//! The `ptt-node` command line: the daemon, provisioning and the client commands.
//!
//! This file owns the top-level dispatch ([`main`]) and the error every command returns
//! ([`CliError`], with its exit code). The rooms under `cli/`:
//! - `args`: the clap types (every command, flag and help text) and their value parsers;
//! - `run`: `ptt-node run` (flags over the configuration file, then the daemon);
//! - `provision`: `ptt-node domain …`, offline on the administrator's machine (and `publish`);
//! - `client`: the commands that talk to a running daemon (listen, peers, status, …);
//! - `alert`: `ptt-node alert`, from flags, a CAP document or a pipelined standard input;
//! - `voice`: `ptt-node talk` and the voice side of `listen`;
//! - `output`: how alerts, peers and the status are written as text or JSON;
//! - `man`: the manual pages and shell completions, generated from the clap types.
//!
//! The command line never holds protocol state of its own: a client command asks the daemon
//! over the control socket and prints the reply; it never opens the daemon's data directory.

use std::process::ExitCode;

use crate::control::ClientError;
use crate::daemon;
use crate::domain::DomainError;

mod alert;
mod args;
mod client;
mod man;
mod output;
mod provision;
mod run;
mod voice;

pub use crate::alert::format_time_us;
pub use args::{
    AckArgs, AlertArgs, CancelArgs, Cli, ClientArgs, ColorChoice, Command, ConnectArgs,
    DomainCommand, EmergencyArgs, EnrollArgs, Format, HistoryArgs, ListenArgs, ProfileArgs,
    ReceiptsArgs, RunArgs, SearchArgs, SendArgs, TagArgs, WaitFor, parse_since,
};
pub use output::{format_alert, format_alert_coloured, format_duration, health};
pub use run::run_settings;
pub use voice::TalkArgs;

// For the rooms that reach them as `super::…` (alert, provision, voice).
use client::connect_client;
use output::json_line;

/// The version `--version` prints: the package version and the git revision it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PTT_GIT_REV"), ")");

/// Runs a parsed command line and returns the process exit code. `settings` are those of
/// `ptt-node run` when `main` has read them already ([`run_settings`]).
pub async fn main(
    cli: Cli,
    settings: Option<Result<crate::config::Settings, CliError>>,
) -> ExitCode {
    let result = match cli.command {
        Command::Run(a) => {
            let s = settings.unwrap_or_else(|| run_settings(&a));
            run::run(a, s).await
        }
        Command::Domain(DomainCommand::Publish { client, updates }) => {
            provision::publish(client, updates).await
        }
        Command::Domain(d) => provision::domain(d),
        Command::Alert(a) => alert::alert(a).await,
        Command::Listen(a) => client::listen(a).await,
        Command::Talk(a) => voice::talk(a).await,
        Command::Send(a) => client::send(a).await,
        Command::Peers(a) => client::peers(a).await,
        Command::Status(a) => client::status(a).await,
        Command::History(a) => client::history(a).await,
        Command::Receipts(a) => alert::receipts(a).await,
        Command::Ack(a) => alert::ack(a).await,
        Command::Cancel(a) => alert::cancel(a).await,
        Command::Emergency(a) => alert::emergency(a).await,
        Command::Search(a) => client::search(a).await,
        Command::Profile(a) => client::profile(a).await,
        Command::Tag(a) => client::tag(a).await,
        Command::Connect(a) => client::connect(a).await,
        Command::Completions { shell } => {
            man::completions(shell);
            Ok(())
        }
        Command::Man { dir } => man::man(dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ptt-node: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// An error at the edge, with its exit code. Its text is what the user reads after
/// `ptt-node: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Provisioning failed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The daemon failed.
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
    /// Talking to the daemon failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Audio could not be read, coded or written.
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
    /// `talk`: the floor is taken.
    #[error("{0}")]
    Floor(String),
    /// `alert --wait`: the time ran out before enough receipts came.
    #[error(
        "alert {id}: {received} of {expected} members sent a receipt within {secs} s (wanted {wanted}); missing: {missing}"
    )]
    Unconfirmed {
        /// The alert's id.
        id: String,
        /// Receipts that came.
        received: usize,
        /// Members that can read it.
        expected: usize,
        /// Receipts wanted.
        wanted: usize,
        /// How long it waited.
        secs: f64,
        /// The members whose receipt did not come.
        missing: String,
    },
    /// `run`: the configuration file cannot be used, or names no bundle.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// `run`: the rules file cannot be used.
    #[error(transparent)]
    Rules(#[from] crate::rules::RulesError),
    /// A file, directory or stream (named by `what`) could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// The file or stream, as the user named it.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `man`: the page could not be written to standard output.
    #[error("writing the manual page: {0}")]
    ManPage(#[source] std::io::Error),
    /// `domain enroll`: the output directory holds a bundle already.
    #[error("{} already holds a bundle; choose another --out or pass --force", .0.display())]
    BundleExists(std::path::PathBuf),
    /// `domain broker` with neither `--add` nor `--remove`.
    #[error("give --add or --remove")]
    BrokerChange,
    /// `domain publish` reached the offline provisioning path.
    #[error("publish needs the running daemon")]
    PublishNeedsDaemon,
    /// `domain publish`: an update file cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    ReadUpdate {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `domain publish`: a file is not a domain update.
    #[error("{} is not a domain update: {source}", .path.display())]
    NotAnUpdate {
        /// The file.
        path: std::path::PathBuf,
        /// Why it does not decode.
        source: crate::wire::DecodeError,
    },
    /// `domain publish`: the daemon could not be asked to apply an update.
    #[error("{}: {source}", .path.display())]
    PublishFailed {
        /// The update file.
        path: std::path::PathBuf,
        /// What went wrong on the control socket.
        source: ClientError,
    },
    /// `domain publish`: the daemon refused an update.
    #[error("{}: {message}", .path.display())]
    PublishRefused {
        /// The update file.
        path: std::path::PathBuf,
        /// The daemon's reason.
        message: String,
    },
    /// The daemon answered with a reply that does not fit the request.
    #[error("unexpected reply {0:?}")]
    UnexpectedReply(Box<crate::control::Reply>),
    /// `alert` without the fields of an alert.
    #[error("--severity, --kind and --text are required")]
    AlertFieldsMissing,
    /// `alert --cap`: the document is larger than any CAP document for one alert.
    #[error(
        "{name}: larger than {} KiB; a CAP document for one alert is much smaller",
        crate::cap::MAX_DOCUMENT / 1024
    )]
    CapTooLarge {
        /// The file, or standard input.
        name: String,
    },
    /// `alert --cap`: the document is not UTF-8.
    #[error("{0}: not UTF-8 text")]
    CapNotUtf8(String),
    /// `alert --cap`: the document is not a CAP alert ptt-node can send.
    #[error("{name}: {source}")]
    Cap {
        /// The file, or standard input.
        name: String,
        /// What is wrong with the document.
        source: crate::cap::CapError,
    },
    /// `alert --cap` names one alert in `<references>` and `--update` another.
    #[error("{name}: its <references> names alert {named}, but --update names {update}")]
    CapUpdateConflict {
        /// The file, or standard input.
        name: String,
        /// The alert the document names.
        named: String,
        /// The alert `--update` names.
        update: String,
    },
    /// `alert --stdin`: standard input could not be read.
    #[error("reading standard input: {0}")]
    Stdin(#[source] std::io::Error),
    /// `alert --stdin`: a line is not an alert object.
    #[error("standard input line {line}: {source}")]
    StdinLine {
        /// The line number, from 1.
        line: u64,
        /// Why the JSON does not parse.
        source: serde_json::Error,
    },
    /// `alert --stdin`: the alert of a line could not be sent.
    #[error("standard input line {line}: {source}")]
    StdinSend {
        /// The line number, from 1.
        line: u64,
        /// What went wrong on the control socket.
        source: ClientError,
    },
    /// `alert --stdin`: the daemon refused the alert of a line.
    #[error("standard input line {line}: {message}")]
    StdinRefused {
        /// The line number, from 1.
        line: u64,
        /// The daemon's reason.
        message: String,
    },
    /// `alert --stdin`: the daemon closed the connection with alerts unanswered.
    #[error("standard input line {0}: the daemon closed the connection before answering")]
    StdinUnanswered(u64),
    /// `alert --stdin`: the task printing the replies failed.
    #[error("reply printer: {0}")]
    ReplyPrinter(#[source] tokio::task::JoinError),
    /// `listen`: the daemon ended the stream.
    #[error("the daemon stopped")]
    DaemonStopped,
    /// `tag` without `--addr`, and no daemon to ask for its addresses.
    #[error("no --addr given and {0}; give the device's address with --addr MULTIADDR")]
    TagNoAddress(#[source] ClientError),
    /// `tag`: the daemon found is another device than the bundle's.
    #[error("the running daemon ({daemon}) is device {device}, not the bundle's device {bundle}")]
    TagWrongDaemon {
        /// Where the daemon was found.
        daemon: String,
        /// The daemon's device.
        device: String,
        /// The bundle's device.
        bundle: String,
    },
    /// `tag`: the QR code could not be drawn or written.
    #[error("{0}")]
    Qr(String),
    /// `talk --mic`: the capture device delivered no audio for too long.
    #[error("audio device {device}: it delivered nothing for {secs} s")]
    MicStalled {
        /// The ALSA device.
        device: String,
        /// How long it was silent.
        secs: u64,
    },
}

impl CliError {
    /// 3: no daemon running; 4: the floor is taken; 5: `alert --wait` ran out of time; 1:
    /// anything else (2 is clap's usage error).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Client(ClientError::NotRunning { .. }) => 3,
            CliError::Floor(_) => 4,
            CliError::Unconfirmed { .. } => 5,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_before_and_keep_their_exit_codes() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let not_running = || ClientError::NotRunning {
            looked: "/run/x.sock".into(),
            reason: "gone".into(),
        };
        let cases: Vec<(CliError, &str, u8)> = vec![
            (
                CliError::BundleExists("b1".into()),
                "b1 already holds a bundle; choose another --out or pass --force",
                1,
            ),
            (
                CliError::ReadUpdate {
                    path: "/u.update".into(),
                    source: io(),
                },
                "cannot read /u.update: entity not found",
                1,
            ),
            (
                CliError::Io {
                    what: "standard input".into(),
                    source: io(),
                },
                "standard input: entity not found",
                1,
            ),
            (
                CliError::CapTooLarge {
                    name: "big.xml".into(),
                },
                "big.xml: larger than 256 KiB; a CAP document for one alert is much smaller",
                1,
            ),
            (
                CliError::CapNotUtf8("x.xml".into()),
                "x.xml: not UTF-8 text",
                1,
            ),
            (
                CliError::StdinRefused {
                    line: 4,
                    message: "unknown channel x".into(),
                },
                "standard input line 4: unknown channel x",
                1,
            ),
            (
                CliError::StdinUnanswered(7),
                "standard input line 7: the daemon closed the connection before answering",
                1,
            ),
            (
                CliError::AlertFieldsMissing,
                "--severity, --kind and --text are required",
                1,
            ),
            (CliError::DaemonStopped, "the daemon stopped", 1),
            (
                CliError::TagWrongDaemon {
                    daemon: "found by default".into(),
                    device: "cam-2".into(),
                    bundle: "cam-1".into(),
                },
                "the running daemon (found by default) is device cam-2, not the bundle's device cam-1",
                1,
            ),
            (
                CliError::MicStalled {
                    device: "hw:1".into(),
                    secs: 2,
                },
                "audio device hw:1: it delivered nothing for 2 s",
                1,
            ),
            (
                CliError::Config(crate::config::ConfigError::NoBundle),
                "no device bundle: give --bundle DIR, or `bundle = \"DIR\"` in the configuration file (--config)",
                1,
            ),
            (CliError::Floor("taken".into()), "taken", 4),
        ];
        for (e, text, code) in cases {
            assert_eq!(e.to_string(), text);
            assert_eq!(e.exit_code(), code, "{text}");
        }
        // No daemon: 3, also inside `publish`; but `tag` without --addr says more and exits 1.
        let e = CliError::from(not_running());
        assert_eq!(e.exit_code(), 3);
        let tag = CliError::TagNoAddress(not_running());
        assert_eq!(tag.exit_code(), 1);
        assert!(
            tag.to_string().starts_with(
                "no --addr given and no ptt-node daemon is running at /run/x.sock (gone); start one"
            ) && tag
                .to_string()
                .ends_with("; give the device's address with --addr MULTIADDR"),
            "{tag}"
        );
    }
}
