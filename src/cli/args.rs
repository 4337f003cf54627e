//! The clap types of `ptt-node`: every command, flag, default and help text, and the parsers
//! of their values. The man pages and shell completions are generated from these types, so
//! a change here is a change of the documented interface.
//!
//! This room only describes and parses the command line: it never talks to the daemon,
//! reads a file or prints anything.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;

use super::VERSION;
use super::voice;
use crate::alert::Severity;
use crate::cert::Location;

/// Secure push-to-talk alerts for devices on a local network: no Internet, no server.
#[derive(Debug, Parser)]
#[command(
    name = "ptt-node",
    version = VERSION,
    about,
    long_about = None,
    propagate_version = true,
    after_help = concat!(
        "Examples:\n",
        "  ptt-node domain init --dir ./site-a --name site-a\n",
        "  ptt-node domain enroll --dir ./site-a --device cam-1 --out ./cam-1\n",
        "  ptt-node run --bundle ./cam-1\n",
        "  ptt-node alert --severity severe --kind intrusion --text 'gate 3 forced'\n",
        "  ptt-node listen\n\n",
        "Exit codes:\n",
        "  0  success\n",
        "  1  an error: a refused request, a bad file, a failure to start (the message says which)\n",
        "  2  a usage error: unknown option, bad value (the message says which)\n",
        "  3  no daemon running where the command looked (start one with `ptt-node run`)\n",
        "  4  talk: the floor is taken (by another talker, at the same moment, or by a higher severity)\n",
        "  5  alert --wait: the time ran out before enough members sent a receipt"
    )
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon on this device.
    #[command(
        after_help = "Examples:\n  ptt-node run --bundle ./cam-1\n  ptt-node run --config /etc/ptt-node/ptt-node.toml --metrics\n  ptt-node run --bundle ./cam-1 --data ./cam-1-data --listen /ip4/0.0.0.0/tcp/7000 --peer /ip4/10.0.0.2/tcp/7000"
    )]
    Run(RunArgs),
    /// Provision a domain (offline, on the administrator's machine).
    #[command(
        subcommand,
        after_help = "Examples:\n  ptt-node domain init --dir ./site-a --name site-a\n  ptt-node domain enroll --dir ./site-a --device cam-1 --out ./cam-1 --kind camera\n  ptt-node domain revoke --dir ./site-a --device cam-1 && ptt-node domain publish ./site-a/updates/*.update"
    )]
    Domain(DomainCommand),
    /// Seal and broadcast an alert through the running daemon.
    #[command(
        after_help = "Examples:\n  ptt-node alert --severity severe --kind intrusion --text 'gate 3 forced'\n  ptt-node alert --severity minor --kind motion --text 'hall' --location 37.5665,126.9780 --attr zone=north\n  ptt-node alert --cap warning.xml\n  ptt-node alert --cap cancel.xml      (a CAP Cancel whose references name an alert cancels it)\n  sensor | ptt-node alert --stdin"
    )]
    Alert(AlertArgs),
    /// Send a directed message to one device (only it can read it; relays check it).
    #[command(
        after_help = "Example:\n  ptt-node send --to ac-1 --kind ac-on --text 'server room above 30 C'"
    )]
    Send(SendArgs),
    /// Press to talk: send a recorded clip as one voice burst to every member of a channel.
    #[command(
        after_help = "Examples:\n  ptt-node talk --wav clip.wav\n  ptt-node talk --channel patrol --severity severe --queue --wav clip.wav\n  ptt-node talk --mic --audio-device plughw:1,0"
    )]
    Talk(voice::TalkArgs),
    /// Print alerts as they arrive, until interrupted.
    #[command(
        after_help = "Examples:\n  ptt-node listen\n  ptt-node listen --format json | jq .text\n  ptt-node listen --format cap > alerts.xml\n  ptt-node listen --play --audio-dir ~/heard"
    )]
    Listen(ListenArgs),
    /// List peers: device, peer id, addresses, authenticated or not.
    #[command(
        after_help = "Examples:\n  ptt-node peers\n  ptt-node peers --json --socket /run/ptt-node/control.sock"
    )]
    Peers(ClientArgs),
    /// Show this device, its domain, peers, alerts, log and keys at a glance.
    #[command(
        after_help = "Examples:\n  ptt-node status\n  ptt-node status --data /var/lib/ptt-node --json"
    )]
    Status(ClientArgs),
    /// Print this device's tag (a URI for a QR code or an NFC tag) and draw it as a QR code.
    #[command(
        after_help = "Examples:\n  ptt-node tag --bundle ./cam-1 --data /var/lib/ptt-node\n  ptt-node tag --bundle ./cam-1 --addr /ip4/10.0.0.5/tcp/4001 --png cam-1.png"
    )]
    Tag(TagArgs),
    /// Dial the device a tag names (from a QR code or NFC) and check it is that device.
    #[command(after_help = "Example:\n  ptt-node connect 'ptt://1/…'")]
    Connect(ConnectArgs),
    /// Show this device's profile, or change it (spread to every member, kept across restarts).
    #[command(
        after_help = "Examples:\n  ptt-node profile\n  ptt-node profile --location 37.5665,126.9780 --tag zone=north --tag floor=2\n  ptt-node profile --reset"
    )]
    Profile(ProfileArgs),
    /// Find devices of the domain by kind, place and context tags (digital-world discovery).
    #[command(
        after_help = "Examples:\n  ptt-node search --kind camera\n  ptt-node search --near 37.5665,126.9780 --radius 500 --tag zone=north"
    )]
    Search(SearchArgs),
    /// Who got an alert: every member that can read it, when its receipt says it opened it
    /// and by which path, and whether it acknowledged it.
    #[command(
        after_help = "Examples:\n  ptt-node receipts 3f2a9c0e1b7d4e65\n  ptt-node receipts 3f2a9c0e1b7d4e65 --json"
    )]
    Receipts(ReceiptsArgs),
    /// Acknowledge an alert ("handled"): every member's `receipts` and this device's peers see it.
    #[command(
        after_help = "Examples:\n  ptt-node ack 3f2a9c0e1b7d4e65\n  ptt-node ack 3f2a9c0e1b7d4e65 --text 'guard on the way'"
    )]
    Ack(AckArgs),
    /// Call an alert off (CAP `Cancel`): every member's `listen` and `history` show it
    /// cancelled. Only its sender or a dispatcher may.
    #[command(
        after_help = "Examples:\n  ptt-node cancel 3f2a9c0e1b7d4e65 --text 'false alarm: cleaner in zone 3'\n  ptt-node alert --update 3f2a9c0e1b7d4e65 --severity moderate --kind intrusion --text 'one person, leaving'"
    )]
    Cancel(CancelArgs),
    /// Declare this device in emergency: an `extreme` alert with its location, and its voice
    /// pre-empts every other talker until `--clear` (or a dispatcher's `cancel`). Needs the
    /// authority's emergency right.
    #[command(
        after_help = "Examples:\n  ptt-node emergency --text 'man down, stair B'\n  ptt-node talk --mic                    (pre-empts any talker not in emergency)\n  ptt-node emergency --clear --text 'safe'"
    )]
    Emergency(EmergencyArgs),
    /// Show stored alerts this device can read, oldest first.
    #[command(
        after_help = "Examples:\n  ptt-node history --since 2h\n  ptt-node history --since 2026-11-22T08:00:00Z --channel alerts --json"
    )]
    History(HistoryArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  ptt-node completions bash > /usr/share/bash-completion/completions/ptt-node\n  ptt-node completions zsh > \"${fpath[1]}/_ptt-node\"\n  ptt-node completions fish > ~/.config/fish/completions/ptt-node.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one per command into a directory.
    #[command(
        after_help = "Examples:\n  ptt-node man | man -l -\n  ptt-node man --dir /usr/local/share/man/man1"
    )]
    Man {
        /// Write ptt-node.1 and ptt-node-COMMAND.1 for every command into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `ptt-node tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The device's bundle.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Address to put in the tag (repeatable). Default: the running daemon's listen
    /// addresses (from --data).
    #[arg(long = "addr", value_name = "MULTIADDR")]
    pub addrs: Vec<Multiaddr>,
    /// Data directory of the device's running daemon (for its addresses).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Also write the QR code to this PNG file.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Print only the URI, no QR code.
    #[arg(long)]
    pub uri_only: bool,
}

