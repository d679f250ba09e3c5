//! Whole-file media checks and audio decoding with FFmpeg (through video-rs' ffmpeg-next):
//! `probe` decodes every video frame and audio sample (the honest test of a corrupt or truncated
//! file); `decode_audio_mono_16k` gives mono f32 samples at 16 kHz (the Whisper / speech-model rate).

use std::path::Path;
use std::sync::Once;

use serde::Serialize;
#[cfg(feature = "ffmpeg")]
use video_rs::ffmpeg;

use crate::error::{DataError, Result};

/// Sample rate audio is decoded to.
pub const AUDIO_RATE: u32 = 16_000;

static INIT: Once = Once::new();

/// Initialise FFmpeg once and keep its own log quiet (errors reach the user through ours).
pub fn init() {
    INIT.call_once(|| {
        #[cfg(feature = "ffmpeg")]
        {
            let _ = video_rs::init();
            ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
        }
    });
}

/// Why a decode or an encode fails in a build without the `ffmpeg` feature.
pub const NO_FFMPEG: &str = "this evalverse was built without FFmpeg (cargo feature `ffmpeg`, \
     on by default); decode on a machine with a default build, or read the clip from a warm \
     decode cache (data.cache_dir)";

/// The error of a decode in a build without the `ffmpeg` feature.
pub fn no_ffmpeg(path: &Path) -> DataError {
    DataError::decode(path, NO_FFMPEG)
}

/// What a full decode of a file found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaInfo {
    pub width: usize,
    pub height: usize,
    pub fps: f64,
    pub frames: usize,
    pub duration_s: f64,
    /// Seconds of audio decoded, when the file has an audio stream.
    pub audio_s: Option<f64>,
}

/// Decode the whole file (video and audio); any error names the file.
pub fn probe(path: &Path) -> Result<MediaInfo> {
    let decoded = crate::video::decode_frames(path, |_| false)?;
    let audio = decode_audio_mono_16k(path)?;
    Ok(MediaInfo {
        width: decoded.width,
        height: decoded.height,
        fps: decoded.fps,
        frames: decoded.total_frames,
        duration_s: if decoded.fps > 0.0 {
            decoded.total_frames as f64 / decoded.fps
        } else {
            0.0
        },
        audio_s: audio.map(|a| a.len() as f64 / AUDIO_RATE as f64),
    })
}

/// Decode the best audio stream to mono f32 at 16 kHz: an error without FFmpeg.
#[cfg(not(feature = "ffmpeg"))]
pub fn decode_audio_mono_16k(path: &Path) -> Result<Option<Vec<f32>>> {
    Err(no_ffmpeg(path))
}

/// Decode the best audio stream to mono f32 at 16 kHz. `Ok(None)` when the file has no audio.
#[cfg(feature = "ffmpeg")]
pub fn decode_audio_mono_16k(path: &Path) -> Result<Option<Vec<f32>>> {
    if crate::frames::is_frame_list(path) {
        return Ok(None);
    }
    init();
    let err = |m: String| DataError::decode(path, format!("audio: {m}"));
    let mut input = ffmpeg::format::input(path).map_err(|e| DataError::decode(path, e))?;
    let Some(stream) = input.streams().best(ffmpeg::media::Type::Audio) else {
        return Ok(None);
    };
    let index = stream.index();
    let ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| err(e.to_string()))?;
    let mut decoder = ctx.decoder().audio().map_err(|e| err(e.to_string()))?;
    let mut resampler: Option<ffmpeg::software::resampling::Context> = None;
    let mut out = Vec::new();
    let mut frame = ffmpeg::frame::Audio::empty();
    let mut pull = |decoder: &mut ffmpeg::decoder::Audio,
                    resampler: &mut Option<ffmpeg::software::resampling::Context>,
                    out: &mut Vec<f32>|
     -> Result<()> {
        while decoder.receive_frame(&mut frame).is_ok() {
            if frame.channel_layout().is_empty() || frame.channel_layout().channels() == 0 {
                frame.set_channel_layout(ffmpeg::ChannelLayout::default(frame.channels() as i32));
            }
            if resampler.is_none() {
                *resampler = Some(
                    ffmpeg::software::resampling::Context::get(
                        frame.format(),
                        frame.channel_layout(),
                        frame.rate(),
                        ffmpeg::format::Sample::F32(ffmpeg::format::sample::Type::Packed),
                        ffmpeg::ChannelLayout::MONO,
                        AUDIO_RATE,
                    )
                    .map_err(|e| err(e.to_string()))?,
                );
            }
            let rs = resampler.as_mut().expect("set above");
            let mut resampled = ffmpeg::frame::Audio::empty();
            rs.run(&frame, &mut resampled)
                .map_err(|e| err(e.to_string()))?;
            append_mono(&resampled, out);
        }
        Ok(())
    };
    for (s, packet) in input.packets() {
        if s.index() != index {
            continue;
        }
        decoder
            .send_packet(&packet)
            .map_err(|e| err(e.to_string()))?;
        pull(&mut decoder, &mut resampler, &mut out)?;
    }
    decoder.send_eof().map_err(|e| err(e.to_string()))?;
    pull(&mut decoder, &mut resampler, &mut out)?;
    if let Some(rs) = resampler.as_mut() {
        // Drain the resampler's delay line.
        loop {
            let mut tail = ffmpeg::frame::Audio::empty();
            match rs.flush(&mut tail) {
                Ok(_) if tail.samples() > 0 => append_mono(&tail, &mut out),
                _ => break,
            }
        }
    }
    if out.iter().any(|v| !v.is_finite()) {
        return Err(err("decoded samples are not finite".into()));
    }
    Ok(Some(out))
}

#[cfg(feature = "ffmpeg")]
fn append_mono(frame: &ffmpeg::frame::Audio, out: &mut Vec<f32>) {
    let n = frame.samples();
    if n == 0 {
        return;
    }
    let bytes = &frame.data(0)[..n * 4];
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
    );
}
