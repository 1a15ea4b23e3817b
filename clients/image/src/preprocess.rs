//! Image file -> input tensor bytes, as Triton's `image_client.py` does it.
//!
//! 1. Decode to 8-bit RGB (Pillow's `convert("RGB")`: grey is replicated, alpha dropped,
//!    palettes looked up); for a one-channel model, to Pillow's `convert("L")` luma
//!    (`(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`).
//! 2. Stretch to the model's width x height with Pillow's BILINEAR ([`crate::resize`]).
//! 3. Convert to the input's data type and scale (see [`Scaling`]).
//! 4. Lay out as HWC (FORMAT_NHWC) or CHW (FORMAT_NCHW), little-endian.
//!
//! For the efficientnet_lite0_onnx example this is `scripts/models/preprocess.py` exactly
//! (`-s LITE` = its default scaling, `-s INCEPTION` = its `inception` scaling).

use std::fmt;
use std::path::Path;

use half::f16;

use crate::Error;
use crate::resize::resize_bilinear;

/// `-s`: how pixel values are scaled after the conversion to the input's data type.
/// NONE, INCEPTION and VGG are Triton's; LITE is the EfficientNet-Lite training scaling
/// (MEAN_RGB 127, STDDEV_RGB 128) that `scripts/models/expected.json`'s "top3" uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum Scaling {
    /// x, the pixel value 0..255
    None,
    /// x / 127.5 - 1, to [-1.0, 1.0]
    Inception,
    /// x - (123, 117, 104) for R, G, B; x - 128 for one channel
    Vgg,
    /// (x - 127) / 128, EfficientNet-Lite's (not one of Triton's)
    Lite,
}

impl fmt::Display for Scaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scaling::None => "NONE",
            Scaling::Inception => "INCEPTION",
            Scaling::Vgg => "VGG",
            Scaling::Lite => "LITE",
        })
    }
}

/// The model input's layout (`format` in its configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Nchw,
    Nhwc,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Nchw => "FORMAT_NCHW",
            Format::Nhwc => "FORMAT_NHWC",
        }
    }
}

/// The input data types Triton's image client accepts (its C++ `ParseType`, plus FP16 that
/// the Python client takes through numpy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementType {
    Uint8,
    Int8,
    Uint16,
    Int16,
    Int32,
    Fp16,
    Fp32,
    Fp64,
}

impl ElementType {
    /// From a KServe datatype name ("FP32", ...); `None` for the ones not supported.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "UINT8" => Self::Uint8,
            "INT8" => Self::Int8,
            "UINT16" => Self::Uint16,
            "INT16" => Self::Int16,
            "INT32" => Self::Int32,
            "FP16" => Self::Fp16,
            "FP32" => Self::Fp32,
            "FP64" => Self::Fp64,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Uint8 => "UINT8",
            Self::Int8 => "INT8",
            Self::Uint16 => "UINT16",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Fp16 => "FP16",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
        }
    }

    pub fn size(self) -> usize {
        match self {
            Self::Uint8 | Self::Int8 => 1,
            Self::Uint16 | Self::Int16 | Self::Fp16 => 2,
            Self::Int32 | Self::Fp32 => 4,
            Self::Fp64 => 8,
        }
    }
}

/// What the model wants of one image (batch dimension not included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputSpec {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub format: Format,
    pub datatype: ElementType,
}

impl InputSpec {
    /// Bytes of one preprocessed image.
    pub fn byte_size(&self) -> usize {
        self.channels * self.height * self.width * self.datatype.size()
    }

    /// The shape of one image: `[C, H, W]` or `[H, W, C]`.
    pub fn shape(&self) -> [i64; 3] {
        let (c, h, w) = (self.channels as i64, self.height as i64, self.width as i64);
        match self.format {
            Format::Nchw => [c, h, w],
            Format::Nhwc => [h, w, c],
        }
    }
}

