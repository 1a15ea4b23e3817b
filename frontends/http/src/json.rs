//! A JSON reader that behaves like the rapidjson parser inside Triton: the same error texts
//! and byte offsets (`Invalid value. at 12`), `NaN`/`Infinity` accepted as numbers, string
//! bytes taken as they come (no UTF-8 check), a NUL byte read as the end of the text.
//!
//! Objects and arrays become a small borrowed tree, except that an array under a `"data"` key
//! is only checked and kept as text ([`Value::Data`]): tensor data is read once, straight
//! into the tensor's bytes, by [`for_each_scalar`].

use std::borrow::Cow;
use std::fmt;

/// Deepest nesting of arrays and objects a request may use.
pub const MAX_DEPTH: usize = 100;

/// rapidjson's error kinds, with its English texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    DocumentEmpty,
    RootNotSingular,
    ValueInvalid,
    ObjectMissName,
    ObjectMissColon,
    ObjectMissCommaOrCurlyBracket,
    ArrayMissCommaOrSquareBracket,
    StringUnicodeEscapeInvalidHex,
    StringUnicodeSurrogateInvalid,
    StringEscapeInvalid,
    StringMissQuotationMark,
    StringInvalidEncoding,
    NumberTooBig,
    NumberMissFraction,
    NumberMissExponent,
    /// Not rapidjson's: nesting deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl ErrorKind {
    /// rapidjson's `GetParseError_En`.
    pub fn text(self) -> &'static str {
        match self {
            ErrorKind::DocumentEmpty => "The document is empty.",
            ErrorKind::RootNotSingular => "The document root must not be followed by other values.",
            ErrorKind::ValueInvalid => "Invalid value.",
            ErrorKind::ObjectMissName => "Missing a name for object member.",
            ErrorKind::ObjectMissColon => "Missing a colon after a name of object member.",
            ErrorKind::ObjectMissCommaOrCurlyBracket => {
                "Missing a comma or '}' after an object member."
            }
            ErrorKind::ArrayMissCommaOrSquareBracket => {
                "Missing a comma or ']' after an array element."
            }
            ErrorKind::StringUnicodeEscapeInvalidHex => {
                "Incorrect hex digit after \\u escape in string."
            }
            ErrorKind::StringUnicodeSurrogateInvalid => "The surrogate pair in string is invalid.",
            ErrorKind::StringEscapeInvalid => "Invalid escape character in string.",
            ErrorKind::StringMissQuotationMark => "Missing a closing quotation mark in string.",
            ErrorKind::StringInvalidEncoding => "Invalid encoding in string.",
            ErrorKind::NumberTooBig => "Number too big to be stored in double.",
            ErrorKind::NumberMissFraction => "Miss fraction part in number.",
            ErrorKind::NumberMissExponent => "Miss exponent in number.",
            ErrorKind::TooDeep => "JSON nesting depth exceeds maximum allowed limit",
        }
    }
}

/// A syntax error and the byte offset rapidjson reports for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    pub offset: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ErrorKind::TooDeep {
            write!(f, "{} ({MAX_DEPTH})", self.kind.text())
        } else {
            write!(f, "{} at {}", self.kind.text(), self.offset)
        }
    }
}

/// A JSON number, kept as its text until someone asks for it as a type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Number<'a>(&'a [u8]);

/// What a number is, in rapidjson's terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NumberValue {
    /// An integer that fits in i64 (and, when >= 0, in u64 too).
    Int(i64),
    /// An integer above i64::MAX that fits in u64.
    Uint(u64),
    /// Anything else: fractions, exponents, NaN, infinities, integers too big for 64 bits.
    Double(f64),
}

impl<'a> Number<'a> {
    pub fn text(&self) -> &'a [u8] {
        self.0
    }

    pub fn value(&self) -> NumberValue {
        number_value(self.0)
    }

    /// rapidjson `IsInt64` + `GetInt64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self.value() {
            NumberValue::Int(i) => Some(i),
            _ => None,
        }
    }

    /// rapidjson `IsUint64` + `GetUint64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self.value() {
            NumberValue::Int(i) => u64::try_from(i).ok(),
            NumberValue::Uint(u) => Some(u),
            NumberValue::Double(_) => None,
        }
    }

    /// rapidjson `GetDouble` (every number is one).
    pub fn as_f64(&self) -> f64 {
        match self.value() {
            NumberValue::Int(i) => i as f64,
            NumberValue::Uint(u) => u as f64,
            NumberValue::Double(d) => d,
        }
    }
}