/// `ptt-node connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Common arguments.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The tag URI (ptt://1/…).
    pub tag: String,
}

/// `ptt-node profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Common arguments.
    #[command(flatten)]
    pub client: ClientArgs,
    /// New kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// New location as LAT,LON.
    #[arg(long, value_parser = parse_location, allow_hyphen_values = true)]
    pub location: Option<Location>,
    /// New context tags KEY=VALUE (repeatable; replace the old ones).
    #[arg(long = "tag", value_parser = parse_kv)]
    pub tags: Vec<(String, String)>,
    /// The device sleeps most of the time.
    #[arg(long, conflicts_with = "awake")]
    pub sleeps: bool,
    /// The device is always on.
    #[arg(long)]
    pub awake: bool,
    /// Back to the profile in the certificate.
    #[arg(long, conflicts_with_all = ["kind", "location", "tags", "sleeps", "awake"])]
    pub reset: bool,
}

/// `ptt-node search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Common arguments.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Device kind (camera, motion-sensor, …).
    #[arg(long)]
    pub kind: Option<String>,
    /// Near this place, as LAT,LON.
    #[arg(long, value_parser = parse_location, allow_hyphen_values = true)]
    pub near: Option<Location>,
    /// Radius around --near, in metres (default 1000).
    #[arg(long, requires = "near", value_parser = parse_radius)]
    pub radius: Option<f64>,
    /// Context tag KEY=VALUE the device must have (repeatable).
    #[arg(long = "tag", value_parser = parse_kv)]
    pub tags: Vec<(String, String)>,
}

