//! `ptt-node talk`, and the voice half of `ptt-node listen` (`--audio-dir`): Opus encoding
//! and decoding, the jitter buffer, WAV files. The daemon only carries the frames.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::{CliError, ClientArgs, connect_client, format_time_us, json_line};
use crate::alert::Severity;
use crate::audio::{self, Decoder, Encoder, WavOut};
use crate::control::{BurstInfo, ClientError, Reply, Request};
use crate::voice::{FRAME_US, JITTER_US, JitterBuffer, Pushed, Slot};

/// `ptt-node talk`.
#[derive(Debug, Args)]
pub struct TalkArgs {
    /// Common arguments.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The channel to talk on.
    #[arg(long, default_value = crate::domain::DEFAULT_CHANNEL)]
    pub channel: String,
    /// minor, moderate, severe, extreme or unknown: a higher severity takes the floor from a
    /// talker.
    #[arg(long, default_value = "moderate")]
    pub severity: Severity,
    /// Send this recorded clip as one burst, in real time (WAV: PCM or float, any rate, mono
    /// or stereo; at most 120 s).
    #[arg(long, value_name = "FILE", required_unless_present = "mic")]
    pub wav: Option<PathBuf>,
    /// Talk from the audio input (ALSA, see --audio-device) until Enter (on a terminal),
    /// Ctrl-C, --seconds or the 120 s limit.
    #[arg(long, conflicts_with = "wav")]
    pub mic: bool,
    /// The ALSA capture device for --mic: default, plughw:1,0, a name from ~/.asoundrc, …
    #[arg(long, value_name = "NAME", default_value = audio::DEFAULT_DEVICE, requires = "mic", conflicts_with = "wav")]
    pub audio_device: String,
    /// Let go of the button after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub seconds: Option<f64>,
    /// When the floor is taken, wait (up to 30 s) for it instead of giving up at once.
    #[arg(long)]
    pub queue: bool,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= audio::MAX_CLIP_SECS as f64 => Ok(v),
        _ => Err(format!(
            "a number of seconds above 0 and at most {}",
            audio::MAX_CLIP_SECS
        )),
    }
}

/// A live source that delivers nothing for this long has failed (listeners drop the floor after
/// 1 s of silence anyway).
const STALL: Duration = Duration::from_secs(1);

/// Where the frames of a burst come from: encoded 20 ms frames, in order.
type FrameSource = tokio::sync::mpsc::Receiver<Result<Vec<u8>, CliError>>;

/// A recorded clip, encoded before the floor is asked for.
fn clip_source(path: &Path, max_frames: usize) -> Result<(FrameSource, usize), CliError> {
    let pcm = audio::read_wav(path)?;
    let mut enc = Encoder::new()?;
    let frames = audio::frames(&pcm)
        .iter()
        .take(max_frames)
        .map(|f| enc.encode(f))
        .collect::<Result<Vec<_>, _>>()?;
    let n = frames.len();
    let (tx, rx) = tokio::sync::mpsc::channel(n.max(1));
    for f in frames {
        // The channel holds them all.
        let _ = tx.try_send(Ok(f));
    }
    Ok((rx, n))
}

