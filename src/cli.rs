//! The `ptt-node` command line: the daemon, provisioning and the client commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;

use crate::alert::{ReceivedAlert, Severity};
use crate::cert::{Certificate, Location, Profile};
use crate::control::{Client, ClientError, PeerInfo, Reply, Request, StatusInfo};
use crate::daemon::{self, RunConfig};
use crate::domain::{Authority, DomainError, EnrollRequest};
use crate::net::NetConfig;

/// The version `--version` prints: the package version and the git revision it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PTT_GIT_REV"), ")");

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
        "  4  talk: the floor is taken (by another talker, at the same moment, or by a higher severity)"
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
        after_help = "Examples:\n  ptt-node alert --severity severe --kind intrusion --text 'gate 3 forced'\n  ptt-node alert --severity minor --kind motion --text 'hall' --location 37.5665,126.9780 --attr zone=north\n  ptt-node alert --cap warning.xml\n  sensor | ptt-node alert --stdin"
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
    /// MiB of envelopes the log keeps at most (oldest go first) [default: 64].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub retention_mib: Option<u64>,
    /// Log filter in RUST_LOG syntax, e.g. info or ptt_node=debug,libp2p=warn; wins over
    /// RUST_LOG and the file's `log` [default: info].
    #[arg(long, value_name = "FILTER", value_parser = parse_log_filter)]
    pub log: Option<String>,
    /// Log lines as text (for people) or JSON (one object per line) [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<crate::config::LogFormat>,
    /// Testing only: seal beyond the channel's rate limit, as a compromised member would
    /// (the other members still enforce it).
    #[arg(long, hide = true)]
    pub ignore_own_rate_limit: bool,
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
    /// Set a channel's policy: rate limit per sender and key rotation period (a new
    /// rotation period starts a new key epoch). Makes an update to publish.
    #[command(after_help = "Example:
  ptt-node domain channel --dir ./site-a --channel alerts --rate 600 --burst 100 --rotate 3600")]
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
    fn enabled(self) -> bool {
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
    fn chosen(format: Option<Format>, json: bool) -> Format {
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
    /// the location, its parameters the attributes (proto/cap.md).
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

fn now_secs() -> u64 {
    crate::clock::now_us() / 1_000_000
}

/// Runs a parsed command line; returns the process exit code.
/// Runs a parsed command line. `settings` are those of `ptt-node run` when `main` has read
/// them already ([`run_settings`]).
pub async fn main(
    cli: Cli,
    settings: Option<Result<crate::config::Settings, CliError>>,
) -> ExitCode {
    let result = match cli.command {
        Command::Run(a) => {
            let s = settings.unwrap_or_else(|| run_settings(&a));
            run(a, s).await
        }
        Command::Domain(DomainCommand::Publish { client, updates }) => {
            publish(client, updates).await
        }
        Command::Domain(d) => domain(d),
        Command::Alert(a) => alert(a).await,
        Command::Listen(a) => listen(a).await,
        Command::Talk(a) => voice::talk(a).await,
        Command::Send(a) => send(a).await,
        Command::Peers(a) => peers(a).await,
        Command::Status(a) => status(a).await,
        Command::History(a) => history(a).await,
        Command::Search(a) => search(a).await,
        Command::Profile(a) => profile(a).await,
        Command::Tag(a) => tag(a).await,
        Command::Connect(a) => connect(a).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "ptt-node", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => man(dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ptt-node: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `ptt-node man`: the page of `ptt-node` on stdout, or every command's page into a directory.
fn man(dir: Option<PathBuf>) -> Result<(), CliError> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let Some(dir) = dir else {
        let mut out = std::io::stdout();
        return clap_mangen::Man::new(cmd)
            .render(&mut out)
            .map_err(|e| CliError::Other(format!("writing the manual page: {e}")));
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::Other(format!("{}: {e}", dir.display())))?;
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
        let mut buf = Vec::new();
        clap_mangen::Man::new(c)
            .title(name.clone())
            .render(&mut buf)
            .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
        std::fs::write(&path, buf)
            .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
        println!("{}", path.display());
    }
    Ok(())
}

pub use crate::alert::format_time_us;

mod voice;
pub use voice::TalkArgs;

/// An error at the edge, with its exit code.
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
    /// Something else.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// 3: no daemon running; 1: anything else (2 is clap's usage error).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Client(ClientError::NotRunning { .. }) => 3,
            CliError::Floor(_) => 4,
            _ => 1,
        }
    }
}

