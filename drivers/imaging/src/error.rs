//! What can be wrong with an image, in words a client can act on.

use std::fmt;

/// A problem with an image or with what it is asked to become. The `Display` text is a
/// complete sentence fragment meant to be prefixed with context (a file name, a model, input
/// and row), e.g. `not a PNG or JPEG image`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No bytes at all.
    Empty,
    /// The bytes are not a PNG or JPEG image; `detected` names the format they look like,
    /// when they look like one the decoder does not read (GIF, WebP, ...).
    NotPngOrJpeg { detected: Option<String> },
    /// The data ends before the image does.
    Truncated { format: &'static str },
    /// The image data is malformed.
    Corrupt {
        format: &'static str,
        reason: String,
    },
    /// A valid image of a kind the decoder does not support (e.g. an unusual color type).
    Unsupported {
        format: &'static str,
        reason: String,
    },
    /// Wider or taller than [`DecodeLimits`](crate::DecodeLimits) allow.
    TooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
    /// Decoding would need more memory than [`DecodeLimits`](crate::DecodeLimits) allow.
    TooMuchMemory {
        width: u32,
        height: u32,
        max_bytes: u64,
    },
    /// The model wants a channel count other than 1 (grey) or 3 (RGB).
    Channels { expected: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Empty => f.write_str("empty image (0 bytes)"),
            Error::NotPngOrJpeg { detected: None } => f.write_str("not a PNG or JPEG image"),
            Error::NotPngOrJpeg {
                detected: Some(format),
            } => write!(
                f,
                "not a PNG or JPEG image (it looks like {format}, which is not supported)"
            ),
            Error::Truncated { format } => {
                write!(
                    f,
                    "truncated {format} image: the data ends before the image"
                )
            }
            Error::Corrupt { format, reason } => write!(f, "corrupt {format} image: {reason}"),
            Error::Unsupported { format, reason } => {
                write!(f, "unsupported {format} image: {reason}")
            }
            Error::TooLarge {
                width,
                height,
                max_width,
                max_height,
            } => write!(
                f,
                "image of {width}x{height} pixels is larger than the {max_width}x{max_height} allowed"
            ),
            Error::TooMuchMemory {
                width,
                height,
                max_bytes,
            } => write!(
                f,
                "image of {width}x{height} pixels needs more memory to decode than the {} allowed",
                bytes_text(*max_bytes)
            ),
            // Triton's image_client's words.
            Error::Channels { expected } => write!(
                f,
                "unexpected number of channels 3 in input image, model expects {expected}."
            ),
        }
    }
}

impl std::error::Error for Error {}

/// `268435456` -> `256 MiB`; sizes that are not whole MiB in bytes.
fn bytes_text(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_was_wrong() {
        assert_eq!(
            Error::NotPngOrJpeg { detected: None }.to_string(),
            "not a PNG or JPEG image"
        );
        assert_eq!(
            Error::TooMuchMemory {
                width: 9000,
                height: 9000,
                max_bytes: 256 << 20
            }
            .to_string(),
            "image of 9000x9000 pixels needs more memory to decode than the 256 MiB allowed"
        );
        assert_eq!(
            Error::TooLarge {
                width: 70000,
                height: 2,
                max_width: 16384,
                max_height: 16384
            }
            .to_string(),
            "image of 70000x2 pixels is larger than the 16384x16384 allowed"
        );
        assert_eq!(bytes_text(1000), "1000 bytes");
    }
}
