//! Position ids for the Qwen-VL multimodal RoPE (transformers `get_rope_index` of
//! `Qwen2VLModel`, `Qwen2_5_VLModel`, `Qwen3VLModel`). Text tokens advance all three axes
//! (t, h, w) together; the tokens of an image or video take (t, h, w) grid positions offset by the
//! text before them, and the text after a medium continues after its largest position. The time
//! index of temporal patch i differs by family: i (Qwen2-VL), seconds
//! `floor(i * second_per_grid * tokens_per_second)` (Qwen2.5-VL video), and for Qwen3-VL video
//! each temporal patch is a medium of its own (t = 1, index 0) whose time is carried by the
//! timestamp text before it. Padded positions get 1 (as transformers).

use crate::config::{Family, QwenVlConfig};

/// An image or video in the prompt, in order of appearance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MediaGrid {
    pub is_video: bool,
    /// (t, h, w) in patches.
    pub grid_thw: [usize; 3],
    /// Seconds per temporal patch (0 for images).
    pub second_per_grid: f64,
}

/// M-RoPE position ids [3][len] for one sequence, and the rope delta (max position + 1 - len)
/// used to continue positions during generation. `mask[i]` false marks padding.
/// `media` must list the media of this sequence in order; errors if the tokens disagree.
pub fn rope_index(
    ids: &[u32],
    mask: &[bool],
    media: &[MediaGrid],
    cfg: &QwenVlConfig,
) -> Result<([Vec<i64>; 3], i64), String> {
    let sms = cfg.vision.spatial_merge_size;
    // Qwen3-VL: a video of T temporal patches is T one-patch media, each in its own
    // <|vision_start|> .. <|vision_end|> block after its timestamp.
    let split: Vec<MediaGrid>;
    let media = if cfg.family == Family::Qwen3Vl {
        split = media
            .iter()
            .flat_map(|m| {
                let [t, h, w] = m.grid_thw;
                let frames = if m.is_video { t } else { 1 };
                let grid = if m.is_video { [1, h, w] } else { m.grid_thw };
                std::iter::repeat_n(
                    MediaGrid {
                        grid_thw: grid,
                        ..*m
                    },
                    frames,
                )
            })
            .collect();
        &split[..]
    } else {
        media
    };
    let real: Vec<(usize, u32)> = ids
        .iter()
        .copied()
        .enumerate()
        .filter(|(i, _)| mask[*i])
        .collect();
    let mut pos: [Vec<i64>; 3] = [vec![1; ids.len()], vec![1; ids.len()], vec![1; ids.len()]];
    let mut out: [Vec<i64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut next = 0i64; // first free position
    let mut k = 0usize; // index into `real`
    let mut media_iter = media.iter();
    while k < real.len() {
        let (_, tok) = real[k];
        let is_media = tok == cfg.image_token_id || tok == cfg.video_token_id;
        if !is_media {
            for axis in &mut out {
                axis.push(next);
            }
            next += 1;
            k += 1;
            continue;
        }
        let m = media_iter
            .next()
            .ok_or_else(|| format!("token {k} starts a vision placeholder but no media is left"))?;
        let want = if m.is_video {
            cfg.video_token_id
        } else {
            cfg.image_token_id
        };
        if tok != want {
            return Err(format!(
                "placeholder at token {k} is {} but the next medium is {}",
                tok,
                if m.is_video { "a video" } else { "an image" }
            ));
        }
        let [t, h, w] = m.grid_thw;
        let (lh, lw) = (h / sms, w / sms);
        let n = t * lh * lw;
        if k + n > real.len() || real[k..k + n].iter().any(|&(_, x)| x != want) {
            return Err(format!(
                "expected {n} placeholder tokens for grid {:?} at token {k}",
                m.grid_thw
            ));
        }
        let scale = match cfg.family {
            Family::Qwen2_5Vl if m.is_video => m.second_per_grid * cfg.vision.tokens_per_second,
            Family::Qwen2_5Vl => 0.0,
            Family::Qwen2Vl | Family::Qwen3Vl => 1.0,
        };
        for ti in 0..t {
            let tt = (ti as f64 * scale).floor() as i64;
            for y in 0..lh {
                for x in 0..lw {
                    out[0].push(next + tt);
                    out[1].push(next + y as i64);
                    out[2].push(next + x as i64);
                }
            }
        }
        // Text after the medium continues after the largest position the medium used.
        next = out
            .iter()
            .flat_map(|a| a[a.len() - n..].iter().copied())
            .max()
            .unwrap_or(next)
            + 1;
        k += n;
    }
    if media_iter.next().is_some() {
        return Err("more media given than placeholders in the sequence".into());
    }
    for (j, &(i, _)) in real.iter().enumerate() {
        for a in 0..3 {
            pos[a][i] = out[a][j];
        }
    }
    let max = out
        .iter()
        .flat_map(|a| a.iter().copied())
        .max()
        .unwrap_or(-1);
    Ok((pos, max + 1 - ids.len() as i64))
}
