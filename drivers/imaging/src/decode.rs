//! Encoded PNG or JPEG bytes to 8-bit RGB (Pillow's `convert("RGB")`: grey is replicated,
//! alpha dropped, palettes looked up, 16-bit samples reduced to 8).
//!
//! The format is read from the first bytes, never from a name. The image's size is read from
//! its header first and checked against [`DecodeLimits`], which are also handed to the
//! decoder as the `image` crate's [`image::Limits`], so a small file that claims a huge image
//! (a decompression bomb) is refused before any pixel buffer is allocated.

use std::io::{self, Cursor};

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};

use crate::Error;

/// How large an image [`decode_with_limits`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Widest image, in pixels.
    pub max_width: u32,
    /// Tallest image, in pixels.
    pub max_height: u32,
    /// Most memory the decoded image may take, both as the decoder's own buffer (which may
    /// hold 16-bit samples or alpha) and as 8-bit RGB.
    pub max_bytes: u64,
}

impl Default for DecodeLimits {
    /// 16384 x 16384 pixels and 256 MiB: a 85-megapixel RGB photograph decodes, a bomb does
    /// not.
    fn default() -> Self {
        DecodeLimits {
            max_width: 16384,
            max_height: 16384,
            max_bytes: 256 << 20,
        }
    }
}

impl DecodeLimits {
    /// The same limits in the `image` crate's terms.
    fn to_image_limits(self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_width);
        limits.max_image_height = Some(self.max_height);
        limits.max_alloc = Some(self.max_bytes);
        limits
    }
}

/// A decoded image: 8-bit RGB, rows top to bottom, `width * height * 3` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Decodes a PNG or JPEG image to 8-bit RGB within the default [`DecodeLimits`].
pub fn decode(bytes: &[u8]) -> Result<RgbImage, Error> {
    decode_with_limits(bytes, &DecodeLimits::default())
}

/// Decodes a PNG or JPEG image to 8-bit RGB; an image larger than `limits` is refused
/// before it is decoded.
pub fn decode_with_limits(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, Error> {
    if bytes.is_empty() {
        return Err(Error::Empty);
    }
    let format = match image::guess_format(bytes) {
        Ok(format @ (ImageFormat::Png | ImageFormat::Jpeg)) => format,
        Ok(other) => {
            return Err(Error::NotPngOrJpeg {
                detected: Some(format!("{other:?}").to_uppercase()),
            });
        }
        Err(_) if PNG_SIGNATURE.starts_with(bytes) => {
            return Err(Error::Truncated { format: "PNG" });
        }
        Err(_) if JPEG_SIGNATURE.starts_with(bytes) => {
            return Err(Error::Truncated { format: "JPEG" });
        }
        Err(_) => return Err(Error::NotPngOrJpeg { detected: None }),
    };
    let name = format_name(format);
    let failed = |e: ImageError| image_error(name, e);

    // The header first, with the memory limit (chunks before the pixels count against it)
    // but not the size limits, to say how large an image that is too large is.
    let mut header_limits = image::Limits::default();
    header_limits.max_image_width = None;
    header_limits.max_image_height = None;
    header_limits.max_alloc = Some(limits.max_bytes);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(header_limits);
    let mut decoder = match reader.into_decoder() {
        Ok(decoder) => decoder,
        Err(e) => {
            // The PNG decoder sizes its row buffers while reading the header.
            let size = png_size(bytes).filter(|_| format == ImageFormat::Png);
            return Err(match (e, size) {
                (ImageError::Limits(_), Some((width, height))) => size_error(width, height, limits),
                (e, _) => failed(e),
            });
        }
    };

    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(Error::Corrupt {
            format: name,
            reason: format!("the image is {width}x{height} pixels, it has none"),
        });
    }
    let rgb_bytes = (u64::from(width) * u64::from(height)).saturating_mul(3);
    if width > limits.max_width
        || height > limits.max_height
        || decoder.total_bytes().max(rgb_bytes) > limits.max_bytes
    {
        return Err(size_error(width, height, limits));
    }

    // The pixels, under the image crate's own limits too (as `ImageReader::decode` does).
    let mut image_limits = limits.to_image_limits();
    image_limits
        .reserve(decoder.total_bytes())
        .map_err(failed)?;
    decoder.set_limits(image_limits).map_err(failed)?;
    // The JPEG decoder fills a scan that the data cuts short with grey; Pillow refuses it.
    if format == ImageFormat::Jpeg && !jpeg_has_end(bytes) {
        return Err(Error::Truncated { format: name });
    }
    let img = DynamicImage::from_decoder(decoder).map_err(failed)?;
    let rgb = match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    };
    Ok(RgbImage {
        width: rgb.width() as usize,
        height: rgb.height() as usize,
        pixels: rgb.into_raw(),
    })
}

