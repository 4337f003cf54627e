//! `ptt-node alert`: one alert from its flags or from a CAP document, or a stream of alerts
//! from standard input (one JSON object per line), pipelined to the running daemon.
//!
//! A document or a line is read and checked before the daemon is asked anything about it;
//! the daemon seals and sends. This room never builds an envelope itself.

use super::{
    AckArgs, AlertArgs, CancelArgs, CliError, ReceiptsArgs, WaitFor, connect_client, json_line,
};
use crate::alert::Severity;
use crate::cert::Location;
use crate::control::{Client, ClientError, Reply, Request};

/// `ptt-node alert`.
pub(super) async fn alert(a: AlertArgs) -> Result<(), CliError> {
    // The document is read and checked before the daemon is asked anything.
    let from_cap = match &a.cap {
        Some(p) => Some(read_cap(p)?),
        None => None,
    };
    // An Update or a Cancel names its alert; --update may not name another.
    if let Some(
        crate::cap::CapMessage::Update { id, .. } | crate::cap::CapMessage::Cancel { id, .. },
    ) = &from_cap
        && let Some(u) = a.update.as_ref().filter(|u| *u != id)
    {
        return Err(CliError::CapUpdateConflict {
            name: cap_name(a.cap.as_deref()),
            named: id.clone(),
            update: u.clone(),
        });
    }
    // What the document asks: an alert (and which alert it updates), or a cancellation.
    let req = match from_cap {
        Some(crate::cap::CapMessage::Cancel { id, text }) => {
            Some(Err(Request::Cancel { id, text }))
        }
        Some(crate::cap::CapMessage::Update { id, body }) => Some(Ok((body, Some(id)))),
        Some(crate::cap::CapMessage::Alert(body)) => Some(Ok((body, a.update.clone()))),
        None => None,
    };
    let mut c = connect_client(&a.client).await?;
    if a.stdin {
        return alert_stdin(c, &a.channel, a.client.json).await;
    }
    let req = match req {
        Some(Err(cancel)) => cancel,
        Some(Ok((b, update))) => Request::Alert {
            channel: a.channel,
            severity: b.severity,
            kind: b.kind,
            text: b.text,
            location: b.location,
            attributes: b.attributes,
            update,
        },
        None => {
            let (Some(severity), Some(kind), Some(text)) = (a.severity, a.kind, a.text) else {
                return Err(CliError::AlertFieldsMissing);
            };
            Request::Alert {
                channel: a.channel,
                severity,
                kind,
                text,
                location: a.location,
                attributes: a.attributes,
                update: a.update,
            }
        }
    };
    let id = match c.call(&req).await? {
        r @ Reply::Sent { .. } => {
            let Reply::Sent { id, peers, .. } = &r else {
                unreachable!()
            };
            let id = id.clone();
            if a.client.json {
                println!("{}", json_line(&r));
            } else {
                println!("{id}");
                if *peers == 0 {
                    eprintln!(
                        "ptt-node: warning: no authenticated peer is connected; the alert is stored here but reached nobody"
                    );
                }
            }
            id
        }
        other => return Err(ClientError::Protocol(format!("{other:?}")).into()),
    };
    match a.wait {
        Some(w) => wait_receipts(&mut c, &id, w, a.timeout, a.client.json).await,
        None => Ok(()),
    }
}