fn parse_radius(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!(
            "radius {s:?} is not a number of metres (0 or more)"
        )),
    }
}

/// `ptt-node receipts`.
#[derive(Debug, Args)]
pub struct ReceiptsArgs {
    /// Common arguments.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The alert's id (printed by `alert`, shown by `listen` and `history`).
    pub id: String,
}

/// `ptt-node ack`.
#[derive(Debug, Args)]
pub struct AckArgs {
    /// Common arguments.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The alert's id.
    pub id: String,
    /// What was done (at most 256 bytes).
    #[arg(long, default_value = "")]
    pub text: String,
}

/// How many receipts `alert --wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Every member that can read the channel.
    All,
    /// At least this many members.
    Count(usize),
}

fn parse_wait(s: &str) -> Result<WaitFor, String> {
    match s {
        "all" => Ok(WaitFor::All),
        n => match n.parse::<usize>() {
            Ok(k) if k >= 1 => Ok(WaitFor::Count(k)),
            _ => Err(format!(
                "{s:?} is neither `all` nor a number of members (1 or more)"
            )),
        },
    }
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 && t <= 86_400.0 => Ok(t),
        _ => Err(format!(
            "{s:?} is not a number of seconds (above 0, at most 86400)"
        )),
    }
}

/// `ptt-node history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Common arguments.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only alerts stored since TIME: a duration ago (30s, 10m, 2h, 7d) or a UTC time
    /// (2026-11-22T08:00:00Z).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<u64>,
    /// Only this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// At most this many alerts.
    #[arg(long, default_value_t = 10_000)]
    pub limit: usize,
    /// Output format (`--json` is `--format json`).
    #[arg(long, value_enum, conflicts_with = "json")]
    pub format: Option<Format>,
    /// Colour the severity in text output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// Parses `--since`: a duration ago or an RFC 3339 UTC time; returns µs since the epoch.
