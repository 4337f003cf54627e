//! The commands that talk to a running daemon over its control socket: listen, history,
//! send, peers, status, search, profile, tag and connect (alert and talk have rooms of their
//! own). Each sends one request, checks that the reply is the one it asked for and hands it
//! to `output` to be written.
//!
//! This room never opens the daemon's data directory, log or keys: all it knows comes from
//! the socket (or, for `tag`, from the bundle it is given).

use std::time::Duration;

use libp2p::Multiaddr;

use super::output::{self, Printer};
use super::{
    CliError, ClientArgs, ColorChoice, ConnectArgs, Format, HistoryArgs, ListenArgs, ProfileArgs,
    SearchArgs, SendArgs, TagArgs, json_line, voice,
};
use crate::control::{Client, ClientError, Reply, Request};
use crate::domain::DomainError;

/// Connects to the daemon the client arguments name, or finds one.
pub(super) async fn connect_client(a: &ClientArgs) -> Result<Client, ClientError> {
    Client::find(a.data.as_deref(), a.socket.as_deref()).await
}

/// The printer of `listen` and `history`; for CAP it asks the daemon the domain's name.
async fn printer(c: &mut Client, format: Format, colour: ColorChoice) -> Result<Printer, CliError> {
    let domain = if format == Format::Cap {
        match c.call(&Request::Status).await? {
            Reply::Status(s) => s.domain_name,
            other => return Err(ClientError::Protocol(format!("{other:?}")).into()),
        }
    } else {
        String::new()
    };
    Ok(Printer::new(format, colour, domain))
}

/// `ptt-node listen`: alerts (and voice bursts) as they arrive, until Ctrl-C or the daemon stops.
pub(super) async fn listen(a: ListenArgs) -> Result<(), CliError> {
    use std::io::Write;
    let mut c = connect_client(&a.client).await?;
    let format = Format::chosen(a.format, a.client.json);
    let printer = printer(&mut c, format, a.color).await?;
    let player = a
        .play
        .then(|| voice::Player::open(&a.audio_device))
        .transpose()?;
    let mut recorder = if a.audio_dir.is_some() || player.is_some() {
        Some(voice::Recorder::new(a.audio_dir.as_deref(), player)?)
    } else {
        None
    };
    let request = Request::Listen {
        voice: recorder.is_some(),
    };
    match c.call(&request).await? {
        Reply::Listening => {}
        other => return Err(ClientError::Protocol(format!("{other:?}")).into()),
    }
    let stdout = std::io::stdout();
    loop {
        // The jitter buffer plays its slots on time, between replies.
        let due = recorder.as_ref().and_then(|r| r.next_due_us());
        let wait = due.map_or(Duration::from_secs(3600), |d| {
            Duration::from_micros(d.saturating_sub(crate::clock::now_us()))
        });
        let next = tokio::select! {
            n = c.next() => n?,
            _ = tokio::time::sleep(wait) => {
                if let Some(r) = recorder.as_mut() {
                    r.tick(crate::clock::now_us())?;
                }
                continue;
            }
            _ = tokio::signal::ctrl_c() => {
                // The recordings still buffering are written out before leaving.
                return recorder.as_mut().map_or(Ok(()), voice::Recorder::close_all);
            }
        };
        let Some(reply) = next else {
            if let Some(r) = recorder.as_mut() {
                r.close_all()?;
            }
            return Err(CliError::DaemonStopped);
        };
        let recorded = match recorder.as_mut() {
            Some(r) => r.take(&reply, crate::clock::now_us())?,
            None => None,
        };
        let mut out = stdout.lock();
        let res = match reply {
            Reply::Alert(al) => writeln!(out, "{}", printer.render(&al)),
            Reply::Ack(a) => writeln!(out, "{}", printer.render_ack(&a)),
            Reply::Lagged { missed } => {
                // Perhaps the end of a burst among them: close the open ones.
                if let Some(r) = recorder.as_mut() {
                    r.close_all()?;
                }
                eprintln!(
                    "ptt-node: this listener fell behind and missed {missed} alerts or voice frames"
                );
                Ok(())
            }
            // A CAP stream carries only CAP documents.
            Reply::BurstStart(_) | Reply::BurstEnd(_) if format == Format::Cap => Ok(()),
            Reply::BurstStart(b) if format != Format::Json => {
                writeln!(out, "{}", voice::format_burst(true, &b))
            }
            Reply::BurstEnd(b) => match (recorded, format) {
                (Some(r), Format::Json) => writeln!(out, "{}", json_line(&r)),
                (Some(r), _) => writeln!(
                    out,
                    "{}{}",
                    voice::format_burst(false, &b),
                    r.file.map(|f| format!(" -> {f}")).unwrap_or_default()
                ),
                (None, Format::Json) => {
                    let mut v = serde_json::to_value(&*b).unwrap_or_default();
                    v["type"] = "burst".into();
                    writeln!(out, "{}", json_line(&v))
                }
                (None, _) => writeln!(out, "{}", voice::format_burst(false, &b)),
            },
            Reply::BurstStart(_) | Reply::VoiceFrame { .. } => Ok(()),
            other => return Err(ClientError::Protocol(format!("{other:?}")).into()),
        };
        // A closed pipe (`listen | head`) ends the listener quietly.
        if res.and_then(|_| out.flush()).is_err() {
            return Ok(());
        }
    }
}

