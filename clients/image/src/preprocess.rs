//! Image file -> input tensor bytes, as Triton's `image_client.py` does it: decode to 8-bit
//! RGB, Pillow's BILINEAR resize, conversion, scaling and layout. The one implementation is
//! the `ferrite-imaging` library (shared with the `image` driver); this module re-exports it
//! and adds what is about files: reading them, and errors that name them.
//!
//! For the efficientnet_lite0_onnx example this is `scripts/models/preprocess.py` exactly
//! (`-s LITE` = its default scaling, `-s INCEPTION` = its `inception` scaling).

use std::path::Path;

pub use ferrite_imaging::{
    ElementType, Format, InputSpec, RgbImage, Scaling, preprocess, resized_pixels, to_tensor,
};

use crate::Error;

/// Decodes a PNG or JPEG file (the format is read from its first bytes) to 8-bit RGB.
/// The error names the file.
pub fn decode(path: &Path) -> Result<RgbImage, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::new(format!("unable to read image file {}: {e}", path.display())))?;
    ferrite_imaging::decode(&bytes)
        .map_err(|e| Error::new(format!("unable to decode image {}: {e}", path.display())))
}

/// The whole pipeline for one file; errors name the file.
pub fn preprocess_file(path: &Path, spec: &InputSpec, scaling: Scaling) -> Result<Vec<u8>, Error> {
    let image = decode(path)?;
    preprocess(&image, spec, scaling).map_err(|e| {
        Error::new(format!(
            "unable to preprocess image {}: {e}",
            path.display()
        ))
    })
}