fn number_value(text: &[u8]) -> NumberValue {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    match digits.first() {
        Some(b'N') => return NumberValue::Double(f64::NAN),
        Some(b'I') => {
            return NumberValue::Double(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        _ => {}
    }
    if digits.iter().all(u8::is_ascii_digit) {
        let mut magnitude: u64 = 0;
        let mut fits = true;
        for &d in digits {
            match magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(d - b'0')))
            {
                Some(m) => magnitude = m,
                None => {
                    fits = false;
                    break;
                }
            }
        }
        if fits {
            if !negative {
                return match i64::try_from(magnitude) {
                    Ok(i) => NumberValue::Int(i),
                    Err(_) => NumberValue::Uint(magnitude),
                };
            }
            if magnitude <= 1u64 << 63 {
                return NumberValue::Int((magnitude as i64).wrapping_neg());
            }
        }
    }
    // Checked by the parser: ASCII, and in Rust's float syntax.
    let s = std::str::from_utf8(text).unwrap_or("0");
    NumberValue::Double(s.parse::<f64>().unwrap_or(0.0))
}

/// A parsed JSON value borrowing from the request body.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Number(Number<'a>),
    /// The string's bytes, escapes resolved (not checked to be UTF-8, like rapidjson).
    String(Cow<'a, [u8]>),
    Array(Vec<Value<'a>>),
    /// Members in order; duplicate names are kept (lookups find the first, like rapidjson).
    Object(Vec<(Cow<'a, [u8]>, Value<'a>)>),
    /// An array under a `"data"` key, checked but not taken apart: its text.
    Data(&'a [u8]),
    /// An array or object nested deeper than [`MAX_DEPTH`] in a document read with
    /// [`parse_control`]: checked without recursion, not built; its text.
    Nested(&'a [u8]),
}

impl<'a> Value<'a> {
    /// The first member called `name`, when this is an object.
    pub fn get(&self, name: &str) -> Option<&Value<'a>> {
        match self {
            Value::Object(members) => members
                .iter()
                .find(|(k, _)| k.as_ref() == name.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }
}

/// Parses a whole document the way Triton's `TritonJson::Parse` does.
pub fn parse(text: &[u8]) -> Result<Value<'_>, ParseError> {
    parse_with(text, true)
}

/// Parses a document building every array (also those under `"data"`).
pub fn parse_eager(text: &[u8]) -> Result<Value<'_>, ParseError> {
    parse_with(text, false)
}

/// Parses a control body (repository index, load, unload) as Triton does, at any depth:
/// values nested deeper than [`MAX_DEPTH`] are checked without recursion and kept as
/// [`Value::Nested`], so a field of the wrong type gets its value error, as in Triton, not a
/// depth error.
pub fn parse_control(text: &[u8]) -> Result<Value<'_>, ParseError> {
    parse_opts(text, false, true)
}

fn parse_with(text: &[u8], lazy_data: bool) -> Result<Value<'_>, ParseError> {
    parse_opts(text, lazy_data, false)
}

fn parse_opts(text: &[u8], lazy_data: bool, any_depth: bool) -> Result<Value<'_>, ParseError> {
    let mut p = Parser {
        s: text,
        pos: 0,
        depth: 0,
        lazy_data,
        any_depth,
    };
    p.skip_ws();
    if p.peek() == 0 {
        return Err(p.err(ErrorKind::DocumentEmpty));
    }
    // rapidjson's iterative parser takes only these as the start of a document; anything else
    // it reports as an empty document.
    if matches!(p.peek(), b']' | b'}' | b',' | b':') {
        return Err(p.err(ErrorKind::DocumentEmpty));
    }
    let value = p.value(ValueMode::Build)?.unwrap_or(Value::Null);
    p.skip_ws();
    if p.peek() != 0 {
        return Err(p.err(ErrorKind::RootNotSingular));
    }
    Ok(value)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ValueMode {
    /// Build the value.
    Build,
    /// Only check it (returns `None`).
    Check,
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
    /// Keep arrays under `"data"` as text.
    lazy_data: bool,
    /// Past [`MAX_DEPTH`], check values without recursion instead of refusing them.
    any_depth: bool,
}

