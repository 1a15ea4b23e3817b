//! A decoded image to the bytes of one input tensor, as Triton's `image_client.py` does it:
//!
//! 1. for a one-channel model, Pillow's `convert("L")` luma
//!    (`(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`);
//! 2. stretched to the model's width x height with Pillow's BILINEAR ([`crate::resize`]);
//! 3. converted to the input's element type and scaled (see [`Scaling`]);
//! 4. laid out as HWC (NHWC) or CHW (NCHW), little-endian.
//!
//! For the efficientnet_lite0_onnx example this is `scripts/models/preprocess.py` exactly
//! (LITE = its default scaling, INCEPTION = its `inception` scaling).

use std::fmt;

use half::f16;

use crate::resize::resize_bilinear;
use crate::{Error, RgbImage};

/// How pixel values are scaled after the conversion to the input's data type (image_client's
/// `-s`, the image driver's `scaling` parameter). NONE, INCEPTION and VGG are Triton's; LITE
/// is the EfficientNet-Lite training scaling (MEAN_RGB 127, STDDEV_RGB 128) that
/// `scripts/models/expected.json`'s "top3" uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "clap", value(rename_all = "UPPER"))]
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

impl Scaling {
    /// Every scaling, in the order they are listed to users.
    pub const ALL: [Scaling; 4] = [
        Scaling::None,
        Scaling::Inception,
        Scaling::Vgg,
        Scaling::Lite,
    ];

    /// The upper-case name: "NONE", "INCEPTION", "VGG" or "LITE".
    pub fn name(self) -> &'static str {
        match self {
            Scaling::None => "NONE",
            Scaling::Inception => "INCEPTION",
            Scaling::Vgg => "VGG",
            Scaling::Lite => "LITE",
        }
    }

    /// From its name, in any case; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Scaling> {
        Scaling::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Scaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The layout of one image: channels first (NCHW, `[C, H, W]`) or last (NHWC, `[H, W, C]`);
/// `format` in a Triton input's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Nchw,
    Nhwc,
}

impl Format {
    /// Both layouts.
    pub const ALL: [Format; 2] = [Format::Nchw, Format::Nhwc];

    /// The configuration's name: "FORMAT_NCHW" or "FORMAT_NHWC".
    pub fn name(self) -> &'static str {
        match self {
            Format::Nchw => "FORMAT_NCHW",
            Format::Nhwc => "FORMAT_NHWC",
        }
    }

    /// The short name: "NCHW" or "NHWC".
    pub fn layout(self) -> &'static str {
        match self {
            Format::Nchw => "NCHW",
            Format::Nhwc => "NHWC",
        }
    }

    /// From "NCHW"/"NHWC" or "FORMAT_NCHW"/"FORMAT_NHWC", in any case.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.layout().eq_ignore_ascii_case(name) || f.name().eq_ignore_ascii_case(name))
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
    /// Every element type, in the order they are listed to users.
    pub const ALL: [ElementType; 8] = [
        Self::Uint8,
        Self::Int8,
        Self::Uint16,
        Self::Int16,
        Self::Int32,
        Self::Fp16,
        Self::Fp32,
        Self::Fp64,
    ];

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

    /// The KServe datatype name ("FP32", ...).
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

    /// Bytes of one element.
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

/// Pillow's `convert("L")` of an RGB pixel (ITU-R 601-2 luma in 16-bit fixed point).
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// Steps 1 and 2: the image with the model's channel count, resized; uint8 HWC.
///
/// # Panics
/// If `img.pixels` is not `width * height * 3` bytes (as [`crate::decode`] makes it).
pub fn resized_pixels(img: &RgbImage, spec: &InputSpec) -> Result<Vec<u8>, Error> {
    let grey: Vec<u8>;
    let pixels: &[u8] = match spec.channels {
        3 => &img.pixels,
        1 => {
            grey = img
                .pixels
                .chunks_exact(3)
                .map(|p| luma(p[0], p[1], p[2]))
                .collect();
            &grey
        }
        c => return Err(Error::Channels { expected: c }),
    };
    Ok(resize_bilinear(
        pixels,
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
///
/// # Panics
/// If `resized` is not `channels * height * width` bytes (what [`resized_pixels`] returns
/// for the same `spec`).
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
    fn names() {
        for s in Scaling::ALL {
            assert_eq!(Scaling::from_name(s.name()), Some(s));
            assert_eq!(Scaling::from_name(&s.name().to_lowercase()), Some(s));
        }
        assert_eq!(Scaling::from_name("MEAN"), None);
        assert_eq!(Format::from_name("nhwc"), Some(Format::Nhwc));
        assert_eq!(Format::from_name("FORMAT_NCHW"), Some(Format::Nchw));
        assert_eq!(Format::from_name("CHW"), None);
        for t in ElementType::ALL {
            assert_eq!(ElementType::from_name(t.name()), Some(t));
        }
    }

    #[test]
    fn other_channel_counts_are_refused() {
        let img = RgbImage {
            width: 1,
            height: 1,
            pixels: vec![1, 2, 3],
        };
        let err = resized_pixels(&img, &spec(4, Format::Nchw, ElementType::Fp32)).unwrap_err();
        assert_eq!(err, Error::Channels { expected: 4 });
    }

    #[test]
    fn grey_is_pillow_luma() {
        assert_eq!(luma(10, 200, 30), 124);
        assert_eq!(luma(250, 0, 100), 86);
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(7, 7, 7), 7);
    }
}
