//! Procedural rendering of a synthetic cinematic clip: a graded sky and ground with parallax
//! midground shapes, a textured ground, an optional character (body, head, eyes, mouth) lit by a
//! key light, a lamp that flashes once, and the generator's defects applied as measurable
//! properties (exposure, blur, shake, placement, cast, flicker, drift, texture boil, cuts ...).
//! Audio: speech-like voiced buzz whose envelope drives the mouth, ambience, a click on the
//! flash, hiss; the whole track delayed by the clip's sync offset.

use super::spec::{ClipSpec, GroupSpec, Mood, MOODS};
use crate::rng::Rng;

pub const AUDIO_RATE: u32 = 16_000;

fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Hash-based value noise in [0, 1), stable for a given seed.
fn hash2(x: i32, y: i32, seed: u32) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x27d4_eb2d)
        ^ (y as u32).wrapping_mul(0x1656_67b1)
        ^ seed.wrapping_mul(0x9e37_79b9);
    h ^= h >> 15;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    (h & 0xffff) as f32 / 65536.0
}

fn value_noise(x: f32, y: f32, seed: u32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let (ix, iy) = (x0 as i32, y0 as i32);
    let a = hash2(ix, iy, seed) + (hash2(ix + 1, iy, seed) - hash2(ix, iy, seed)) * sx;
    let b = hash2(ix, iy + 1, seed) + (hash2(ix + 1, iy + 1, seed) - hash2(ix, iy + 1, seed)) * sx;
    a + (b - a) * sy
}