/// `ptt-node send`: a directed message to one device.
pub(super) async fn send(a: SendArgs) -> Result<(), CliError> {
    let mut c = connect_client(&a.client).await?;
    let req = Request::Send {
        to: a.to,
        severity: a.severity,
        kind: a.kind,
        text: a.text,
        attributes: a.attributes,
    };
    match c.call(&req).await? {
        r @ Reply::Sent { .. } if a.client.json => println!("{}", json_line(&r)),
        Reply::Sent { id, .. } => println!("{id}"),
        other => return Err(ClientError::Protocol(format!("{other:?}")).into()),
    }
    Ok(())
}

/// `ptt-node tag`: this device's tag as a URI and a QR code.
pub(super) async fn tag(a: TagArgs) -> Result<(), CliError> {
    let bundle = crate::bundle::Bundle::load(&a.bundle).map_err(DomainError::from)?;
    let mut addresses = a.addrs;
    if addresses.is_empty() {
        let mut c = Client::find(a.data.as_deref(), None)
            .await
            .map_err(CliError::TagNoAddress)?;
        let Reply::Status(s) = c.call(&Request::Status).await? else {
            return Err(ClientError::Protocol("expected status".into()).into());
        };
        if s.peer_id != bundle.cert.peer_id().to_string() {
            return Err(CliError::TagWrongDaemon {
                daemon: a
                    .data
                    .as_deref()
                    .map_or("found by default".to_string(), |d| d.display().to_string()),
                device: s.device,
                bundle: bundle.cert.body.name,
            });
        }
        addresses = s
            .listen_addrs
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .filter(|a| {
                !a.iter().any(|p| match p {
                    libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_loopback() || ip.is_unspecified(),
                    libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_loopback() || ip.is_unspecified(),
                    _ => false,
                })
            })
            .collect();
    }
    let t = crate::tag::DeviceTag {
        domain: bundle.descriptor.domain,
        peer: bundle.cert.peer_id(),
        fingerprint: bundle.cert.fingerprint(),
        name: Some(bundle.cert.body.name.clone()),
        addresses,
    };
    let uri = t.to_uri();
    println!("{uri}");
    if !a.uri_only {
        println!("{}", crate::tag::qr_terminal(&uri).map_err(CliError::Qr)?);
    }
    if let Some(p) = &a.png {
        crate::tag::write_png(&uri, p).map_err(CliError::Qr)?;
        eprintln!("QR code written to {}", p.display());
    }
    Ok(())
}