pub fn parse_since(s: &str) -> Result<u64, String> {
    let now = crate::clock::now_us();
    let unit = |c: char| match c {
        's' => Some(1_000_000u64),
        'm' => Some(60_000_000),
        'h' => Some(3_600_000_000),
        'd' => Some(86_400_000_000),
        _ => None,
    };
    if let Some(last) = s.chars().last()
        && let Some(mult) = unit(last)
        && let Ok(n) = s[..s.len() - 1].parse::<u64>()
    {
        return Ok(now.saturating_sub(n.saturating_mul(mult)));
    }
    parse_utc(s).ok_or_else(|| {
        format!(
            "{s:?} is not a duration (30s, 10m, 2h, 7d) or a UTC time like 2026-11-22T08:00:00Z"
        )
    })
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into µs since the Unix epoch.
fn parse_utc(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok().map(|s| s * 1_000_000)
}

/// `ptt-node run`.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// Configuration file (TOML; examples/ptt-node.toml documents every key). A flag given
    /// here wins over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The device bundle made by `ptt-node domain enroll` (or `bundle` in --config).
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Data directory (alert log, keys). Default: $PTT_NODE_DATA, else the service's
    /// state directory (/var/lib/ptt-node), else ~/.local/state/ptt-node.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Control socket. Default: $PTT_NODE_SOCKET, else /run/ptt-node/control.sock for the
    /// service, else DATA/control.sock.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics: PORT (on loopback) or IP:PORT.
    /// Off by default; `--metrics` alone serves on 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9464", value_parser = crate::metrics::parse_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Listen address (repeatable). Default: /ip4/0.0.0.0/tcp/0.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Peer to dial at start besides those mDNS finds (repeatable).
    #[arg(long = "peer", value_name = "MULTIADDR")]
    pub peers: Vec<Multiaddr>,
    /// Seconds between mDNS queries [default: 5].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub mdns_interval: Option<u64>,
    /// Do not use mDNS at all (neither query nor answer): peers come only from --peer.
    #[arg(long)]
    pub no_mdns: bool,
    /// Also act as a connection broker (circuit relay v2) for members of the domain that
    /// cannot reach each other directly.
    #[arg(long)]
    pub broker: bool,
    /// Rules file (TOML): run commands or send directed messages when alerts match.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Hours the log keeps envelopes (sealed) for catch-up and history [default: 24].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub retention_hours: Option<u64>,
    /// MiB of alerts the log keeps at most (oldest go first), and a quarter of it of receipts
    /// besides [default: 64].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub retention_mib: Option<u64>,
    /// Log filter in RUST_LOG syntax, e.g. info or ptt_node=debug,libp2p=warn; wins over
    /// RUST_LOG and the file's `log` [default: info].
    #[arg(long, value_name = "FILTER", value_parser = parse_log_filter)]
    pub log: Option<String>,
    /// Log lines as text (for people) or JSON (one object per line) [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<crate::config::LogFormat>,
    /// Connections to members on this LAN a node keeps once the domain has more than N+1
    /// of them (each keeps its ring neighbours and a few long links; 2 to 4096). Static
    /// peers, brokers and `connect` are not counted against it [default: 8].
    #[arg(long, value_name = "N", value_parser = crate::config::parse_max_peers)]
    pub max_peers: Option<u64>,
    /// Do not use the multicast data plane: alerts and voice go by gossip only.
    #[arg(long)]
    pub no_plane: bool,
    /// Interface for the multicast data plane (repeatable). Default: every interface the
    /// daemon listens on (all but loopback for a 0.0.0.0 listen address).
    #[arg(long = "plane-interface", value_name = "NAME")]
    pub plane_interfaces: Vec<String>,
    /// Multicast group of the data plane, one per address family (repeatable); for switches
    /// that pass only some groups. Default: derived from the domain.
    #[arg(long = "plane-group", value_name = "ADDR", value_parser = crate::config::parse_plane_group)]
    pub plane_groups: Vec<std::net::IpAddr>,
    /// UDP port of the data plane. Default: derived from the domain (20000-29999).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1024..))]
    pub plane_port: Option<u16>,
    /// Testing only: seal beyond the channel's rate limit, as a compromised member would
    /// (the other members still enforce it).
    #[arg(long, hide = true)]
    pub ignore_own_rate_limit: bool,
    /// Benchmarks only: send no receipts (receipts of others are still carried, stored and
    /// read), to measure what receipts cost.
    #[arg(long, hide = true)]
    pub no_receipts: bool,
    /// Testing only: an alert sent on the multicast plane is not also published by gossip
    /// (catch-up and everything else unchanged), to measure the plane's repair alone.
    #[arg(long, hide = true)]
    pub plane_only: bool,
}

