//! ptt-node: a secure push-to-talk alert domain for surveillance and public-safety devices
//! on a local network, with no Internet and no server.
//!
//! # Layout
//!
//! The protocol core never does I/O: it takes bytes, keys and `now` and returns results.
//!
//! - [`keys`]: secret and public keys, the HKDF key schedule and its domain-separation labels,
//!   group keys sealed by the authority to one device.
//! - [`cert`]: device certificates and the domain descriptor, signed by the domain authority.
//! - [`alert`]: what a sensing device says (severity, kind, text, place, attributes).
//! - [`envelope`]: an alert sealed for a channel and signed by its sender; the bytes on the wire.
//! - [`plane`]: the sealed multicast data plane's datagrams: seal, open, beacons, the
//!   domain's group and port, the plane keys a receiver holds.
//! - [`replay`]: per-sender memory of what was already accepted.
//! - [`node`]: the decisions of one device: authenticate peers, seal, validate, open, count.
//! - [`mesh`]: the decisions of the mesh: peer states, dial policy and back-off, update order,
//!   push batching, the unread queue, the daemon's timers.
//! - [`presence`]: a device's signed statement of its addresses and current profile.
//! - [`sync`]: catch-up: reconciling two logs of envelopes (digest, diff, missing).
//! - [`voice`]: push-to-talk voice: the packet plaintext, floor control, the jitter buffer.
//! - [`update`]: domain updates from the authority: signed, numbered, applied in order.
//! - [`wire`]: postcard encoding with the bounds every decoder respects.
//!
//! The shell around it owns files, sockets and time:
//!
//! - [`clock`]: the wall clock (microseconds since the epoch), read only by the shell.
//! - [`fsutil`]: atomic 0600 writes and permission checks for secret files.
//! - [`domain`]: the offline authority's directory (`ptt-node domain …`).
//! - [`bundle`]: what one device carries: identity, certificate, sealed channel keys.
//! - [`store`]: the durable log (redb) of envelopes and sequence numbers.
//! - [`net`]: the libp2p swarm (TCP, Noise, Yamux, mDNS, identify, authentication, gossipsub).
//! - [`tag`]: device tags (QR/NFC URI) for physical-world discovery.
//! - [`rules`]: rules that run commands or send directed messages when alerts match.
//! - [`control`]: the daemon's Unix control socket and its client.
//! - [`paths`]: default places of the data directory, control socket and configuration.
//! - [`metrics`]: the Prometheus endpoint (`--metrics`).
//! - [`cap`]: alerts as OASIS CAP 1.2 documents (`listen --format cap`, `alert --cap`); pure
//!   conversion, listed here because only the CLI and the daemon's edges use it.
//! - [`daemon`]: wires node, store, net and control together (`ptt-node run`).
//! - [`audio`]: Opus encoding and decoding, WAV files and resampling (the CLI's side of voice).
//! - [`cli`]: the `ptt-node` command line.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![warn(missing_docs)]

pub mod alert;
pub mod audio;
pub mod bundle;
pub mod cap;
pub mod cert;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod domain;
pub mod envelope;
pub mod fsutil;
pub mod keys;
pub mod mesh;
pub mod metrics;
pub mod net;
pub mod node;
pub mod paths;
pub mod plane;
pub mod presence;
pub mod receipt;
pub mod replay;
pub mod rules;
pub mod severity;
pub mod store;
pub mod sync;
pub mod tag;
pub mod update;
pub mod voice;
pub mod wire;
