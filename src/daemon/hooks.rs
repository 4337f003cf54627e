//! Rules acting on received alerts: matching, running a rule's command (hook) and sending
//! its message, with the counters `status` reports.
//!
//! Hooks run in tasks of their own, bounded in number and queue; nothing here may block the
//! event loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::send::send_direct;
use super::{Daemon, now_us};
use crate::alert::{AlertBody, ReceivedAlert};

/// What rules did, shared with the tasks that carry them out.
#[derive(Debug)]
pub(super) struct ActionCounters {
    pub(super) hooks: tokio::sync::Semaphore,
    /// Hook runs waiting for a free slot.
    pub(super) waiting: std::sync::atomic::AtomicUsize,
    pub(super) matched: AtomicU64,
    pub(super) hooks_run: AtomicU64,
    pub(super) sent: AtomicU64,
    pub(super) failed: AtomicU64,
}

/// Hooks running at once at most; more wait their turn.
pub(super) const MAX_HOOKS: usize = 8;

/// Hook runs waiting for a slot at most; beyond, a matched rule's hook is skipped (counted
/// as failed), so a flood of matching alerts cannot grow memory without bound.
const MAX_HOOK_QUEUE: usize = 256;

/// Bytes of a hook's stderr kept for the log.
const HOOK_STDERR: u64 = 4096;

/// Why a hook failed (logged; counted as failed).
#[derive(Debug, thiserror::Error)]
enum HookError {
    /// The command could not be started.
    #[error("cannot start {program}: {source}")]
    Start {
        /// The command.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The alert could not be encoded as its input.
    #[error(transparent)]
    Input(#[from] serde_json::Error),
    /// It ran past its timeout (in seconds).
    #[error("timed out after {0} s and was killed")]
    TimedOut(u64),
    /// Waiting for it failed.
    #[error(transparent)]
    Wait(#[from] std::io::Error),
    /// It exited with a failure: its status and the start of its stderr.
    #[error("{status} {stderr}")]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its stderr, trimmed, at most 200 characters.
        stderr: String,
    },
}

/// Runs a rule's command with the message as JSON on stdin, killed after its timeout (which
/// covers writing its input too).
async fn run_hook(rule: crate::rules::Rule, a: ReceivedAlert, actions: Arc<ActionCounters>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let permit = actions.hooks.acquire().await;
    actions.waiting.fetch_sub(1, Ordering::Relaxed);
    let Ok(_permit) = permit else {
        return;
    };
    let mut cmd = tokio::process::Command::new(&rule.run[0]);
    // Its own process group: on a timeout, whatever it started dies with it.
    cmd.process_group(0);
    cmd.args(&rule.run[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let result: Result<(), HookError> = async {
        let mut child = cmd.spawn().map_err(|source| HookError::Start {
            program: rule.run[0].clone(),
            source,
        })?;
        let group = child.id();
        let mut json = serde_json::to_vec(&a)?;
        json.push(b'\n');
        let stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let io = async move {
            if let Some(mut stdin) = stdin {
                // A hook that does not read its input is its own business.
                let _ = stdin.write_all(&json).await;
            }
            let mut err = Vec::new();
            if let Some(stderr) = stderr {
                let _ = stderr.take(HOOK_STDERR).read_to_end(&mut err).await;
            }
            err
        };
        let run = async { tokio::join!(io, child.wait()) };
        let (err, status) = tokio::time::timeout(Duration::from_secs(rule.timeout_s), run)
            .await
            .map_err(|_| {
                if let Some(pgid) = group.and_then(|g| i32::try_from(g).ok()) {
                    // SAFETY: signals the process group this hook leads (created above).
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
                HookError::TimedOut(rule.timeout_s)
            })?;
        let status = status?;
        if status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&err);
            Err(HookError::Failed {
                status,
                stderr: err.trim().chars().take(200).collect::<String>(),
            })
        }
    }
    .await;
    actions.hooks_run.fetch_add(1, Ordering::Relaxed);
    match result {
        Ok(()) => tracing::info!(rule = %rule.name, "hook ran"),
        Err(e) => {
            actions.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(rule = %rule.name, error = %e, "hook failed");
        }
    }
}

impl Daemon {
    /// Carries out the rules an alert matches, each in a task of its own.
    pub(super) fn apply_rules(&self, a: &ReceivedAlert) {
        let now = now_us();
        for (rule, value) in self.rules.matching(a, now) {
            self.actions.matched.fetch_add(1, Ordering::Relaxed);
            tracing::info!(rule = %rule.name, alert = %a.id, "rule matched");
            if !rule.run.is_empty() {
                if self.actions.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_HOOK_QUEUE {
                    self.actions.waiting.fetch_sub(1, Ordering::Relaxed);
                    self.actions.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(rule = %rule.name, "hook skipped: {MAX_HOOK_QUEUE} runs already wait");
                } else {
                    tokio::spawn(run_hook(rule.clone(), a.clone(), self.actions.clone()));
                }
            }
            if let Some(send) = &rule.send {
                let body = AlertBody {
                    severity: send.severity.unwrap_or(a.severity),
                    kind: send.kind.clone(),
                    text: send.render(a, value),
                    location: None,
                    attributes: vec![
                        ("rule".into(), rule.name.clone()),
                        ("trigger".into(), a.id.clone()),
                    ],
                    reference: None,
                };
                let (cmds, store, to) = (self.handle.clone(), self.store.clone(), send.to.clone());
                let (actions, name) = (self.actions.clone(), rule.name.clone());
                tokio::spawn(async move {
                    match send_direct(&cmds, &store, to.clone(), body).await {
                        Ok(_) => {
                            actions.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            actions.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(rule = %name, %to, error = %e, "rule could not send");
                        }
                    }
                });
            }
        }
    }
}