/// A decoded image: 8-bit RGB, rows top to bottom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Decodes a PNG or JPEG file (the format is read from its first bytes) to 8-bit RGB.
/// The error names the file.
pub fn decode(path: &Path) -> Result<RgbImage, Error> {
    let unreadable = |e: std::io::Error| {
        Error::new(format!("unable to read image file {}: {e}", path.display()))
    };
    let reader = image::ImageReader::open(path)
        .map_err(unreadable)?
        .with_guessed_format()
        .map_err(unreadable)?;
    if reader.format().is_none() {
        return Err(Error::new(format!(
            "unable to decode image {}: not a PNG or JPEG file",
            path.display()
        )));
    }
    let img = reader
        .decode()
        .map_err(|e| Error::new(format!("unable to decode image {}: {e}", path.display())))?;
    let rgb = img.to_rgb8();
    Ok(RgbImage {
        width: rgb.width() as usize,
        height: rgb.height() as usize,
        pixels: rgb.into_raw(),
    })
}

/// Pillow's `convert("L")` of an RGB pixel (ITU-R 601-2 luma in 16-bit fixed point).
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// Steps 1 and 2: the image with the model's channel count, resized; uint8 HWC.
pub fn resized_pixels(img: &RgbImage, spec: &InputSpec) -> Result<Vec<u8>, Error> {
    let pixels = match spec.channels {
        3 => img.pixels.clone(),
        1 => img
            .pixels
            .chunks_exact(3)
            .map(|p| luma(p[0], p[1], p[2]))
            .collect(),
        c => {
            return Err(Error::new(format!(
                "unexpected number of channels 3 in input image, model expects {c}."
            )));
        }
    };
    Ok(resize_bilinear(
        &pixels,
        img.width,
        img.height,
        spec.channels,
        spec.width,
        spec.height,
    ))
}

/// Round half to even and saturate, as OpenCV's `saturate_cast` does for integer types.
fn saturate(x: f64, lo: f64, hi: f64) -> f64 {
    x.round_ties_even().clamp(lo, hi)
}

/// Appends one element: pixel value `v` of channel `ch`, converted and scaled.
fn push_element(
    out: &mut Vec<u8>,
    v: u8,
    ch: usize,
    channels: usize,
    scaling: Scaling,
    dt: ElementType,
) {
    let mean = |ch: usize| -> f64 {
        if channels == 1 {
            128.0
        } else {
            [123.0, 117.0, 104.0][ch]
        }
    };
    // The reference computes in the input's own type (numpy float32 / float16 / float64).
    let f32_value = || -> f32 {
        let x = f32::from(v);
        match scaling {
            Scaling::None => x,
            Scaling::Inception => x / 127.5 - 1.0,
            Scaling::Vgg => x - mean(ch) as f32,
            Scaling::Lite => (x - 127.0) / 128.0,
        }
    };
    let f64_value = || -> f64 {
        let x = f64::from(v);
        match scaling {
            Scaling::None => x,
            Scaling::Inception => x / 127.5 - 1.0,
            Scaling::Vgg => x - mean(ch),
            Scaling::Lite => (x - 127.0) / 128.0,
        }
    };
    match dt {
        ElementType::Fp32 => out.extend_from_slice(&f32_value().to_le_bytes()),
        ElementType::Fp64 => out.extend_from_slice(&f64_value().to_le_bytes()),
        ElementType::Fp16 => {
            // numpy's float16 arithmetic: every operation rounds back to half.
            let h = |x: f32| f16::from_f32(x).to_f32();
            let x = f32::from(v);
            let value = match scaling {
                Scaling::None => h(x),
                Scaling::Inception => h(h(x / 127.5) - 1.0),
                Scaling::Vgg => h(x - mean(ch) as f32),
                Scaling::Lite => h(h(x - 127.0) / 128.0),
            };
            out.extend_from_slice(&f16::from_f32(value).to_le_bytes());
        }
        ElementType::Uint8 => out.push(saturate(f64_value(), 0.0, 255.0) as u8),
        ElementType::Int8 => out.push(saturate(f64_value(), -128.0, 127.0) as i8 as u8),
        ElementType::Uint16 => {
            out.extend_from_slice(&(saturate(f64_value(), 0.0, 65535.0) as u16).to_le_bytes())
        }
        ElementType::Int16 => {
            out.extend_from_slice(&(saturate(f64_value(), -32768.0, 32767.0) as i16).to_le_bytes())
        }
        ElementType::Int32 => out.extend_from_slice(
            &(saturate(f64_value(), f64::from(i32::MIN), f64::from(i32::MAX)) as i32).to_le_bytes(),
        ),
    }
}

