//! Colour statistics: cast, colourfulness and hue harmony, on gamma-encoded RGB in [0, 1].
//!
//! Opponent axes rg = R - G and yb = (R + G) / 2 - B. `colour_cast` is the length of the mean
//! (rg, yb) relative to the mean luma (grey-world: a neutral scene averages to grey), and
//! `cast_angle` its direction (0 = red, 90 = yellow, 180 = green/cyan, 270 = blue).
//! `colourfulness` is Hasler and Süsstrunk's M (2003) on the 0-1 scale times 100.
//! `hue_concentration` is the saturation-weighted mean resultant length of pixel hues: 1 when
//! every coloured pixel has one hue, near 0 when hues spread round the wheel.
//! Failure cases: grey-world is wrong for scenes dominated by one colour (a sunset, a forest),
//! which read as cast; compare casts between renders of the same prompt.

use super::{Analysed, Evidence};

/// Measurements: `colour_cast` (ratio), `cast_angle` (deg), `colourfulness` (M x 100),
/// `hue_concentration` (0-1).
pub fn measure(clip: &Analysed, ev: &mut Evidence) {
    let (mut srg, mut syb, mut srg2, mut syb2, mut sl, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut hx, mut hy, mut hw) = (0.0, 0.0, 0.0);
    for f in &clip.frames {
        for (p, &l) in f.rgb.chunks_exact(3).zip(&f.luma) {
            let (r, g, b) = (p[0] as f64, p[1] as f64, p[2] as f64);
            let rg = r - g;
            let yb = 0.5 * (r + g) - b;
            srg += rg;
            syb += yb;
            srg2 += rg * rg;
            syb2 += yb * yb;
            sl += l as f64;
            n += 1.0;
            // Hue as a unit vector in the opponent plane, weighted by chroma: chroma * (cos, sin)
            // of the hue angle is (rg, yb) itself.
            let chroma = (rg * rg + yb * yb).sqrt();
            if chroma > 0.02 {
                hx += rg;
                hy += yb;
                hw += chroma;
            }
        }
    }
    if n == 0.0 {
        return;
    }
    let (mrg, myb) = (srg / n, syb / n);
    let (vrg, vyb) = (srg2 / n - mrg * mrg, syb2 / n - myb * myb);
    let mean_l = sl / n;
    let cast = mrg.hypot(myb) / mean_l.max(0.02);
    let angle = myb.atan2(mrg).to_degrees().rem_euclid(360.0);
    let m = vrg.max(0.0).sqrt().hypot(vyb.max(0.0).sqrt()) + 0.3 * mrg.hypot(myb);
    ev.push("colour_cast", cast, "ratio");
    ev.push("cast_angle", angle, "deg");
    ev.push("colourfulness", 100.0 * m, "M");
    if hw > 0.0 {
        ev.push("hue_concentration", hx.hypot(hy) / hw, "0-1");
    }
}
