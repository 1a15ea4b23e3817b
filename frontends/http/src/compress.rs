//! `Content-Encoding` on requests and `Accept-Encoding` on inference replies, as Triton reads
//! them: gzip and deflate (zlib-wrapped, as zlib's `deflate` and Python's `zlib.compress`
//! make it).

use std::io::{Read, Write};

use bytes::Bytes;
use flate2::Compression;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Deflate,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }
}

/// A request's `Content-Encoding`: `Ok(None)` for none or `identity`, `Err(())` for one
/// Triton does not know (it answers 501 "Unsupported compression type").
pub fn request_encoding(header: Option<&[u8]>) -> Result<Option<Encoding>, ()> {
    match header {
        None | Some(b"" | b"identity") => Ok(None),
        Some(b"gzip") => Ok(Some(Encoding::Gzip)),
        Some(b"deflate") => Ok(Some(Encoding::Deflate)),
        Some(_) => Err(()),
    }
}

/// The encoding to answer with, from `Accept-Encoding` (Triton's `CompressionTypeUsed`:
/// the highest `q` among identity, deflate and gzip; the first of equals).
pub fn response_encoding(accept: Option<&[u8]>) -> Option<Encoding> {
    let accept = std::str::from_utf8(accept?).ok()?;
    let mut best = "identity";
    let mut weight = 0.0f64;
    for part in accept.split(',') {
        let Some(start) = part.find(|c| c != ' ') else {
            continue;
        };
        let weight_at = part.find(";q=");
        if weight_at.is_some_and(|w| start >= w) {
            continue;
        }
        let kind = &part[start..weight_at.unwrap_or(part.len())];
        let kind_weight = match weight_at {
            None => 1.0,
            Some(w) => match leading_f64(&part[w + 3..]) {
                Some(q) => q,
                None => continue,
            },
        };
        if matches!(kind, "identity" | "deflate" | "gzip") && kind_weight > weight {
            best = kind;
            weight = kind_weight;
        }
    }
    match best {
        "gzip" => Some(Encoding::Gzip),
        "deflate" => Some(Encoding::Deflate),
        _ => None,
    }
}

/// `std::stod`: the longest leading number.
fn leading_f64(s: &str) -> Option<f64> {
    let s = s.trim_start();
    (1..=s.len())
        .rev()
        .filter(|&i| s.is_char_boundary(i))
        .find_map(|i| s[..i].parse().ok())
}

/// Inflates a request body (gzip or zlib, told apart by the gzip magic like zlib's
/// `inflateInit2(15 | 32)`), refusing to grow past `limit` bytes.
pub fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit).min(64 << 20));
    let read = if data.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(data)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
    } else {
        flate2::read::ZlibDecoder::new(data)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
    };
    read.map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(format!(
            "the decompressed body exceeds the maximum allowed input size of {limit} bytes"
        ));
    }
    Ok(out)
}

/// Compresses a reply body made of `chunks`.
pub fn compress(encoding: Encoding, chunks: &[Bytes]) -> Vec<u8> {
    let size: usize = chunks.iter().map(Bytes::len).sum();
    let out = Vec::with_capacity(size / 2 + 64);
    match encoding {
        Encoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, Compression::default());
            for c in chunks {
                let _ = e.write_all(c);
            }
            e.finish().unwrap_or_default()
        }
        Encoding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(out, Compression::default());
            for c in chunks {
                let _ = e.write_all(c);
            }
            e.finish().unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let body = Bytes::from_static(br#"{"inputs":[{"name":"INPUT0"}]}"#);
        for enc in [Encoding::Gzip, Encoding::Deflate] {
            let packed = compress(enc, &[body.slice(..10), body.slice(10..)]);
            assert_ne!(packed, body);
            assert_eq!(decompress(&packed, 1 << 20).unwrap(), body);
        }
    }

    #[test]
    fn bad_data_and_bombs_are_refused() {
        assert!(decompress(b"\x1f\x8b this is not compressed", 1 << 20).is_err());
        assert!(decompress(b"this is not compressed", 1 << 20).is_err());
        let zeros = Bytes::from(vec![0u8; 100_000]);
        let packed = compress(Encoding::Gzip, &[zeros]);
        assert!(decompress(&packed, 1000).unwrap_err().contains("exceeds"));
    }

    #[test]
    fn headers() {
        assert_eq!(request_encoding(None), Ok(None));
        assert_eq!(request_encoding(Some(b"identity")), Ok(None));
        assert_eq!(request_encoding(Some(b"gzip")), Ok(Some(Encoding::Gzip)));
        assert_eq!(
            request_encoding(Some(b"deflate")),
            Ok(Some(Encoding::Deflate))
        );
        assert_eq!(request_encoding(Some(b"br")), Err(()));
        assert_eq!(response_encoding(None), None);
        assert_eq!(response_encoding(Some(b"gzip")), Some(Encoding::Gzip));
        assert_eq!(response_encoding(Some(b"deflate")), Some(Encoding::Deflate));
        assert_eq!(
            response_encoding(Some(b"gzip, deflate")),
            Some(Encoding::Gzip)
        );
        assert_eq!(
            response_encoding(Some(b"gzip;q=0.5, deflate;q=0.8")),
            Some(Encoding::Deflate)
        );
        assert_eq!(response_encoding(Some(b"identity, gzip")), None);
        assert_eq!(response_encoding(Some(b"br")), None);
        assert_eq!(response_encoding(Some(b"gzip;q=abc")), None);
    }
}
