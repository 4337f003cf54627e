//! The CLI's side of voice: WAV files in and out, resampling to the voice rate, and Opus
//! through the system's libopus. The daemon never touches audio; it carries Opus frames.

use std::path::{Path, PathBuf};

use opusic_c::{Application, Bitrate, Channels, Decoder as OpusDecoder, Encoder as OpusEncoder};

use crate::voice::{FRAME_SAMPLES, MAX_OPUS_FRAME, SAMPLE_RATE};

/// Bit rate of the voice Opus stream (wideband speech).
pub const BITRATE: u32 = 16_000;
/// Longest clip `talk --wav` sends (the burst limit).
pub const MAX_CLIP_SECS: u64 = crate::voice::MAX_BURST_US / 1_000_000;

/// Why audio could not be read, coded or written.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// A WAV file could not be read or written.
    #[error("{path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// Why.
        source: hound::Error,
    },
    /// The WAV file holds nothing usable.
    #[error("{path}: {why}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// libopus refused.
    #[error("opus: {0}")]
    Opus(String),
    /// An ALSA device could not be opened, set up, read or written.
    #[error("audio device {device}: {why}")]
    Device {
        /// The ALSA device name.
        device: String,
        /// Why.
        why: String,
    },
}

fn opus_err(e: opusic_c::ErrorCode) -> AudioError {
    AudioError::Opus(format!("{e:?}"))
}

/// Reads a WAV file (PCM 8–32 bit or float, any rate, any channels) as mono samples at
/// [`SAMPLE_RATE`].
pub fn read_wav(path: &Path) -> Result<Vec<i16>, AudioError> {
    let wav = |source| AudioError::Wav {
        path: path.to_path_buf(),
        source,
    };
    let unusable = |why: String| AudioError::Unusable {
        path: path.to_path_buf(),
        why,
    };
    let mut r = hound::WavReader::open(path).map_err(wav)?;
    let spec = r.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(unusable("no channels or no sample rate".into()));
    }
    let frames = u64::from(r.duration());
    if frames > MAX_CLIP_SECS * u64::from(spec.sample_rate) {
        return Err(unusable(format!(
            "{:.1} s long; a burst lasts at most {MAX_CLIP_SECS} s",
            frames as f64 / f64::from(spec.sample_rate)
        )));
    }
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>().map_err(wav)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(wav)?
        }
    };
    let ch = usize::from(spec.channels);
    let mono: Vec<f32> = samples
        .chunks(ch)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    if mono.is_empty() {
        return Err(unusable("no samples".into()));
    }
    Ok(resample(&mono, spec.sample_rate, SAMPLE_RATE)
        .into_iter()
        .map(to_i16)
        .collect())
}

