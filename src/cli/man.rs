//! `ptt-node man` and `ptt-node completions`: the manual pages and the shell completion
//! scripts, generated from the clap types in `args` so they never drift from `--help`.
//!
//! This room writes only what it is asked for (stdout, or the pages into `--dir`).

use std::path::PathBuf;

use super::{Cli, CliError};

/// `ptt-node completions SHELL`: the script on stdout.
pub(super) fn completions(shell: clap_complete::Shell) {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "ptt-node", &mut std::io::stdout());
}

/// `ptt-node man`: the page of `ptt-node` on stdout, or every command's page into a directory.
pub(super) fn man(dir: Option<PathBuf>) -> Result<(), CliError> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let Some(dir) = dir else {
        let mut out = std::io::stdout();
        return clap_mangen::Man::new(cmd)
            .render(&mut out)
            .map_err(CliError::ManPage);
    };
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Io {
        what: dir.display().to_string(),
        source,
    })?;
    // Every command, sub-commands included, named as git names its pages (ptt-node-domain-enroll).
    fn pages(
        cmd: clap::Command,
        name: String,
        bin: String,
        out: &mut Vec<(String, clap::Command)>,
    ) {
        let subs: Vec<clap::Command> = cmd.get_subcommands().cloned().collect();
        out.push((name.clone(), cmd.bin_name(bin.clone())));
        for s in subs {
            if s.get_name() != "help" {
                let n = format!("{name}-{}", s.get_name());
                let b = format!("{bin} {}", s.get_name());
                pages(s, n, b, out);
            }
        }
    }
    let mut all = Vec::new();
    pages(cmd, "ptt-node".into(), "ptt-node".into(), &mut all);
    for (name, c) in all {
        let path = dir.join(format!("{name}.1"));
        let failed = |source| CliError::Io {
            what: path.display().to_string(),
            source,
        };
        let mut buf = Vec::new();
        clap_mangen::Man::new(c)
            .title(name.clone())
            .render(&mut buf)
            .map_err(failed)?;
        std::fs::write(&path, buf).map_err(failed)?;
        println!("{}", path.display());
    }
    Ok(())
}
