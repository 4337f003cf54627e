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
    /// Talk from the default audio input.
    #[arg(long, conflicts_with = "wav")]
    pub mic: bool,
    /// When the floor is taken, wait (up to 30 s) for it instead of giving up at once.
    #[arg(long)]
    pub queue: bool,
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
    let Some(wav) = a.wav.as_deref() else {
        return Err(CliError::Other(
            "--mic: this build has no audio input; record a clip (for example \
             `arecord -f S16_LE -r 16000 -c 1 clip.wav`) and send it with --wav"
                .into(),
        ));
    };
    // Everything that can fail on the file fails before the floor is taken.
    let pcm = audio::read_wav(wav)?;
    let mut enc = Encoder::new()?;
    let frames = audio::frames(&pcm)
        .iter()
        .map(|f| enc.encode(f))
        .collect::<Result<Vec<_>, _>>()?;
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
    if !a.client.json {
        eprintln!(
            "talking on {} (burst {burst}): {:.1} s",
            a.channel,
            frames.len() as f64 * FRAME_US as f64 / 1e6
        );
    }
    // Real time: frame i leaves at start + i × 20 ms, as from a microphone.
    let start = tokio::time::Instant::now();
    let sender = async {
        let stop = tokio::signal::ctrl_c();
        tokio::pin!(stop);
        for (i, f) in frames.iter().enumerate() {
            let at = start + Duration::from_micros(i as u64 * FRAME_US);
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                // Let go of the button: release what was said so far.
                _ = &mut stop => break,
            }
            requests
                .send(&Request::Frame {
                    opus: hex::encode(f),
                })
                .await?;
        }
        requests.send(&Request::Release).await?;
        Ok::<_, ClientError>(())
    };
    tokio::pin!(sender);
    let mut sent = false;
    loop {
        tokio::select! {
            r = &mut sender, if !sent => {
                r?;
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
                    return Ok(());
                }
                Some(r) => return Err(busy_error(r)),
                None => return Err(ClientError::Protocol("the daemon closed the connection".into()).into()),
            },
        }
    }
}

/// A burst being received and written.
struct Incoming {
    jitter: JitterBuffer,
    decoder: Decoder,
    wav: WavOut,
    path: PathBuf,
    first_written_us: Option<u64>,
    first_sent_us: Option<u64>,
}

impl Incoming {
    fn play(&mut self, slots: Vec<Slot>) -> Result<(), CliError> {
        for s in slots {
            let pcm = match &s {
                Slot::Frame(f) => self.decoder.decode(Some(f)),
                Slot::Missing => self.decoder.decode(None),
            };
            self.wav.write(&pcm)?;
            if self.first_written_us.is_none() {
                self.first_written_us = Some(crate::daemon::now_us());
            }
        }
        Ok(())
    }
}

/// The voice half of `listen --audio-dir`: one WAV file per burst, through a jitter buffer,
/// with lost and late frames concealed.
pub struct Recorder {
    dir: PathBuf,
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
    /// The WAV file.
    pub file: Option<String>,
    /// Its length in ms.
    pub audio_ms: u64,
    /// Frames that came after their slot was played.
    pub late: u32,
    /// Slots concealed (lost or late frames).
    pub concealed: u32,
    /// The talker's clock at its first frame to this node's at writing it (µs): mouth to ear,
    /// with the jitter buffer.
    pub first_frame_latency_us: Option<u64>,
}

impl Recorder {
    /// Writes into `dir` (created if missing).
    pub fn new(dir: &Path) -> Result<Self, CliError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Other(format!("{}: {e}", dir.display())))?;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            bursts: HashMap::new(),
        })
    }

    /// The listener fell behind and may have missed the end of a burst: every open burst is
    /// closed as it stands (its file keeps what was written).
    pub fn lagged(&mut self) {
        self.bursts.clear();
    }

    /// When the next slot of any burst is due (µs since the Unix epoch).
    pub fn next_due_us(&self) -> Option<u64> {
        self.bursts
            .values()
            .filter_map(|b| b.jitter.next_due_us())
            .min()
    }

    /// Plays what is due.
    pub fn tick(&mut self, now_us: u64) -> Result<(), CliError> {
        for b in self.bursts.values_mut() {
            let due = b.jitter.pop_due(now_us);
            b.play(due)?;
        }
        Ok(())
    }

    /// Takes a reply of `listen`; returns a finished burst.
    pub fn take(&mut self, r: &Reply, now_us: u64) -> Result<Option<Recorded>, CliError> {
        match r {
            Reply::BurstStart(info) => {
                let name = format!(
                    "{}-{}-{}.wav",
                    info.channel.replace(['/', '\\'], "_"),
                    info.talker.replace(['/', '\\'], "_"),
                    info.burst
                );
                let path = self.dir.join(name);
                let b = Incoming {
                    jitter: JitterBuffer::new(JITTER_US),
                    decoder: Decoder::new()?,
                    wav: WavOut::create(&path)?,
                    path,
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
                if let Some(b) = self.bursts.get_mut(&(*device, *burst)) {
                    let opus = hex::decode(opus).unwrap_or_default();
                    if b.jitter.push(*index, opus, now_us) == Pushed::Buffered
                        && b.first_sent_us.is_none()
                        && *index == 1
                    {
                        b.first_sent_us = Some(*sent_at_us);
                    }
                    let due = b.jitter.pop_due(now_us);
                    b.play(due)?;
                }
                Ok(None)
            }
            Reply::BurstEnd(info) => {
                let Some(mut b) = self.bursts.remove(&(info.device, info.burst)) else {
                    return Ok(None);
                };
                // What is still buffered plays now; what never came is concealed.
                let rest = b.jitter.finish(info.sent);
                b.play(rest)?;
                let samples = b.wav.samples();
                let audio_ms = b.wav.finish()?;
                let file = (samples > 0).then(|| b.path.display().to_string());
                if samples == 0 {
                    let _ = std::fs::remove_file(&b.path);
                }
                Ok(Some(Recorded {
                    kind: "burst",
                    info: (**info).clone(),
                    file,
                    audio_ms,
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
