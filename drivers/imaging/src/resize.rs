//! Pillow's `Image.resize(size, Image.BILINEAR)` for 8-bit images, bit for bit.
//!
//! A port of `libImaging/Resample.c` (`precompute_coeffs`, `normalize_coeffs_8bpc`,
//! `ImagingResampleHorizontal_8bpc`, `ImagingResampleVertical_8bpc`): an antialiased triangle
//! filter whose support grows with the downscale factor, weights normalised in `f64` and then
//! turned into 22-bit fixed point, a horizontal pass then a vertical pass, each rounding to
//! `u8`. This is also `pil_bilinear_resize` of `scripts/models/preprocess.py`, the reference
//! the example model's expected outputs were computed with.

/// Fraction bits of the fixed-point weights (`PRECISION_BITS` in Resample.c).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `bilinear_filter`, support 1.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Taps of one output pixel: the first input index and its fixed-point weights.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size -> out_size` (no box).
fn coefficients(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support (1.0) * filterscale
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // `(int)` truncates toward zero, as `as i64` does.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = xmax.saturating_sub(xmin);
            let mut k: Vec<f64> = (0..count)
                .map(|x| triangle((x as f64 + xmin as f64 - center + 0.5) * ss))
                .collect();
            // Summed in order, as the C loop does.
            let ww: f64 = k.iter().fold(0.0, |acc, w| acc + w);
            if ww != 0.0 {
                for w in &mut k {
                    *w /= ww;
                }
            }
            let one = f64::from(1u32 << PRECISION_BITS);
            let weights = k
                .iter()
                .map(|&w| {
                    if w < 0.0 {
                        (-0.5 + w * one) as i32
                    } else {
                        (0.5 + w * one) as i32
                    }
                })
                .collect();
            Taps {
                first: xmin,
                weights,
            }
        })
        .collect()
}

/// `clip8`: the accumulator's integer part, clamped to 0..=255.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an 8-bit image of `width x height` pixels with `channels` interleaved channels
/// (rows top to bottom) to `out_width x out_height` as Pillow's BILINEAR does: horizontal pass
/// first, then vertical; a pass whose size does not change is skipped.
pub fn resize_bilinear(
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_width: usize,
    out_height: usize,
) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height * channels, "pixel buffer size");
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut image = pixels.to_vec();
    let mut w = width;
    if out_width != width {
        let taps = coefficients(width, out_width);
        let mut out = vec![0u8; height * out_width * channels];
        for y in 0..height {
            let row = &image[y * w * channels..(y + 1) * w * channels];
            let out_row = &mut out[y * out_width * channels..(y + 1) * out_width * channels];
            for (xx, t) in taps.iter().enumerate() {
                for c in 0..channels {
                    let mut acc = half;
                    for (i, &k) in t.weights.iter().enumerate() {
                        acc += i32::from(row[(t.first + i) * channels + c]) * k;
                    }
                    out_row[xx * channels + c] = clip8(acc);
                }
            }
        }
        image = out;
        w = out_width;
    }
    if out_height != height {
        let taps = coefficients(height, out_height);
        let stride = w * channels;
        let mut out = vec![0u8; out_height * stride];
        for (yy, t) in taps.iter().enumerate() {
            let out_row = &mut out[yy * stride..(yy + 1) * stride];
            for (x, o) in out_row.iter_mut().enumerate() {
                let mut acc = half;
                for (i, &k) in t.weights.iter().enumerate() {
                    acc += i32::from(image[(t.first + i) * stride + x]) * k;
                }
                *o = clip8(acc);
            }
        }
        image = out;
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [
            (600, 224),
            (451, 224),
            (400, 224),
            (300, 224),
            (100, 224),
            (7, 3),
        ] {
            for t in coefficients(i, o) {
                let sum: i32 = t.weights.iter().sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= t.weights.len() as i32,
                    "{i}->{o}: {sum}"
                );
                assert!(t.first + t.weights.len() <= i);
            }
        }
    }

    #[test]
    fn same_size_is_identity_and_flat_stays_flat() {
        let px: Vec<u8> = (0..4 * 3 * 3).map(|v| v as u8).collect();
        assert_eq!(resize_bilinear(&px, 4, 3, 3, 4, 3), px);
        let flat = vec![77u8; 50 * 30 * 3];
        assert!(
            resize_bilinear(&flat, 50, 30, 3, 13, 41)
                .iter()
                .all(|&v| v == 77)
        );
    }

    #[test]
    fn upscaling_interpolates() {
        // Two pixels 0 and 255 to four: Pillow gives 0, 64, 191, 255.
        let out = resize_bilinear(&[0, 255], 2, 1, 1, 4, 1);
        assert_eq!(out, vec![0, 64, 191, 255]);
    }
}