/// Steps 3 and 4: uint8 HWC pixels (already resized) -> the tensor bytes of one image.
pub fn to_tensor(resized: &[u8], spec: &InputSpec, scaling: Scaling) -> Vec<u8> {
    let (c, h, w) = (spec.channels, spec.height, spec.width);
    assert_eq!(resized.len(), c * h * w, "resized image size");
    let mut out = Vec::with_capacity(spec.byte_size());
    match spec.format {
        Format::Nhwc => {
            for (i, &v) in resized.iter().enumerate() {
                push_element(&mut out, v, i % c, c, scaling, spec.datatype);
            }
        }
        Format::Nchw => {
            for ch in 0..c {
                for p in 0..h * w {
                    push_element(&mut out, resized[p * c + ch], ch, c, scaling, spec.datatype);
                }
            }
        }
    }
    out
}

/// The whole pipeline for one decoded image.
pub fn preprocess(img: &RgbImage, spec: &InputSpec, scaling: Scaling) -> Result<Vec<u8>, Error> {
    Ok(to_tensor(&resized_pixels(img, spec)?, spec, scaling))
}

/// The whole pipeline for one file; errors name the file.
pub fn preprocess_file(path: &Path, spec: &InputSpec, scaling: Scaling) -> Result<Vec<u8>, Error> {
    preprocess(&decode(path)?, spec, scaling)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(channels: usize, format: Format, datatype: ElementType) -> InputSpec {
        InputSpec {
            channels,
            height: 1,
            width: 2,
            format,
            datatype,
        }
    }

    fn f32s(b: &[u8]) -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn layouts() {
        let px = [1, 2, 3, 4, 5, 6]; // two RGB pixels
        let nhwc = to_tensor(
            &px,
            &spec(3, Format::Nhwc, ElementType::Fp32),
            Scaling::None,
        );
        assert_eq!(f32s(&nhwc), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let nchw = to_tensor(
            &px,
            &spec(3, Format::Nchw, ElementType::Fp32),
            Scaling::None,
        );
        assert_eq!(f32s(&nchw), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn scalings() {
        let s = spec(3, Format::Nhwc, ElementType::Fp32);
        let px = [0, 127, 255, 123, 117, 104];
        assert_eq!(
            f32s(&to_tensor(&px, &s, Scaling::Inception)),
            vec![
                -1.0,
                127.0 / 127.5 - 1.0,
                1.0,
                123.0 / 127.5 - 1.0,
                117.0 / 127.5 - 1.0,
                104.0 / 127.5 - 1.0
            ]
        );
        assert_eq!(
            f32s(&to_tensor(&px, &s, Scaling::Lite)),
            vec![
                -127.0 / 128.0,
                0.0,
                1.0,
                -0.03125,
                -10.0 / 128.0,
                -23.0 / 128.0
            ]
        );
        assert_eq!(
            f32s(&to_tensor(&px, &s, Scaling::Vgg)),
            vec![-123.0, 10.0, 151.0, 0.0, 0.0, 0.0]
        );
        let grey = spec(1, Format::Nchw, ElementType::Fp32);
        assert_eq!(
            f32s(&to_tensor(&[0, 200], &grey, Scaling::Vgg)),
            vec![-128.0, 72.0]
        );
    }

    #[test]
    fn integer_types_saturate() {
        let s = spec(3, Format::Nhwc, ElementType::Uint8);
        assert_eq!(
            to_tensor(&[0, 200, 255, 1, 2, 3], &s, Scaling::Vgg),
            vec![0, 83, 151, 0, 0, 0]
        );
        let s = spec(1, Format::Nhwc, ElementType::Int8);
        assert_eq!(to_tensor(&[0, 255], &s, Scaling::None), vec![0, 127]);
        let s = spec(1, Format::Nhwc, ElementType::Int16);
        assert_eq!(
            to_tensor(&[0, 255], &s, Scaling::Vgg),
            [(-128i16).to_le_bytes(), 127i16.to_le_bytes()].concat()
        );
    }

    #[test]
    fn grey_is_pillow_luma() {
        assert_eq!(luma(10, 200, 30), 124);
        assert_eq!(luma(250, 0, 100), 86);
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(7, 7, 7), 7);
    }
}