/// Why an image of `width x height` pixels is refused: too wide or tall, else too many bytes.
fn size_error(width: u32, height: u32, limits: &DecodeLimits) -> Error {
    if width > limits.max_width || height > limits.max_height {
        Error::TooLarge {
            width,
            height,
            max_width: limits.max_width,
            max_height: limits.max_height,
        }
    } else {
        Error::TooMuchMemory {
            width,
            height,
            max_bytes: limits.max_bytes,
        }
    }
}

/// Width and height from a PNG's IHDR chunk, which must come first.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let ihdr = bytes.get(PNG_SIGNATURE.len()..PNG_SIGNATURE.len() + 16)?;
    if &ihdr[4..8] != b"IHDR" {
        return None;
    }
    let number = |at: usize| {
        ihdr.get(at..at + 4)?
            .try_into()
            .ok()
            .map(u32::from_be_bytes)
    };
    Some((number(8)?, number(12)?))
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_SIGNATURE: &[u8] = &[0xFF, 0xD8, 0xFF];

/// Whether a JPEG's last scan is followed by its end-of-image marker (FF D9). Neither marker
/// can occur inside entropy-coded data (an FF there is always followed by 00), so the last
/// start-of-scan (FF DA) is the main image's last scan, even when an embedded thumbnail has
/// scans and an end of its own before it.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let marker = |m: u8| move |w: &[u8]| w == [0xFF, m];
    let last_scan = bytes.windows(2).rposition(marker(0xDA)).unwrap_or(0);
    bytes[last_scan..].windows(2).any(marker(0xD9))
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "PNG",
        _ => "JPEG",
    }
}

/// The `image` crate's error in this crate's terms.
fn image_error(format: &'static str, e: ImageError) -> Error {
    match e {
        ImageError::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            Error::Truncated { format }
        }
        ImageError::Unsupported(u) => Error::Unsupported {
            format,
            reason: u.to_string(),
        },
        ImageError::Limits(l) => Error::Corrupt {
            format,
            reason: l.to_string(),
        },
        other => {
            let reason = other.to_string();
            if looks_truncated(&reason) {
                Error::Truncated { format }
            } else {
                Error::Corrupt { format, reason }
            }
        }
    }
}

