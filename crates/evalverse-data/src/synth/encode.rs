//! Writing the synthetic clips: H.264 (libx264) video and AAC audio muxed into MP4, and PNG
//! stills, through FFmpeg (video-rs' ffmpeg-next). Files are written to a temporary name and
//! renamed, so an interrupted run never leaves a half-written clip behind.

use std::path::Path;

use video_rs::ffmpeg::{
    self, codec, encoder, format, software::scaling, util::frame, ChannelLayout, Dictionary,
    Packet, Rational,
};

use crate::error::{DataError, Result};

fn rgb_frame(rgb: &[u8], w: u32, h: u32) -> frame::Video {
    let mut f = frame::Video::new(format::Pixel::RGB24, w, h);
    let stride = f.stride(0);
    let row = w as usize * 3;
    let data = f.data_mut(0);
    for y in 0..h as usize {
        data[y * stride..y * stride + row].copy_from_slice(&rgb[y * row..(y + 1) * row]);
    }
    f
}

fn tmp_name(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

/// Encode RGB24 frames (and optional mono f32 audio at `audio_rate`) into an MP4 at `path`.
pub fn write_mp4(
    path: &Path,
    width: u32,
    height: u32,
    fps: u32,
    frames: &[Vec<u8>],
    audio: Option<(&[f32], u32)>,
) -> Result<()> {
    crate::media::init();
    let tmp = tmp_name(path);
    let res = encode_mp4(&tmp, width, height, fps, frames, audio);
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::encode(path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

fn encode_mp4(
    path: &Path,
    width: u32,
    height: u32,
    fps: u32,
    frames: &[Vec<u8>],
    audio: Option<(&[f32], u32)>,
) -> std::result::Result<(), String> {
    fn e(m: &'static str) -> impl Fn(ffmpeg::Error) -> String {
        move |err| format!("{m}: {err}")
    }
    let mut octx = format::output_as(path, "mp4").map_err(e("open output"))?;
    let global = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);

    let vcodec = encoder::find_by_name("libx264").ok_or("FFmpeg was built without libx264")?;
    let v_index = octx
        .add_stream(vcodec)
        .map_err(e("add video stream"))?
        .index();
    let mut venc = codec::context::Context::new_with_codec(vcodec)
        .encoder()
        .video()
        .map_err(e("video encoder"))?;
    venc.set_width(width);
    venc.set_height(height);
    venc.set_format(format::Pixel::YUV420P);
    venc.set_time_base(Rational(1, fps as i32));
    venc.set_frame_rate(Some(Rational(fps as i32, 1)));
    if global {
        venc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut opts = Dictionary::new();
    opts.set("preset", "medium");
    opts.set("crf", "26");
    // One thread and no assembly: x264's SIMD routines read past the end of the input planes
    // (uninitialised heap), so with asm on, the second clip encoded in a process differed from
    // run to run (measured). Without it a seed gives the same bytes; the frames are tiny.
    opts.set("threads", "1");
    opts.set("x264-params", "no-asm=1");
    let mut venc = venc.open_with(opts).map_err(e("open libx264"))?;
    octx.stream_mut(v_index)
        .ok_or("video stream vanished")?
        .set_parameters(&venc);

    let mut aenc_state = None;
    if let Some((samples, rate)) = audio {
        let acodec = encoder::find(codec::Id::AAC).ok_or("FFmpeg has no AAC encoder")?;
        let a_index = octx
            .add_stream(acodec)
            .map_err(e("add audio stream"))?
            .index();
        let mut aenc = codec::context::Context::new_with_codec(acodec)
            .encoder()
            .audio()
            .map_err(e("audio encoder"))?;
        aenc.set_rate(rate as i32);
        aenc.set_channel_layout(ChannelLayout::MONO);
        aenc.set_format(format::Sample::F32(format::sample::Type::Planar));
        aenc.set_bit_rate(32_000);
        aenc.set_time_base(Rational(1, rate as i32));
        if global {
            aenc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let aenc = aenc.open().map_err(e("open AAC"))?;
        octx.stream_mut(a_index)
            .ok_or("audio stream vanished")?
            .set_parameters(&aenc);
        aenc_state = Some((aenc, a_index, samples, rate, 0usize));
    }
    octx.write_header().map_err(e("write header"))?;
    let v_tb = octx
        .stream(v_index)
        .ok_or("video stream vanished")?
        .time_base();

    let mut scaler = scaling::Context::get(
        format::Pixel::RGB24,
        width,
        height,
        format::Pixel::YUV420P,
        width,
        height,
        scaling::Flags::BILINEAR,
    )
    .map_err(e("scaler"))?;

    fn drain_video(
        enc: &mut encoder::Video,
        octx: &mut format::context::Output,
        index: usize,
        from: Rational,
        to: Rational,
    ) -> std::result::Result<(), String> {
        let mut p = Packet::empty();
        while enc.receive_packet(&mut p).is_ok() {
            p.set_stream(index);
            // One frame per packet. Without a duration the MP4 muxer gives the last sample none:
            // the stream then lasts (n-1)/fps and avg_frame_rate reads n*fps/(n-1) (432/35 for
            // 36 frames at 12), which is the rate qwen-vl-utils' readers sample by.
            p.set_duration(1);
            p.rescale_ts(from, to);
            p.write_interleaved(octx)
                .map_err(|e| format!("write video packet: {e}"))?;
        }
        Ok(())
    }
    fn drain_audio(
        enc: &mut encoder::Audio,
        octx: &mut format::context::Output,
        index: usize,
        from: Rational,
    ) -> std::result::Result<(), String> {
        let to = octx
            .stream(index)
            .ok_or("audio stream vanished")?
            .time_base();
        let mut p = Packet::empty();
        while enc.receive_packet(&mut p).is_ok() {
            p.set_stream(index);
            p.rescale_ts(from, to);
            p.write_interleaved(octx)
                .map_err(|e| format!("write audio packet: {e}"))?;
        }
        Ok(())
    }

    for (i, rgb) in frames.iter().enumerate() {
        let src = rgb_frame(rgb, width, height);
        let mut yuv = frame::Video::empty();
        scaler.run(&src, &mut yuv).map_err(e("convert to YUV"))?;
        yuv.set_pts(Some(i as i64));
        venc.send_frame(&yuv).map_err(e("encode video"))?;
        drain_video(&mut venc, &mut octx, v_index, Rational(1, fps as i32), v_tb)?;
        // Keep audio roughly in step with video so the muxer interleaves without buffering it all.
        if let Some((aenc, a_index, samples, rate, pos)) = aenc_state.as_mut() {
            let until = (((i + 1) as f64 / fps as f64) * *rate as f64) as usize;
            let frame_size = (aenc.frame_size() as usize).max(1);
            while *pos + frame_size <= until.min(samples.len()) {
                send_audio(aenc, &samples[*pos..*pos + frame_size], *rate, *pos)?;
                *pos += frame_size;
                drain_audio(aenc, &mut octx, *a_index, Rational(1, *rate as i32))?;
            }
        }
    }
    venc.send_eof().map_err(e("flush video"))?;
    drain_video(&mut venc, &mut octx, v_index, Rational(1, fps as i32), v_tb)?;
    if let Some((mut aenc, a_index, samples, rate, mut pos)) = aenc_state {
        let frame_size = (aenc.frame_size() as usize).max(1);
        while pos < samples.len() {
            let end = (pos + frame_size).min(samples.len());
            send_audio(&mut aenc, &samples[pos..end], rate, pos)?;
            pos = end;
            drain_audio(&mut aenc, &mut octx, a_index, Rational(1, rate as i32))?;
        }
        aenc.send_eof().map_err(e("flush audio"))?;
        drain_audio(&mut aenc, &mut octx, a_index, Rational(1, rate as i32))?;
    }
    octx.write_trailer().map_err(e("write trailer"))?;
    Ok(())
}

fn send_audio(
    enc: &mut encoder::Audio,
    chunk: &[f32],
    rate: u32,
    pts: usize,
) -> std::result::Result<(), String> {
    let mut f = frame::Audio::new(
        format::Sample::F32(format::sample::Type::Planar),
        chunk.len(),
        ChannelLayout::MONO,
    );
    f.set_rate(rate);
    f.plane_mut::<f32>(0)[..chunk.len()].copy_from_slice(chunk);
    f.set_pts(Some(pts as i64));
    enc.send_frame(&f).map_err(|e| format!("encode audio: {e}"))
}

/// Encode one RGB24 image as PNG (FFmpeg's png encoder gives a complete file per packet).
pub fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    crate::media::init();
    let bytes = (|| -> std::result::Result<Vec<u8>, String> {
        let c = encoder::find(codec::Id::PNG).ok_or("FFmpeg has no PNG encoder")?;
        let mut enc = codec::context::Context::new_with_codec(c)
            .encoder()
            .video()
            .map_err(|e| e.to_string())?;
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(format::Pixel::RGB24);
        enc.set_time_base(Rational(1, 1));
        let mut enc = enc.open().map_err(|e| e.to_string())?;
        enc.send_frame(&rgb_frame(rgb, width, height))
            .map_err(|e| e.to_string())?;
        enc.send_eof().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut p = Packet::empty();
        while enc.receive_packet(&mut p).is_ok() {
            out.extend_from_slice(p.data().unwrap_or_default());
        }
        Ok(out)
    })()
    .map_err(|m| DataError::encode(path, m))?;
    crate::error::write_atomic(path, &bytes)
}