/// The microphone, read and encoded on its own thread (ALSA blocks) until the receiver is
/// dropped, the device fails, or `max_frames`.
fn mic_source(mut mic: audio::Mic, max_frames: usize) -> FrameSource {
    let (tx, rx) = tokio::sync::mpsc::channel(50);
    std::thread::spawn(move || {
        let mut enc = match Encoder::new() {
            Ok(e) => e,
            Err(e) => {
                let _ = tx.blocking_send(Err(e.into()));
                return;
            }
        };
        for _ in 0..max_frames {
            let f = mic
                .read_frame()
                .and_then(|f| enc.encode(&f))
                .map_err(CliError::from);
            let failed = f.is_err();
            if tx.blocking_send(f).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// Whether stdin is a terminal and this process is in its foreground (a `talk --mic &` in the
/// background must not read it: the terminal would stop the process).
fn stdin_is_foreground_terminal() -> bool {
    use std::io::IsTerminal;
    // SAFETY: both calls only read process state.
    std::io::stdin().is_terminal() && unsafe { libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// Resolves when Enter is pressed on a terminal; never otherwise (stdin may be a pipe or
/// /dev/null, which says nothing about the button).
async fn enter_pressed() {
    if !stdin_is_foreground_terminal() {
        return std::future::pending().await;
    }
    // What was typed before the floor was granted (during a --queue wait) does not count.
    // SAFETY: tcflush on fd 0 has no memory preconditions.
    unsafe { libc::tcflush(0, libc::TCIFLUSH) };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = tx.send(());
    });
    let _ = rx.await;
}

fn busy_error(reply: Reply) -> CliError {
    match reply {
        Reply::FloorBusy {
            holder,
            severity,
            since_us,
            why,
        } => {
            match why.as_str() {
                "timed_out" => {
                    return CliError::Floor(
                        "the floor was given up: this device sent nothing for 1 s".into(),
                    );
                }
                "too_long" => {
                    return CliError::Floor("the burst reached the limit of 120 s".into());
                }
                _ => {}
            }
            let what = match why.as_str() {
                "lost" => "was taken at the same moment by",
                "preempted" => "was taken (higher severity) by",
                "timeout" => "stayed busy for 30 s, held by",
                _ => "is held by",
            };
            CliError::Floor(format!(
                "the floor {what} {holder} (severity {}) since {}",
                severity.as_str(),
                format_time_us(since_us)
            ))
        }
        Reply::Error { message } => ClientError::Refused(message).into(),
        other => ClientError::Protocol(format!("{other:?}")).into(),
    }
}

/// `ptt-node talk`.
pub async fn talk(a: TalkArgs) -> Result<(), CliError> {
    let max_frames = a
        .seconds
        .map_or(crate::voice::MAX_BURST_FRAMES as usize, |s| {
            ((s * 1e6).round() as u64).div_ceil(FRAME_US).max(1) as usize
        });
    // A live source also stops on the clock, short of the burst limit the listeners enforce
    // (a device's latency and drift must not push the last frames past it).
    let max_talk = Duration::from_micros(
        a.seconds
            .map_or(crate::voice::MAX_BURST_US - 200_000, |s| {
                (s * 1e6).round() as u64
            })
            .min(crate::voice::MAX_BURST_US - 200_000),
    );
    // Everything that can fail on the file or the device fails before the floor is taken.
    enum Input {
        Clip(FrameSource, usize),
        Mic(audio::Mic),
    }
    let input = match (&a.wav, a.mic) {
        (Some(wav), _) => {
            let (rx, n) = clip_source(wav, max_frames)?;
            Input::Clip(rx, n)
        }
        _ => Input::Mic(audio::Mic::open(&a.audio_device)?),
    };
    let c = connect_client(&a.client).await?;
    let (mut replies, mut requests) = c.split();
    requests
        .send(&Request::Talk {
            channel: a.channel.clone(),
            severity: a.severity,
            queue: a.queue,
        })
        .await?;
    let burst = match replies.next().await? {
        Some(Reply::FloorGranted { burst, .. }) => burst,
        Some(r) => return Err(busy_error(r)),
        None => {
            return Err(ClientError::Protocol("the daemon closed the connection".into()).into());
        }
    };
    // The microphone is read only from now on: what was said before the grant is not sent.
    let live = matches!(input, Input::Mic(_));
    let mut source = match input {
        Input::Clip(rx, n) => {
            if !a.client.json {
                eprintln!(
                    "talking on {} (burst {burst}): {:.1} s",
                    a.channel,
                    n as f64 * FRAME_US as f64 / 1e6
                );
            }
            rx
        }
        Input::Mic(mic) => {
            if !a.client.json {
                let how = if stdin_is_foreground_terminal() {
                    "press Enter or Ctrl-C to let go"
                } else {
                    "Ctrl-C to let go"
                };
                eprintln!(
                    "talking on {} (burst {burst}) from {}: {how}",
                    a.channel, a.audio_device
                );
            }
            mic_source(mic, max_frames)
        }
    };
    // Real time: frame i leaves at start + i × 20 ms, or when the device has it if later; a
    // source that runs fast (a file, a virtual device) never floods the domain.
    let start = tokio::time::Instant::now();
    let sender = async {
        let stop = async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = enter_pressed() => {}
            }
        };
        tokio::pin!(stop);
        let mut failure = None;
        let mut i = 0u64;
        let deadline = start + max_talk;
        loop {
            let f = tokio::select! {
                f = tokio::time::timeout(STALL, source.recv()) => f,
                // Let go of the button: release what was said so far.
                _ = &mut stop => break,
                _ = tokio::time::sleep_until(deadline), if live => break,
            };
            let f = match f {
                Ok(Some(Ok(f))) => f,
                Ok(Some(Err(e))) => {
                    failure = Some(e);
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    failure = Some(CliError::Other(format!(
                        "audio device {}: it delivered nothing for {} s",
                        a.audio_device,
                        STALL.as_secs()
                    )));
                    break;
                }
            };
            let at = start + Duration::from_micros(i * FRAME_US);
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = &mut stop => break,
            }
            requests
                .send(&Request::Frame {
                    opus: hex::encode(&f),
                })
                .await?;
            i += 1;
        }
        drop(source);
        requests.send(&Request::Release).await?;
        Ok::<_, ClientError>(failure)
    };
    tokio::pin!(sender);
    let mut failure = None;
    let mut sent = false;
    loop {
        tokio::select! {
            r = &mut sender, if !sent => {
                failure = r?;
                sent = true;
            }
            reply = replies.next() => match reply? {
                Some(Reply::TalkEnded { burst, frames, duration_ms, alert_id }) => {
                    if a.client.json {
                        println!("{}", json_line(&serde_json::json!({
                            "burst": burst, "frames": frames, "duration_ms": duration_ms,
                            "alert_id": alert_id, "channel": a.channel,
                        })));
                    } else {
                        println!(
                            "sent {frames} frames ({:.1} s) on {}{}",
                            duration_ms as f64 / 1000.0,
                            a.channel,
                            alert_id.map(|i| format!(", recorded as alert {i}")).unwrap_or_default()
                        );
                    }
                    // What was said is out; the device's failure is still an error.
                    return failure.map_or(Ok(()), Err);
                }
                Some(r) => return Err(busy_error(r)),
                None => return Err(ClientError::Protocol("the daemon closed the connection".into()).into()),
            },
        }
    }
}

/// A burst being received: decoded through its jitter buffer, written and played.
struct Incoming {
    jitter: JitterBuffer,
    decoder: Decoder,
    wav: Option<WavOut>,
    path: Option<PathBuf>,
    severity: Severity,
    played: bool,
    samples: u64,
    first_written_us: Option<u64>,
    first_sent_us: Option<u64>,
}

impl Incoming {
    /// Decodes the slots (concealing what is missing) and writes them to the file.
    fn decode(&mut self, slots: Vec<Slot>) -> Result<Vec<i16>, CliError> {
        let mut out = Vec::with_capacity(slots.len() * crate::voice::FRAME_SAMPLES);
        for s in slots {
            let pcm = match &s {
                Slot::Frame(f) => self.decoder.decode(Some(f)),
                Slot::Missing => self.decoder.decode(None),
            };
            if let Some(w) = self.wav.as_mut() {
                w.write(&pcm)?;
            }
            if self.first_written_us.is_none() {
                self.first_written_us = Some(crate::daemon::now_us());
            }
            self.samples += pcm.len() as u64;
            out.extend(pcm);
        }
        Ok(out)
    }
}

/// What the speaker thread is told.
enum ToSpeaker {
    Pcm(Vec<i16>),
    /// The burst being played ended: let the buffer play out.
    End,
}

/// `listen --play`: an ALSA playback device on its own thread (ALSA blocks). One burst is
/// heard at a time, as on a radio: the first to start, unless a burst of higher severity
/// starts (it takes the speaker); the others are still written with `--audio-dir`.
pub struct Player {
    tx: std::sync::mpsc::Sender<ToSpeaker>,
    playing: Option<(u32, u64)>,
}

impl Player {
    /// Opens `device` now, so that a missing device is an error before anything is heard.
    pub fn open(device: &str) -> Result<Self, CliError> {
        let mut speaker = audio::Speaker::open(device)?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while let Ok(m) = rx.recv() {
                let r = match m {
                    ToSpeaker::Pcm(pcm) => speaker.write(&pcm),
                    ToSpeaker::End => speaker.drain(),
                };
                if let Err(e) = r {
                    // Voice stays recorded and reported; only the speaker is lost.
                    eprintln!("ptt-node: {e}; playing stops");
                    return;
                }
            }
        });
        Ok(Player { tx, playing: None })
    }
}

