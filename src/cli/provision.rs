//! Provisioning: `ptt-node domain …` run offline on the administrator's machine against the
//! authority directory (init, enroll, broker, list, revoke, channel, plane), and `domain publish`,
//! which hands the signed updates those make to a running member.
//!
//! Every change is made by `crate::domain::Authority` under its directory lock; this room
//! only calls it and tells the operator what was written and what to do next. It never
//! holds a key of its own.

use std::path::PathBuf;

use super::{CliError, ClientArgs, DomainCommand, connect_client, json_line};
use crate::cert::{Certificate, Profile};
use crate::control::{ClientError, Reply, Request};
use crate::domain::{Authority, DomainError, EnrollRequest};

/// `ptt-node domain …` but `publish`: offline, on the authority directory.
pub(super) fn domain(cmd: DomainCommand) -> Result<(), CliError> {
    let mut rng = rand_core::OsRng;
    match cmd {
        DomainCommand::Init {
            dir,
            name,
            private_network,
            no_plane,
        } => {
            if Authority::exists(&dir) {
                return Err(DomainError::AlreadyExists(dir.display().to_string()).into());
            }
            let a = if no_plane {
                Authority::create_without_plane(&name, private_network, now_secs(), &mut rng)?
            } else {
                Authority::create_with(&name, private_network, now_secs(), &mut rng)?
            };
            a.save(&dir)?;
            println!("domain {name} created in {}", dir.display());
            println!("domain id {}", a.descriptor().domain.to_hex());
            println!("channels: {}", channel_list(&a));
            if private_network {
                println!("private network: on (every bundle carries the network key)");
            }
            if let Some(e) = a.plane_epoch() {
                println!("data plane: key epoch {e} (every bundle carries it)");
            }
            println!("keep {} offline: it holds the authority key", dir.display());
        }
        DomainCommand::Enroll(e) => {
            let _lock = Authority::lock(&e.dir)?;
            let mut a = Authority::load(&e.dir)?;
            if e.out.join(crate::bundle::files::IDENTITY).exists() && !e.force {
                return Err(CliError::BundleExists(e.out));
            }
            let req = EnrollRequest {
                name: e.device.clone(),
                channels: e.channels,
                relay_only: e.relay_only,
                profile: Profile {
                    kind: e.kind,
                    location: e.location,
                    tags: e.tags,
                    sleeps: e.sleeps,
                },
                valid_days: e.valid_days,
                valid_secs: e.valid_secs,
                max_severity: e.max_severity,
                dispatcher: e.dispatcher.then_some(true),
                watch_secs: e.watch,
                emergency: e.emergency.then_some(true),
                force: e.force,
            };
            let (bundle, created) = a.enroll(&req, now_secs(), &mut rng)?;
            // The registry first: a device number is spent even if the bundle cannot be
            // written, so no number (and no nonce space) is ever handed out twice.
            a.save(&e.dir)?;
            print_updates(&a, &e.dir);
            bundle.save(&e.out, e.force).map_err(DomainError::from)?;
            for c in created {
                println!("created channel {c}");
            }
            let c = &bundle.cert.body;
            println!(
                "enrolled {} as device {} (peer id {}){}",
                c.name,
                c.device,
                bundle.cert.peer_id(),
                if c.relay_only { ", relay-only" } else { "" }
            );
            println!(
                "channels: {}",
                c.grants
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!(
                "bundle written to {}: copy it to the device",
                e.out.display()
            );
        }
        DomainCommand::Broker { dir, add, remove } => {
            let _lock = Authority::lock(&dir)?;
            let mut a = Authority::load(&dir)?;
            let (addr, rm) = match (add, remove) {
                (Some(a), _) => (a, false),
                (None, Some(r)) => (r, true),
                (None, None) => return Err(CliError::BrokerChange),
            };
            let changed = a.set_broker(&addr, rm, now_secs(), &mut rng)?.is_some();
            a.save(&dir)?;
            print_updates(&a, &dir);
            match (changed, rm) {
                (true, false) => {
                    println!("broker {addr} added; devices enrolled from now on know it")
                }
                (true, true) => println!("broker {addr} removed"),
                (false, false) => println!("broker {addr} was already listed"),
                (false, true) => println!("broker {addr} was not listed"),
            }
            for b in &a.descriptor().body.brokers {
                println!("  broker {b}");
            }
        }
        DomainCommand::Publish { .. } => {
            return Err(CliError::PublishNeedsDaemon);
        }
        DomainCommand::Revoke { dir, device } => {
            let _lock = Authority::lock(&dir)?;
            let mut a = Authority::load(&dir)?;
            let u = a.revoke(&device, now_secs(), &mut rng)?;
            a.save(&dir)?;
            println!(
                "revoked {device}: update {} starts new key epochs sealed in {} key(s) to the remaining members",
                u.body.serial,
                u.body.keys.len()
            );
            print_updates(&a, &dir);
        }
        DomainCommand::Plane { dir, enable, .. } => {
            let _lock = Authority::lock(&dir)?;
            let mut a = Authority::load(&dir)?;
            let u = if enable {
                a.enable_plane(now_secs(), &mut rng)?
            } else {
                a.rotate_plane(now_secs(), &mut rng)?
            };
            a.save(&dir)?;
            println!(
                "data plane: update {} starts plane epoch {}, sealed in {} key(s) to every device",
                u.body.serial,
                a.plane_epoch().unwrap_or(0),
                u.body.keys.len()
            );
            print_updates(&a, &dir);
        }
        DomainCommand::Channel {
            dir,
            channel,
            rate,
            burst,
            rotate,
            escalate_after,
            escalate_from,
        } => {
            let _lock = Authority::lock(&dir)?;
            let mut a = Authority::load(&dir)?;
            let change = crate::domain::PolicyChange {
                rate_per_min: rate,
                burst,
                rotate_secs: rotate,
                escalate_after_secs: escalate_after,
                escalate_from,
            };
            let changed = a.set_policy(&channel, &change, now_secs(), &mut rng)?;
            a.save(&dir)?;
            if let Some(c) = a.descriptor().channel_by_name(&channel) {
                println!(
                    "channel {channel}: {} alerts/min per sender, burst {}, rotate every {} s, {}{}",
                    c.policy.rate_per_min,
                    c.policy.burst,
                    c.policy.rotate_secs,
                    match c.escalation.after_secs {
                        0 => "no escalation".to_string(),
                        t => format!(
                            "{} and above escalated when unacknowledged after {t} s",
                            c.escalation.min_severity
                        ),
                    },
                    if changed.is_none() {
                        " (unchanged)"
                    } else {
                        ""
                    }
                );
            }
            print_updates(&a, &dir);
        }
        DomainCommand::Device {
            dir,
            device,
            max_severity,
            dispatcher,
            watch,
            emergency,
        } => {
            let _lock = Authority::lock(&dir)?;
            let mut a = Authority::load(&dir)?;
            let change = crate::domain::RightsChange {
                max_severity,
                dispatcher,
                watch_secs: watch,
                emergency,
            };
            let changed = a.set_rights(&device, change, now_secs(), &mut rng)?;
            a.save(&dir)?;
            let r = a
                .registry()
                .iter()
                .rfind(|e| e.name == device && !e.replaced && !e.revoked)
                .map(|e| a.descriptor().rights(e.device));
            if let Some(r) = r {
                println!(
                    "device {device}: severity at most {}, {}, {}{}{}",
                    r.max_severity,
                    if r.dispatcher() {
                        "dispatcher"
                    } else {
                        "not a dispatcher"
                    },
                    match r.watch_secs {
                        0 => "not watched".to_string(),
                        w => format!("watched every {w} s"),
                    },
                    if r.emergency() {
                        ", may declare an emergency"
                    } else {
                        ""
                    },
                    match &changed {
                        None => " (unchanged)".to_string(),
                        Some(u) => format!("; update {} to publish", u.body.serial),
                    }
                );
            }
            print_updates(&a, &dir);
        }
        DomainCommand::List { dir, json } => {
            let a = Authority::load(&dir)?;
            let d = a.descriptor();
            for e in a.registry() {
                let cert = Certificate::from_bytes(&e.cert, &d.authority, &d.domain).ok();
                let relay = cert.as_ref().is_some_and(|c| c.body.relay_only);
                let peer = cert
                    .as_ref()
                    .map(|c| c.peer_id().to_string())
                    .unwrap_or_default();
                let kind = cert
                    .as_ref()
                    .map(|c| c.body.profile.kind.clone())
                    .unwrap_or_default();
                let channels: Vec<String> = cert
                    .as_ref()
                    .map(|c| c.body.grants.iter().map(|g| g.name.clone()).collect())
                    .unwrap_or_default();
                let not_after = cert.as_ref().map_or(0, |c| c.body.not_after);
                let rights = d.rights(e.device);
                let max_severity = rights.max_severity;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "device": e.device, "name": e.name, "peer_id": peer, "kind": kind,
                            "relay_only": relay, "channels": channels, "enrolled_at": e.enrolled_at,
                            "not_after": not_after, "replaced": e.replaced,
                            "revoked": e.revoked, "max_severity": max_severity,
                            "dispatcher": rights.dispatcher(), "watch_secs": rights.watch_secs,
                            "emergency": rights.emergency(),
                        })
                    );
                } else {
                    let mut capped = match max_severity {
                        crate::alert::Severity::Extreme => String::new(),
                        s => format!(" (severity at most {s})"),
                    };
                    if rights.dispatcher() {
                        capped.push_str(" (dispatcher)");
                    }
                    if rights.emergency() {
                        capped.push_str(" (emergency)");
                    }
                    if rights.watch_secs > 0 {
                        capped.push_str(&format!(" (watched every {} s)", rights.watch_secs));
                    }
                    println!(
                        "{:>4}  {:<20} {:<10} {}{}{}{}  {}",
                        e.device,
                        e.name,
                        kind,
                        channels.join(","),
                        if relay { " (relay-only)" } else { "" },
                        if e.replaced { " (replaced)" } else { "" },
                        capped,
                        peer
                    );
                }
            }
            if !json && a.registry().is_empty() {
                println!(
                    "no devices enrolled; add one with: ptt-node domain enroll --dir {} --device NAME --out BUNDLE",
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

/// Tells the operator where the updates just made are and how to publish them.
fn print_updates(a: &Authority, dir: &std::path::Path) {
    for u in a.new_updates() {
        let path = crate::domain::update_path(dir, u.body.serial);
        println!(
            "update {} ({}): {}",
            u.body.serial,
            u.body.note,
            path.display()
        );
    }
    if let Some(u) = a.new_updates().last() {
        println!(
            "publish it to the running devices with: ptt-node domain publish --data DATA {}",
            crate::domain::update_path(dir, u.body.serial).display()
        );
    }
}

fn channel_list(a: &Authority) -> String {
    a.descriptor()
        .body
        .channels
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ptt-node domain publish`: every update file checked, then handed to the daemon in order.
pub(super) async fn publish(client: ClientArgs, updates: Vec<PathBuf>) -> Result<(), CliError> {
    // Read every file first: a bad one stops the command before anything is sent.
    let mut blobs = vec![];
    for p in &updates {
        let b = std::fs::read(p).map_err(|source| CliError::ReadUpdate {
            path: p.clone(),
            source,
        })?;
        if let Err(source) = crate::update::Update::claimed_serial(&b) {
            return Err(CliError::NotAnUpdate {
                path: p.clone(),
                source,
            });
        }
        blobs.push(b);
    }
    let mut c = connect_client(&client).await?;
    for (p, b) in updates.iter().zip(blobs) {
        let r = c
            .call(&Request::Publish {
                update: hex::encode(&b),
            })
            .await
            .map_err(|e| match e {
                ClientError::NotRunning { .. } => CliError::Client(e),
                source => CliError::PublishFailed {
                    path: p.clone(),
                    source,
                },
            })?;
        match r {
            Reply::Published {
                serial,
                applied,
                revision,
                ..
            } => {
                if client.json {
                    println!("{}", json_line(&r));
                } else if applied {
                    println!("update {serial} applied; the device is at revision {revision}");
                } else {
                    println!("update {serial} was already applied (revision {revision})");
                }
            }
            Reply::Error { message } => {
                return Err(CliError::PublishRefused {
                    path: p.clone(),
                    message,
                });
            }
            other => {
                return Err(CliError::UnexpectedReply(Box::new(other)));
            }
        }
    }
    Ok(())
}

/// The clock of certificates and updates: seconds since the Unix epoch.
fn now_secs() -> u64 {
    crate::clock::now_us() / 1_000_000
}