/// `ptt-node connect`: dial the device a tag names and check it is that device.
pub(super) async fn connect(a: ConnectArgs) -> Result<(), CliError> {
    let mut c = connect_client(&a.client).await?;
    match c.call(&Request::Connect { tag: a.tag }).await? {
        r @ Reply::Connected { .. } if a.client.json => println!("{}", json_line(&r)),
        Reply::Connected {
            name,
            device,
            peer_id,
        } => {
            println!(
                "connected to {name} (device {device}, peer id {peer_id}): its certificate matches the tag"
            )
        }
        other => return Err(ClientError::Protocol(format!("{other:?}")).into()),
    }
    Ok(())
}

/// `ptt-node profile`: show or change this device's profile.
pub(super) async fn profile(a: ProfileArgs) -> Result<(), CliError> {
    let mut c = connect_client(&a.client).await?;
    let req = Request::Profile {
        kind: a.kind,
        location: a.location,
        tags: (!a.tags.is_empty()).then_some(a.tags),
        sleeps: match (a.sleeps, a.awake) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        reset: a.reset,
    };
    let Reply::Profile { profile } = c.call(&req).await? else {
        return Err(ClientError::Protocol("expected profile".into()).into());
    };
    if a.client.json {
        println!("{}", json_line(&profile));
    } else {
        print!("{}", output::format_profile(&profile));
    }
    Ok(())
}

/// `ptt-node search`: devices of the domain by kind, place and tags.
pub(super) async fn search(a: SearchArgs) -> Result<(), CliError> {
    let mut c = connect_client(&a.client).await?;
    let req = Request::Search {
        kind: a.kind,
        near: a.near,
        radius_m: a.near.map(|_| a.radius.unwrap_or(1_000.0)),
        tags: a.tags,
    };
    let Reply::Devices { devices } = c.call(&req).await? else {
        return Err(ClientError::Protocol("expected devices".into()).into());
    };
    for d in &devices {
        if a.client.json {
            println!("{}", json_line(d));
        } else {
            println!("{}", output::format_device(d));
        }
    }
    if devices.is_empty() && !a.client.json {
        println!("no matching device");
    }
    Ok(())
}

/// `ptt-node history`: the stored alerts this device can read, oldest first.
pub(super) async fn history(a: HistoryArgs) -> Result<(), CliError> {
    let mut c = connect_client(&a.client).await?;
    let format = Format::chosen(a.format, a.client.json);
    let printer = printer(&mut c, format, a.color).await?;
    let req = Request::History {
        since_us: a.since,
        channel: a.channel,
        limit: a.limit,
    };
    c.send(&req).await?;
    loop {
        match c.next().await? {
            Some(Reply::Alert(al)) => println!("{}", printer.render(&al)),
            Some(Reply::HistoryEnd { count }) => {
                if count == 0 && format == Format::Text {
                    println!("no stored alerts");
                }
                return Ok(());
            }
            Some(Reply::Error { message }) => return Err(ClientError::Refused(message).into()),
            Some(other) => return Err(ClientError::Protocol(format!("{other:?}")).into()),
            None => {
                return Err(
                    ClientError::Protocol("the daemon closed the connection".into()).into(),
                );
            }
        }
    }
}

/// `ptt-node peers`.
pub(super) async fn peers(a: ClientArgs) -> Result<(), CliError> {
    let mut c = connect_client(&a).await?;
    let Reply::Peers { peers } = c.call(&Request::Peers).await? else {
        return Err(ClientError::Protocol("expected peers".into()).into());
    };
    for p in &peers {
        if a.json {
            println!("{}", json_line(p));
        } else {
            println!("{}", output::format_peer(p));
        }
    }
    if peers.is_empty() && !a.json {
        println!("no peers yet");
    }
    Ok(())
}

/// `ptt-node status`.
pub(super) async fn status(a: ClientArgs) -> Result<(), CliError> {
    let mut c = connect_client(&a).await?;
    let Reply::Status(s) = c.call(&Request::Status).await? else {
        return Err(ClientError::Protocol("expected status".into()).into());
    };
    if a.json {
        println!("{}", json_line(&s));
    } else {
        print!("{}", output::format_status(&s));
    }
    Ok(())
}
