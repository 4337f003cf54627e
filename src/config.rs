//! The daemon's configuration file (`ptt-node run --config FILE`, TOML) and how it combines
//! with the command line: a flag given on the command line wins over the file, the file wins
//! over the built-in default. `examples/ptt-node.toml` documents every key.
//!
//! Unknown keys and bad values are errors that name the key and the line (toml's spans);
//! relative paths in the file are relative to the file's directory.
//!
//! This module never depends on the command line's types: the CLI hands [`combine`] the
//! flags it parsed as plain [`Overrides`].

use std::path::{Path, PathBuf};

use libp2p::Multiaddr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// Built-in defaults (also the flags' documented defaults).
pub mod defaults {
    /// Seconds between mDNS queries.
    pub const MDNS_INTERVAL_SECS: u64 = 5;
    /// Hours the log keeps envelopes.
    pub const RETENTION_HOURS: u64 = 24;
    /// MiB of envelopes the log keeps at most.
    pub const RETENTION_MIB: u64 = 64;
    /// The daemon's log filter.
    pub const LOG: &str = "info";
    /// Connections to LAN members a node keeps (`--max-peers`).
    pub const MAX_PEERS: u64 = crate::mesh::DEFAULT_MAX_PEERS as u64;
}

/// The largest `--max-peers`.
pub const MAX_PEERS_LIMIT: u64 = 4096;

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bad TOML, an unknown key or a bad value: toml's message names the line and column.
    #[error("configuration file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, and where.
        message: String,
    },
    /// `--plane-group` given twice for one address family.
    #[error("--plane-group: give at most one group per address family")]
    PlaneGroups,
    /// Neither the command line nor the file names the device bundle.
    #[error(
        "no device bundle: give --bundle DIR, or `bundle = \"DIR\"` in the configuration file (--config)"
    )]
    NoBundle,
}

/// The configuration file, as written. Every key is optional.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The device bundle (`--bundle`).
    pub bundle: Option<PathBuf>,
    /// Data directory (`--data`).
    pub data: Option<PathBuf>,
    /// Listen addresses (`--listen`).
    #[serde(default, deserialize_with = "multiaddrs")]
    pub listen: Vec<Multiaddr>,
    /// Static peers dialled at start (`--peer`).
    #[serde(default, deserialize_with = "multiaddrs")]
    pub peers: Vec<Multiaddr>,
    /// Act as a connection broker (`--broker`).
    pub broker: Option<bool>,
    /// Rules file (`--rules`).
    pub rules: Option<PathBuf>,
    /// Log filter, RUST_LOG syntax (`--log`).
    #[serde(default, deserialize_with = "log_filter")]
    pub log: Option<String>,
    /// Log line format (`--log-format`).
    pub log_format: Option<LogFormat>,
    /// Control socket (`--socket`).
    pub socket: Option<PathBuf>,
    /// Prometheus endpoint, `"PORT"` or `"IP:PORT"` (`--metrics`).
    #[serde(default, deserialize_with = "metrics_addr")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Connections to LAN members kept at most once the domain is larger (`--max-peers`).
    #[serde(default, deserialize_with = "in_range::<_, 2, MAX_PEERS_LIMIT>")]
    pub max_peers: Option<u64>,
    /// `[discovery]`.
    #[serde(default)]
    pub discovery: Discovery,
    /// `[retention]`.
    #[serde(default)]
    pub retention: Retention,
    /// `[plane]`.
    #[serde(default)]
    pub plane: PlaneFile,
}

/// `[plane]`: the multicast data plane.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlaneFile {
    /// Use the data plane (`--no-plane` turns it off).
    pub enabled: Option<bool>,
    /// Interfaces to use, by name (`--plane-interface`); default: those the swarm listens on.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Group addresses, at most one per family (`--plane-group`); default: from the domain.
    #[serde(default, deserialize_with = "plane_groups")]
    pub groups: Vec<std::net::IpAddr>,
    /// UDP port (`--plane-port`); default: from the domain.
    #[serde(default, deserialize_with = "plane_port")]
    pub port: Option<u16>,
}