/// The voice half of `listen --audio-dir/--play`: per burst a jitter buffer and a decoder,
/// lost and late frames concealed, then a WAV file and/or the speaker.
pub struct Recorder {
    dir: Option<PathBuf>,
    player: Option<Player>,
    bursts: HashMap<(u32, u64), Incoming>,
}

/// A burst finished by [`Recorder`]: what `listen` reports.
#[derive(Debug, serde::Serialize)]
pub struct Recorded {
    /// `burst`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The burst as the daemon saw it.
    #[serde(flatten)]
    pub info: BurstInfo,
    /// The WAV file (with `--audio-dir`).
    pub file: Option<String>,
    /// Its length in ms.
    pub audio_ms: u64,
    /// With `--play`: whether it was heard (another burst may have held the speaker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub played: Option<bool>,
    /// Frames that came after their slot was played.
    pub late: u32,
    /// Slots concealed (lost or late frames).
    pub concealed: u32,
    /// The talker's clock at its first frame to this node's at writing it (µs): mouth to ear,
    /// with the jitter buffer.
    pub first_frame_latency_us: Option<u64>,
}

impl Recorder {
    /// Writes WAV files into `dir` (created if missing) if given; plays through `player` if
    /// given.
    pub fn new(dir: Option<&Path>, player: Option<Player>) -> Result<Self, CliError> {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Other(format!("{}: {e}", dir.display())))?;
        }
        Ok(Recorder {
            dir: dir.map(Path::to_path_buf),
            player,
            bursts: HashMap::new(),
        })
    }

    /// The listener fell behind and may have missed the end of a burst: every open burst is
    /// closed as it stands (its file keeps what was written).
    pub fn lagged(&mut self) {
        self.bursts.clear();
        if let Some(p) = self.player.as_mut()
            && p.playing.take().is_some()
        {
            let _ = p.tx.send(ToSpeaker::End);
        }
    }

    /// When the next slot of any burst is due (µs since the Unix epoch).
    pub fn next_due_us(&self) -> Option<u64> {
        self.bursts
            .values()
            .filter_map(|b| b.jitter.next_due_us())
            .min()
    }

    /// Sends decoded audio of burst `key` to the speaker if it holds it, or takes it.
    fn speak(&mut self, key: (u32, u64), pcm: Vec<i16>) {
        let Some(p) = self.player.as_mut() else {
            return;
        };
        if pcm.is_empty() {
            return;
        }
        let severity = |k| self.bursts.get(&k).map(|b: &Incoming| b.severity);
        let takes = match p.playing {
            None => true,
            Some(k) if k == key => true,
            // A burst of higher severity takes the speaker.
            Some(k) => severity(key) > severity(k),
        };
        if !takes {
            return;
        }
        if p.tx.send(ToSpeaker::Pcm(pcm)).is_err() {
            // The speaker failed (its thread said why): go on without it.
            self.player = None;
            return;
        }
        p.playing = Some(key);
        if let Some(b) = self.bursts.get_mut(&key) {
            b.played = true;
        }
    }

    /// Plays what is due.
    pub fn tick(&mut self, now_us: u64) -> Result<(), CliError> {
        let keys: Vec<_> = self.bursts.keys().copied().collect();
        for k in keys {
            let pcm = match self.bursts.get_mut(&k) {
                Some(b) => {
                    let due = b.jitter.pop_due(now_us);
                    b.decode(due)?
                }
                None => continue,
            };
            self.speak(k, pcm);
        }
        Ok(())
    }

    /// Takes a reply of `listen`; returns a finished burst.
    pub fn take(&mut self, r: &Reply, now_us: u64) -> Result<Option<Recorded>, CliError> {
        match r {
            Reply::BurstStart(info) => {
                let path = self.dir.as_ref().map(|dir| {
                    dir.join(format!(
                        "{}-{}-{}.wav",
                        info.channel.replace(['/', '\\'], "_"),
                        info.talker.replace(['/', '\\'], "_"),
                        info.burst
                    ))
                });
                let b = Incoming {
                    jitter: JitterBuffer::new(JITTER_US),
                    decoder: Decoder::new()?,
                    wav: path.as_deref().map(WavOut::create).transpose()?,
                    path,
                    severity: info.severity,
                    played: false,
                    samples: 0,
                    first_written_us: None,
                    first_sent_us: None,
                };
                self.bursts.insert((info.device, info.burst), b);
                Ok(None)
            }
            Reply::VoiceFrame {
                burst,
                device,
                index,
                opus,
                sent_at_us,
                ..
            } => {
                let key = (*device, *burst);
                let pcm = match self.bursts.get_mut(&key) {
                    Some(b) => {
                        let opus = hex::decode(opus).unwrap_or_default();
                        if b.jitter.push(*index, opus, now_us) == Pushed::Buffered
                            && b.first_sent_us.is_none()
                            && *index == 1
                        {
                            b.first_sent_us = Some(*sent_at_us);
                        }
                        let due = b.jitter.pop_due(now_us);
                        b.decode(due)?
                    }
                    None => return Ok(None),
                };
                self.speak(key, pcm);
                Ok(None)
            }
            Reply::BurstEnd(info) => {
                let key = (info.device, info.burst);
                // What is still buffered plays now; what never came is concealed.
                let rest = match self.bursts.get_mut(&key) {
                    Some(b) => {
                        let rest = b.jitter.finish(info.sent);
                        b.decode(rest)?
                    }
                    None => return Ok(None),
                };
                self.speak(key, rest);
                if let Some(p) = self.player.as_mut()
                    && p.playing == Some(key)
                {
                    p.playing = None;
                    let _ = p.tx.send(ToSpeaker::End);
                }
                let Some(b) = self.bursts.remove(&key) else {
                    return Ok(None);
                };
                let file = match (b.wav, b.path) {
                    (Some(wav), Some(path)) => {
                        let samples = wav.samples();
                        wav.finish()?;
                        if samples == 0 {
                            let _ = std::fs::remove_file(&path);
                            None
                        } else {
                            Some(path.display().to_string())
                        }
                    }
                    _ => None,
                };
                Ok(Some(Recorded {
                    kind: "burst",
                    info: (**info).clone(),
                    file,
                    audio_ms: b.samples * 1000 / u64::from(crate::voice::SAMPLE_RATE),
                    played: self.player.is_some().then_some(b.played),
                    late: b.jitter.late,
                    concealed: b.jitter.concealed,
                    first_frame_latency_us: b
                        .first_sent_us
                        .zip(b.first_written_us)
                        .map(|(s, w)| w.saturating_sub(s)),
                }))
            }
            _ => Ok(None),
        }
    }
}

/// One line for a burst event in text form.
pub fn format_burst(start: bool, b: &BurstInfo) -> String {
    if start {
        format!(
            "{} {:<8} voice from {} on {}: talking",
            format_time_us(b.started_at_us),
            b.severity.as_str().to_uppercase(),
            b.talker,
            b.channel
        )
    } else {
        format!(
            "{} {:<8} voice from {} on {}: {:.1} s, {} frames, {} lost ({})",
            format_time_us(b.started_at_us),
            b.severity.as_str().to_uppercase(),
            b.talker,
            b.channel,
            b.duration_ms as f64 / 1000.0,
            b.received,
            b.lost,
            b.reason.as_deref().unwrap_or("ended")
        )
    }
}