/// Decoders that report running out of data as a decoding error rather than an I/O one.
fn looks_truncated(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    [
        "unexpected eof",
        "unexpected end",
        "not enough bytes",
        "no more bytes",
        "end of file",
    ]
    .iter()
    .any(|s| reason.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 11) as u8, (x + y) as u8])
        });
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 11) as u8, 128])
        });
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
            .unwrap();
        out
    }

    /// A PNG that claims `width x height` RGBA pixels: a header and a few bytes of data, as
    /// a decompression bomb starts.
    fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, no interlace
        let mut out = PNG_SIGNATURE.to_vec();
        for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &[0x78, 0x9c, 0, 0])] {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut chunk = kind.to_vec();
            chunk.extend_from_slice(data);
            out.extend_from_slice(&chunk);
            out.extend_from_slice(&crc32(&chunk).to_be_bytes());
        }
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn decodes_png_exactly_and_jpeg_approximately() {
        let img = decode(&png(5, 3)).unwrap();
        assert_eq!((img.width, img.height), (5, 3));
        assert_eq!(&img.pixels[3 * 6..3 * 7], &[7, 11, 2]); // pixel (1, 1)
        let img = decode(&jpeg(16, 8)).unwrap();
        assert_eq!(
            (img.width, img.height, img.pixels.len()),
            (16, 8, 16 * 8 * 3)
        );
    }

    #[test]
    fn grey_and_alpha_become_rgb() {
        let grey = image::GrayImage::from_pixel(2, 2, image::Luma([9]));
        let mut bytes = Vec::new();
        grey.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        assert_eq!(decode(&bytes).unwrap().pixels, vec![9; 12]);
        let rgba = image::RgbaImage::from_pixel(1, 1, image::Rgba([1, 2, 3, 0]));
        let mut bytes = Vec::new();
        rgba.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        assert_eq!(decode(&bytes).unwrap().pixels, vec![1, 2, 3]);
    }

    #[test]
    fn bad_bytes_say_what_is_wrong() {
        assert_eq!(decode(&[]).unwrap_err(), Error::Empty);
        assert_eq!(
            decode(b"hello, world").unwrap_err(),
            Error::NotPngOrJpeg { detected: None }
        );
        let gif = decode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap_err();
        assert!(
            gif.to_string()
                .starts_with("not a PNG or JPEG image (it looks like GIF"),
            "{gif}"
        );
        // cut anywhere before the end of the pixels (a PNG's last 12 bytes are its IEND)
        for (format, bytes, end) in [("PNG", png(40, 30), 12), ("JPEG", jpeg(40, 30), 1)] {
            for cut in (1..bytes.len() - end).step_by(7) {
                assert_eq!(
                    decode(&bytes[..cut]).map(|i| i.width),
                    Err(Error::Truncated { format }),
                    "{format} cut at {cut}"
                );
            }
        }
        let mut garbled = png(40, 30);
        let n = garbled.len();
        garbled[60..n - 20].fill(0x55);
        let err = decode(&garbled).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { format: "PNG", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn bombs_are_refused_before_decoding() {
        let err = decode(&png_header(100_000, 100_000)).unwrap_err();
        assert_eq!(
            err,
            Error::TooLarge {
                width: 100_000,
                height: 100_000,
                max_width: 16384,
                max_height: 16384
            }
        );
        // within the sides but not the memory: 16000 x 16000 RGBA is 1 GB
        let err = decode(&png_header(16000, 16000)).unwrap_err();
        assert_eq!(
            err,
            Error::TooMuchMemory {
                width: 16000,
                height: 16000,
                max_bytes: 256 << 20
            }
        );
        let small = DecodeLimits {
            max_width: 10,
            max_height: 10,
            max_bytes: 1 << 20,
        };
        assert!(matches!(
            decode_with_limits(&png(11, 2), &small).unwrap_err(),
            Error::TooLarge { width: 11, .. }
        ));
        assert!(matches!(
            decode_with_limits(&jpeg(8, 20), &small).unwrap_err(),
            Error::TooLarge { height: 20, .. }
        ));
        let tiny = DecodeLimits {
            max_bytes: 100,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            decode_with_limits(&jpeg(8, 8), &tiny).unwrap_err(),
            Error::TooMuchMemory { .. }
        ));
    }

    #[test]
    fn the_largest_headers_allocate_nothing() {
        let err = decode(&png_header(0x7fff_ffff, 0x7fff_ffff)).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn a_thumbnail_end_marker_does_not_hide_a_cut() {
        let mut bytes = jpeg(16, 16);
        // an APP1 segment holding a "thumbnail" scan and end after the SOI
        let app1 = [0xFF, 0xE1, 0, 6, 0xFF, 0xDA, 0xFF, 0xD9];
        bytes.splice(2..2, app1);
        assert!(jpeg_has_end(&bytes));
        let cut = &bytes[..bytes.len() - 2];
        assert!(!jpeg_has_end(cut));
    }

    #[test]
    fn garbled_bytes_never_panic() {
        let mut seed = 0x2545_f491_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as usize
        };
        for original in [png(24, 16), jpeg(24, 16)] {
            for _ in 0..300 {
                let mut bytes = original.clone();
                for _ in 0..1 + next() % 4 {
                    let at = next() % bytes.len();
                    bytes[at] = next() as u8;
                }
                let _ = decode(&bytes);
            }
        }
    }

    #[test]
    fn zero_sized_images_are_refused() {
        let err = decode(&png_header(0, 5)).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { format: "PNG", .. }),
            "{err:?}"
        );
    }
}
