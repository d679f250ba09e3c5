//! Collation: token sequences and their clips into one left-padded model batch. Training (with
//! label masks and, for a frozen vision tower, precomputed vision tokens) and judging (prompts
//! with one clip, or two for an A/B pair) build every batch here.

use burn::tensor::{Tensor, TensorData};
use evalverse_data::cache::CachedClip;
use evalverse_model::position::MediaGrid;
use evalverse_model::{Batch, ModelBackend};

/// One row of a batch: its token ids, the label mask (training; same length as `ids`) and the
/// clips its video placeholders stand for, in prompt order.
pub struct Row<'a, B: ModelBackend> {
    pub ids: &'a [u32],
    pub labels: Option<&'a [bool]>,
    pub clips: Vec<&'a CachedClip>,
    /// The clips' vision-tower outputs, when computed once (frozen tower): used instead of
    /// the pixels, one tensor per clip.
    pub vision: Option<Vec<Tensor<B, 2>>>,
}

/// Left-pad `rows` with `pad` into a batch; returns it with the left-padded label masks (all
/// false for rows without labels). Either every row carries precomputed vision tokens or none.
pub fn collate<B: ModelBackend>(
    rows: Vec<Row<'_, B>>,
    pad: u32,
    device: &B::Device,
) -> (Batch<B>, Vec<Vec<bool>>) {
    let len = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    let precomputed = rows.iter().all(|r| r.vision.is_some()) && !rows.is_empty();
    let (mut ids, mut mask, mut labels, mut media) = (vec![], vec![], vec![], vec![]);
    let (mut pixels, mut n_rows, mut embeds) = (Vec::<f32>::new(), 0usize, vec![]);
    for r in rows {
        let pad_n = len - r.ids.len();
        ids.push(
            std::iter::repeat_n(pad, pad_n)
                .chain(r.ids.iter().copied())
                .collect(),
        );
        mask.push(
            std::iter::repeat_n(false, pad_n)
                .chain(std::iter::repeat_n(true, r.ids.len()))
                .collect(),
        );
        let lab: Vec<bool> = match r.labels {
            Some(l) => std::iter::repeat_n(false, pad_n)
                .chain(l.iter().copied())
                .collect(),
            None => vec![false; len],
        };
        labels.push(lab);
        media.push(
            r.clips
                .iter()
                .map(|c| MediaGrid {
                    is_video: true,
                    grid_thw: c.vision.grid_thw,
                    second_per_grid: c.vision.second_per_grid,
                })
                .collect(),
        );
        match r.vision {
            Some(v) if precomputed => embeds.extend(v),
            _ => {
                for c in &r.clips {
                    pixels.extend_from_slice(&c.vision.pixel_values);
                    n_rows += c.vision.grid_thw.iter().product::<usize>();
                }
            }
        }
    }
    let (pixel_values, vision_embeds) = if precomputed {
        (None, Some(Tensor::cat(embeds, 0)))
    } else {
        let row_len = pixels.len() / n_rows.max(1);
        (
            Some(Tensor::<B, 2>::from_data(
                TensorData::new(pixels, [n_rows, row_len]),
                device,
            )),
            None,
        )
    };
    (
        Batch {
            ids,
            mask,
            pixel_values,
            media,
            vision_embeds,
        },
        labels,
    )
}

/// A judging batch of prompts (no labels), each row with its clips' pixels.
pub fn prompts<B: ModelBackend>(
    seqs: &[Vec<u32>],
    clips: &[Vec<&CachedClip>],
    pad: u32,
    device: &B::Device,
) -> Batch<B> {
    let rows = seqs
        .iter()
        .zip(clips)
        .map(|(s, c)| Row {
            ids: s,
            labels: None,
            clips: c.clone(),
            vision: None,
        })
        .collect();
    collate(rows, pad, device).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use evalverse_data::video::VisionInput;

    fn clip(t: usize, fill: f32) -> CachedClip {
        let grid = [t, 2, 2];
        let rows: usize = grid.iter().product();
        CachedClip {
            vision: VisionInput {
                pixel_values: vec![fill; rows * 3],
                grid_thw: grid,
                row_len: 3,
                second_per_grid: 1.0,
                frame_indices: vec![],
                video_fps: 0.0,
            },
            audio: None,
        }
    }

    #[test]
    fn rows_are_left_padded_and_pixels_follow_prompt_order() {
        let (a, b) = (clip(1, 1.0), clip(2, 2.0));
        let (s1, s2) = (vec![7u32, 8, 9], vec![5u32]);
        let l1 = [false, true, true];
        let (batch, labels) = collate::<evalverse_model::Cpu>(
            vec![
                Row {
                    ids: &s1,
                    labels: Some(&l1),
                    clips: vec![&a],
                    vision: None,
                },
                Row {
                    ids: &s2,
                    labels: None,
                    clips: vec![&b, &a],
                    vision: None,
                },
            ],
            0,
            &Default::default(),
        );
        assert_eq!(batch.ids, vec![vec![7, 8, 9], vec![0, 0, 5]]);
        assert_eq!(batch.mask[1], vec![false, false, true]);
        assert_eq!(labels, vec![vec![false, true, true], vec![false; 3]]);
        let px = batch.pixel_values.unwrap();
        assert_eq!(px.dims(), [4 + 8 + 4, 3]);
        let v: Vec<f32> = px.into_data().to_vec().unwrap();
        assert_eq!((v[0], v[4 * 3], v[12 * 3]), (1.0, 2.0, 1.0));
        assert_eq!(batch.media[1].len(), 2);
        assert_eq!(batch.media[1][0].grid_thw, [2, 2, 2]);
    }
}