impl RunArgs {
    /// The flags that [`crate::config::combine`] lays over the configuration file.
    pub fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides {
            bundle: self.bundle.clone(),
            data: self.data.clone(),
            socket: self.socket.clone(),
            metrics: self.metrics,
            listen: self.listen.clone(),
            peers: self.peers.clone(),
            mdns_interval: self.mdns_interval,
            no_mdns: self.no_mdns,
            broker: self.broker,
            rules: self.rules.clone(),
            retention_hours: self.retention_hours,
            retention_mib: self.retention_mib,
            log_format: self.log_format,
            no_plane: self.no_plane,
            plane_interfaces: self.plane_interfaces.clone(),
            plane_groups: self.plane_groups.clone(),
            plane_port: self.plane_port,
            plane_only: self.plane_only,
            max_peers: self.max_peers,
        }
    }
}

/// `ptt-node domain …`.
#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Create a domain authority in an empty directory.
    #[command(after_help = "Example:\n  ptt-node domain init --dir ./site-a --name site-a")]
    Init {
        /// Authority directory (keep it offline).
        #[arg(long)]
        dir: PathBuf,
        /// Domain name.
        #[arg(long)]
        name: String,
        /// Also give the domain a private-network key (libp2p pnet): every device gets it,
        /// and a device without it cannot complete even the transport handshake with a member.
        #[arg(long)]
        private_network: bool,
        /// Make the domain as before the data plane existed, with no plane key (to test
        /// `domain plane --enable`).
        #[arg(long, hide = true)]
        no_plane: bool,
    },
    /// Enrol a device: make its keys, certificate and sealed channel keys as a bundle.
    #[command(
        after_help = "Example:\n  ptt-node domain enroll --dir ./site-a --device cam-1 --out ./cam-1 --kind camera --location 37.56,126.97 --tag zone=north"
    )]
    Enroll(EnrollArgs),
    /// Add or remove a connection broker in the domain descriptor (bundles enrolled
    /// afterwards carry it).
    #[command(
        after_help = "Example:\n  ptt-node domain broker --dir ./site-a --add /ip4/10.0.0.1/tcp/4777/p2p/12D3KooW…"
    )]
    Broker {
        /// Authority directory.
        #[arg(long)]
        dir: PathBuf,
        /// Broker multiaddress to add (must end with /p2p/<peer id>).
        #[arg(long, conflicts_with = "remove", required_unless_present = "remove")]
        add: Option<String>,
        /// Broker multiaddress to remove.
        #[arg(long)]
        remove: Option<String>,
    },
    /// Set what the authority allows a device beyond its certificate: the highest severity
    /// its alerts and voice claims count with (members read a higher claim as this one; its
    /// own daemon refuses to seal one). Makes an update to publish; no re-enrolment.
    #[command(after_help = "Examples:
  ptt-node domain device --dir ./site-a --device cam-3 --max-severity severe
  ptt-node domain device --dir ./site-a --device cam-3 --max-severity extreme   (no limit)
  ptt-node domain device --dir ./site-a --device desk-1 --dispatcher on
  ptt-node domain device --dir ./site-a --device cam-3 --watch 60
  ptt-node domain device --dir ./site-a --device guard-2 --emergency on
  ptt-node domain publish --data /var/lib/ptt-node ./site-a/updates/000009.update")]
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true)))]
    Device {
        /// Authority directory.
        #[arg(long)]
        dir: PathBuf,
        /// Device name.
        #[arg(long)]
        device: String,
        /// unknown, minor, moderate, severe or extreme (extreme: no limit).
        #[arg(long, group = "change")]
        max_severity: Option<Severity>,
        /// on: the device may update and cancel alerts other members sent; off: only its own.
        #[arg(long, group = "change", value_parser = clap::builder::BoolishValueParser::new(), value_name = "on|off")]
        dispatcher: Option<bool>,
        /// Check-in period in seconds: the domain announces the device lost when no member has
        /// heard it for this long (0: not watched; at least 10).
        #[arg(long, group = "change", value_name = "SECS")]
        watch: Option<u32>,
        /// on: the device may declare an emergency (`ptt-node emergency`), whose voice
        /// pre-empts every other talker; off: it may not.
        #[arg(long, group = "change", value_parser = clap::builder::BoolishValueParser::new(), value_name = "on|off")]
        emergency: Option<bool>,
    },
    /// List enrolled devices.
    #[command(
        after_help = "Examples:\n  ptt-node domain list --dir ./site-a\n  ptt-node domain list --dir ./site-a --json"
    )]
    List {
        /// Authority directory.
        #[arg(long)]
        dir: PathBuf,
        /// One JSON object per device.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device: a signed update that lists it as revoked and re-keys every channel
    /// it could read for the remaining members. Publish the update into the mesh with
    /// `ptt-node domain publish`.
    #[command(after_help = "Example:
  ptt-node domain revoke --dir ./site-a --device cam-3
  ptt-node domain publish --data /var/lib/ptt-node ./site-a/updates/000007.update")]
    Revoke {
        /// Authority directory.
        #[arg(long)]
        dir: PathBuf,
        /// Name of the device to revoke.
        #[arg(long)]
        device: String,
    },
    /// Set a channel's policy: rate limit per sender, key rotation period (a new rotation
    /// period starts a new key epoch) and escalation of unacknowledged alerts. Makes an
    /// update to publish.
    #[command(after_help = "Examples:
  ptt-node domain channel --dir ./site-a --channel alerts --rate 600 --burst 100 --rotate 3600
  ptt-node domain channel --dir ./site-a --channel alerts --escalate-after 120 --escalate-from severe")]
    Channel {
        /// Authority directory.
        #[arg(long)]
        dir: PathBuf,
        /// Channel name.
        #[arg(long)]
        channel: String,
        /// Alerts per minute one sender may publish (0: no limit).
        #[arg(long)]
        rate: Option<u32>,
        /// Alerts one sender may publish at once above the rate.
        #[arg(long)]
        burst: Option<u32>,
        /// Key rotation period in seconds (0: no rotation).
        #[arg(long)]
        rotate: Option<u32>,
        /// Seconds after which an alert no member acknowledged is announced again by its
        /// sender at the next severity, once (0: never).
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(0..=86_400))]
        escalate_after: Option<u32>,
        /// The lowest severity escalated (default severe).
        #[arg(long, value_name = "SEVERITY")]
        escalate_from: Option<Severity>,
    },
    /// The data plane's key: give a domain made without one its first plane epoch, or start
    /// a new epoch. Either makes an update, sealed to every device, relay-only ones included;
    /// publish it with `ptt-node domain publish`.
    #[command(after_help = "Examples:
  ptt-node domain plane --dir ./site-a --enable
  ptt-node domain plane --dir ./site-a --rotate
  ptt-node domain publish --data /var/lib/ptt-node ./site-a/updates/000008.update")]
    Plane {
        /// Authority directory.
        #[arg(long)]
        dir: PathBuf,
        /// Give the domain its first plane epoch (no re-enrolment: members apply the update).
        #[arg(long, conflicts_with = "rotate", required_unless_present = "rotate")]
        enable: bool,
        /// Start a new plane epoch (members keep the previous one for 10 minutes).
        #[arg(long)]
        rotate: bool,
    },
    /// Hand a signed update (from the authority's `updates/` directory) to a running member,
    /// which applies it and spreads it to every member (members asleep get it when they
    /// come back).
    #[command(after_help = "Example:\n  ptt-node domain publish ./site-a/updates/000001.update")]
    Publish {
        /// Common arguments.
        #[command(flatten)]
        client: ClientArgs,
        /// Update files, applied in the order given.
        #[arg(required = true)]
        updates: Vec<PathBuf>,
    },
}