fn to_i16(x: f32) -> i16 {
    (x.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// Band-limited resampling (windowed sinc, 16 taps each side, cut-off below the lower
/// Nyquist frequency).
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    const TAPS: i64 = 16;
    let ratio = f64::from(from) / f64::from(to);
    let cutoff = (1.0 / ratio).min(1.0) * 0.95;
    let out_len = ((input.len() as f64) / ratio).floor() as usize;
    let sinc = |x: f64| {
        if x.abs() < 1e-9 {
            1.0
        } else {
            (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
        }
    };
    (0..out_len)
        .map(|n| {
            let t = n as f64 * ratio;
            let centre = t.floor() as i64;
            let mut acc = 0.0;
            for k in (centre - TAPS + 1)..=(centre + TAPS) {
                if k < 0 || k as usize >= input.len() {
                    continue;
                }
                let d = t - k as f64;
                // Hann window over the taps.
                let w = 0.5 + 0.5 * (std::f64::consts::PI * d / TAPS as f64).cos();
                acc += f64::from(input[k as usize]) * cutoff * sinc(cutoff * d) * w;
            }
            acc as f32
        })
        .collect()
}

/// Splits mono samples into 20 ms frames, the last padded with silence.
pub fn frames(samples: &[i16]) -> Vec<[i16; FRAME_SAMPLES]> {
    samples
        .chunks(FRAME_SAMPLES)
        .map(|c| {
            let mut f = [0i16; FRAME_SAMPLES];
            f[..c.len()].copy_from_slice(c);
            f
        })
        .collect()
}

fn as_u16(s: &[i16]) -> Vec<u16> {
    s.iter().map(|v| *v as u16).collect()
}

/// An Opus voice encoder: 16 kHz mono, 20 ms frames, [`BITRATE`].
pub struct Encoder(OpusEncoder);

impl Encoder {
    /// A new encoder.
    pub fn new() -> Result<Self, AudioError> {
        let mut e = OpusEncoder::new(
            Channels::Mono,
            opusic_c::SampleRate::Hz16000,
            Application::Voip,
        )
        .map_err(opus_err)?;
        e.set_bitrate(Bitrate::Value(BITRATE)).map_err(opus_err)?;
        Ok(Encoder(e))
    }

    /// Encodes one 20 ms frame.
    pub fn encode(&mut self, frame: &[i16; FRAME_SAMPLES]) -> Result<Vec<u8>, AudioError> {
        let mut out = vec![0u8; MAX_OPUS_FRAME];
        let n = self
            .0
            .encode_to_slice(&as_u16(frame), &mut out)
            .map_err(opus_err)?;
        out.truncate(n);
        Ok(out)
    }
}

/// An Opus voice decoder with packet loss concealment.
pub struct Decoder(OpusDecoder);

impl Decoder {
    /// A new decoder.
    pub fn new() -> Result<Self, AudioError> {
        Ok(Decoder(
            OpusDecoder::new(Channels::Mono, opusic_c::SampleRate::Hz16000).map_err(opus_err)?,
        ))
    }

    /// Decodes one frame; `None` conceals a lost one. A frame that does not decode (a
    /// member's bad Opus) is concealed too: a listener never stops on it.
    pub fn decode(&mut self, frame: Option<&[u8]>) -> Vec<i16> {
        let mut out = vec![0u16; FRAME_SAMPLES];
        let n = match frame.map(|f| self.0.decode_to_slice(f, &mut out, false)) {
            Some(Ok(n)) => Ok(n),
            _ => self.0.decode_to_slice(&[], &mut out, false),
        };
        let n = n.unwrap_or(0).min(FRAME_SAMPLES);
        let mut pcm: Vec<i16> = out.iter().map(|v| *v as i16).collect();
        // Always one frame's worth, so the timing of the file stays right.
        pcm[n..].fill(0);
        pcm
    }
}

/// A WAV file being written: 16 kHz mono 16-bit.
pub struct WavOut {
    w: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
    path: PathBuf,
    samples: u64,
}

impl WavOut {
    /// Creates (or replaces) `path`.
    pub fn create(path: &Path) -> Result<Self, AudioError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let w = hound::WavWriter::create(path, spec).map_err(|source| AudioError::Wav {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(WavOut {
            w,
            path: path.to_path_buf(),
            samples: 0,
        })
    }

    /// Appends samples.
    pub fn write(&mut self, pcm: &[i16]) -> Result<(), AudioError> {
        for s in pcm {
            self.w.write_sample(*s).map_err(|source| AudioError::Wav {
                path: self.path.clone(),
                source,
            })?;
        }
        self.samples += pcm.len() as u64;
        Ok(())
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Finishes the header; returns the file's duration in ms.
    pub fn finish(self) -> Result<u64, AudioError> {
        let ms = self.samples * 1000 / u64::from(SAMPLE_RATE);
        let path = self.path;
        self.w
            .finalize()
            .map_err(|source| AudioError::Wav { path, source })?;
        Ok(ms)
    }
}

/// The ALSA device `--mic` and `--play` use unless told otherwise.
pub const DEFAULT_DEVICE: &str = "default";

/// The ALSA buffer asked for (µs): what a writer may queue ahead of the device.
pub const SPEAKER_BUFFER_US: u64 = 200_000;

/// An ALSA PCM set up for voice: 16-bit, mono, [`SAMPLE_RATE`], interleaved, blocking.
struct Pcm {
    pcm: alsa::pcm::PCM,
    device: String,
}

impl Pcm {
    fn open(device: &str, dir: alsa::Direction) -> Result<Self, AudioError> {
        use alsa::pcm::{Access, Format, HwParams};
        let fail = |why: String| AudioError::Device {
            device: device.to_string(),
            why,
        };
        if device.is_empty() || device.contains('\0') {
            return Err(fail("not an ALSA device name".into()));
        }
        let what = match dir {
            alsa::Direction::Capture => "capture",
            alsa::Direction::Playback => "playback",
        };
        let setup = |e: alsa::Error| fail(format!("cannot set it up: {}", alsa_why(e)));
        let pcm = alsa::pcm::PCM::new(device, dir, false).map_err(|e| {
            if e.errno() == libc::ENOENT {
                let list = match dir {
                    alsa::Direction::Capture => "arecord -L",
                    alsa::Direction::Playback => "aplay -L",
                };
                fail(format!(
                    "cannot open it for {what}: no such ALSA device (`{list}` lists them)"
                ))
            } else {
                fail(format!("cannot open it for {what}: {}", alsa_why(e)))
            }
        })?;
        {
            let hw = HwParams::any(&pcm).map_err(setup)?;
            hw.set_access(Access::RWInterleaved).map_err(setup)?;
            hw.set_format(Format::s16()).map_err(|_| {
                fail("does not take 16-bit samples (try plug:NAME or default)".into())
            })?;
            hw.set_channels(1)
                .map_err(|_| fail("is not mono (try plug:NAME or default)".into()))?;
            hw.set_rate(SAMPLE_RATE, alsa::ValueOr::Nearest)
                .map_err(setup)?;
            let rate = hw.get_rate().map_err(setup)?;
            if rate != SAMPLE_RATE {
                return Err(fail(format!(
                    "runs at {rate} Hz, not {SAMPLE_RATE} (try plug:NAME or default)"
                )));
            }
            let frame = FRAME_SAMPLES as alsa::pcm::Frames;
            hw.set_period_size_near(frame, alsa::ValueOr::Nearest)
                .map_err(setup)?;
            let buffer = (SPEAKER_BUFFER_US * u64::from(SAMPLE_RATE) / 1_000_000) as i64;
            hw.set_buffer_size_near(buffer).map_err(setup)?;
            pcm.hw_params(&hw).map_err(setup)?;
        }
        if matches!(dir, alsa::Direction::Playback) {
            // Start as soon as one frame is in: the jitter buffer has already waited.
            let sw = pcm.sw_params_current().map_err(setup)?;
            sw.set_start_threshold(FRAME_SAMPLES as alsa::pcm::Frames)
                .map_err(setup)?;
            pcm.sw_params(&sw).map_err(setup)?;
        }
        Ok(Pcm {
            pcm,
            device: device.to_string(),
        })
    }

    /// After a failed read or write: an overrun, underrun or suspend is recovered from (up to
    /// three times per frame, counted in `tries`); anything else is the error.
    fn recover(&self, what: &str, e: alsa::Error, tries: &mut u32) -> Result<(), AudioError> {
        if *tries >= 3 {
            return Err(self.fail(what, e));
        }
        *tries += 1;
        self.pcm
            .try_recover(e, true)
            .map_err(|e| self.fail(what, e))
    }

    fn fail(&self, what: &str, e: alsa::Error) -> AudioError {
        AudioError::Device {
            device: self.device.clone(),
            why: format!("{what}: {}", alsa_why(e)),
        }
    }
}

/// An ALSA error as its errno text ("No such file or directory"), without the C function.
fn alsa_why(e: alsa::Error) -> String {
    std::io::Error::from_raw_os_error(e.errno()).to_string()
}

/// A microphone: 20 ms frames from an ALSA capture device.
pub struct Mic(Pcm);

impl Mic {
    /// Opens `device` (`default`, `plughw:1,0`, a name from `~/.asoundrc`, …). Nothing is
    /// read until [`Mic::read_frame`].
    pub fn open(device: &str) -> Result<Self, AudioError> {
        Pcm::open(device, alsa::Direction::Capture).map(Mic)
    }

    /// Blocks until the next 20 ms frame is in. An overrun (the reader fell behind) loses
    /// what the device dropped and goes on.
    pub fn read_frame(&mut self) -> Result<[i16; FRAME_SAMPLES], AudioError> {
        let io = self.0.pcm.io_i16().map_err(|e| self.0.fail("read", e))?;
        let mut frame = [0i16; FRAME_SAMPLES];
        let mut got = 0;
        let mut recoveries = 0;
        while got < FRAME_SAMPLES {
            match io.readi(&mut frame[got..]) {
                // Blocking reads do not return 0; a device that does is treated as ended
                // rather than read in a loop.
                Ok(0) => {
                    return Err(AudioError::Device {
                        device: self.0.device.clone(),
                        why: "the input ended".into(),
                    });
                }
                Ok(n) => got += n,
                Err(e) => self.0.recover("read", e, &mut recoveries)?,
            }
        }
        Ok(frame)
    }
}

/// Silence written ahead of a burst (and after an underrun): the device then holds this much
/// more than the frame being played, room for the scheduler's jitter, since the jitter buffer
/// hands over frames exactly on their 20 ms grid.
pub const SPEAKER_LEAD_US: u64 = 40_000;

/// [`SPEAKER_LEAD_US`] of silence.
const LEAD: [i16; (SPEAKER_LEAD_US * SAMPLE_RATE as u64 / 1_000_000) as usize] =
    [0; (SPEAKER_LEAD_US * SAMPLE_RATE as u64 / 1_000_000) as usize];

/// A speaker: PCM written to an ALSA playback device as it is decoded.
pub struct Speaker {
    pcm: Pcm,
    /// The next write starts a run of audio: put the lead in first.
    fresh: bool,
}

impl Speaker {
    /// Opens `device` for playback.
    pub fn open(device: &str) -> Result<Self, AudioError> {
        Pcm::open(device, alsa::Direction::Playback).map(|pcm| Speaker { pcm, fresh: true })
    }

    /// Plays samples; blocks while the device's buffer is full. An underrun (the talker's
    /// frames came late) restarts the device, with the lead again, and goes on.
    pub fn write(&mut self, pcm: &[i16]) -> Result<(), AudioError> {
        if std::mem::take(&mut self.fresh) {
            self.write_all(&LEAD)?;
        }
        self.write_all(pcm)
    }

    fn write_all(&mut self, pcm: &[i16]) -> Result<(), AudioError> {
        let io = self
            .pcm
            .pcm
            .io_i16()
            .map_err(|e| self.pcm.fail("write", e))?;
        let mut done = 0;
        let mut recoveries = 0;
        while done < pcm.len() {
            match io.writei(&pcm[done..]) {
                Ok(n) => done += n,
                Err(e) => {
                    self.pcm.recover("write", e, &mut recoveries)?;
                    // The lead goes in before the rest, best effort.
                    let _ = io.writei(&LEAD);
                }
            }
        }
        Ok(())
    }

    /// Lets what is buffered play out (the end of a burst), ready for the next one.
    pub fn drain(&mut self) -> Result<(), AudioError> {
        self.fresh = true;
        // Prepared but not started (less than a frame in, after an underrun): drain starts it
        // and plays it out, or just stops an empty one.
        if matches!(
            self.pcm.pcm.state(),
            alsa::pcm::State::Running | alsa::pcm::State::Prepared
        ) {
            self.pcm
                .pcm
                .drain()
                .map_err(|e| self.pcm.fail("drain", e))?;
        }
        self.pcm
            .pcm
            .prepare()
            .map_err(|e| self.pcm.fail("prepare", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, rate: u32, secs: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn resampling_keeps_length_and_pitch_and_removes_what_cannot_be_kept() {
        let x = tone(440.0, 22_050, 1.0);
        let y = resample(&x, 22_050, 16_000);
        assert!((y.len() as i64 - 16_000).abs() <= 1, "{}", y.len());
        // Zero crossings of a 440 Hz tone: 880 a second.
        let zc = y
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        assert!((870..=890).contains(&zc), "{zc}");
        // A 10 kHz tone is above 8 kHz, the Nyquist frequency of the output: filtered out.
        let hi = resample(&tone(10_000.0, 22_050, 1.0), 22_050, 16_000);
        let rms = (hi[100..hi.len() - 100].iter().map(|v| v * v).sum::<f32>()
            / (hi.len() - 200) as f32)
            .sqrt();
        assert!(rms < 0.05, "{rms}");
    }

    #[test]
    fn opus_round_trip_keeps_a_tone_and_conceals_a_lost_frame() {
        let pcm: Vec<i16> = tone(300.0, 16_000, 0.4).into_iter().map(to_i16).collect();
        let mut enc = Encoder::new().unwrap();
        let mut dec = Decoder::new().unwrap();
        let mut out = vec![];
        for (i, f) in frames(&pcm).iter().enumerate() {
            let pkt = enc.encode(f).unwrap();
            assert!(!pkt.is_empty() && pkt.len() < 200, "{}", pkt.len());
            out.extend(if i == 10 {
                dec.decode(None)
            } else {
                dec.decode(Some(&pkt))
            });
        }
        assert_eq!(out.len(), pcm.len());
        let energy =
            |s: &[i16]| s.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / s.len() as f64;
        // The decoded tone keeps most of its energy, the concealed frame included.
        let e_in = energy(&pcm[1600..]);
        let e_out = energy(&out[1600..]);
        assert!(e_out > e_in * 0.5 && e_out < e_in * 2.0, "{e_in} {e_out}");
        let concealed = energy(&out[10 * FRAME_SAMPLES..11 * FRAME_SAMPLES]);
        assert!(concealed > e_in * 0.1, "{concealed}");
        // Garbage is concealed, not an error.
        assert_eq!(dec.decode(Some(&[0xff; 7])).len(), FRAME_SAMPLES);
    }

    #[test]
    fn wav_round_trip_and_bad_files() {
        let dir = std::env::temp_dir().join(format!("ptt-audio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.wav");
        let mut w = WavOut::create(&p).unwrap();
        w.write(&vec![1000i16; 16_000]).unwrap();
        assert_eq!(w.finish().unwrap(), 1000);
        assert_eq!(read_wav(&p).unwrap().len(), 16_000);
        let bad = dir.join("bad.wav");
        std::fs::write(&bad, b"RIFF....WAVEnot really").unwrap();
        let e = read_wav(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.wav"), "{e}");
        assert!(read_wav(&dir.join("missing.wav")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_audio_device_is_a_clear_error() {
        let e = Mic::open("ptt-node-no-such-device")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("audio device ptt-node-no-such-device: cannot open it for capture"),
            "{e}"
        );
        let e = Speaker::open("").err().unwrap().to_string();
        assert!(e.contains("not an ALSA device name"), "{e}");
    }
}