/// How often `alert --wait` asks the daemon.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// `alert --wait`: asks the daemon who got the alert until enough did or `secs` pass.
async fn wait_receipts(
    c: &mut Client,
    id: &str,
    w: WaitFor,
    secs: f64,
    json: bool,
) -> Result<(), CliError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    loop {
        let info = match c.call(&Request::Receipts { id: id.to_string() }).await? {
            Reply::Receipts(info) => info,
            Reply::Error { message } => return Err(ClientError::Refused(message).into()),
            other => return Err(ClientError::Protocol(format!("{other:?}")).into()),
        };
        let wanted = match w {
            WaitFor::All => info.expected,
            WaitFor::Count(n) => n,
        };
        let done = info.received >= wanted;
        if done || tokio::time::Instant::now() >= deadline {
            if json {
                println!("{}", json_line(&*info));
            }
            if done {
                return Ok(());
            }
            let missing: Vec<&str> = info
                .members
                .iter()
                .filter(|m| m.expected && m.received_at_us.is_none())
                .map(|m| m.name.as_str())
                .collect();
            return Err(CliError::Unconfirmed {
                id: id.to_string(),
                received: info.received,
                expected: info.expected,
                wanted,
                secs,
                missing: if missing.is_empty() {
                    "none (fewer members can read the channel than wanted)".into()
                } else {
                    missing.join(", ")
                },
            });
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// `ptt-node receipts ID`.
pub(super) async fn receipts(a: ReceiptsArgs) -> Result<(), CliError> {
    let mut c = connect_client(&a.client).await?;
    match c.call(&Request::Receipts { id: a.id }).await? {
        Reply::Receipts(info) => {
            if a.client.json {
                println!("{}", json_line(&*info));
            } else {
                print!("{}", super::output::format_receipts(&info));
            }
            Ok(())
        }
        Reply::Error { message } => Err(ClientError::Refused(message).into()),
        other => Err(ClientError::Protocol(format!("{other:?}")).into()),
    }
}

/// `ptt-node cancel ID`: prints the cancellation's id.
pub(super) async fn cancel(a: CancelArgs) -> Result<(), CliError> {
    let req = Request::Cancel {
        id: a.id,
        text: a.text,
    };
    send_and_print(&a.client, &req).await
}

/// `ptt-node emergency`: prints the emergency alert's id (or its cancellation's).
pub(super) async fn emergency(a: super::EmergencyArgs) -> Result<(), CliError> {
    let req = Request::Emergency {
        text: a.text,
        channel: a.channel,
        clear: a.clear,
    };
    send_and_print(&a.client, &req).await
}

/// Sends a request the daemon answers with `sent`, and prints the new message's id (or, with
/// `--json`, the reply).
async fn send_and_print(client: &super::ClientArgs, req: &Request) -> Result<(), CliError> {
    let mut c = connect_client(client).await?;
    match c.call(req).await? {
        r @ Reply::Sent { .. } => {
            if client.json {
                println!("{}", json_line(&r));
            } else if let Reply::Sent { id, .. } = &r {
                println!("{id}");
            }
            Ok(())
        }
        Reply::Error { message } => Err(ClientError::Refused(message).into()),
        other => Err(ClientError::Protocol(format!("{other:?}")).into()),
    }
}

/// `ptt-node ack ID`.
pub(super) async fn ack(a: AckArgs) -> Result<(), CliError> {
    let mut c = connect_client(&a.client).await?;
    match c
        .call(&Request::Ack {
            id: a.id,
            text: a.text,
        })
        .await?
    {
        r @ Reply::Acked { .. } => {
            if a.client.json {
                println!("{}", json_line(&r));
            }
            Ok(())
        }
        Reply::Error { message } => Err(ClientError::Refused(message).into()),
        other => Err(ClientError::Protocol(format!("{other:?}")).into()),
    }
}

/// Reads and checks the CAP document of `alert --cap` (`-`: standard input).
fn read_cap(p: &std::path::Path) -> Result<crate::cap::CapMessage, CliError> {
    use std::io::Read;
    let name = cap_name(Some(p));
    let mut bytes = Vec::new();
    let r: Result<_, std::io::Error> = if p == std::path::Path::new("-") {
        std::io::stdin()
            .take(crate::cap::MAX_DOCUMENT as u64 + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(p).and_then(|f| {
            f.take(crate::cap::MAX_DOCUMENT as u64 + 1)
                .read_to_end(&mut bytes)
        })
    };
    if let Err(source) = r {
        return Err(CliError::Io { what: name, source });
    }
    if bytes.len() > crate::cap::MAX_DOCUMENT {
        return Err(CliError::CapTooLarge { name });
    }
    let Ok(text) = String::from_utf8(bytes) else {
        return Err(CliError::CapNotUtf8(name));
    };
    crate::cap::message_from_cap(&text).map_err(|source| CliError::Cap { name, source })
}

/// How errors name the document of `alert --cap`.
fn cap_name(p: Option<&std::path::Path>) -> String {
    match p {
        Some(p) if p != std::path::Path::new("-") => p.display().to_string(),
        _ => "standard input".to_string(),
    }
}

/// One alert read from standard input by `alert --stdin`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StdinAlert {
    severity: Severity,
    kind: String,
    text: String,
    channel: Option<String>,
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    attributes: Vec<(String, String)>,
}

/// Alerts `alert --stdin` keeps in flight (sent, reply not yet read).
const STDIN_WINDOW: usize = 64;

/// `alert --stdin`: reads alerts line by line and keeps up to [`STDIN_WINDOW`] in flight.
async fn alert_stdin(c: Client, channel: &str, json: bool) -> Result<(), CliError> {
    use tokio::io::AsyncBufReadExt;
    // Pipelined: up to STDIN_WINDOW alerts are sent before their replies are read, so a burst
    // is not paced by one round trip per alert. A task prints the replies in order; each names
    // the standard input line it answers.
    let (mut replies, mut requests) = c.split();
    let window = std::sync::Arc::new(tokio::sync::Semaphore::new(STDIN_WINDOW));
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let freed = window.clone();
    let printer = tokio::spawn(async move {
        let result = print_replies(&mut replies, &mut line_rx, &freed, json).await;
        // Stops the sender at once, also while it waits for input or for room.
        freed.close();
        let _ = done_tx.send(());
        result
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut n = 0u64;
    let mut input_error = None;
    let mut send_error = None;
    loop {
        let line = tokio::select! {
            biased;
            _ = &mut done_rx => break,
            l = lines.next_line() => l,
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                input_error = Some(CliError::Stdin(e));
                break;
            }
        };
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        let a: StdinAlert = match serde_json::from_str(&line) {
            Ok(a) => a,
            Err(e) => {
                input_error = Some(CliError::StdinLine { line: n, source: e });
                break;
            }
        };
        // A refused alert or a lost connection ends the run: the printer closes the window.
        let Ok(permit) = window.acquire().await else {
            break;
        };
        permit.forget();
        let req = Request::Alert {
            channel: a.channel.unwrap_or_else(|| channel.to_string()),
            severity: a.severity,
            kind: a.kind,
            text: a.text,
            location: a.location,
            attributes: a.attributes,
            update: None,
        };
        let _ = line_tx.send(n);
        if let Err(e) = requests.send(&req).await {
            send_error = Some(CliError::StdinSend { line: n, source: e });
            break;
        }
    }
    // No more requests: the daemon answers those sent, then closes the connection.
    let _ = requests.finish().await;
    drop(line_tx);
    printer.await.map_err(CliError::ReplyPrinter)??;
    match input_error.or(send_error) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Prints the replies of `alert --stdin` in order, freeing a window slot for each; stops at
/// the first refusal.
async fn print_replies(
    replies: &mut crate::control::Replies,
    line_rx: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
    freed: &tokio::sync::Semaphore,
    json: bool,
) -> Result<(), CliError> {
    loop {
        let Some(reply) = replies.next().await? else {
            // The connection ended: fine once every request sent has its reply.
            return match line_rx.try_recv() {
                Ok(n) => Err(CliError::StdinUnanswered(n)),
                Err(_) => Ok(()),
            };
        };
        // The line a reply answers was queued before its request was sent.
        let n = line_rx.recv().await.unwrap_or(0);
        match reply {
            r @ Reply::Sent { .. } => {
                if json {
                    println!("{}", json_line(&r));
                } else if let Reply::Sent { id, .. } = r {
                    println!("{id}");
                }
                freed.add_permits(1);
            }
            Reply::Error { message } => {
                return Err(CliError::StdinRefused { line: n, message });
            }
            other => return Err(ClientError::Protocol(format!("{other:?}")).into()),
        }
    }
}