/// Smoothed syllable envelope of speech in [0, 1] at time t.
fn speech_envelope(t: f64, syllables: &[f64]) -> f64 {
    syllables
        .iter()
        .map(|&s| {
            let x = (t - s) / 0.09;
            if x.abs() < 1.0 {
                0.5 * (1.0 + (std::f64::consts::PI * x).cos())
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
}

/// Per-shot camera and continuity state.
#[derive(Debug, Clone, Copy)]
struct ShotLook {
    zoom: f32,
    cam_x: f32,
    hue_shift: f32,
    palette_shift: f32,
    facing: f32,
}

/// Everything rendered for one clip.
pub struct Rendered {
    pub frames: Vec<Vec<u8>>,
    pub audio: Option<Vec<f32>>,
    /// The character's canonical look (R2V reference), when the group has a character.
    pub reference: Option<Vec<u8>>,
}

pub fn render(clip: &ClipSpec, group: &GroupSpec, w: usize, h: usize, fps: u32) -> Rendered {
    let d = &clip.defects;
    let mut rng = Rng::new(clip.seed);
    let n_frames = (group.duration_s * fps as f64).round() as usize;
    // Mood mismatch: the grade drifts toward the opposite mood's palette.
    let opposite = match group.mood {
        Mood::Tense => Mood::Joyful,
        Mood::Joyful => Mood::Tense,
        Mood::Warm => Mood::Melancholic,
        Mood::Melancholic => Mood::Warm,
    };
    let base = group.mood.palette();
    let other = opposite.palette();
    let pal: Vec<[f32; 3]> = (0..3)
        .map(|i| mix(base[i], other[i], d.mood_mismatch as f32))
        .collect();
    let cast_hue = rng.range(0.0, 360.0) as f32;
    let cast = hsv(cast_hue, 1.0, 1.0);
    let tex_seed = (clip.seed & 0xffff_ffff) as u32;
    // Midground silhouettes (trees / buildings) at world positions, with parallax.
    let shapes: Vec<(f32, f32, f32)> = (0..6)
        .map(|_| {
            (
                rng.range(-0.3, 1.5) as f32,
                rng.range(0.03, 0.09) as f32,
                rng.range(0.1, 0.3) as f32,
            )
        })
        .collect();
    let looks: Vec<ShotLook> = clip
        .shots
        .iter()
        .enumerate()
        .map(|(k, _)| {
            let kf = k as f32;
            let zooms = [0.8f32, 1.05, 1.35];
            let broke = k > 0 && d.continuity > 0.0;
            ShotLook {
                zoom: zooms[k % 3],
                cam_x: 0.08 * kf,
                hue_shift: if broke {
                    (d.continuity as f32) * 120.0 * kf
                } else {
                    0.0
                },
                palette_shift: if broke {
                    d.continuity as f32 * 0.5
                } else {
                    0.0
                },
                facing: if broke && d.continuity > 0.5 && k % 2 == 1 {
                    -1.0
                } else {
                    1.0
                },
            }
        })
        .collect();
    // Subject placement: on the left third, pushed toward (and past) the edge by the defect.
    let base_x = 1.0 / 3.0 - 0.42 * d.placement as f32;
    let size_dir = if rng.chance(0.5) { 1.0 } else { -1.0 };
    let subject_h = (0.5 * (1.0 + 0.8 * size_dir * d.size as f32)).clamp(0.12, 0.95);
    // Stutter: frames where the subject holds or jumps (jerk).
    let jerks: Vec<bool> = (0..n_frames).map(|_| rng.chance(0.35 * d.jerk)).collect();
    let syllables: Vec<f64> = {
        let mut t = 0.35;
        let mut v = Vec::new();
        while t < group.duration_s - 0.35 {
            v.push(t);
            t += rng.range(0.17, 0.33);
        }
        v
    };
    let shake_px: Vec<(f32, f32)> = (0..n_frames)
        .map(|_| {
            (
                (rng.normal() * 0.035 * d.shake) as f32,
                (rng.normal() * 0.025 * d.shake) as f32,
            )
        })
        .collect();
    let flicker: Vec<f32> = (0..n_frames)
        .map(|_| (1.0 + 0.22 * d.flicker * rng.normal()) as f32)
        .collect();
    let exposure_gain = 2f32.powf((d.exposure * d.exposure_sign * 1.6) as f32);
    let blur_radius = (d.blur * 4.0).round() as usize;
    let expr_phase = rng.range(0.0, std::f64::consts::TAU) as f32;

    let draw = |t: f64, fi: usize, look: ShotLook, canonical: bool| -> Vec<u8> {
        let tf = t as f32;
        let prog = if canonical {
            0.5
        } else {
            (t / group.duration_s) as f32 * (1.0 - d.prog_flat as f32)
        };
        let (sx, sy) = if canonical { (0.0, 0.0) } else { shake_px[fi] };
        let pan = 0.04 * tf + look.cam_x;
        let hue_now = group.costume_hue
            + if canonical {
                0.0
            } else {
                look.hue_shift + (d.drift as f32) * 110.0 * tf / group.duration_s as f32
            };
        let costume = hsv(hue_now, 0.75, 0.85);
        let skin = [0.87f32, 0.68, 0.55];
        let pal_sky_top = mix(pal[0], pal[2], look.palette_shift);
        let horizon_v = 0.62f32;
        let tilt = if canonical { 0.0 } else { 0.5 * d.scene as f32 };
        let scene_swap = if canonical { 0.0 } else { d.scene as f32 * 0.8 };
        // Subject motion: gentle sway, stutters on jerk frames.
        let mut sway = 0.05 * (1.3 * tf).sin();
        if !canonical && jerks[fi] {
            sway += 0.08 * if fi.is_multiple_of(2) { 1.0 } else { -1.0 };
        }
        let zoom = if canonical { 1.0 } else { look.zoom };
        let sh = subject_h * zoom;
        let cx = if canonical {
            0.5
        } else {
            base_x + sway - 0.3 * pan + sx
        };
        let ground_v = horizon_v + 0.25 * zoom.min(1.3);
        let head_r = 0.13 * sh;
        let body_ry = 0.33 * sh;
        let body_rx = 0.16 * sh * (h as f32 / w as f32) * 1.6;
        let body_cy = ground_v - body_ry + sy;
        let head_cy = body_cy - body_ry - head_r * 0.8;
        let mouth_open = if group.speech {
            speech_envelope(t, &syllables) as f32
        } else {
            0.4 + 0.4 * (1.0 - d.expr_static as f32) * (2.1 * tf + expr_phase).sin()
        };
        let light_dir = if canonical {
            1.0
        } else {
            (std::f32::consts::PI * d.light_flip as f32 * tf / group.duration_s as f32).cos()
        };
        let contrast = 0.5 * (1.0 - d.flat_light as f32);
        let lamp_on = !canonical && (t - clip.event_s).abs() < 0.5 / fps as f64 + 1e-9;
        let boil_seed = tex_seed.wrapping_add(fi as u32 * 7919);
        let mut img = vec![0f32; w * h * 3];
        for yy in 0..h {
            let v = yy as f32 / h as f32;
            for xx in 0..w {
                let u = xx as f32 / w as f32;
                let wu = u + pan + sx;
                let wv = v + sy;
                let hv = horizon_v + tilt * (u - 0.5);
                let mut c = if wv < hv {
                    let k = (wv / hv).clamp(0.0, 1.0);
                    let sky = mix(pal_sky_top, pal[1], k);
                    mix(sky, pal[2], scene_swap)
                } else {
                    // Textured ground: static value noise, re-drawn per frame by `boil`.
                    let n_static = value_noise(wu * 28.0, wv * 28.0, tex_seed);
                    let n_boil = value_noise(wu * 28.0, wv * 28.0, boil_seed);
                    let n = n_static
                        + (n_boil - n_static) * if canonical { 0.0 } else { d.boil as f32 };
                    let g = mix(pal[2], pal[1], scene_swap);
                    let k = 0.75 + 0.5 * n;
                    [g[0] * k, g[1] * k, g[2] * k]
                };
                for &(sxw, sw, shh) in &shapes {
                    let su = sxw - 0.5 * pan;
                    if (u - su).abs() < sw && wv > hv - shh && wv < hv + 0.02 {
                        c = mix(c, [pal[2][0] * 0.5, pal[2][1] * 0.5, pal[2][2] * 0.5], 0.8);
                    }
                }
                if group.character.is_some() {
                    let ax = (u - cx) / body_rx;
                    let ay = (wv - body_cy) / body_ry;
                    let hx = (u - cx) / (head_r * h as f32 / w as f32);
                    let hy = (wv - head_cy) / head_r;
                    let shade = 1.0 + -(contrast * light_dir * ax.clamp(-1.0, 1.0));
                    if ax * ax + ay * ay < 1.0 {
                        c = [costume[0] * shade, costume[1] * shade, costume[2] * shade];
                    } else if hx * hx + hy * hy < 1.0 {
                        let hs = 1.0 + -(contrast * light_dir * hx.clamp(-1.0, 1.0));
                        c = [skin[0] * hs, skin[1] * hs, skin[2] * hs];
                        let fx = hx - 0.25 * look.facing;
                        let eye = |ex: f32| ((fx - ex).powi(2) + (hy + 0.25).powi(2)) < 0.03;
                        if eye(-0.3) || eye(0.3) {
                            c = [0.05, 0.05, 0.08];
                        }
                        let mw = 0.35;
                        let mh = 0.04 + 0.2 * mouth_open;
                        if (fx / mw).powi(2) + ((hy - 0.4) / mh).powi(2) < 1.0 {
                            c = [0.35, 0.08, 0.1];
                        }
                    }
                }
                if lamp_on {
                    let lx = (u - 0.85) * w as f32 / h as f32;
                    let ly = v - 0.15;
                    if lx * lx + ly * ly < 0.006 {
                        c = [1.0, 1.0, 0.9];
                    }
                }
                // Progression: saturation and contrast build over the clip.
                let mean = (c[0] + c[1] + c[2]) / 3.0;
                let sat = 0.75 + 0.6 * prog;
                c = [
                    mean + (c[0] - mean) * sat,
                    mean + (c[1] - mean) * sat,
                    mean + (c[2] - mean) * sat,
                ];
                if !canonical {
                    c = mix(
                        c,
                        [
                            c[0] * cast[0] * 1.6,
                            c[1] * cast[1] * 1.6,
                            c[2] * cast[2] * 1.6,
                        ],
                        0.45 * d.cast as f32,
                    );
                    let g = exposure_gain * flicker[fi];
                    c = [c[0] * g, c[1] * g, c[2] * g];
                }
                let vig = 1.0 - 0.25 * ((u - 0.5).powi(2) + (v - 0.5).powi(2));
                let px = (yy * w + xx) * 3;
                img[px] = c[0] * vig;
                img[px + 1] = c[1] * vig;
                img[px + 2] = c[2] * vig;
            }
        }
        if !canonical && blur_radius > 0 {
            box_blur(&mut img, w, h, blur_radius);
            box_blur(&mut img, w, h, blur_radius);
        }
        img.iter()
            .map(|&x| (x.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect()
    };

    let frames: Vec<Vec<u8>> = (0..n_frames)
        .map(|fi| {
            let t = fi as f64 / fps as f64;
            let k = clip
                .shots
                .iter()
                .position(|&(s, e)| t >= s && t < e)
                .unwrap_or(clip.shots.len() - 1);
            draw(t, fi, looks[k], false)
        })
        .collect();
    let reference = group.character.map(|_| draw(0.0, 0, looks[0], true));
    let audio = group
        .has_audio
        .then(|| synth_audio(clip, group, &syllables, &mut rng));
    let _ = MOODS;
    Rendered {
        frames,
        audio,
        reference,
    }
}

/// Separable box blur in place, radius r (two passes approximate a Gaussian).
fn box_blur(img: &mut [f32], w: usize, h: usize, r: usize) {
    let mut tmp = vec![0f32; img.len()];
    for y in 0..h {
        for x in 0..w {
            let (x0, x1) = (x.saturating_sub(r), (x + r).min(w - 1));
            for c in 0..3 {
                let s: f32 = (x0..=x1).map(|xx| img[(y * w + xx) * 3 + c]).sum();
                tmp[(y * w + x) * 3 + c] = s / (x1 - x0 + 1) as f32;
            }
        }
    }
    for y in 0..h {
        let (y0, y1) = (y.saturating_sub(r), (y + r).min(h - 1));
        for x in 0..w {
            for c in 0..3 {
                let s: f32 = (y0..=y1).map(|yy| tmp[(yy * w + x) * 3 + c]).sum();
                img[(y * w + x) * 3 + c] = s / (y1 - y0 + 1) as f32;
            }
        }
    }
}

/// Audio track at 16 kHz: voice (when the group has speech), ambience and score, the flash's
/// click, hiss. The whole track is delayed by `sync_offset_s` relative to the picture.
fn synth_audio(clip: &ClipSpec, group: &GroupSpec, syllables: &[f64], rng: &mut Rng) -> Vec<f32> {
    let d = &clip.defects;
    let n = (group.duration_s * AUDIO_RATE as f64).round() as usize;
    let sr = AUDIO_RATE as f64;
    let mut brown = 0.0f64;
    let chord = [220.0, 277.18, 329.63];
    (0..n)
        .map(|i| {
            let t = i as f64 / sr;
            let ts = t - clip.sync_offset_s; // picture time this sample belongs to
            let mut s = 0.0;
            if group.speech {
                let env = speech_envelope(ts, syllables);
                if env > 0.0 {
                    let f0 = 140.0 + 12.0 * (2.0 * std::f64::consts::PI * 3.0 * ts).sin();
                    let ph = 2.0 * std::f64::consts::PI * f0 * ts;
                    let voice: f64 = (1..=8)
                        .map(|k| {
                            (k as f64 * ph).sin() / k as f64
                                * if k == 3 || k == 4 { 1.8 } else { 1.0 }
                        })
                        .sum();
                    s += 0.22 * env * voice;
                }
            }
            brown = 0.995 * brown + 0.02 * rng.normal();
            s += 0.12 * brown;
            if group.music {
                s += chord
                    .iter()
                    .map(|f| 0.025 * (2.0 * std::f64::consts::PI * f * t).sin())
                    .sum::<f64>();
            }
            let since = ts - clip.event_s;
            if (0.0..0.04).contains(&since) {
                s += 0.7 * (-since / 0.008).exp() * rng.normal().clamp(-2.0, 2.0) * 0.5;
            }
            s += 0.12 * d.noise * rng.normal();
            s.clamp(-1.0, 1.0) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Task;
    use crate::synth::spec::{generators, plan_shots};

    #[test]
    fn rendering_is_deterministic() {
        let mut rng = Rng::new(3);
        let group = GroupSpec::sample("pg".into(), Task::Av, &mut rng);
        let gens = generators();
        let defects = gens[4].sample(&mut rng);
        let clip = ClipSpec {
            id: "c".into(),
            group: "pg".into(),
            generator: "g".into(),
            defects,
            shots: plan_shots(1, group.duration_s, 0.0, &mut rng),
            event_s: 1.0,
            sync_offset_s: 0.1,
            seed: 99,
        };
        let a = render(&clip, &group, 64, 48, 12);
        let b = render(&clip, &group, 64, 48, 12);
        assert!(a.frames == b.frames, "frames differ");
        assert!(a.audio == b.audio, "audio differs");
    }
}
