//! The `ptt-node` binary: parses the command line and hands it to [`ptt_node::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before anything reads a key: no core file may ever hold one.
    let core = ptt_node::fsutil::no_core_dumps();
    let cli = ptt_node::cli::Cli::parse();
    if !matches!(cli.command, ptt_node::cli::Command::Run(_)) {
        // Client commands behave like other Unix tools in a pipe: `ptt-node listen | head -1`
        // is ended by SIGPIPE when the reader goes away, instead of panicking on a write error.
        // SAFETY: setting a signal disposition to its default before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // The daemon: --log, else RUST_LOG, else its configuration file, else info. A client
    // command: RUST_LOG, else warnings only.
    let env = std::env::var("RUST_LOG").ok();
    let settings = match &cli.command {
        ptt_node::cli::Command::Run(a) => Some(ptt_node::cli::run_settings(a)),
        _ => None,
    };
    let (wanted, default) = match (&cli.command, &settings) {
        (ptt_node::cli::Command::Run(a), s) => {
            let file = s
                .as_ref()
                .and_then(|s| s.as_ref().ok()?.file_log.as_deref());
            let f = ptt_node::config::log_filter_for(a.log.as_deref(), env.as_deref(), file);
            (f, "info")
        }
        _ => (env.unwrap_or_default(), "warn"),
    };
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&wanted)
        .ok()
        .filter(|_| !wanted.is_empty())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    let json = matches!(
        &settings,
        Some(Ok(s)) if s.log_format == ptt_node::config::LogFormat::Json
    );
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        // One JSON object per line (time, level, target, message and fields), for journald
        // or a log collector.
        fmt.json().flatten_event(true).init();
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    if let Err(e) = core {
        tracing::warn!(error = %e, "cannot turn core dumps off: a crash could write keys to disk");
    }
    // One thread: the daemon is an event loop around one swarm (plus the store's own thread),
    // so a second worker only adds cross-thread wake-ups; on a small device several daemons or
    // other processes share few cores (bench-mesh: about a third less CPU per alert).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ptt-node: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(ptt_node::cli::main(cli, settings));
    // Do not wait for blocking reads that cannot be cancelled (standard input of `alert
    // --stdin` after a refusal): everything the command does is done.
    rt.shutdown_background();
    code
}