/// The data plane's settings after the command line and the file are combined.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlaneSettings {
    /// Use the plane at all.
    pub enabled: bool,
    /// Interfaces named (empty: those the swarm listens on).
    pub interfaces: Vec<String>,
    /// The IPv4 group, if not the domain's.
    pub group4: Option<std::net::Ipv4Addr>,
    /// The IPv6 group, if not the domain's.
    pub group6: Option<std::net::Ipv6Addr>,
    /// The port, if not the domain's.
    pub port: Option<u16>,
    /// Testing only (`--plane-only`): alerts that went on the plane are not also published by
    /// gossip, so a test measures the plane and its repair alone.
    pub plane_only: bool,
}

/// Checks a data-plane group address: IPv4 multicast, or IPv6 multicast of link-local scope
/// (the plane never leaves the segment).
pub fn check_plane_group(a: std::net::IpAddr) -> Result<std::net::IpAddr, String> {
    match a {
        std::net::IpAddr::V4(v) if v.is_multicast() => Ok(a),
        std::net::IpAddr::V6(v) if v.is_multicast() && (v.segments()[0] & 0x000f) == 2 => Ok(a),
        std::net::IpAddr::V4(_) => Err(format!(
            "{a} is not an IPv4 multicast address (224.0.0.0/4)"
        )),
        std::net::IpAddr::V6(_) => Err(format!(
            "{a} is not a link-local IPv6 multicast address (ff02::/16 or ff12::/16)"
        )),
    }
}

/// Parses and checks `--max-peers`: 2 to [`MAX_PEERS_LIMIT`].
pub fn parse_max_peers(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of connections"))?;
    if !(2..=MAX_PEERS_LIMIT).contains(&n) {
        return Err(format!(
            "{n} is out of range: give 2 to {MAX_PEERS_LIMIT} (each member keeps at least its \
             two neighbours on the ring)"
        ));
    }
    Ok(n)
}

/// Parses and checks `--plane-group`.
pub fn parse_plane_group(s: &str) -> Result<std::net::IpAddr, String> {
    let a: std::net::IpAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address"))?;
    check_plane_group(a)
}

fn plane_groups<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<std::net::IpAddr>, D::Error> {
    let v = Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_plane_group(s).map_err(D::Error::custom))
        .collect::<Result<Vec<_>, _>>()?;
    if v.iter().filter(|a| a.is_ipv4()).count() > 1 || v.iter().filter(|a| a.is_ipv6()).count() > 1
    {
        return Err(D::Error::custom(
            "give at most one group per address family",
        ));
    }
    Ok(v)
}

fn plane_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let v = i64::deserialize(d)?;
    match u16::try_from(v) {
        Ok(p) if p >= 1024 => Ok(Some(p)),
        _ => Err(D::Error::custom(format!(
            "{v} is out of range: give 1024 to 65535"
        ))),
    }
}

/// `[discovery]`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    /// Use mDNS (`--no-mdns` turns it off).
    pub mdns: Option<bool>,
    /// Seconds between mDNS queries, 1 to 3600 (`--mdns-interval`).
    #[serde(default, deserialize_with = "in_range::<_, 1, 3600>")]
    pub mdns_interval_secs: Option<u64>,
}

/// `[retention]`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Hours the log keeps envelopes, 1 to 8760 (`--retention-hours`).
    #[serde(default, deserialize_with = "in_range::<_, 1, 8760>")]
    pub hours: Option<u64>,
    /// MiB of envelopes kept at most, 1 to 1048576 (`--retention-mib`).
    #[serde(default, deserialize_with = "in_range::<_, 1, 1_048_576>")]
    pub mib: Option<u64>,
}

fn in_range<'de, D: Deserializer<'de>, const LO: u64, const HI: u64>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    let v = i64::deserialize(d)?;
    match u64::try_from(v) {
        Ok(v) if (LO..=HI).contains(&v) => Ok(Some(v)),
        _ => Err(D::Error::custom(format!(
            "{v} is out of range: give {LO} to {HI}"
        ))),
    }
}

fn multiaddrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Multiaddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .into_iter()
        .map(|s| {
            s.parse::<Multiaddr>().map_err(|e| {
                D::Error::custom(format!(
                    "{s:?} is not a multiaddress ({e}); write e.g. \"/ip4/0.0.0.0/tcp/7000\""
                ))
            })
        })
        .collect()
}

fn metrics_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    crate::metrics::parse_addr(&s)
        .map(Some)
        .map_err(D::Error::custom)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: time, level, message, fields.
    #[default]
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

