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
    assert_eq!(crate::alert::format_time_us(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        crate::alert::format_time_us(1_763_781_234_567_000),
        "2025-11-22T03:13:54.567Z"
    );
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
            "ptt-node", "domain", "enroll", "--dir", "d", "--device", "x", "--out", "o", "--tag",
            "novalue"
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

#[test]
fn run_flags_become_the_overrides_the_file_is_combined_with() {
    let Command::Run(a) = Cli::try_parse_from([
        "ptt-node",
        "run",
        "--config",
        "/etc/ptt-node/ptt-node.toml",
        "--bundle",
        "/b",
        "--data",
        "/d",
        "--socket",
        "/s",
        "--metrics",
        "--listen",
        "/ip4/0.0.0.0/tcp/7000",
        "--peer",
        "/ip4/10.0.0.2/tcp/7000",
        "--peer",
        "/ip4/10.0.0.3/tcp/7000",
        "--mdns-interval",
        "9",
        "--no-mdns",
        "--broker",
        "--rules",
        "/r.toml",
        "--retention-hours",
        "2",
        "--retention-mib",
        "3",
        "--log",
        "debug",
        "--log-format",
        "json",
        "--max-peers",
        "5",
    ])
    .unwrap()
    .command
    else {
        panic!("not run")
    };
    let o = a.overrides();
    assert_eq!(o.max_peers, Some(5));
    assert_eq!(o.bundle.as_deref(), Some(std::path::Path::new("/b")));
    assert_eq!(o.data.as_deref(), Some(std::path::Path::new("/d")));
    assert_eq!(o.socket.as_deref(), Some(std::path::Path::new("/s")));
    assert_eq!(o.metrics, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(o.listen.len(), 1);
    assert_eq!(o.peers.len(), 2);
    assert_eq!(o.mdns_interval, Some(9));
    assert!(o.no_mdns && o.broker);
    assert_eq!(o.rules.as_deref(), Some(std::path::Path::new("/r.toml")));
    assert_eq!((o.retention_hours, o.retention_mib), (Some(2), Some(3)));
    assert_eq!(o.log_format, Some(crate::config::LogFormat::Json));
    // Nothing given: nothing overridden.
    let Command::Run(a) = Cli::try_parse_from(["ptt-node", "run"]).unwrap().command else {
        panic!("not run")
    };
    assert_eq!(a.overrides(), crate::config::Overrides::default());
    // Out of range, or not a log filter: a usage error, before any file is read.
    for bad in [
        &["--mdns-interval", "0"][..],
        &["--retention-hours", "8761"],
        &["--log", "info,=["],
        &["--metrics=localhost"],
    ] {
        let args = ["ptt-node", "run"].iter().chain(bad).copied();
        assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
    }
}

#[test]
fn client_flags_that_cannot_go_together_are_refused() {
    let refused = |args: &[&str]| {
        let args = ["ptt-node"].iter().chain(args).copied();
        Cli::try_parse_from(args).is_err()
    };
    assert!(refused(&["peers", "--data", "/d", "--socket", "/s"]));
    assert!(refused(&["history", "--json", "--format", "cap"]));
    assert!(
        refused(&["search", "--radius", "10"]),
        "--radius needs --near"
    );
    assert!(refused(&["search", "--near", "1,2", "--radius", "-1"]));
    assert!(
        refused(&["listen", "--audio-device", "hw:0"]),
        "needs --play"
    );
    assert!(refused(&["profile", "--reset", "--kind", "camera"]));
    assert!(refused(&["profile", "--sleeps", "--awake"]));
    assert!(refused(&["alert", "--stdin", "--text", "t"]));
    assert!(refused(&["domain", "broker", "--dir", "d"]));
    assert!(
        refused(&["domain", "plane", "--dir", "d"]),
        "one of the two"
    );
    assert!(refused(&[
        "domain", "plane", "--dir", "d", "--enable", "--rotate"
    ]));
    assert!(!refused(&["domain", "plane", "--dir", "d", "--rotate"]));
    assert!(!refused(&[
        "search",
        "--near",
        "-33.9,18.4",
        "--radius",
        "10"
    ]));
    assert!(!refused(&["alert", "--cap", "-"]));
    let Command::History(h) = Cli::try_parse_from(["ptt-node", "history", "--json"])
        .unwrap()
        .command
    else {
        panic!("not history")
    };
    assert_eq!(Format::chosen(h.format, h.client.json), Format::Json);
    assert_eq!(h.limit, 10_000);
    assert_eq!(Format::chosen(Some(Format::Cap), true), Format::Cap);
    assert_eq!(Format::chosen(None, false), Format::Text);
    assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
    assert!(parse_kv("=v").unwrap_err().contains("empty key"));
    assert_eq!(parse_radius("0"), Ok(0.0));
    assert!(parse_radius("inf").is_err() && parse_radius("NaN").is_err());
}
