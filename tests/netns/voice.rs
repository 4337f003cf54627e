//! Push-to-talk voice between real daemons in network namespaces (proto/voice.md): a clip
//! spoken by espeak-ng is heard by every member as a WAV file of the same length whose sound
//! follows the original; a relay-only member and an outsider hear nothing; two members
//! pressing at once get exactly one floor. Needs root and espeak-ng; skipped without, never
//! under CI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::common::{BIN, ok, p};
use crate::support::field::{Dev, Field, MEMBER, RELAY};
use crate::support::netns::{self, Cond};

/// Speaks `text` into a WAV file with espeak-ng (22.05 kHz mono).
fn speak(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let out = std::process::Command::new("espeak-ng")
        .args(["-w", p(&path), text])
        .output()
        .expect("espeak-ng");
    assert!(out.status.success(), "espeak-ng: {out:?}");
    path
}

/// Mono samples of a WAV file, resampled to 16 kHz as `talk` does.
fn samples(path: &Path) -> Vec<i16> {
    ptt_node::audio::read_wav(path).unwrap_or_else(|e| panic!("{e}"))
}

/// The loudness envelope: RMS over 10 ms windows.
fn envelope(s: &[i16]) -> Vec<f64> {
    s.chunks(160)
        .map(|c| (c.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
        .collect()
}

/// The best Pearson correlation of two envelopes over shifts of up to ±300 ms.
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let mut best = f64::MIN;
    for shift in -30i64..=30 {
        let pairs: Vec<(f64, f64)> = (0..a.len() as i64)
            .filter_map(|i| {
                let j = i + shift;
                (j >= 0 && (j as usize) < b.len()).then(|| (a[i as usize], b[j as usize]))
            })
            .collect();
        if pairs.len() < 50 {
            continue;
        }
        let n = pairs.len() as f64;
        let (ma, mb) = (
            pairs.iter().map(|p| p.0).sum::<f64>() / n,
            pairs.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let cov: f64 = pairs.iter().map(|p| (p.0 - ma) * (p.1 - mb)).sum();
        let va: f64 = pairs.iter().map(|p| (p.0 - ma).powi(2)).sum();
        let vb: f64 = pairs.iter().map(|p| (p.1 - mb).powi(2)).sum();
        if va > 0.0 && vb > 0.0 {
            best = best.max(cov / (va * vb).sqrt());
        }
    }
    best
}

/// Starts `listen --json ARGS` on the device, with `env` added.
fn listen_with(d: &mut Dev, args: &[&str], env: &[(&str, &str)]) {
    let mut all = vec!["listen", "--json", "--data", p(&d.data)];
    all.extend_from_slice(args);
    let proc = d.host.spawn(BIN, all, env).expect("listen");
    d.listen.push(proc);
}

/// Starts `listen --audio-dir` on the device; returns the directory.
fn listen_audio(d: &mut Dev) -> PathBuf {
    let dir = d.host.dir().join("audio");
    listen_with(d, &["--audio-dir", p(&dir)], &[]);
    dir
}

/// The bursts reported by the device's `listen --audio-dir` (not by a plain `listen`).
fn bursts(f: &Field, i: usize) -> Vec<Value> {
    f.shown(i)
        .into_iter()
        .filter(|v| v["type"] == "burst" && v.get("audio_ms").is_some())
        .collect()
}

fn wav_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wav"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (up to 60 s) until device `i`'s `listen --audio-dir/--play` has reported `n` bursts.
fn wait_bursts(f: &Field, i: usize, n: usize, what: &str) -> Vec<Value> {
    f.lan
        .wait_until(what, Duration::from_secs(60), || {
            let b = bursts(f, i);
            if b.len() >= n {
                Cond::Done(b)
            } else {
                Cond::Pending(format!("{} bursts", b.len()))
            }
        })
        .unwrap_or_else(|e| panic!("{}: {e}", f.devs[i].name))
}

/// `talk --wav first` on device `a`, and after `delay` `talk --wav second EXTRA` on `b`, at
/// the same time; their outputs.
fn talk_over(
    f: &Field,
    (a, first): (usize, &Path),
    delay: Duration,
    (b, second, extra): (usize, &Path, &[&str]),
) -> (std::process::Output, std::process::Output) {
    let run = |i: usize, clip: &Path, extra: &[&str]| {
        let d = &f.devs[i];
        let mut args = vec!["talk", "--data", p(&d.data), "--wav", p(clip)];
        args.extend_from_slice(extra);
        d.host.command(BIN, args).output().expect("talk")
    };
    std::thread::scope(|s| {
        let x = s.spawn(|| run(a, first, &[]));
        std::thread::sleep(delay);
        let y = s.spawn(|| run(b, second, extra));
        (x.join().expect("talk"), y.join().expect("talk"))
    })
}

fn talk(f: &Field, i: usize, args: &[&str]) -> std::process::Output {
    let d = &f.devs[i];
    let mut all = vec!["talk", "--data", p(&d.data)];
    all.extend_from_slice(args);
    netns::run_with_timeout(&mut d.host.command(BIN, all), Duration::from_secs(60)).expect("talk")
}

#[test]
fn a_clip_is_heard_by_every_member_and_by_nobody_else() {
    if !netns::require_netns() || !netns::require_program("espeak-ng") {
        return;
    }
    let mut f = Field::new(
        "voice",
        &[
            ("m1", MEMBER),
            ("m2", MEMBER),
            ("m3", MEMBER),
            ("r1", RELAY),
        ],
    );
    // An outsider: a device of another domain on the same LAN.
    let root = f.lan.dir().to_path_buf();
    let other = root.join("other-dom");
    ok(&["domain", "init", "--dir", p(&other), "--name", "other"]);
    let xb = root.join("x1.bundle");
    ok(&[
        "domain",
        "enroll",
        "--dir",
        p(&other),
        "--device",
        "x1",
        "--out",
        p(&xb),
    ]);
    let host = f.lan.add_host("x1").expect("add host");
    let data = host.dir().join("data");
    f.devs.push(Dev {
        name: "x1".into(),
        host,
        bundle: xb,
        data,
        daemon: None,
        listen: vec![],
        nice: false,
    });
    let x1 = f.devs.len() - 1;
    f.start(x1);
    let (m1, m2, m3, r1) = (f.idx("m1"), f.idx("m2"), f.idx("m3"), f.idx("r1"));
    // The four members mesh (the outsider is never authenticated).
    let members = [m1, m2, m3, r1];
    f.lan
        .wait_until("members meshed", Duration::from_secs(30), || {
            let n: Vec<Option<u64>> = members
                .iter()
                .map(|&i| {
                    f.status(i)
                        .and_then(|s| s["peers"]["authenticated"].as_u64())
                })
                .collect();
            if n.iter().all(|c| *c == Some(3)) {
                Cond::Done(())
            } else {
                Cond::Pending(format!("{n:?}"))
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let dirs: Vec<PathBuf> = [m2, m3, r1, x1]
        .iter()
        .map(|&i| listen_audio(&mut f.devs[i]))
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    let clip = speak(
        &root,
        "clip.wav",
        "Intruder at the north gate. Two people, heading to the warehouse.",
    );
    let other_clip = speak(
        &root,
        "other.wav",
        "All clear. Nothing to report on the east side.",
    );
    let out = talk(&f, m1, &["--json", "--wav", p(&clip)]);
    assert!(out.status.success(), "talk: {out:?}");
    let sent: Value = serde_json::from_slice(&out.stdout).expect("talk --json");
    let frames = sent["frames"].as_u64().expect("frames");
    let original = samples(&clip);
    assert_eq!(
        frames,
        original.len().div_ceil(320) as u64,
        "one frame per 20 ms"
    );

    for (k, &i) in [m2, m3].iter().enumerate() {
        let b = wait_bursts(&f, i, 1, "burst heard")[0].clone();
        // The frames came by the data plane (gossip carries a copy beside it, refused as a
        // duplicate): the claim, the frames and the release, most of them datagrams.
        let st = f.status(i).expect("status");
        let by_plane = st["plane"]["accepted"].as_u64().unwrap_or(0);
        assert!(
            by_plane >= frames * 3 / 4,
            "{}: {by_plane} of {frames} voice packets by the plane: {}",
            f.devs[i].name,
            st["plane"]
        );
        assert_eq!(b["talker"], "m1", "{b}");
        assert_eq!(b["sent"].as_u64(), Some(frames), "{b}");
        assert_eq!(b["reason"], "released", "{b}");
        let file = PathBuf::from(b["file"].as_str().expect("a WAV file"));
        assert_eq!(wav_files(&dirs[k]), vec![file.clone()]);
        let heard = samples(&file);
        // About the same length: every slot played, lost ones concealed.
        let (lo, ho) = (heard.len() as f64, original.len() as f64);
        assert!((lo - ho).abs() < 0.05 * ho + 640.0, "{lo} vs {ho} samples");
        let same = correlation(&envelope(&original), &envelope(&heard));
        let different = correlation(&envelope(&samples(&other_clip)), &envelope(&heard));
        assert!(
            same > 0.8 && same > different + 0.2,
            "{}: correlation with the clip {same:.2}, with another clip {different:.2}",
            f.devs[i].name
        );
        let lat = b["first_frame_latency_us"].as_u64().expect("latency");
        assert!(
            lat >= 60_000,
            "the 60 ms jitter buffer is in the latency: {lat}"
        );
    }
    // The burst is in the history of every member that reads the channel.
    let h = f.devs[m2]
        .host
        .run(BIN, ["history", "--json", "--data", p(&f.devs[m2].data)])
        .expect("history");
    let h = String::from_utf8_lossy(&h.stdout);
    assert!(
        h.lines()
            .any(|l| l.contains("\"kind\":\"voice\"")
                && l.contains(&format!("\"frames\",\"{frames}\""))),
        "history: {h}"
    );
    // The relay forwarded but heard nothing; the outsider got nothing at all.
    std::thread::sleep(Duration::from_secs(2));
    for (k, i) in [(2, r1), (3, x1)] {
        assert!(
            wav_files(&dirs[k]).is_empty(),
            "{} wrote audio",
            f.devs[i].name
        );
        assert!(bursts(&f, i).is_empty(), "{} saw a burst", f.devs[i].name);
    }
    let relayed = f.status(r1).expect("status")["counters"]["voice_relayed"]
        .as_u64()
        .unwrap_or(0);
    assert!(relayed > 0, "the relay carried the voice packets");
}

#[test]
fn two_members_pressing_at_once_get_one_floor() {
    if !netns::require_netns() || !netns::require_program("espeak-ng") {
        return;
    }
    let (mut f, m1, m2, m3) = Field::three_members("floor");
    let dir = listen_audio(&mut f.devs[m3]);
    let clip = speak(f.lan.dir(), "clip.wav", "Unit two responding. On my way.");
    let (a, b) = talk_over(&f, (m1, &clip), Duration::ZERO, (m2, &clip, &[]));
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(4)),
        "one talks, one is told: {codes:?}\nm1: {}\nm2: {}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let loser = if a.status.code() == Some(4) { &a } else { &b };
    let told = String::from_utf8_lossy(&loser.stderr);
    assert!(told.contains("the floor"), "{told}");
    // The listener heard exactly one burst, from the winner.
    let winner = if a.status.code() == Some(0) {
        "m1"
    } else {
        "m2"
    };
    let heard = wait_bursts(&f, m3, 1, "burst heard");
    std::thread::sleep(Duration::from_secs(1));
    let heard_all = bursts(&f, m3);
    assert_eq!(heard_all.len(), 1, "{heard:?}");
    assert_eq!(heard_all[0]["talker"], winner);
    assert_eq!(wav_files(&dir).len(), 1);

    // A higher severity takes the floor from a talker; the talker is told.
    let long = speak(
        f.lan.dir(),
        "long.wav",
        "This is a long report from the north gate, with many details about what was seen there, \
         and it goes on for a while so that someone else can take the floor from me.",
    );
    let (a, b) = talk_over(
        &f,
        (m1, &long),
        Duration::from_millis(1500),
        (m2, &clip, &["--severity", "extreme"]),
    );
    assert_eq!(
        b.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    assert_eq!(
        a.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert!(String::from_utf8_lossy(&a.stderr).contains("higher severity"));
    let ends = wait_bursts(&f, m3, 3, "preemption heard");
    assert!(
        ends.iter()
            .any(|b| b["talker"] == "m1" && b["reason"] == "preempted"),
        "{ends:?}"
    );
    assert!(
        ends.iter()
            .any(|b| b["talker"] == "m2" && b["severity"] == "extreme"),
        "{ends:?}"
    );

    // A press with --queue while the floor is held (a clip of several seconds) waits, then
    // talks after the holder: without --queue it would be refused with exit code 4.
    let (a, b) = talk_over(
        &f,
        (m1, &long),
        Duration::from_millis(1000),
        (m2, &clip, &["--queue"]),
    );
    for (who, o) in [("m1", &a), ("m2 --queue", &b)] {
        assert!(
            o.status.success(),
            "{who}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let all = wait_bursts(&f, m3, 5, "queued burst heard");
    let (first, queued) = (&all[3], &all[4]);
    assert_eq!(
        (first["talker"].as_str(), queued["talker"].as_str()),
        (Some("m1"), Some("m2")),
        "{all:?}"
    );
    assert_eq!(first["reason"], "released", "{first}");
    let end = first["started_at_us"].as_u64().unwrap_or(u64::MAX)
        + first["duration_ms"].as_u64().unwrap_or(0) * 1000;
    let next = queued["started_at_us"].as_u64().unwrap_or(0);
    assert!(
        next >= end,
        "the queued talk began after the holder's end: {all:?}"
    );
}

/// ALSA devices for a test: a microphone that reads `mic` (raw 16 kHz S16LE), a speaker that
/// writes `speaker`, and a microphone that reads the FIFO `stall` (it stalls while nothing is
/// written), all through ALSA's `file` plugin (no sound card needed). Returns the directory to
/// use as HOME (ALSA reads `~/.asoundrc`).
fn alsa_home(dir: &Path, mic: &Path, speaker: &Path, stall: &Path) -> PathBuf {
    let home = dir.join("alsa-home");
    std::fs::create_dir_all(&home).expect("alsa home");
    let conf = format!(
        "pcm.pttmic {{\n type file\n slave.pcm null\n file \"/dev/null\"\n infile \"{}\"\n format \"raw\"\n}}\n\
         pcm.pttspk {{\n type file\n slave.pcm null\n file \"{}\"\n format \"raw\"\n}}\n\
         pcm.pttstall {{\n type file\n slave.pcm null\n file \"/dev/null\"\n infile \"{}\"\n format \"raw\"\n}}\n",
        mic.display(),
        speaker.display(),
        stall.display()
    );
    std::fs::write(home.join(".asoundrc"), conf).expect(".asoundrc");
    home
}

#[test]
fn the_microphone_and_the_speaker_are_alsa_devices_and_a_vanished_talker_loses_the_floor() {
    if !netns::require_netns() || !netns::require_program("espeak-ng") {
        return;
    }
    let (mut f, m1, m2, m3) = Field::three_members("alsa");
    let root = f.lan.dir().to_path_buf();
    let clip = speak(
        &root,
        "clip.wav",
        "Shots fired near the loading dock. All units hold your positions.",
    );
    let original = samples(&clip);
    let raw: Vec<u8> = original.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mic = root.join("mic.raw");
    std::fs::write(&mic, &raw).expect("mic.raw");
    let speaker = root.join("speaker.raw");
    let stall = root.join("stall.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&stall)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let home = alsa_home(&root, &mic, &speaker, &stall);
    let home_env = [("HOME", p(&home))];

    // m3 plays what it hears on its "speaker"; m2 writes files.
    listen_with(
        &mut f.devs[m3],
        &["--play", "--audio-device", "pttspk"],
        &home_env,
    );
    let dir = listen_audio(&mut f.devs[m2]);
    std::thread::sleep(Duration::from_millis(500));

    let talk_mic = |device: &str, secs: &str| {
        let d = &f.devs[m1];
        let mut cmd = d.host.command(
            BIN,
            [
                "talk",
                "--json",
                "--data",
                p(&d.data),
                "--mic",
                "--audio-device",
                device,
                "--seconds",
                secs,
            ],
        );
        cmd.env("HOME", &home);
        netns::run_with_timeout(&mut cmd, Duration::from_secs(60)).expect("talk --mic")
    };
    // A device that does not exist: a clear error, and the floor is never taken.
    let bad = talk_mic("no-such-device", "1");
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("audio device no-such-device: cannot open it for capture"),
        "{err}"
    );

    // The "microphone" reads the clip (its file runs ahead of real time; talk keeps real
    // time), for as long as the clip lasts.
    // Exactly the clip's frames (20 ms each).
    let secs = format!("{:.2}", original.len().div_ceil(320) as f64 * 0.02);
    let out = talk_mic("pttmic", &secs);
    assert!(out.status.success(), "talk --mic: {out:?}");
    let sent: Value = serde_json::from_slice(&out.stdout).expect("talk --json");
    let frames = sent["frames"].as_u64().expect("frames");
    assert_eq!(frames, original.len().div_ceil(320) as u64, "{sent}");

    let b = wait_bursts(&f, m3, 1, "burst played")[0].clone();
    assert_eq!(b["played"], true, "{b}");
    assert_eq!(b["file"], Value::Null, "{b}");
    assert_eq!(b["sent"].as_u64(), Some(frames), "{b}");
    std::thread::sleep(Duration::from_millis(500));
    let played: Vec<i16> = std::fs::read(&speaker)
        .expect("the speaker's file")
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    // What the speaker got is the clip: about its length (ALSA may pad the last period) and
    // following its loudness.
    let (lp, lo) = (played.len() as f64, original.len() as f64);
    assert!(
        lp >= lo - 640.0 && lp < lo * 1.05 + 4000.0,
        "{lp} vs {lo} samples"
    );
    let same = correlation(&envelope(&original), &envelope(&played));
    assert!(
        same > 0.8,
        "correlation of the speaker with the clip: {same:.2}"
    );
    // And m2's file is the same burst.
    let heard = bursts(&f, m2);
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(wav_files(&dir).len(), 1);

    // A talker whose device dies mid-burst: the others' floor frees itself after 2 s.
    let long = speak(
        &root,
        "long.wav",
        "This report from the south fence is long on purpose, so that the device can fail \
         while it is still talking to everyone else in the domain.",
    );
    let talker = {
        let d = &f.devs[m1];
        d.host
            .spawn(BIN, ["talk", "--data", p(&d.data), "--wav", p(&long)], &[])
            .expect("talk")
    };
    f.lan
        .wait_until("m2 hears the talker", Duration::from_secs(20), || {
            let n = f.status(m2).expect("status")["counters"]["voice_received"]
                .as_u64()
                .unwrap_or(0);
            // The first burst's frames and release, and the start of this one.
            if n >= frames + 10 {
                Cond::Done(())
            } else {
                Cond::Pending(format!("{n} voice packets"))
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(1000));
    f.devs[m1].daemon = None; // SIGKILL: no release is ever sent
    let ended = wait_bursts(&f, m2, 2, "the floor times out")[1].clone();
    drop(talker);
    assert_eq!(ended["reason"], "timed_out", "{ended}");
    assert_eq!(ended["sent"], Value::Null, "no release came: {ended}");
    let frames_heard = ended["received"].as_u64().unwrap_or(0);
    assert!(frames_heard >= 25, "about a second was heard: {ended}");
    // The floor is free: m2 can talk at once.
    let short = speak(&root, "short.wav", "Copy that.");
    let out = talk(&f, m2, &["--wav", p(&short)]);
    assert!(out.status.success(), "{out:?}");

    // A microphone that stops delivering (the FIFO is held open, nothing is written): the
    // burst ends with a clear error instead of holding the floor forever.
    let _held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&stall)
        .expect("hold the FIFO open");
    let d = &f.devs[m2];
    let mut cmd = d.host.command(
        BIN,
        [
            "talk",
            "--data",
            p(&d.data),
            "--mic",
            "--audio-device",
            "pttstall",
        ],
    );
    cmd.env("HOME", &home);
    let out = netns::run_with_timeout(&mut cmd, Duration::from_secs(30)).expect("talk --mic");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("audio device pttstall: it delivered nothing for 1 s"),
        "{err}"
    );
    // The floor it took was released: m2 can talk again at once.
    let again = talk(&f, m2, &["--wav", p(&short)]);
    assert!(again.status.success(), "{again:?}");
}

#[test]
fn a_lossy_link_costs_late_frames_not_the_burst() {
    if !netns::require_netns()
        || !netns::require_program("espeak-ng")
        || !netns::require_program("nft")
    {
        return;
    }
    let (mut f, m1, _m2, m3) = Field::three_members("vloss");
    let dir = listen_audio(&mut f.devs[m3]);
    // A fifth of what reaches m3 is dropped (TCP resends it, too late for some slots).
    for rule in [
        "add table inet loss",
        "add chain inet loss input { type filter hook input priority 0 ; }",
        "add rule inet loss input iifname eth0 numgen random mod 100 < 20 counter drop",
    ] {
        let args: Vec<&str> = rule.split(' ').collect();
        let out = f.devs[m3].host.run("nft", &args).expect("nft");
        assert!(out.status.success(), "nft {rule}: {out:?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let clip = speak(
        f.lan.dir(),
        "clip.wav",
        "Smoke on the third floor of the east wing. Evacuate by the north stairs.",
    );
    let out = talk(&f, m1, &["--json", "--wav", p(&clip)]);
    assert!(out.status.success(), "talk: {out:?}");
    let b = wait_bursts(&f, m3, 1, "burst heard")[0].clone();
    // TCP's resends stall the stream for hundreds of ms, not for the floor's 2 s.
    assert_eq!(b["reason"], "released", "{b}");
    let original = samples(&clip);
    let heard = samples(&PathBuf::from(b["file"].as_str().expect("file")));
    // Every slot is in the file, and the recording, which waits for what TCP resends, has at
    // most the slots the live schedule concealed: it sounds like the clip.
    let (lh, lo) = (heard.len() as f64, original.len() as f64);
    assert!((lh - lo).abs() < 0.05 * lo + 640.0, "{lh} vs {lo}: {b}");
    let (file_concealed, concealed) = (
        b["file_concealed"].as_u64().expect("file_concealed"),
        b["concealed"].as_u64().expect("concealed"),
    );
    assert!(file_concealed <= concealed, "{b}");
    let same = correlation(&envelope(&original), &envelope(&heard));
    assert!(same > 0.8, "correlation {same:.2}: {b}");
    assert_eq!(wav_files(&dir).len(), 1);
    // The loss was real.
    let rules = f.devs[m3]
        .host
        .run("nft", ["list", "table", "inet", "loss"])
        .expect("nft list");
    let rules = String::from_utf8_lossy(&rules.stdout);
    let dropped: u64 = rules
        .split("counter packets ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(dropped > 20, "packets dropped at m3: {dropped}\n{rules}");
    eprintln!(
        "lossy link: live late {} concealed {}, file concealed {file_concealed}, lost {}, \
         correlation {same:.2}",
        b["late"], b["concealed"], b["lost"]
    );
}
