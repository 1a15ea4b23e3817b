//! JSON output the way Triton's rapidjson writer produces it: compact, strings escaped only
//! where JSON requires (control characters as `\uXXXX` with capital hex, other bytes as they
//! are), doubles in rapidjson's shape (`2.0`, `0.5`, `1e21`, `1.0000000116860974e-7`).

use std::io::Write as _;

/// Appends `bytes` as a JSON string.
pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let escape: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0..0x20 => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

pub fn i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    u64(out, v.unsigned_abs());
}

pub fn u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

pub fn bool(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// Appends a double as rapidjson's `Writer::Double` does: the shortest digits that read back
/// as the same double, laid out by rapidjson's `Prettify` (always a `.0` on integral values;
/// an exponent only below 1e-6 or from 1e21). NaN and the infinities, which rapidjson refuses
/// to write, come out as `NaN`, `Infinity` and `-Infinity` (what Python's json reads).
pub fn f64(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    if v == 0.0 {
        out.extend_from_slice(if v.is_sign_negative() {
            b"-0.0"
        } else {
            b"0.0"
        });
        return;
    }
    // Integers below 2^53 are exact, and their shortest digits are their own.
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        i64(out, v as i64);
        out.extend_from_slice(b".0");
        return;
    }
    // Shortest round-trip digits and exponent from the standard library: "d.ddde-7".
    let mut buf = [0u8; 40];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{:e}", v.abs());
    let n = cursor.position() as usize;
    let text = &buf[..n];
    let e_at = text.iter().position(|&c| c == b'e').unwrap_or(n);
    let mut digits = [0u8; 24];
    let mut length = 0;
    for &c in &text[..e_at] {
        if c.is_ascii_digit() && length < digits.len() {
            digits[length] = c;
            length += 1;
        }
    }
    let exp: i32 = std::str::from_utf8(&text[(e_at + 1).min(n)..])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if v < 0.0 {
        out.push(b'-');
    }
    prettify(out, &digits[..length], exp + 1);
}

/// rapidjson's `Prettify`: `digits` × 10^(kk - len), with kk the decimal point's position.
fn prettify(out: &mut Vec<u8>, digits: &[u8], kk: i32) {
    let length = digits.len() as i32;
    let k = kk - length;
    if (0..=21).contains(&kk) && k >= 0 {
        // 1234e7 -> 12340000000.0
        out.extend_from_slice(digits);
        out.extend(std::iter::repeat_n(b'0', k as usize));
        out.extend_from_slice(b".0");
    } else if 0 < kk && kk <= 21 {
        // 1234e-2 -> 12.34
        out.extend_from_slice(&digits[..kk as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[kk as usize..]);
    } else if -6 < kk && kk <= 0 {
        // 1234e-6 -> 0.001234
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-kk) as usize));
        out.extend_from_slice(digits);
    } else if length == 1 {
        // 1e30
        out.push(digits[0]);
        out.push(b'e');
        let _ = write!(out, "{}", kk - 1);
    } else {
        // 1234e30 -> 1.234e33
        out.push(digits[0]);
        out.push(b'.');
        out.extend_from_slice(&digits[1..]);
        out.push(b'e');
        let _ = write!(out, "{}", kk - 1);
    }
}

/// Appends a `serde_json` value (configurations, parameters) in the same style.
pub fn value(out: &mut Vec<u8>, v: &serde_json::Value) {
    match v {
        serde_json::Value::Null => out.extend_from_slice(b"null"),
        serde_json::Value::Bool(b) => bool(out, *b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i64(out, i);
            } else if let Some(u) = n.as_u64() {
                u64(out, u);
            } else {
                f64(out, n.as_f64().unwrap_or(0.0));
            }
        }
        serde_json::Value::String(s) => string(out, s.as_bytes()),
        serde_json::Value::Array(a) => {
            out.push(b'[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value(out, e);
            }
            out.push(b']');
        }
        serde_json::Value::Object(o) => object(out, o),
    }
}

pub fn object(out: &mut Vec<u8>, o: &serde_json::Map<String, serde_json::Value>) {
    out.push(b'{');
    for (i, (k, e)) in o.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k.as_bytes());
        out.push(b':');
        value(out, e);
    }
    out.push(b'}');
}

/// `{"error":"<message>"}`, Triton's error body.
pub fn error_body(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 12);
    out.extend_from_slice(b"{\"error\":");
    string(&mut out, message.as_bytes());
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: f64) -> String {
        let mut out = Vec::new();
        f64(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn doubles_like_rapidjson() {
        // reference 16 and 23
        assert_eq!(d(2.0), "2.0");
        assert_eq!(d(-1.0), "-1.0");
        assert_eq!(d(0.0), "0.0");
        assert_eq!(d(-0.0), "-0.0");
        assert_eq!(d(1.5), "1.5");
        assert_eq!(d(3.25), "3.25");
        assert_eq!(d(f64::from(1e-7f32)), "1.0000000116860974e-7");
        assert_eq!(d(0.5), "0.5");
        assert_eq!(d(0.1), "0.1");
        assert_eq!(d(f64::from(0.1f32)), "0.10000000149011612");
        assert_eq!(d(0.000001), "0.000001");
        assert_eq!(d(1e-7), "1e-7");
        assert_eq!(d(1.25e-7), "1.25e-7");
        assert_eq!(d(1e20), "100000000000000000000.0");
        assert_eq!(d(1e21), "1e21");
        assert_eq!(d(1.5e300), "1.5e300");
        assert_eq!(d(123456.789), "123456.789");
        assert_eq!(d(-123456789012345680000.0), "-123456789012345680000.0");
        assert_eq!(d(f64::MAX), "1.7976931348623157e308");
        assert_eq!(d(5e-324), "5e-324");
        assert_eq!(d(9007199254740993.0), "9007199254740992.0");
        assert_eq!(d(f64::NAN), "NaN");
        assert_eq!(d(f64::NEG_INFINITY), "-Infinity");
        for v in [0.3f32, 1.0 / 3.0, 16777217.0, -2.5e-12, 3.4028235e38] {
            let text = d(f64::from(v));
            assert_eq!(text.parse::<f64>().unwrap(), f64::from(v), "{text}");
        }
    }

    #[test]
    fn integers() {
        let mut out = Vec::new();
        for v in [0, 7, -7, 10, 1234567890, i64::MIN, i64::MAX] {
            out.clear();
            i64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
        out.clear();
        u64(&mut out, u64::MAX);
        assert_eq!(out, u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn strings_like_rapidjson() {
        let mut out = Vec::new();
        string(&mut out, b"a\"b\\c/d\n\x01\x1f\x7f\xc3\xa9\xff");
        assert_eq!(out, b"\"a\\\"b\\\\c/d\\n\\u0001\\u001F\x7f\xc3\xa9\xff\"");
        assert_eq!(error_body("Not Found"), br#"{"error":"Not Found"}"#);
    }

    #[test]
    fn serde_values() {
        let v =
            serde_json::json!({"a": [1, -2, 1.5, 2.0, true, null, "s"], "b": {}, "c": u64::MAX});
        let mut out = Vec::new();
        value(&mut out, &v);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":[1,-2,1.5,2.0,true,null,"s"],"b":{},"c":18446744073709551615}"#
        );
    }
}
