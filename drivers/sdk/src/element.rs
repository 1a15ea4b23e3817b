//! Typed tensor elements: the fixed-size types a tensor's little-endian bytes hold, so a
//! driver reads `Vec<i32>` from an input and writes `&[f32]` to an output without counting
//! bytes itself.

use crate::DataType;

/// A fixed-size element type and the [`DataType`] it is.
pub trait Element: Copy + Send + Sync + 'static {
    const DATATYPE: DataType;
    /// Reads one element from its little-endian bytes (`bytes.len()` is the element size).
    fn read(bytes: &[u8]) -> Self;
    /// Writes one element's little-endian bytes into `out`.
    fn write(self, out: &mut [u8]);
}

macro_rules! numbers {
    ($($t:ty => $dt:ident),* $(,)?) => {$(
        impl Element for $t {
            const DATATYPE: DataType = DataType::$dt;
            fn read(bytes: &[u8]) -> Self {
                let mut a = [0u8; size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
            fn write(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

numbers!(
    u8 => Uint8, u16 => Uint16, u32 => Uint32, u64 => Uint64,
    i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64,
    f32 => Fp32, f64 => Fp64,
);

impl Element for bool {
    const DATATYPE: DataType = DataType::Bool;
    fn read(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn write(self, out: &mut [u8]) {
        out[0] = u8::from(self);
    }
}

/// The elements of little-endian `data` (a trailing partial element is ignored).
pub fn values<T: Element>(data: &[u8]) -> Vec<T> {
    data.chunks_exact(size_of::<T>()).map(T::read).collect()
}

/// `values` as little-endian bytes.
pub fn to_bytes<T: Element>(values: &[T]) -> Vec<u8> {
    let mut out = vec![0u8; size_of_val(values)];
    write_into(values, &mut out);
    out
}

/// Writes `values` into `out` (`out.len()` must be `values.len() * size_of::<T>()`).
pub(crate) fn write_into<T: Element>(values: &[T], out: &mut [u8]) {
    for (v, chunk) in values.iter().zip(out.chunks_exact_mut(size_of::<T>())) {
        v.write(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(values::<i32>(&to_bytes(&[1i32, -2, 3])), [1, -2, 3]);
        assert_eq!(values::<f32>(&to_bytes(&[1.5f32])), [1.5]);
        assert_eq!(values::<bool>(&[0, 1, 2]), [false, true, true]);
        assert_eq!(
            values::<u16>(&[1, 0, 9]),
            [1],
            "a partial element is ignored"
        );
        assert_eq!(<i64 as Element>::DATATYPE, DataType::Int64);
    }
}