impl<'a> Parser<'a> {
    /// The next byte; 0 at the end (rapidjson's streams read NUL there, and stop at a NUL).
    #[inline]
    fn peek(&self) -> u8 {
        self.s.get(self.pos).copied().unwrap_or(0)
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn err(&self, kind: ErrorKind) -> ParseError {
        ParseError {
            kind,
            offset: self.pos,
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(ErrorKind::TooDeep));
        }
        Ok(())
    }

    /// A value at `pos` (whitespace already skipped).
    fn value(&mut self, mode: ValueMode) -> Result<Option<Value<'a>>, ParseError> {
        match self.peek() {
            b'{' | b'[' if self.any_depth && self.depth >= MAX_DEPTH => {
                let start = self.pos;
                self.skip_nested()?;
                Ok((mode == ValueMode::Build).then_some(Value::Nested(&self.s[start..self.pos])))
            }
            b'{' => self.object(mode),
            b'[' => self.array(mode),
            b'"' => {
                let s = self.string(mode)?;
                Ok(s.map(Value::String))
            }
            b't' => self.literal(b"true", Value::Bool(true), mode),
            b'f' => self.literal(b"false", Value::Bool(false), mode),
            b'n' => self.literal(b"null", Value::Null, mode),
            _ => {
                let n = self.number()?;
                Ok((mode == ValueMode::Build).then_some(Value::Number(n)))
            }
        }
    }

    fn literal(
        &mut self,
        word: &[u8],
        value: Value<'a>,
        mode: ValueMode,
    ) -> Result<Option<Value<'a>>, ParseError> {
        self.pos += 1;
        for &c in &word[1..] {
            if self.peek() != c {
                return Err(self.err(ErrorKind::ValueInvalid));
            }
            self.pos += 1;
        }
        Ok((mode == ValueMode::Build).then_some(value))
    }

    fn object(&mut self, mode: ValueMode) -> Result<Option<Value<'a>>, ParseError> {
        self.enter()?;
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == b'}' {
            self.pos += 1;
            self.depth -= 1;
            return Ok((mode == ValueMode::Build).then_some(Value::Object(members)));
        }
        loop {
            if self.peek() != b'"' {
                return Err(self.err(ErrorKind::ObjectMissName));
            }
            let key = self.string(ValueMode::Build)?.unwrap_or_default();
            self.skip_ws();
            if self.peek() != b':' {
                return Err(self.err(ErrorKind::ObjectMissColon));
            }
            self.pos += 1;
            self.skip_ws();
            self.check_value_start()?;
            if mode == ValueMode::Build
                && self.lazy_data
                && key.as_ref() == b"data"
                && self.peek() == b'['
            {
                let start = self.pos;
                self.value(ValueMode::Check)?;
                members.push((key, Value::Data(&self.s[start..self.pos])));
            } else {
                let value = self.value(mode)?;
                if let Some(value) = value {
                    members.push((key, value));
                }
            }
            self.skip_ws();
            match self.peek() {
                b',' => {
                    self.pos += 1;
                    self.skip_ws();
                }
                b'}' => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok((mode == ValueMode::Build).then_some(Value::Object(members)));
                }
                _ => return Err(self.err(ErrorKind::ObjectMissCommaOrCurlyBracket)),
            }
        }
    }

    fn array(&mut self, mode: ValueMode) -> Result<Option<Value<'a>>, ParseError> {
        self.enter()?;
        self.pos += 1;
        let mut elements = Vec::new();
        self.skip_ws();
        if self.peek() == b']' {
            self.pos += 1;
            self.depth -= 1;
            return Ok((mode == ValueMode::Build).then_some(Value::Array(elements)));
        }
        loop {
            self.check_value_start()?;
            if let Some(v) = self.value(mode)? {
                elements.push(v);
            }
            self.skip_ws();
            match self.peek() {
                b',' => {
                    self.pos += 1;
                    self.skip_ws();
                }
                b']' => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok((mode == ValueMode::Build).then_some(Value::Array(elements)));
                }
                _ => return Err(self.err(ErrorKind::ArrayMissCommaOrSquareBracket)),
            }
        }
    }

    /// Checks the array or object at `pos` as `value(Check)` does, with the same errors at
    /// the same offsets, but with a stack of its own instead of recursion (any depth).
    fn skip_nested(&mut self) -> Result<(), ParseError> {
        let mut closers: Vec<u8> = Vec::new();
        'value: loop {
            let c = self.peek();
            if c == b'[' || c == b'{' {
                let close = if c == b'[' { b']' } else { b'}' };
                self.pos += 1;
                self.skip_ws();
                if self.peek() == close {
                    self.pos += 1;
                } else {
                    closers.push(close);
                    if close == b'}' {
                        self.member_name()?;
                    }
                    self.check_value_start()?;
                    continue 'value;
                }
            } else {
                self.value(ValueMode::Check)?;
            }
            // After a value: the next one of the innermost container, or its end.
            loop {
                let Some(&close) = closers.last() else {
                    return Ok(());
                };
                self.skip_ws();
                match self.peek() {
                    b',' => {
                        self.pos += 1;
                        self.skip_ws();
                        if close == b'}' {
                            self.member_name()?;
                        }
                        self.check_value_start()?;
                        continue 'value;
                    }
                    b if b == close => {
                        self.pos += 1;
                        closers.pop();
                    }
                    _ if close == b']' => {
                        return Err(self.err(ErrorKind::ArrayMissCommaOrSquareBracket));
                    }
                    _ => return Err(self.err(ErrorKind::ObjectMissCommaOrCurlyBracket)),
                }
            }
        }
    }

    /// An object member's name and colon (whitespace after them skipped).
    fn member_name(&mut self) -> Result<(), ParseError> {
        if self.peek() != b'"' {
            return Err(self.err(ErrorKind::ObjectMissName));
        }
        self.string(ValueMode::Check)?;
        self.skip_ws();
        if self.peek() != b':' {
            return Err(self.err(ErrorKind::ObjectMissColon));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    /// Where a value must start: structural characters and the end are "Invalid value.".
    fn check_value_start(&self) -> Result<(), ParseError> {
        match self.peek() {
            0 | b']' | b'}' | b',' | b':' => Err(self.err(ErrorKind::ValueInvalid)),
            _ => Ok(()),
        }
    }

    fn number(&mut self) -> Result<Number<'a>, ParseError> {
        let start = self.pos;
        if self.peek() == b'-' {
            self.pos += 1;
        }
        let c = self.peek();
        let mut simple_integer = true;
        if c == b'0' {
            self.pos += 1;
        } else if c.is_ascii_digit() {
            while self.peek().is_ascii_digit() {
                self.pos += 1;
            }
        } else if c == b'N' {
            self.pos += 1;
            if !(self.consume(b'a') && self.consume(b'N')) {
                return Err(self.err(ErrorKind::ValueInvalid));
            }
            return Ok(Number(&self.s[start..self.pos]));
        } else if c == b'I' {
            self.pos += 1;
            if !(self.consume(b'n') && self.consume(b'f')) {
                return Err(self.err(ErrorKind::ValueInvalid));
            }
            if self.peek() == b'i'
                && !(self.consume(b'i')
                    && self.consume(b'n')
                    && self.consume(b'i')
                    && self.consume(b't')
                    && self.consume(b'y'))
            {
                return Err(self.err(ErrorKind::ValueInvalid));
            }
            return Ok(Number(&self.s[start..self.pos]));
        } else {
            return Err(self.err(ErrorKind::ValueInvalid));
        }
        if self.peek() == b'.' {
            simple_integer = false;
            self.pos += 1;
            if !self.peek().is_ascii_digit() {
                return Err(self.err(ErrorKind::NumberMissFraction));
            }
            while self.peek().is_ascii_digit() {
                self.pos += 1;
            }
        }
        if matches!(self.peek(), b'e' | b'E') {
            simple_integer = false;
            self.pos += 1;
            if matches!(self.peek(), b'+' | b'-') {
                self.pos += 1;
            }
            if !self.peek().is_ascii_digit() {
                return Err(self.err(ErrorKind::NumberMissExponent));
            }
            while self.peek().is_ascii_digit() {
                self.pos += 1;
            }
        }
        let text = &self.s[start..self.pos];
        // Only numbers with an exponent or very many digits can overflow a double.
        if (!simple_integer || text.len() > 300)
            && let NumberValue::Double(d) = number_value(text)
            && d.is_infinite()
        {
            return Err(ParseError {
                kind: ErrorKind::NumberTooBig,
                offset: start,
            });
        }
        Ok(Number(text))
    }

    fn consume(&mut self, c: u8) -> bool {
        if self.peek() == c {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A string at `pos` (the opening quote). Borrowed when it has no escapes.
    fn string(&mut self, mode: ValueMode) -> Result<Option<Cow<'a, [u8]>>, ParseError> {
        self.pos += 1;
        let start = self.pos;
        // Fast path: no escapes.
        loop {
            match self.s.get(self.pos) {
                Some(b'"') => {
                    let s = &self.s[start..self.pos];
                    self.pos += 1;
                    return Ok((mode == ValueMode::Build).then_some(Cow::Borrowed(s)));
                }
                Some(b'\\') => break,
                Some(0) | None => return Err(self.err(ErrorKind::StringMissQuotationMark)),
                Some(&c) if c < 0x20 => return Err(self.err(ErrorKind::StringInvalidEncoding)),
                Some(_) => self.pos += 1,
            }
        }
        let mut out = self.s[start..self.pos].to_vec();
        loop {
            match self.s.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((mode == ValueMode::Build).then_some(Cow::Owned(out)));
                }
                Some(b'\\') => {
                    let escape_offset = self.pos;
                    self.pos += 1;
                    let e = self.peek();
                    let simple = match e {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        _ => None,
                    };
                    if let Some(c) = simple {
                        self.pos += 1;
                        out.push(c);
                    } else if e == b'u' {
                        self.pos += 1;
                        let mut cp = self.hex4(escape_offset)?;
                        if (0xD800..=0xDFFF).contains(&cp) {
                            let bad = ParseError {
                                kind: ErrorKind::StringUnicodeSurrogateInvalid,
                                offset: escape_offset,
                            };
                            if cp > 0xDBFF || !(self.consume(b'\\') && self.consume(b'u')) {
                                return Err(bad);
                            }
                            let low = self.hex4(escape_offset)?;
                            if !(0xDC00..=0xDFFF).contains(&low) {
                                return Err(bad);
                            }
                            cp = (((cp - 0xD800) << 10) | (low - 0xDC00)) + 0x10000;
                        }
                        let ch = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    } else {
                        return Err(ParseError {
                            kind: ErrorKind::StringEscapeInvalid,
                            offset: escape_offset,
                        });
                    }
                }
                Some(0) | None => return Err(self.err(ErrorKind::StringMissQuotationMark)),
                Some(&c) if c < 0x20 => return Err(self.err(ErrorKind::StringInvalidEncoding)),
                Some(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn hex4(&mut self, escape_offset: usize) -> Result<u32, ParseError> {
        let mut cp = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                c @ b'A'..=b'F' => c - b'A' + 10,
                _ => {
                    return Err(ParseError {
                        kind: ErrorKind::StringUnicodeEscapeInvalidHex,
                        offset: escape_offset,
                    });
                }
            };
            cp = cp * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(cp)
    }
}

/// One leaf of a (possibly nested) `data` array.
#[derive(Debug, PartialEq)]
pub enum Scalar<'a> {
    Number(Number<'a>),
    Bool(bool),
    String(Cow<'a, [u8]>),
    Null,
    /// An object where a leaf should be.
    Object,
}

/// Calls `f` for every leaf of a [`Value::Data`] array, depth first (nesting flattened, as
/// Triton reads `data`). Stops at the first error `f` returns.
pub fn for_each_scalar<'a, E>(
    data: &'a [u8],
    mut f: impl FnMut(Scalar<'a>) -> Result<(), E>,
) -> Result<(), E> {
    // The text was checked when it was parsed, so this only has to find the leaves.
    let mut p = Parser {
        s: data,
        pos: 0,
        depth: 0,
        lazy_data: false,
        any_depth: false,
    };
    while p.pos < data.len() {
        match data[p.pos] {
            b'[' | b']' | b',' | b' ' | b'\n' | b'\r' | b'\t' => p.pos += 1,
            b'"' => {
                let s = p
                    .string(ValueMode::Build)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                f(Scalar::String(s))?;
            }
            b't' => {
                p.pos += 4;
                f(Scalar::Bool(true))?;
            }
            b'f' => {
                p.pos += 5;
                f(Scalar::Bool(false))?;
            }
            b'n' => {
                p.pos += 4;
                f(Scalar::Null)?;
            }
            b'{' => {
                if p.value(ValueMode::Check).is_err() {
                    p.pos = data.len();
                }
                f(Scalar::Object)?;
            }
            _ => {
                let start = p.pos;
                while p.pos < data.len()
                    && !matches!(data[p.pos], b',' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                {
                    p.pos += 1;
                }
                f(Scalar::Number(Number(&data[start..p.pos])))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn rapidjson_error_texts_and_offsets() {
        assert_eq!(error(r#"{"inputs": ["#), "Invalid value. at 12");
        assert_eq!(error(""), "The document is empty. at 0");
        assert_eq!(error("   "), "The document is empty. at 3");
        assert_eq!(error("}"), "The document is empty. at 0");
        assert_eq!(error("{"), "Missing a name for object member. at 1");
        assert_eq!(error("not json"), "Invalid value. at 1");
        assert_eq!(error("xyz"), "Invalid value. at 0");
        assert_eq!(error(r#"{"inputs": [}"#), "Invalid value. at 12");
        assert_eq!(
            error("[1, 2"),
            "Missing a comma or ']' after an array element. at 5"
        );
        assert_eq!(
            error(r#"{"inputs": [{"name": "INPUT0",}]}"#),
            "Missing a name for object member. at 30"
        );
        assert_eq!(
            error(r#"{"a" 1}"#),
            "Missing a colon after a name of object member. at 5"
        );
        assert_eq!(
            error(r#"{"a": 1 "b": 2}"#),
            "Missing a comma or '}' after an object member. at 8"
        );
        assert_eq!(error("[1,]"), "Invalid value. at 3");
        assert_eq!(
            error("[01]"),
            "Missing a comma or ']' after an array element. at 2"
        );
        assert_eq!(error("[1.]"), "Miss fraction part in number. at 3");
        assert_eq!(error("[1e]"), "Miss exponent in number. at 3");
        assert_eq!(error("[-]"), "Invalid value. at 2");
        assert_eq!(error("[tru]"), "Invalid value. at 4");
        assert_eq!(
            error("[1e999]"),
            "Number too big to be stored in double. at 1"
        );
        assert_eq!(
            error("{} x"),
            "The document root must not be followed by other values. at 3"
        );
        assert_eq!(
            error(r#"["\x"]"#),
            "Invalid escape character in string. at 2"
        );
        assert_eq!(
            error(r#"["\u12G4"]"#),
            "Incorrect hex digit after \\u escape in string. at 2"
        );
        assert_eq!(
            error(r#"["\uDC00"]"#),
            "The surrogate pair in string is invalid. at 2"
        );
        assert_eq!(error("[\"a\tb\"]"), "Invalid encoding in string. at 3");
        assert_eq!(
            error("[\"abc"),
            "Missing a closing quotation mark in string. at 5"
        );
    }

    #[test]
    fn control_bodies_parse_at_any_depth_with_the_same_errors() {
        // 250000 levels, as Triton's own test sends them: no recursion, no depth error.
        let depth = 250_000;
        let body = format!(
            "{{\"ready\":{}true{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let v = parse_control(body.as_bytes()).unwrap();
        assert!(matches!(v.get("ready"), Some(Value::Array(_))));
        assert!(v.get("ready").unwrap().as_bool().is_none());
        // Objects too, and the values past the limit are kept as their text.
        let nested = "{\"a\":".repeat(150) + "1" + &"}".repeat(150);
        let v = parse_control(nested.as_bytes()).unwrap();
        let mut inner = &v;
        for _ in 0..MAX_DEPTH {
            inner = inner.get("a").unwrap();
        }
        assert!(matches!(inner, Value::Nested(_)));
        // Malformed deep text: the errors the recursive reader gives, at the same offsets.
        for bad in [
            "[".repeat(120) + "1,]",
            "[".repeat(120) + "1 2]",
            "[".repeat(120) + "{\"a\" 1}",
            "[".repeat(120) + "{1:2}",
            "[".repeat(120) + "{\"a\":1 \"b\"}",
            "[".repeat(120),
        ] {
            let deep = parse_control(bad.as_bytes()).unwrap_err();
            let shallow = parse(bad.trim_start_matches(&"[".repeat(100)[..]).as_bytes());
            let shallow = shallow.unwrap_err();
            assert_eq!(deep.kind, shallow.kind, "{bad}");
            assert_eq!(deep.offset, shallow.offset + 100, "{bad}");
        }
        // Infer bodies keep the limit.
        assert_eq!(parse(body.as_bytes()).unwrap_err().kind, ErrorKind::TooDeep);
    }

    #[test]
    fn nul_ends_the_text_and_depth_is_limited() {
        assert_eq!(parse(b"{}\0garbage").unwrap(), Value::Object(vec![]));
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(deep.as_bytes()).unwrap_err().kind, ErrorKind::TooDeep);
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn values_and_numbers() {
        let v = parse(
            br#"{"a": [1, -2, 3.5, "x\n\u00e9\ud83d\ude00", true, null, NaN, -Infinity], "a": 0}"#,
        )
        .unwrap();
        let Some(Value::Array(a)) = v.get("a") else {
            panic!("{v:?}")
        };
        assert_eq!(a[0].as_i64(), Some(1));
        assert_eq!(a[0].as_u64(), Some(1));
        assert_eq!(a[1].as_i64(), Some(-2));
        assert_eq!(a[1].as_u64(), None);
        assert_eq!(a[2].as_i64(), None);
        assert_eq!(a[3].as_str_bytes(), Some("x\né😀".as_bytes()));
        assert_eq!(a[4].as_bool(), Some(true));
        assert_eq!(a[5], Value::Null);
        let Value::Number(nan) = a[6] else { panic!() };
        assert!(nan.as_f64().is_nan());
        let Value::Number(inf) = a[7] else { panic!() };
        assert_eq!(inf.as_f64(), f64::NEG_INFINITY);
        assert_eq!(
            number_value(b"18446744073709551615"),
            NumberValue::Uint(u64::MAX)
        );
        assert_eq!(
            number_value(b"-9223372036854775808"),
            NumberValue::Int(i64::MIN)
        );
        assert_eq!(
            number_value(b"18446744073709551616"),
            NumberValue::Double(18446744073709551616.0)
        );
        assert_eq!(number_value(b"-0"), NumberValue::Int(0));
        assert_eq!(number_value(b"1e2"), NumberValue::Double(100.0));
    }

    #[test]
    fn data_arrays_are_kept_as_text_and_flattened() {
        let v =
            parse(br#"{"data": [[1, 2], [], [3, "s", true, null, {"x": 1}]], "d": [1]}"#).unwrap();
        let Some(Value::Data(text)) = v.get("data") else {
            panic!("{v:?}")
        };
        let mut leaves = Vec::new();
        for_each_scalar::<()>(text, |s| {
            leaves.push(format!("{s:?}"));
            Ok(())
        })
        .unwrap();
        assert_eq!(leaves.len(), 7, "{leaves:?}");
        assert!(leaves[6].contains("Object"));
        assert!(matches!(v.get("d"), Some(Value::Array(_))));
    }
}