fn log_filter<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    check_log_filter(&s).map_err(D::Error::custom)?;
    Ok(Some(s))
}

/// Checks a log filter in RUST_LOG syntax ("info", "ptt_node=debug,libp2p=warn").
pub fn check_log_filter(s: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| ())
        .map_err(|e| format!("{s:?} is not a log filter ({e}); write e.g. \"info\" or \"ptt_node=debug,libp2p=warn\""))
}

/// toml's error on one line: "line L, column C, key K: what is wrong" (the key when the
/// error is in the value of a `key = value` line).
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().trim().replace('\n', "; ");
    let Some(span) = e.span() else {
        return what;
    };
    let mut at = span.start.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let this_line = &before[line_start..];
    let key = this_line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        });
    match key {
        Some(k) => {
            let table = before[..line_start]
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('[') && l.ends_with(']'))
                .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
            let key = table.map_or(k.to_string(), |t| format!("{t}.{k}"));
            format!("line {line}, column {column}, key {key}: {what}")
        }
        None => format!("line {line}, column {column}: {what}"),
    }
}

impl FileConfig {
    /// Parses a configuration; `path` names it in errors and relative paths in it are taken
    /// relative to `path`'s directory.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut c: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: one_line(text, &e),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        for p in [&mut c.bundle, &mut c.data, &mut c.rules, &mut c.socket]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(c)
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path)
    }
}

/// The daemon's settings after the command line and the file are combined.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The device bundle.
    pub bundle: PathBuf,
    /// Data directory, if one was given (else the default).
    pub data: Option<PathBuf>,
    /// Listen addresses (empty: the daemon's default).
    pub listen: Vec<Multiaddr>,
    /// Static peers.
    pub peers: Vec<Multiaddr>,
    /// Use mDNS.
    pub mdns: bool,
    /// Seconds between mDNS queries.
    pub mdns_interval_secs: u64,
    /// Act as a connection broker.
    pub broker: bool,
    /// Rules file.
    pub rules: Option<PathBuf>,
    /// Hours the log keeps envelopes.
    pub retention_hours: u64,
    /// MiB of envelopes kept at most.
    pub retention_mib: u64,
    /// The file's log filter (`--log` and RUST_LOG come before it: [`log_filter_for`]).
    pub file_log: Option<String>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Control socket, if one was given (else the default).
    pub socket: Option<PathBuf>,
    /// Prometheus endpoint, if on.
    pub metrics: Option<std::net::SocketAddr>,
    /// Connections to LAN members kept at most once the domain is larger.
    pub max_peers: u64,
    /// The multicast data plane.
    pub plane: PlaneSettings,
}

/// What the command line of `ptt-node run` sets over the file: `None`, empty or `false`
/// where the flag was not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--bundle`.
    pub bundle: Option<PathBuf>,
    /// `--data`.
    pub data: Option<PathBuf>,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--metrics`.
    pub metrics: Option<std::net::SocketAddr>,
    /// `--listen` (empty: the file's).
    pub listen: Vec<Multiaddr>,
    /// `--peer` (empty: the file's).
    pub peers: Vec<Multiaddr>,
    /// `--mdns-interval`.
    pub mdns_interval: Option<u64>,
    /// `--no-mdns`.
    pub no_mdns: bool,
    /// `--broker`.
    pub broker: bool,
    /// `--rules`.
    pub rules: Option<PathBuf>,
    /// `--retention-hours`.
    pub retention_hours: Option<u64>,
    /// `--retention-mib`.
    pub retention_mib: Option<u64>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--no-plane`.
    pub no_plane: bool,
    /// `--plane-interface` (empty: the file's).
    pub plane_interfaces: Vec<String>,
    /// `--plane-group` (empty: the file's).
    pub plane_groups: Vec<std::net::IpAddr>,
    /// `--plane-port`.
    pub plane_port: Option<u16>,
    /// `--plane-only` (testing only).
    pub plane_only: bool,
    /// `--max-peers`.
    pub max_peers: Option<u64>,
}

