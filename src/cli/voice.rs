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
use crate::voice::{FRAME_US, JITTER_US, JitterBuffer, Pushed, RECORD_JITTER_US, Slot};

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
/// [`crate::voice::FLOOR_TIMEOUT_US`] of silence anyway).
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
                    return CliError::Floor(format!(
                        "the floor was given up: this device sent nothing for {} s",
                        crate::voice::FLOOR_TIMEOUT_US / 1_000_000
                    ));
                }
                "too_long" => {
                    return CliError::Floor("the burst reached the limit of 120 s".into());
                }
                _ => {}
            }
            let what = match why.as_str() {
                "lost" => "was taken at the same moment by",
                "preempted" => "was taken (higher severity or emergency) by",
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
                    failure = Some(CliError::MicStalled {
                        device: a.audio_device.clone(),
                        secs: STALL.as_secs(),
                    });
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

/// A burst being received. Two schedules: the live one (a 60 ms jitter buffer) is what a
/// speaker plays and what `late`, `concealed` and the latency report, played or not; the
/// recording waits up to [`RECORD_JITTER_US`] for a frame, so that a frame resent late by TCP is
/// in the file rather than concealed.
struct Incoming {
    live: JitterBuffer,
    /// Decodes the live schedule for the speaker (with `--play`).
    live_decoder: Option<Decoder>,
    record: Option<Recording>,
    severity: Severity,
    played: bool,
    /// Samples of the live schedule.
    samples: u64,
    first_due_us: Option<u64>,
    first_sent_us: Option<u64>,
}

/// One slot decoded: its frame, or Opus's concealment of a missing one.
fn decode_slot(d: &mut Decoder, s: &Slot) -> Vec<i16> {
    match s {
        Slot::Frame(f) => d.decode(Some(f)),
        Slot::Missing => d.decode(None),
    }
}

/// The recording of a burst: its own jitter buffer, decoder and WAV file.
struct Recording {
    jitter: JitterBuffer,
    decoder: Decoder,
    wav: WavOut,
    path: PathBuf,
}

impl Recording {
    fn write(&mut self, slots: Vec<Slot>) -> Result<(), CliError> {
        for s in slots {
            self.wav.write(&decode_slot(&mut self.decoder, &s))?;
        }
        Ok(())
    }
}

impl Incoming {
    /// Plays the live slots (decoded if there is a speaker) and writes the recording's.
    fn play(&mut self, live: Vec<Slot>, record: Vec<Slot>) -> Result<Vec<i16>, CliError> {
        if let Some(r) = self.record.as_mut() {
            r.write(record)?;
        }
        if !live.is_empty() && self.first_due_us.is_none() {
            self.first_due_us = Some(crate::clock::now_us());
        }
        self.samples += (live.len() * crate::voice::FRAME_SAMPLES) as u64;
        let Some(d) = self.live_decoder.as_mut() else {
            return Ok(vec![]);
        };
        let mut out = Vec::with_capacity(live.len() * crate::voice::FRAME_SAMPLES);
        for s in live {
            out.extend(decode_slot(d, &s));
        }
        Ok(out)
    }

    /// The slots due at `now_us` on both schedules.
    fn due(&mut self, now_us: u64) -> Result<Vec<i16>, CliError> {
        let live = self.live.pop_due(now_us);
        let record = match self.record.as_mut() {
            Some(r) => r.jitter.pop_due(now_us),
            None => vec![],
        };
        self.play(live, record)
    }

    fn next_due_us(&self) -> Option<u64> {
        let r = self.record.as_ref().and_then(|r| r.jitter.next_due_us());
        match (self.live.next_due_us(), r) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

/// The voice half of `listen --audio-dir/--play`: per burst a live jitter buffer (and a
/// decoder for the speaker) and a recording's deeper one with its decoder and WAV file.
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
    /// Slots of the file concealed: frames that never came, or more than
    /// [`RECORD_JITTER_US`] late (with `--audio-dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_concealed: Option<u32>,
    /// The talker's clock at its first frame to this node's when its slot was played (µs):
    /// mouth to ear, with the 60 ms jitter buffer.
    pub first_frame_latency_us: Option<u64>,
}

impl Recorder {
    /// Writes WAV files into `dir` (created if missing) if given; plays through `player` if
    /// given.
    pub fn new(dir: Option<&Path>, player: Option<Player>) -> Result<Self, CliError> {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(|source| CliError::Io {
                what: dir.display().to_string(),
                source,
            })?;
        }
        Ok(Recorder {
            dir: dir.map(Path::to_path_buf),
            player,
            bursts: HashMap::new(),
        })
    }

    /// Closes every open burst as it stands (the listener stops, or fell behind and may have
    /// missed the end of a burst): what the recordings still buffer is written, so a file keeps
    /// every frame received; the files are finished, an empty one is removed.
    pub fn close_all(&mut self) -> Result<(), CliError> {
        let mut first_err = None;
        for (_, b) in self.bursts.drain() {
            let Some(mut r) = b.record else { continue };
            let rest = r.jitter.finish(None);
            let res = r
                .write(rest)
                .and_then(|()| r.wav.finish().map_err(CliError::from));
            match res {
                Ok(0) => {
                    let _ = std::fs::remove_file(&r.path);
                }
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(p) = self.player.as_mut()
            && p.playing.take().is_some()
        {
            let _ = p.tx.send(ToSpeaker::End);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// When the next slot of any burst is due (µs since the Unix epoch).
    pub fn next_due_us(&self) -> Option<u64> {
        self.bursts.values().filter_map(Incoming::next_due_us).min()
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
                Some(b) => b.due(now_us)?,
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
                let record = match path {
                    Some(path) => Some(Recording {
                        jitter: JitterBuffer::new(RECORD_JITTER_US),
                        decoder: Decoder::new()?,
                        wav: WavOut::create(&path)?,
                        path,
                    }),
                    None => None,
                };
                let b = Incoming {
                    live: JitterBuffer::new(JITTER_US),
                    live_decoder: self.player.is_some().then(Decoder::new).transpose()?,
                    record,
                    severity: info.severity,
                    played: false,
                    samples: 0,
                    first_due_us: None,
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
                        if let Some(r) = b.record.as_mut() {
                            r.jitter.push(*index, opus.clone(), now_us);
                        }
                        if b.live.push(*index, opus, now_us) == Pushed::Buffered
                            && b.first_sent_us.is_none()
                            && *index == 1
                        {
                            b.first_sent_us = Some(*sent_at_us);
                        }
                        b.due(now_us)?
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
                        let live = b.live.finish(info.sent);
                        let record = match b.record.as_mut() {
                            Some(r) => r.jitter.finish(info.sent),
                            None => vec![],
                        };
                        b.play(live, record)?
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
                let (file, file_concealed, file_samples) = match b.record {
                    Some(r) => {
                        let samples = r.wav.samples();
                        r.wav.finish()?;
                        let file = if samples == 0 {
                            let _ = std::fs::remove_file(&r.path);
                            None
                        } else {
                            Some(r.path.display().to_string())
                        };
                        (file, Some(r.jitter.concealed), Some(samples))
                    }
                    None => (None, None, None),
                };
                Ok(Some(Recorded {
                    kind: "burst",
                    info: (**info).clone(),
                    file,
                    audio_ms: file_samples.unwrap_or(b.samples) * 1000
                        / u64::from(crate::voice::SAMPLE_RATE),
                    played: self.player.is_some().then_some(b.played),
                    late: b.live.late,
                    concealed: b.live.concealed,
                    file_concealed,
                    first_frame_latency_us: b
                        .first_sent_us
                        .zip(b.first_due_us)
                        .map(|(s, w)| w.saturating_sub(s)),
                }))
            }
            _ => Ok(None),
        }
    }
}

/// One line for a burst event in text form.
pub fn format_burst(start: bool, b: &BurstInfo) -> String {
    let who = if b.emergency {
        format!("{} (EMERGENCY)", b.talker)
    } else {
        b.talker.clone()
    };
    if start {
        format!(
            "{} {:<8} voice from {} on {}: talking",
            format_time_us(b.started_at_us),
            b.severity.as_str().to_uppercase(),
            who,
            b.channel
        )
    } else {
        format!(
            "{} {:<8} voice from {} on {}: {:.1} s, {} frames, {} lost ({})",
            format_time_us(b.started_at_us),
            b.severity.as_str().to_uppercase(),
            who,
            b.channel,
            b.duration_ms as f64 / 1000.0,
            b.received,
            b.lost,
            b.reason.as_deref().unwrap_or("ended")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::{FRAME_SAMPLES, SAMPLE_RATE};
    use std::sync::Arc;

    fn info(sent: Option<u32>) -> Arc<BurstInfo> {
        Arc::new(BurstInfo {
            channel: "alerts".into(),
            talker: "m1".into(),
            device: 1,
            burst: 77,
            severity: Severity::Moderate,
            started_at_us: 0,
            duration_ms: 0,
            received: 0,
            sent,
            lost: 0,
            reason: sent.map(|_| "released".into()),
            emergency: false,
        })
    }

    /// Frame `index` of burst 77, sealed at `sent_at_us`, taken by the recorder at `now`
    /// after its timer played what was due.
    fn give(r: &mut Recorder, index: u32, opus: &[u8], sent_at_us: u64, now: u64) {
        r.tick(now).unwrap();
        let frame = Reply::VoiceFrame {
            burst: 77,
            device: 1,
            index,
            opus: hex::encode(opus),
            received_at_us: now,
            sent_at_us,
        };
        assert!(r.take(&frame, now).unwrap().is_none());
    }

    /// A TCP stall: frame 11 comes 500 ms after its time, and the frames behind it with it, in
    /// one rush. The live schedule conceals them; the recording waits and has them all.
    #[test]
    fn the_recording_keeps_frames_the_live_schedule_had_to_conceal() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::new(Some(dir.path()), None).unwrap();
        let mut enc = Encoder::new().unwrap();
        let tone: Vec<[i16; FRAME_SAMPLES]> = (0..50u32)
            .map(|f| {
                std::array::from_fn(|i| {
                    let t = (f as usize * FRAME_SAMPLES + i) as f64 / f64::from(SAMPLE_RATE);
                    ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
                })
            })
            .collect();
        let t0 = 1_000_000_000u64;
        assert!(
            r.take(&Reply::BurstStart(info(None)), t0)
                .unwrap()
                .is_none()
        );
        let arrival = |i: u32| {
            let on_time = t0 + u64::from(i) * FRAME_US;
            if i >= 11 {
                on_time.max(t0 + 11 * FRAME_US + 500_000)
            } else {
                on_time
            }
        };
        for i in 1..=50 {
            let opus = enc.encode(&tone[i as usize - 1]).unwrap();
            give(&mut r, i, &opus, t0 + u64::from(i) * FRAME_US, arrival(i));
        }
        let end = t0 + 51 * FRAME_US;
        r.tick(end).unwrap();
        let done = r
            .take(&Reply::BurstEnd(info(Some(50))), end)
            .unwrap()
            .expect("the burst is reported at its end");
        assert!(done.late >= 20, "the live schedule was late: {}", done.late);
        assert_eq!(done.concealed, done.late, "every late frame was concealed");
        assert_eq!(done.file_concealed, Some(0), "the file has every frame");
        assert_eq!(done.audio_ms, 1000);
        let file = PathBuf::from(done.file.expect("a file"));
        let mut wav = hound::WavReader::open(&file).unwrap();
        let pcm: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(pcm.len(), 50 * FRAME_SAMPLES);
        // The stalled frames are the tone, not concealment fading out.
        let energy =
            |s: &[i16]| s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64;
        let stalled = energy(&pcm[15 * FRAME_SAMPLES..30 * FRAME_SAMPLES]);
        let before = energy(&pcm[2 * FRAME_SAMPLES..10 * FRAME_SAMPLES]);
        assert!(stalled > before * 0.5, "{stalled} vs {before}");
    }

    /// Without a file only the live schedule runs: nothing is recorded, the figures are there.
    #[test]
    fn without_a_directory_nothing_is_written_and_the_figures_are_reported() {
        let mut r = Recorder::new(None, None).unwrap();
        let t0 = 5_000_000u64;
        r.take(&Reply::BurstStart(info(None)), t0).unwrap();
        for i in [1u32, 2, 4] {
            let now = t0 + u64::from(i) * FRAME_US;
            give(&mut r, i, &[0xf8, 0xff], now - 3_000, now);
        }
        let done = r
            .take(&Reply::BurstEnd(info(Some(4))), t0 + 200_000)
            .unwrap()
            .unwrap();
        assert_eq!((done.file, done.file_concealed), (None, None));
        assert_eq!((done.late, done.concealed), (0, 1));
        assert_eq!(done.audio_ms, 80);
        assert!(done.first_frame_latency_us.is_some());
    }

    /// A listener that falls behind (or stops) writes what its recordings still buffered, and
    /// leaves no empty file for a burst it had no frame of.
    #[test]
    fn closing_writes_what_the_recording_buffered_and_removes_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::new(Some(dir.path()), None).unwrap();
        let mut enc = Encoder::new().unwrap();
        let t0 = 7_000_000u64;
        r.take(&Reply::BurstStart(info(None)), t0).unwrap();
        let mut silent = (*info(None)).clone();
        silent.burst = 78;
        r.take(&Reply::BurstStart(Arc::new(silent)), t0).unwrap();
        for i in 1..=10u32 {
            let now = t0 + u64::from(i) * FRAME_US;
            let opus = enc.encode(&[1000; FRAME_SAMPLES]).unwrap();
            give(&mut r, i, &opus, now, now);
        }
        r.close_all().unwrap();
        assert!(r.next_due_us().is_none(), "no burst is open");
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let wav = hound::WavReader::open(&files[0]).unwrap();
        assert_eq!(wav.len() as usize, 10 * FRAME_SAMPLES);
    }
}