/// `ptt-node domain enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Authority directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Device name, unique in the domain.
    #[arg(long)]
    pub device: String,
    /// Bundle directory to create.
    #[arg(long)]
    pub out: PathBuf,
    /// Channel the device may use (repeatable; default: alerts). Missing channels are created.
    #[arg(long = "channel")]
    pub channels: Vec<String>,
    /// The device forwards and stores alerts but can never read them.
    #[arg(long)]
    pub relay_only: bool,
    /// Device kind, such as motion-sensor, camera, alarm, handheld.
    #[arg(long, default_value = "device")]
    pub kind: String,
    /// Location as LAT,LON in degrees.
    #[arg(long, value_parser = parse_location, allow_hyphen_values = true)]
    pub location: Option<Location>,
    /// Context tag KEY=VALUE (repeatable).
    #[arg(long = "tag", value_parser = parse_kv)]
    pub tags: Vec<(String, String)>,
    /// The device sleeps most of the time.
    #[arg(long)]
    pub sleeps: bool,
    /// Certificate lifetime in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36500))]
    pub valid_days: u64,
    /// Testing only: the certificate's lifetime in seconds, instead of --valid-days (to watch
    /// a certificate expire on a live connection).
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub valid_secs: Option<u64>,
    /// The highest severity the device may claim (default: every severity; a replacement
    /// keeps the limit of the device it replaces). `ptt-node domain device` changes it later.
    #[arg(long)]
    pub max_severity: Option<Severity>,
    /// The device may update and cancel alerts other members sent (a dispatcher); without it,
    /// only its own. `ptt-node domain device --dispatcher` changes it later.
    #[arg(long)]
    pub dispatcher: bool,
    /// Check-in period in seconds: the domain announces the device lost when no member has
    /// heard it for this long (at least 10). `ptt-node domain device --watch` changes it later.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<u32>,
    /// The device may declare an emergency (`ptt-node emergency`), whose voice pre-empts every
    /// other talker. `ptt-node domain device --emergency` changes it later.
    #[arg(long)]
    pub emergency: bool,
    /// Replace a device of the same name, or overwrite an existing bundle directory.
    #[arg(long)]
    pub force: bool,
}

