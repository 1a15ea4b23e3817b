//! The one place where a core error becomes a gRPC status, and the small request-level
//! parsers every RPC shares: Triton's model version strings and the `grpc-timeout` deadline.

use std::time::{Duration, Instant};

use ferrite_core::{Error, ErrorCode};
use tonic::{Code, Status};

/// Triton's gRPC code for an error code (`GrpcStatusUtil::CodeToStatus` in Triton's
/// grpc_utils.cc).
pub fn code_for(code: ErrorCode) -> Code {
    match code {
        ErrorCode::Unknown => Code::Unknown,
        ErrorCode::Internal => Code::Internal,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::InvalidArg => Code::InvalidArgument,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Unsupported => Code::Unimplemented,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::Cancelled => Code::Cancelled,
    }
}

/// A core error as the status a client sees: Triton's code and the error's message.
pub fn to_status(e: &Error) -> Status {
    Status::new(code_for(e.code()), e.message())
}

/// Triton's `GetModelVersionFromString`: "" is the newest ready version; otherwise
/// `std::stol` (leading blanks and a sign allowed, trailing text ignored) and >= 0.
pub fn parse_version(text: &str) -> Result<Option<i64>, Error> {
    if text.is_empty() {
        return Ok(None);
    }
    let stol_failed = || {
        Error::invalid_arg(format!(
            "failed to get model version from specified version string '{text}' (details: stol), version should be an integral value > 0"
        ))
    };
    let rest = text.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, rest) = match rest.as_bytes().first() {
        Some(b'-') => (true, &rest[1..]),
        Some(b'+') => (false, &rest[1..]),
        _ => (false, rest),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(stol_failed());
    }
    let signed = if negative {
        format!("-{}", &rest[..digits])
    } else {
        rest[..digits].to_string()
    };
    let version: i64 = signed.parse().map_err(|_| stol_failed())?;
    if version < 0 {
        return Err(Error::invalid_arg(format!(
            "invalid model version specified '{text}' , version should be an integral value > 0"
        )));
    }
    Ok(Some(version))
}

/// The client's deadline from its `grpc-timeout` header (`1` to `8` digits and a unit: `H`,
/// `M`, `S`, `m`, `u`, `n`); a malformed header is ignored, as gRPC servers do.
pub fn deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let timeout = parse_timeout(value)?;
    // A timeout too far away to represent is no deadline at all.
    Instant::now().checked_add(timeout)
}

fn parse_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_tritons_grpc_utils() {
        let all = [
            (ErrorCode::Unknown, Code::Unknown),
            (ErrorCode::Internal, Code::Internal),
            (ErrorCode::NotFound, Code::NotFound),
            (ErrorCode::InvalidArg, Code::InvalidArgument),
            (ErrorCode::Unavailable, Code::Unavailable),
            (ErrorCode::Unsupported, Code::Unimplemented),
            (ErrorCode::AlreadyExists, Code::AlreadyExists),
            (ErrorCode::Cancelled, Code::Cancelled),
        ];
        for (core, grpc) in all {
            assert_eq!(code_for(core), grpc, "{core:?}");
        }
        let s = to_status(&Error::not_found(
            "Request for unknown model: 'nosuchmodel' is not found",
        ));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(
            s.message(),
            "Request for unknown model: 'nosuchmodel' is not found"
        );
    }

    #[test]
    fn versions_parse_like_stol() {
        assert_eq!(parse_version("").unwrap(), None);
        assert_eq!(parse_version("3").unwrap(), Some(3));
        assert_eq!(parse_version(" +7").unwrap(), Some(7));
        assert_eq!(parse_version("12abc").unwrap(), Some(12));
        assert_eq!(parse_version("0").unwrap(), Some(0));
        let e = parse_version("abc").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArg);
        assert_eq!(
            e.message(),
            "failed to get model version from specified version string 'abc' (details: stol), version should be an integral value > 0"
        );
        assert!(parse_version("99999999999999999999").is_err());
        assert!(parse_version("-").is_err());
        assert_eq!(
            parse_version("-1").unwrap_err().message(),
            "invalid model version specified '-1' , version should be an integral value > 0"
        );
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_timeout("0n"), Some(Duration::ZERO));
        assert_eq!(
            parse_timeout("99999999m"),
            Some(Duration::from_millis(99999999))
        );
        for bad in ["", "S", "1", "1x", "-1S", "123456789S", "1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
        let mut m = tonic::metadata::MetadataMap::new();
        assert!(deadline(&m).is_none());
        m.insert("grpc-timeout", "10S".parse().unwrap());
        let d = deadline(&m).unwrap();
        assert!(d > Instant::now() + Duration::from_secs(9));
    }
}