/// Connects to the daemon the client arguments name, or finds one.
async fn connect_client(a: &ClientArgs) -> Result<Client, ClientError> {
    Client::find(a.data.as_deref(), a.socket.as_deref()).await
}

fn parse_log_filter(s: &str) -> Result<String, String> {
    crate::config::check_log_filter(s).map(|()| s.to_string())
}

/// The settings of `ptt-node run`: its flags over its configuration file. `main` reads them
/// once, before logging starts (the file may set the log filter), and hands them to [`main`].
pub fn run_settings(a: &RunArgs) -> Result<crate::config::Settings, CliError> {
    let env = crate::paths::Env::from_process();
    // --config, else $PTT_NODE_CONFIG, else the service's configuration directory's file
    // when there is one.
    let path = a.config.clone().or_else(|| {
        env.default_config()
            .filter(|p| env.config.is_some() || p.exists())
    });
    let file = match &path {
        Some(p) => {
            crate::config::FileConfig::load(p).map_err(|e| CliError::Other(e.to_string()))?
        }
        None => crate::config::FileConfig::default(),
    };
    crate::config::combine(a, file).map_err(CliError::Other)
}

async fn run(a: RunArgs, s: Result<crate::config::Settings, CliError>) -> Result<(), CliError> {
    let s = s?;
    let env = crate::paths::Env::from_process();
    let data = s.data.clone().unwrap_or_else(|| env.default_data_dir());
    let socket = s.socket.clone().unwrap_or_else(|| env.daemon_socket(&data));
    let cfg = RunConfig {
        bundle: s.bundle,
        group_socket: s.socket.is_none() && env.group_socket(&socket),
        socket,
        data,
        metrics: s.metrics,
        listen: s.listen,
        peers: s.peers,
        net: NetConfig {
            mdns_interval: std::time::Duration::from_secs(s.mdns_interval_secs),
            mdns: s.mdns,
            broker: s.broker,
            // From the bundle, when the domain has a private network (set by the daemon).
            psk: None,
        },
        rules: match &s.rules {
            Some(p) => crate::rules::Rules::load(p).map_err(|e| CliError::Other(e.to_string()))?,
            None => crate::rules::Rules::default(),
        },
        rules_path: s.rules.clone(),
        retention: crate::store::Retention {
            max_age_us: s.retention_hours * 3600 * 1_000_000,
            max_bytes: s.retention_mib * 1024 * 1024,
        },
        ignore_own_rate_limit: a.ignore_own_rate_limit,
    };
    daemon::run(cfg, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {},
                _ = i.recv() => {},
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn domain(cmd: DomainCommand) -> Result<(), CliError> {
    let mut rng = rand_core::OsRng;
    match cmd {
        DomainCommand::Init {
            dir,
            name,
            private_network,
        } => {
            if Authority::exists(&dir) {
                return Err(DomainError::AlreadyExists(dir.display().to_string()).into());
            }
            let a = Authority::create_with(&name, private_network, now_secs(), &mut rng)?;
            a.save(&dir)?;
            println!("domain {name} created in {}", dir.display());
            println!("domain id {}", a.descriptor().domain.to_hex());
            println!("channels: {}", channel_list(&a));
            if private_network {
                println!("private network: on (every bundle carries the network key)");
            }
            println!("keep {} offline: it holds the authority key", dir.display());
        }
        DomainCommand::Enroll(e) => {
            let _lock = Authority::lock(&e.dir)?;
            let mut a = Authority::load(&e.dir)?;
            if e.out.join(crate::bundle::files::IDENTITY).exists() && !e.force {
                return Err(CliError::Other(format!(
                    "{} already holds a bundle; choose another --out or pass --force",
                    e.out.display()
                )));
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
                (None, None) => return Err(CliError::Other("give --add or --remove".into())),
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
            return Err(CliError::Other("publish needs the running daemon".into()));
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
        DomainCommand::Channel {
            dir,
            channel,
            rate,
            burst,
            rotate,
        } => {
            let _lock = Authority::lock(&dir)?;
            let mut a = Authority::load(&dir)?;
            let change = crate::domain::PolicyChange {
                rate_per_min: rate,
                burst,
                rotate_secs: rotate,
            };
            let changed = a.set_policy(&channel, &change, now_secs(), &mut rng)?;
            a.save(&dir)?;
            if let Some(c) = a.descriptor().channel_by_name(&channel) {
                println!(
                    "channel {channel}: {} alerts/min per sender, burst {}, rotate every {} s{}",
                    c.policy.rate_per_min,
                    c.policy.burst,
                    c.policy.rotate_secs,
                    if changed.is_none() {
                        " (unchanged)"
                    } else {
                        ""
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
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "device": e.device, "name": e.name, "peer_id": peer, "kind": kind,
                            "relay_only": relay, "channels": channels, "enrolled_at": e.enrolled_at,
                            "not_after": not_after, "replaced": e.replaced,
                        })
                    );
                } else {
                    println!(
                        "{:>4}  {:<20} {:<10} {}{}{}  {}",
                        e.device,
                        e.name,
                        kind,
                        channels.join(","),
                        if relay { " (relay-only)" } else { "" },
                        if e.replaced { " (replaced)" } else { "" },
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

async fn publish(client: ClientArgs, updates: Vec<PathBuf>) -> Result<(), CliError> {
    // Read every file first: a bad one stops the command before anything is sent.
    let mut blobs = vec![];
    for p in &updates {
        let b = std::fs::read(p)
            .map_err(|e| CliError::Other(format!("cannot read {}: {e}", p.display())))?;
        if let Err(e) = crate::update::Update::claimed_serial(&b) {
            return Err(CliError::Other(format!(
                "{} is not a domain update: {e}",
                p.display()
            )));
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
                e => CliError::Other(format!("{}: {e}", p.display())),
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
                return Err(CliError::Other(format!("{}: {message}", p.display())));
            }
            other => {
                return Err(CliError::Other(format!("unexpected reply {other:?}")));
            }
        }
    }
    Ok(())
}

async fn alert(a: AlertArgs) -> Result<(), CliError> {
    // The document is read and checked before the daemon is asked anything.
    let from_cap = match &a.cap {
        Some(p) => Some(read_cap(p)?),
        None => None,
    };
    let mut c = connect_client(&a.client).await?;
    if a.stdin {
        return alert_stdin(c, &a.channel, a.client.json).await;
    }
    let req = match from_cap {
        Some(b) => Request::Alert {
            channel: a.channel,
            severity: b.severity,
            kind: b.kind,
            text: b.text,
            location: b.location,
            attributes: b.attributes,
        },
        None => {
            let (Some(severity), Some(kind), Some(text)) = (a.severity, a.kind, a.text) else {
                return Err(CliError::Other(
                    "--severity, --kind and --text are required".into(),
                ));
            };
            Request::Alert {
                channel: a.channel,
                severity,
                kind,
                text,
                location: a.location,
                attributes: a.attributes,
            }
        }
    };
    match c.call(&req).await? {
        r @ Reply::Sent { .. } => {
            if a.client.json {
                println!("{}", json_line(&r));
            } else if let Reply::Sent { id, peers, .. } = r {
                println!("{id}");
                if peers == 0 {
                    eprintln!(
                        "ptt-node: warning: no authenticated peer is connected; the alert is stored here but reached nobody"
                    );
                }
            }
            Ok(())
        }
        other => Err(ClientError::Protocol(format!("{other:?}")).into()),
    }
}

/// Reads and checks the CAP document of `alert --cap` (`-`: standard input).
fn read_cap(p: &std::path::Path) -> Result<crate::alert::AlertBody, CliError> {
    use std::io::Read;
    let name = if p == std::path::Path::new("-") {
        "standard input".to_string()
    } else {
        p.display().to_string()
    };
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
    r.map_err(|e| CliError::Other(format!("{name}: {e}")))?;
    if bytes.len() > crate::cap::MAX_DOCUMENT {
        return Err(CliError::Other(format!(
            "{name}: larger than {} KiB; a CAP document for one alert is much smaller",
            crate::cap::MAX_DOCUMENT / 1024
        )));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| CliError::Other(format!("{name}: not UTF-8 text")))?;
    crate::cap::from_cap(&text).map_err(|e| CliError::Other(format!("{name}: {e}")))
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
                input_error = Some(CliError::Other(format!("reading standard input: {e}")));
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
                input_error = Some(CliError::Other(format!("standard input line {n}: {e}")));
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
        };
        let _ = line_tx.send(n);
        if let Err(e) = requests.send(&req).await {
            send_error = Some(CliError::Other(format!("standard input line {n}: {e}")));
            break;
        }
    }
    // No more requests: the daemon answers those sent, then closes the connection.
    let _ = requests.finish().await;
    drop(line_tx);
    printer
        .await
        .map_err(|e| CliError::Other(format!("reply printer: {e}")))??;
    match input_error.or(send_error) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

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
                Ok(n) => Err(CliError::Other(format!(
                    "standard input line {n}: the daemon closed the connection before answering"
                ))),
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
                return Err(CliError::Other(format!(
                    "standard input line {n}: {message}"
                )));
            }
            other => return Err(ClientError::Protocol(format!("{other:?}")).into()),
        }
    }
}

fn json_line<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Prints alerts in one of the formats of `listen` and `history`.
struct Printer {
    format: Format,
    colour: bool,
    /// The domain's name, for CAP documents.
    domain: String,
}

impl Printer {
    async fn new(c: &mut Client, format: Format, colour: ColorChoice) -> Result<Self, CliError> {
        let domain = if format == Format::Cap {
            match c.call(&Request::Status).await? {
                Reply::Status(s) => s.domain_name,
                other => return Err(ClientError::Protocol(format!("{other:?}")).into()),
            }
        } else {
            String::new()
        };
        Ok(Printer {
            format,
            colour: format == Format::Text && colour.enabled(),
            domain,
        })
    }

    fn render(&self, a: &ReceivedAlert) -> String {
        match self.format {
            Format::Json => json_line(a),
            Format::Cap => crate::cap::to_cap(a, &self.domain).trim_end().to_string(),
            Format::Text if self.colour => format_alert_coloured(a),
            Format::Text => format_alert(a),
        }
    }
}

async fn listen(a: ListenArgs) -> Result<(), CliError> {
    use std::io::Write;
    let mut c = connect_client(&a.client).await?;
    let format = Format::chosen(a.format, a.client.json);
    let printer = Printer::new(&mut c, format, a.color).await?;
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
            return Err(CliError::Other("the daemon stopped".into()));
        };
        let recorded = match recorder.as_mut() {
            Some(r) => r.take(&reply, crate::clock::now_us())?,
            None => None,
        };
        let mut out = stdout.lock();
        let res = match reply {
            Reply::Alert(al) => writeln!(out, "{}", printer.render(&al)),
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

/// [`format_alert`] with the severity in colour (ANSI), for a terminal.
pub fn format_alert_coloured(a: &ReceivedAlert) -> String {
    let plain = format_alert(a);
    let sev = a.severity.as_str().to_uppercase();
    let code = match a.severity {
        Severity::Extreme => "1;97;41", // bold white on red
        Severity::Severe => "1;31",     // bold red
        Severity::Moderate => "33",     // yellow
        Severity::Minor => "36",        // cyan
        Severity::Unknown => "2",       // dim
    };
    // The severity is the second field: "TIME SEVERITY …".
    match plain.split_once(' ') {
        Some((time, rest)) if rest.starts_with(&sev) => {
            format!("{time} \x1b[{code}m{sev}\x1b[0m{}", &rest[sev.len()..])
        }
        _ => plain,
    }
}

/// One human-readable line for an alert.
pub fn format_alert(a: &ReceivedAlert) -> String {
    let mut s = format!(
        "{} {:<8} {} from {} on {}: {}",
        format_time_us(a.created_at_us),
        a.severity.as_str().to_uppercase(),
        a.kind,
        a.sender,
        a.channel,
        a.text
    );
    if let Some(l) = a.location {
        s.push_str(&format!(" @{:.5},{:.5}", l.lat, l.lon));
    }
    for (k, v) in &a.attributes {
        s.push_str(&format!(" {k}={v}"));
    }
    if a.late {
        s.push_str(&format!(
            " (late: received {} s after it was sent)",
            a.received_at_us.saturating_sub(a.created_at_us) / 1_000_000
        ));
    }
    s
}

async fn send(a: SendArgs) -> Result<(), CliError> {
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

async fn tag(a: TagArgs) -> Result<(), CliError> {
    let bundle = crate::bundle::Bundle::load(&a.bundle).map_err(DomainError::from)?;
    let mut addresses = a.addrs;
    if addresses.is_empty() {
        let mut c = Client::find(a.data.as_deref(), None).await.map_err(|e| {
            CliError::Other(format!(
                "no --addr given and {e}; give the device's address with --addr MULTIADDR"
            ))
        })?;
        let Reply::Status(s) = c.call(&Request::Status).await? else {
            return Err(ClientError::Protocol("expected status".into()).into());
        };
        if s.peer_id != bundle.cert.peer_id().to_string() {
            return Err(CliError::Other(format!(
                "the running daemon ({}) is device {}, not the bundle's device {}",
                a.data
                    .as_deref()
                    .map_or("found by default".to_string(), |d| d.display().to_string()),
                s.device,
                bundle.cert.body.name
            )));
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
        println!(
            "{}",
            crate::tag::qr_terminal(&uri).map_err(CliError::Other)?
        );
    }
    if let Some(p) = &a.png {
        crate::tag::write_png(&uri, p).map_err(CliError::Other)?;
        eprintln!("QR code written to {}", p.display());
    }
    Ok(())
}

async fn connect(a: ConnectArgs) -> Result<(), CliError> {
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

async fn profile(a: ProfileArgs) -> Result<(), CliError> {
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
        let tags: Vec<String> = profile
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("kind     {}", profile.kind);
        match profile.location {
            Some(l) => println!("location {},{}", l.lat, l.lon),
            None => println!("location -"),
        }
        println!("tags     {}", tags.join(" "));
        println!("sleeps   {}", if profile.sleeps { "yes" } else { "no" });
    }
    Ok(())
}

async fn search(a: SearchArgs) -> Result<(), CliError> {
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
            let dist = d
                .distance_m
                .map(|m| format!("{m:>8.0} m"))
                .unwrap_or_else(|| "         -".into());
            let tags: Vec<String> = d
                .profile
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!(
                "{:<16} {:<14} {:<13} {} {} [{}] {}{}",
                d.name,
                d.profile.kind,
                d.state,
                dist,
                d.peer_id,
                d.addresses.join(" "),
                tags.join(","),
                if d.profile.sleeps { " (sleeps)" } else { "" }
            );
        }
    }
    if devices.is_empty() && !a.client.json {
        println!("no matching device");
    }
    Ok(())
}

async fn history(a: HistoryArgs) -> Result<(), CliError> {
    let mut c = connect_client(&a.client).await?;
    let format = Format::chosen(a.format, a.client.json);
    let printer = Printer::new(&mut c, format, a.color).await?;
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

async fn peers(a: ClientArgs) -> Result<(), CliError> {
    let mut c = connect_client(&a).await?;
    let Reply::Peers { peers } = c.call(&Request::Peers).await? else {
        return Err(ClientError::Protocol("expected peers".into()).into());
    };
    for p in &peers {
        if a.json {
            println!("{}", json_line(p));
        } else {
            println!("{}", format_peer(p));
        }
    }
    if peers.is_empty() && !a.json {
        println!("no peers yet");
    }
    Ok(())
}

fn format_peer(p: &PeerInfo) -> String {
    let since = if p.since_us > 0 {
        format!(" since {}", format_time_us(p.since_us))
    } else {
        String::new()
    };
    let mut s = format!(
        "{:<16} {:<13}{:<33} {}",
        p.name.as_deref().unwrap_or("?"),
        p.state,
        since,
        p.peer_id
    );
    if let Some(prof) = &p.profile {
        s.push_str(&format!(" kind={}", prof.kind));
    }
    if !p.addresses.is_empty() {
        s.push_str(&format!(" [{}]", p.addresses.join(" ")));
    }
    if let (false, Some(e)) = (p.authenticated, &p.last_error) {
        s.push_str(&format!(" last error: {e}"));
    }
    s
}

async fn status(a: ClientArgs) -> Result<(), CliError> {
    let mut c = connect_client(&a).await?;
    let Reply::Status(s) = c.call(&Request::Status).await? else {
        return Err(ClientError::Protocol("expected status".into()).into());
    };
    if a.json {
        println!("{}", json_line(&s));
    } else {
        print!("{}", format_status(&s));
    }
    Ok(())
}

/// The first line of `status`: one word a person can act on, and why.
pub fn health(s: &StatusInfo) -> String {
    if s.revoked {
        return "REVOKED  the domain authority revoked this device: members refuse it; enrol it again".into();
    }
    if s.peers.authenticated == 0 {
        return "ALONE    no authenticated peer: alerts sent now are stored here and reach nobody until one connects".into();
    }
    let mut why = Vec::new();
    if s.peers.unreachable > 0 {
        why.push(format!("{} peer(s) unreachable", s.peers.unreachable));
    }
    if s.store.dropped > 0 {
        why.push(format!(
            "{} received envelope(s) not logged (store busy)",
            s.store.dropped
        ));
    }
    if s.actions.failed > 0 {
        why.push(format!("{} rule action(s) failed", s.actions.failed));
    }
    if why.is_empty() {
        format!(
            "OK       {} of {} known peer(s) authenticated",
            s.peers.authenticated,
            s.peers.authenticated + s.peers.asleep + s.peers.unreachable
        )
    } else {
        format!("DEGRADED {}", why.join(", "))
    }
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub fn format_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn format_status(s: &StatusInfo) -> String {
    let c = &s.counters;
    let rejected: u64 = c.rejected.values().sum();
    let mut out = format!(
        "{}\ndevice   {} (#{}){}\npeer id  {}\ndomain   {} ({})\nchannels {}\nlisten   {}\npeers    {} connected, {} authenticated, {} asleep, {} unreachable\nalerts   {} sent, {} received, {} relayed, {} rejected\nuptime   {}\n",
        health(s),
        s.device,
        s.device_number,
        if s.relay_only { ", relay-only" } else { "" },
        s.peer_id,
        s.domain_name,
        s.domain_id.get(..16).unwrap_or(&s.domain_id),
        if s.channels.is_empty() {
            "(none: relay-only)".to_string()
        } else {
            s.channels.join(", ")
        },
        s.listen_addrs.join(" "),
        s.peers.connected,
        s.peers.authenticated,
        s.peers.asleep,
        s.peers.unreachable,
        c.alerts_sent,
        c.alerts_received,
        c.alerts_relayed,
        rejected,
        format_duration(s.uptime_s)
    );
    if let Some(m) = &s.metrics {
        out.push_str(&format!("metrics  {m}\n"));
    }
    for (k, v) in &c.rejected {
        out.push_str(&format!("  rejected {k}: {v}\n"));
    }
    out.push_str(&format!(
        "domain   revision {}, {} updates applied, {} key periods erased{}\n",
        s.revision,
        c.updates_applied,
        c.keys_erased,
        if s.revoked {
            ", THIS DEVICE IS REVOKED"
        } else {
            ""
        }
    ));
    for k in &s.keys {
        out.push_str(&format!(
            "  key    channel {} epoch {}{}: rotates every {} s, oldest period held {}\n",
            k.channel,
            k.epoch,
            if k.current { " (current)" } else { "" },
            k.rotate_secs,
            k.oldest_period
        ));
    }
    out.push_str(&format!(
        "catch-up {} sessions ({} ended early), {} fetched, {} requests served\nlog      {} envelopes, {} KiB{}\nrules    {} loaded, {} matched, {} hooks run, {} sent, {} failed\n",
        s.catch_up.sessions,
        s.catch_up.failed,
        s.catch_up.fetched,
        s.catch_up.served,
        s.store.envelopes,
        s.store.bytes.div_ceil(1024),
        if s.store.dropped > 0 {
            format!(", {} dropped (store busy)", s.store.dropped)
        } else {
            String::new()
        },
        s.actions.rules,
        s.actions.matched,
        s.actions.hooks_run,
        s.actions.sent,
        s.actions.failed
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(
            parse_utc("2025-11-22T03:13:54Z"),
            Some(1_763_781_234_000_000)
        );
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc("2025-13-01T00:00:00Z"), None);
        assert!(parse_since("2h").unwrap() < crate::clock::now_us());
        assert!(parse_since("yesterday").is_err());
        assert_eq!(format_time_us(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_time_us(1_763_781_234_567_000),
            "2025-11-22T03:13:54.567Z"
        );
    }

    #[test]
    fn status_says_at_a_glance_what_is_wrong() {
        let mut s = StatusInfo::default();
        assert!(health(&s).starts_with("ALONE"), "{}", health(&s));
        s.peers.authenticated = 2;
        s.peers.asleep = 1;
        assert_eq!(health(&s), "OK       2 of 3 known peer(s) authenticated");
        s.peers.unreachable = 1;
        s.store.dropped = 4;
        let h = health(&s);
        assert!(
            h.starts_with("DEGRADED")
                && h.contains("1 peer(s) unreachable")
                && h.contains("4 received"),
            "{h}"
        );
        s.revoked = true;
        assert!(health(&s).starts_with("REVOKED"));
        // The whole summary: the health first, nothing panics on a short domain id.
        s.domain_id = "ab".into();
        s.uptime_s = 3 * 3600 + 7 * 60;
        s.metrics = Some("http://127.0.0.1:9464/metrics".into());
        let text = format_status(&s);
        assert!(text.starts_with("REVOKED"), "{text}");
        assert!(
            text.contains("uptime   3h 7m\n")
                && text.contains("metrics  http://127.0.0.1:9464/metrics"),
            "{text}"
        );
        assert_eq!(format_duration(59), "59s");
        assert_eq!(format_duration(61), "1m 1s");
        assert_eq!(format_duration(2 * 86_400 + 3600), "2d 1h");
    }

    #[test]
    fn every_command_has_examples_in_its_help() {
        fn check(c: &clap::Command, path: &str) {
            let help = c
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("Example"),
                "`{path}` has no example in its --help"
            );
            for s in c.get_subcommands() {
                check(s, &format!("{path} {}", s.get_name()));
            }
        }
        let cmd = <Cli as clap::CommandFactory>::command();
        check(&cmd, "ptt-node");
        assert!(
            cmd.get_after_help()
                .unwrap()
                .to_string()
                .contains("Exit codes")
        );
        cmd.debug_assert();
    }

    #[test]
    fn cli_parses_and_rejects() {
        let c = Cli::try_parse_from([
            "ptt-node",
            "alert",
            "--severity",
            "severe",
            "--kind",
            "k",
            "--text",
            "t",
        ])
        .unwrap();
        assert!(matches!(c.command, Command::Alert(_)));
        assert!(
            Cli::try_parse_from([
                "ptt-node",
                "alert",
                "--severity",
                "loud",
                "--kind",
                "k",
                "--text",
                "t"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "ptt-node",
                "domain",
                "enroll",
                "--dir",
                "d",
                "--device",
                "x",
                "--out",
                "o",
                "--location",
                "95,1"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "ptt-node", "domain", "enroll", "--dir", "d", "--device", "x", "--out", "o",
                "--tag", "novalue"
            ])
            .is_err()
        );
        let c = Cli::try_parse_from([
            "ptt-node",
            "domain",
            "enroll",
            "--dir",
            "d",
            "--device",
            "x",
            "--out",
            "o",
            "--location",
            "-33.9,18.4",
            "--tag",
            "zone=n",
        ])
        .unwrap();
        let Command::Domain(DomainCommand::Enroll(e)) = c.command else {
            panic!()
        };
        assert_eq!(
            e.location,
            Some(Location {
                lat: -33.9,
                lon: 18.4
            })
        );
        assert_eq!(e.tags, vec![("zone".to_string(), "n".to_string())]);
    }
}
