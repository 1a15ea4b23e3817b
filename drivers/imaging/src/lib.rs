//! Image pre-processing for image classifiers, as Triton's `image_client` and
//! `scripts/models/preprocess.py` do it, shared by `image_client` (files) and the `image`
//! driver (encoded images inside requests):
//!
//! 1. [`decode`]: PNG or JPEG bytes to 8-bit RGB, within [`DecodeLimits`] so that a
//!    decompression bomb is refused before it is decoded;
//! 2. [`resized_pixels`]: Pillow's `convert("L")` for one-channel models, then Pillow's
//!    BILINEAR resize, bit for bit ([`resize`]);
//! 3. [`to_tensor`]: conversion to the model input's element type, [`Scaling`], and the
//!    [`Format`] (NCHW or NHWC) layout, little-endian.
//!
//! [`preprocess`] is 2 and 3 together. Nothing here panics on bad input: every problem of an
//! image is an [`Error`] that says what was wrong.

mod decode;
mod error;
mod preprocess;
pub mod resize;

pub use decode::{DecodeLimits, RgbImage, decode, decode_with_limits};
pub use error::Error;
pub use preprocess::{
    ElementType, Format, InputSpec, Scaling, preprocess, resized_pixels, to_tensor,
};