/// Arguments shared by the client commands.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Data directory of the running daemon. Without it (or --socket) the CLI looks for
    /// $PTT_NODE_SOCKET, $PTT_NODE_DATA, the per-user daemon, then the service.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Control socket of the running daemon.
    #[arg(long, value_name = "PATH", conflicts_with = "data")]
    pub socket: Option<PathBuf>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// `ptt-node send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Common arguments.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The device name.
    #[arg(long)]
    pub to: String,
    /// What to do or what happened (`ac-on`, `lock`, …).
    #[arg(long)]
    pub kind: String,
    /// Text.
    #[arg(long, default_value = "")]
    pub text: String,
    /// minor, moderate, severe, extreme or unknown.
    #[arg(long, default_value = "unknown")]
    pub severity: Severity,
    /// Attribute KEY=VALUE (repeatable).
    #[arg(long = "attr", value_parser = parse_kv)]
    pub attributes: Vec<(String, String)>,
}

/// How `listen` and `history` print alerts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per alert for people (severity in colour on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
    /// One OASIS CAP 1.2 XML document per alert.
    Cap,
}

/// When to use colour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    /// Whether text output is coloured: `auto` asks whether stdout is a terminal and NO_COLOR.
    pub(super) fn enabled(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::IsTerminal::is_terminal(&std::io::stdout())
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// `ptt-node listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Common arguments (`--json` is `--format json`).
    #[command(flatten)]
    pub client: ClientArgs,
    /// Output format.
    #[arg(long, value_enum, conflicts_with = "json")]
    pub format: Option<Format>,
    /// Colour the severity in text output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Write each voice burst heard as a WAV file here (16 kHz mono), through a 2 s jitter
    /// buffer (a frame resent late is still in it), lost frames concealed.
    #[arg(long, value_name = "DIR")]
    pub audio_dir: Option<PathBuf>,
    /// Play each voice burst heard (one at a time; a higher severity takes the speaker),
    /// through a 60 ms jitter buffer, late frames concealed.
    #[arg(long)]
    pub play: bool,
    /// The ALSA playback device for --play: default, plughw:0,0, a name from ~/.asoundrc, …
    #[arg(long, value_name = "NAME", default_value = crate::audio::DEFAULT_DEVICE, requires = "play")]
    pub audio_device: String,
}