/// Combines the command line with the file (flags win; a list given on the command line
/// replaces the file's). Fails only when no bundle is named anywhere.
pub fn combine(flags: &Overrides, file: FileConfig) -> Result<Settings, ConfigError> {
    let bundle = flags
        .bundle
        .clone()
        .or(file.bundle)
        .ok_or(ConfigError::NoBundle)?;
    let list = |f: Vec<Multiaddr>, c: Vec<Multiaddr>| if f.is_empty() { c } else { f };
    let v4 = flags.plane_groups.iter().filter(|a| a.is_ipv4()).count();
    if v4 > 1 || flags.plane_groups.len() - v4 > 1 {
        return Err(ConfigError::PlaneGroups);
    }
    Ok(Settings {
        bundle,
        data: flags.data.clone().or(file.data),
        listen: list(flags.listen.clone(), file.listen),
        peers: list(flags.peers.clone(), file.peers),
        mdns: !flags.no_mdns && file.discovery.mdns.unwrap_or(true),
        mdns_interval_secs: flags
            .mdns_interval
            .or(file.discovery.mdns_interval_secs)
            .unwrap_or(defaults::MDNS_INTERVAL_SECS),
        broker: flags.broker || file.broker.unwrap_or(false),
        rules: flags.rules.clone().or(file.rules),
        retention_hours: flags
            .retention_hours
            .or(file.retention.hours)
            .unwrap_or(defaults::RETENTION_HOURS),
        retention_mib: flags
            .retention_mib
            .or(file.retention.mib)
            .unwrap_or(defaults::RETENTION_MIB),
        file_log: file.log,
        log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
        socket: flags.socket.clone().or(file.socket),
        metrics: flags.metrics.or(file.metrics),
        max_peers: flags
            .max_peers
            .or(file.max_peers)
            .unwrap_or(defaults::MAX_PEERS),
        plane: {
            let groups = if flags.plane_groups.is_empty() {
                file.plane.groups
            } else {
                flags.plane_groups.clone()
            };
            PlaneSettings {
                enabled: !flags.no_plane && file.plane.enabled.unwrap_or(true),
                interfaces: if flags.plane_interfaces.is_empty() {
                    file.plane.interfaces
                } else {
                    flags.plane_interfaces.clone()
                },
                group4: groups.iter().find_map(|a| match a {
                    std::net::IpAddr::V4(v) => Some(*v),
                    std::net::IpAddr::V6(_) => None,
                }),
                group6: groups.iter().find_map(|a| match a {
                    std::net::IpAddr::V6(v) => Some(*v),
                    std::net::IpAddr::V4(_) => None,
                }),
                port: flags.plane_port.or(file.plane.port),
                plane_only: flags.plane_only,
            }
        },
    })
}

/// The daemon's log filter: `--log`, else RUST_LOG, else the file's `log`, else "info".
pub fn log_filter_for(flag: Option<&str>, env: Option<&str>, file: Option<&str>) -> String {
    flag.or(env).or(file).unwrap_or(defaults::LOG).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        FileConfig::parse(text, Path::new("/etc/ptt-node/ptt-node.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_plane_section_is_checked_and_flags_win_over_it() {
        let c = parse("[plane]\nenabled = false\ninterfaces = [\"eth1\"]\ngroups = [\"239.255.1.2\", \"ff12::7\"]\nport = 24000\n")
            .unwrap();
        let s = combine(
            &Overrides {
                bundle: Some("b".into()),
                ..Overrides::default()
            },
            c,
        )
        .unwrap();
        assert_eq!(
            s.plane,
            PlaneSettings {
                enabled: false,
                interfaces: vec!["eth1".into()],
                group4: Some("239.255.1.2".parse().unwrap()),
                group6: Some("ff12::7".parse().unwrap()),
                port: Some(24000),
                plane_only: false,
            }
        );
        let c = parse("[plane]\ninterfaces = [\"eth1\"]\nport = 24000\n").unwrap();
        let flags = Overrides {
            bundle: Some("b".into()),
            no_plane: true,
            plane_interfaces: vec!["wlan0".into()],
            plane_port: Some(25000),
            ..Overrides::default()
        };
        let s = combine(&flags, c).unwrap();
        assert!(!s.plane.enabled);
        assert_eq!(s.plane.interfaces, ["wlan0"]);
        assert_eq!(s.plane.port, Some(25000));
        let two = Overrides {
            plane_groups: vec!["239.1.1.1".parse().unwrap(), "239.1.1.2".parse().unwrap()],
            ..flags_with_bundle()
        };
        assert!(matches!(
            combine(&two, FileConfig::default()),
            Err(ConfigError::PlaneGroups)
        ));
        // The plane is on by default.
        let s = combine(&flags_with_bundle(), FileConfig::default()).unwrap();
        assert!(s.plane.enabled && s.plane.interfaces.is_empty() && s.plane.group4.is_none());
        for (bad, why) in [
            ("groups = [\"10.0.0.1\"]", "not an IPv4 multicast"),
            ("groups = [\"ff05::1\"]", "not a link-local IPv6 multicast"),
            (
                "groups = [\"239.1.1.1\", \"239.1.1.2\"]",
                "at most one group per address family",
            ),
            ("groups = [\"nonsense\"]", "is not an IP address"),
            ("port = 80", "out of range"),
            ("port = 70000", "out of range"),
            ("colour = 1", "unknown field"),
        ] {
            let e = parse(&format!("[plane]\n{bad}\n")).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn max_peers_comes_from_the_flag_else_the_file_else_eight() {
        let s = combine(&flags_with_bundle(), FileConfig::default()).unwrap();
        assert_eq!(s.max_peers, 8);
        let s = combine(&flags_with_bundle(), parse("max_peers = 12\n").unwrap()).unwrap();
        assert_eq!(s.max_peers, 12);
        let flags = Overrides {
            max_peers: Some(3),
            ..flags_with_bundle()
        };
        let s = combine(&flags, parse("max_peers = 12\n").unwrap()).unwrap();
        assert_eq!(s.max_peers, 3);
        let e = parse("\nmax_peers = 1\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("give 2 to 4096"), "{e}");
        let e = parse_max_peers("1").unwrap_err();
        assert!(
            e.contains("2 to 4096") && e.contains("two neighbours"),
            "{e}"
        );
        assert!(parse_max_peers("eight").is_err());
        assert_eq!(parse_max_peers("2"), Ok(2));
    }

    fn flags_with_bundle() -> Overrides {
        Overrides {
            bundle: Some("b".into()),
            ..Overrides::default()
        }
    }

    #[test]
    fn the_example_file_parses_and_says_what_the_defaults_say() {
        let c = FileConfig::parse(
            include_str!("../examples/ptt-node.toml"),
            Path::new("/etc/ptt-node/ptt-node.toml"),
        )
        .unwrap();
        assert_eq!(
            c.bundle.as_deref(),
            Some(Path::new("/var/lib/ptt-node/bundle"))
        );
        assert_eq!(c.data.as_deref(), Some(Path::new("/var/lib/ptt-node")));
        assert_eq!(
            c.discovery.mdns_interval_secs,
            Some(defaults::MDNS_INTERVAL_SECS)
        );
        assert_eq!(c.retention.hours, Some(defaults::RETENTION_HOURS));
        assert_eq!(c.retention.mib, Some(defaults::RETENTION_MIB));
        assert_eq!(c.log.as_deref(), Some(defaults::LOG));
        assert_eq!(c.max_peers, Some(defaults::MAX_PEERS));
        assert_eq!(c.listen.len(), 1);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key_and_the_line() {
        let e = parse("bundle = \"b\"\n\n[discovery]\nmdns_intervall_secs = 5\n").unwrap_err();
        assert!(e.contains("ptt-node.toml"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        assert!(e.contains("mdns_intervall_secs"), "{e}");

        let e = parse("[retention]\nhours = 0\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("1 to 8760"), "{e}");
        assert!(e.contains("key retention.hours"), "{e}");
        let e = parse("[retention]\nmib = -3\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("out of range"), "{e}");
        let e = parse("listen = [\"/ip4/0.0.0.0/tcp/7000\", \"0.0.0.0:7000\"]\n").unwrap_err();
        assert!(
            e.contains("line 1") && e.contains("not a multiaddress"),
            "{e}"
        );
        let e = parse("\nlog = \"info,=[\"\n").unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("not a log filter"),
            "{e}"
        );
        let e = parse("broker = \"yes\"\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("bool"), "{e}");
        let e = parse("bundle = \n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = parse("\n\nmetrics = \"localhost\"\n").unwrap_err();
        assert!(
            e.contains("line 3") && e.contains("key metrics") && e.contains("IP:PORT"),
            "{e}"
        );
        let e = parse("log_format = \"xml\"\n").unwrap_err();
        assert!(
            e.contains("line 1") && e.contains("log_format") && e.contains("json"),
            "{e}"
        );
    }

    #[test]
    fn metrics_socket_and_log_format_come_from_the_file_unless_flagged() {
        let file = parse(
            "bundle = \"/b\"\nmetrics = \"9100\"\nsocket = \"ctl.sock\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        assert_eq!(
            file.socket.as_deref(),
            Some(Path::new("/etc/ptt-node/ctl.sock"))
        );
        let s = combine(&Overrides::default(), file).unwrap();
        assert_eq!(s.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(s.log_format, LogFormat::Json);
        let flags = Overrides {
            metrics: Some("0.0.0.0:1".parse().unwrap()),
            socket: Some("/s".into()),
            log_format: Some(LogFormat::Text),
            ..Overrides::default()
        };
        let s = combine(
            &flags,
            parse("bundle = \"/b\"\nmetrics = \"9100\"\nsocket = \"/f\"\nlog_format = \"json\"\n")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(s.metrics, Some("0.0.0.0:1".parse().unwrap()));
        assert_eq!(s.socket.as_deref(), Some(Path::new("/s")));
        assert_eq!(s.log_format, LogFormat::Text);
        // Off and text unless asked.
        let s = combine(&Overrides::default(), parse("bundle = \"/b\"\n").unwrap()).unwrap();
        assert_eq!(
            (s.metrics, s.socket, s.log_format),
            (None, None, LogFormat::Text)
        );
    }

    #[test]
    fn relative_paths_are_taken_from_the_files_directory() {
        let c =
            parse("bundle = \"bundle\"\ndata = \"/srv/ptt\"\nrules = \"r/rules.toml\"\n").unwrap();
        assert_eq!(c.bundle.unwrap(), Path::new("/etc/ptt-node/bundle"));
        assert_eq!(c.data.unwrap(), Path::new("/srv/ptt"));
        assert_eq!(c.rules.unwrap(), Path::new("/etc/ptt-node/r/rules.toml"));
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = parse(
            "bundle = \"/b\"\npeers = [\"/ip4/10.0.0.2/tcp/7000\"]\nbroker = true\n\
             [discovery]\nmdns = false\nmdns_interval_secs = 30\n[retention]\nhours = 48\n",
        )
        .unwrap();
        let s = combine(&Overrides::default(), file).unwrap();
        assert_eq!(s.bundle, Path::new("/b"));
        assert_eq!(s.peers.len(), 1);
        assert!(s.broker && !s.mdns);
        assert_eq!(s.mdns_interval_secs, 30);
        assert_eq!(
            (s.retention_hours, s.retention_mib),
            (48, defaults::RETENTION_MIB)
        );

        let file = parse(
            "bundle = \"/b\"\npeers = [\"/ip4/10.0.0.2/tcp/7000\"]\n[retention]\nhours = 48\n",
        )
        .unwrap();
        let flags = Overrides {
            bundle: Some("/other".into()),
            peers: vec![
                "/ip4/10.0.0.3/tcp/1".parse().unwrap(),
                "/ip4/10.0.0.4/tcp/1".parse().unwrap(),
            ],
            retention_hours: Some(2),
            no_mdns: true,
            ..Overrides::default()
        };
        let s = combine(&flags, file).unwrap();
        assert_eq!(s.bundle, Path::new("/other"));
        assert_eq!(
            s.peers.len(),
            2,
            "a list on the command line replaces the file's"
        );
        assert_eq!(s.retention_hours, 2);
        assert!(!s.mdns);

        let s = combine(
            &Overrides {
                bundle: Some("/b".into()),
                ..Overrides::default()
            },
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(s.mdns_interval_secs, defaults::MDNS_INTERVAL_SECS);
        assert!(s.mdns && !s.broker);

        let e = combine(&Overrides::default(), FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--bundle") && e.contains("--config"), "{e}");
    }

    #[test]
    fn the_log_filter_comes_from_the_flag_then_rust_log_then_the_file() {
        assert_eq!(
            log_filter_for(Some("debug"), Some("warn"), Some("error")),
            "debug"
        );
        assert_eq!(log_filter_for(None, Some("warn"), Some("error")), "warn");
        assert_eq!(log_filter_for(None, None, Some("error")), "error");
        assert_eq!(log_filter_for(None, None, None), "info");
    }
}