impl Format {
    /// `--format`, else `--json` as `json`, else text.
    pub(super) fn chosen(format: Option<Format>, json: bool) -> Format {
        format.unwrap_or(if json { Format::Json } else { Format::Text })
    }
}

/// `ptt-node alert`.
#[derive(Debug, Args)]
pub struct AlertArgs {
    /// Common arguments.
    #[command(flatten)]
    pub client: ClientArgs,
    /// minor, moderate, severe, extreme or unknown.
    #[arg(long, required_unless_present_any = ["stdin", "cap"])]
    pub severity: Option<Severity>,
    /// What happened: motion, intrusion, temperature, …
    #[arg(long, required_unless_present_any = ["stdin", "cap"])]
    pub kind: Option<String>,
    /// Text for the people who read it.
    #[arg(long, required_unless_present_any = ["stdin", "cap"])]
    pub text: Option<String>,
    /// Send the alert an OASIS CAP 1.2 document describes (FILE, or - for standard input):
    /// its event is the kind, its severity the severity, its description the text, its area
    /// the location, its parameters the attributes. An `Update` or a `Cancel` whose
    /// `<references>` names a ptt-node alert (as `listen --format cap` writes it) updates or
    /// cancels that alert (proto/cap.md).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["severity", "kind", "text", "location", "attributes", "stdin"])]
    pub cap: Option<PathBuf>,
    /// Read alerts from standard input instead, one JSON object per line
    /// ({"severity":"severe","kind":"motion","text":"…"} plus optional channel, location,
    /// attributes), as a sensor process pipes its events in; prints one id (or JSON reply)
    /// per alert. Up to 64 alerts are in flight at once; at the first refused alert it stops
    /// sending (those already in flight are still sent) and fails.
    #[arg(long, conflicts_with_all = ["severity", "kind", "text", "location", "attributes"])]
    pub stdin: bool,
    /// Channel.
    #[arg(long, default_value = crate::domain::DEFAULT_CHANNEL)]
    pub channel: String,
    /// Where, as LAT,LON.
    #[arg(long, value_parser = parse_location, allow_hyphen_values = true)]
    pub location: Option<Location>,
    /// Attribute KEY=VALUE (repeatable).
    #[arg(long = "attr", value_parser = parse_kv)]
    pub attributes: Vec<(String, String)>,
    /// Wait until `all` members that can read the channel, or N of them, sent a receipt for
    /// it; exit code 5 and the members still missing if the time runs out.
    #[arg(long, value_name = "all|N", value_parser = parse_wait, conflicts_with = "stdin")]
    pub wait: Option<WaitFor>,
    /// Seconds `--wait` waits.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs, requires = "wait")]
    pub timeout: f64,
    /// Replace the content of the alert of this id (CAP `Update`): sent on that alert's
    /// channel, whatever --channel says. Only its sender or a dispatcher may.
    #[arg(long, value_name = "ID", conflicts_with = "stdin")]
    pub update: Option<String>,
}

/// `ptt-node emergency`.
#[derive(Debug, Args)]
pub struct EmergencyArgs {
    /// Common arguments.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What is happening (or, with --clear, why it is over).
    #[arg(long, default_value = "")]
    pub text: String,
    /// Channel.
    #[arg(long, default_value = crate::domain::DEFAULT_CHANNEL)]
    pub channel: String,
    /// End this device's emergency.
    #[arg(long)]
    pub clear: bool,
}

/// `ptt-node cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Common arguments.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The alert's id (printed by `alert`, shown by `listen` and `history`).
    pub id: String,
    /// Why it is called off.
    #[arg(long, default_value = "")]
    pub text: String,
}

fn parse_location(s: &str) -> Result<Location, String> {
    Location::parse(s)
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn parse_log_filter(s: &str) -> Result<String, String> {
    crate::config::check_log_filter(s).map(|()| s.to_string())
}

#[cfg(test)]
mod tests;
