//! A core `InferenceResponse` -> Triton's reply body: the JSON header (`id` when there is
//! one, `model_name`, `model_version` as a string, `parameters` when there are any,
//! `outputs`), each output's data either as JSON `data` or, for binary outputs, as
//! `parameters.binary_data_size` with the tensor's own bytes appended after the JSON, in
//! output order, without copying them. An output the request put in shared memory (already
//! written there) is named with its datatype and shape only: no `data`, no `parameters`, as
//! Triton's reply has it.

use bytes::Bytes;
use ferrite_core::{DataType, Error, InferenceResponse, Tensor};

use crate::decode::{OutputKind, OutputKinds};
use crate::write;

/// A reply body in pieces: the JSON header first, then binary outputs' buffers.
#[derive(Debug)]
pub struct Encoded {
    pub chunks: Vec<Bytes>,
    /// Length of the JSON header (the `Inference-Header-Content-Length` of binary replies).
    pub json_len: usize,
    /// Whether any binary data follows the JSON.
    pub has_binary: bool,
}

/// Roughly how much JSON text an output's data needs (to size the buffer once).
fn json_size_hint(t: &Tensor) -> usize {
    match t.datatype {
        DataType::Bytes => t.data.len() + t.data.len() / 4,
        DataType::Bool => t.data.len() * 6,
        dt => t.data.len() / dt.element_size().unwrap_or(1) * 12,
    }
}

pub fn response(resp: &InferenceResponse, kinds: &OutputKinds) -> Result<Encoded, Error> {
    let capacity = 128
        + resp
            .outputs
            .iter()
            .map(|t| {
                64 + t.name.len()
                    + match kinds.kind(&t.name) {
                        OutputKind::Json => json_size_hint(t),
                        OutputKind::Binary | OutputKind::SharedMemory => 0,
                    }
            })
            .sum::<usize>();
    let mut out = Vec::with_capacity(capacity);
    let mut chunks = vec![Bytes::new()];
    out.push(b'{');
    if !resp.id.is_empty() {
        out.extend_from_slice(b"\"id\":");
        write::string(&mut out, resp.id.as_bytes());
        out.push(b',');
    }
    out.extend_from_slice(b"\"model_name\":");
    write::string(&mut out, resp.model_name.as_bytes());
    out.extend_from_slice(b",\"model_version\":\"");
    write::i64(&mut out, resp.model_version);
    out.push(b'"');
    if !resp.parameters.is_empty() {
        out.extend_from_slice(b",\"parameters\":");
        write::object(&mut out, &resp.parameters);
    }
    out.extend_from_slice(b",\"outputs\":[");
    for (i, t) in resp.outputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        write::string(&mut out, t.name.as_bytes());
        out.extend_from_slice(b",\"datatype\":\"");
        out.extend_from_slice(t.datatype.wire_name().as_bytes());
        out.extend_from_slice(b"\",\"shape\":[");
        for (j, d) in t.shape.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write::i64(&mut out, *d);
        }
        out.push(b']');
        match kinds.kind(&t.name) {
            OutputKind::Binary => {
                out.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
                write::u64(&mut out, t.data.len() as u64);
                out.push(b'}');
                if !t.data.is_empty() {
                    chunks.push(t.data.clone());
                }
            }
            OutputKind::Json => {
                out.extend_from_slice(b",\"data\":");
                data(&mut out, t)?;
            }
            OutputKind::SharedMemory => {}
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    let json_len = out.len();
    chunks[0] = Bytes::from(out);
    Ok(Encoded {
        has_binary: chunks.len() > 1,
        chunks,
        json_len,
    })
}

/// Writes the outputs the request put in shared memory into their regions (Triton's
/// allocator hands the region to the model; here the output is copied there once).
pub fn write_shared_memory(resp: &InferenceResponse, kinds: &OutputKinds) -> Result<(), Error> {
    for t in &resp.outputs {
        if let Some(region) = kinds.region(&t.name) {
            region.write(&t.name, &t.data)?;
        }
    }
    Ok(())
}

fn size_mismatch(name: &str) -> Error {
    Error::internal(format!(
        "output tensor shape does not match size of output for '{name}'"
    ))
}

/// An output's elements as a flat JSON array (Triton's `WriteDataToJson`).
fn data(out: &mut Vec<u8>, t: &Tensor) -> Result<(), Error> {
    let count = t.element_count();
    out.push(b'[');
    if t.datatype == DataType::Bytes {
        let mut pos = 0usize;
        for e in 0..count {
            let len = t
                .data
                .get(pos..pos + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(|| size_mismatch(&t.name))?;
            let element = t
                .data
                .get(pos + 4..pos + 4 + len)
                .ok_or_else(|| size_mismatch(&t.name))?;
            if e > 0 {
                out.push(b',');
            }
            write::string(out, element);
            pos += 4 + len;
        }
        out.push(b']');
        return Ok(());
    }
    let size = t.datatype.element_size().unwrap_or(1);
    if t.data.len() != count.saturating_mul(size) {
        return Err(size_mismatch(&t.name));
    }
    macro_rules! each {
        ($n:literal, $conv:expr) => {
            for (i, c) in t.data.chunks_exact($n).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let bytes: [u8; $n] = c.try_into().expect("chunks_exact");
                #[allow(clippy::redundant_closure_call)]
                $conv(out, bytes);
            }
        };
    }
    match t.datatype {
        DataType::Bool => each!(1, |o: &mut Vec<u8>, b: [u8; 1]| write::bool(o, b[0] != 0)),
        DataType::Uint8 => each!(1, |o: &mut Vec<u8>, b: [u8; 1]| write::u64(
            o,
            u64::from(b[0])
        )),
        DataType::Int8 => each!(1, |o: &mut Vec<u8>, b: [u8; 1]| write::i64(
            o,
            i64::from(i8::from_le_bytes(b))
        )),
        DataType::Uint16 => each!(2, |o: &mut Vec<u8>, b| write::u64(
            o,
            u64::from(u16::from_le_bytes(b))
        )),
        DataType::Int16 => each!(2, |o: &mut Vec<u8>, b| write::i64(
            o,
            i64::from(i16::from_le_bytes(b))
        )),
        DataType::Uint32 => each!(4, |o: &mut Vec<u8>, b| write::u64(
            o,
            u64::from(u32::from_le_bytes(b))
        )),
        DataType::Int32 => each!(4, |o: &mut Vec<u8>, b| write::i64(
            o,
            i64::from(i32::from_le_bytes(b))
        )),
        DataType::Uint64 => each!(8, |o: &mut Vec<u8>, b| write::u64(o, u64::from_le_bytes(b))),
        DataType::Int64 => each!(8, |o: &mut Vec<u8>, b| write::i64(o, i64::from_le_bytes(b))),
        DataType::Fp16 => each!(2, |o: &mut Vec<u8>, b| write::f64(
            o,
            half::f16::from_le_bytes(b).to_f64()
        )),
        DataType::Bf16 => each!(2, |o: &mut Vec<u8>, b| write::f64(
            o,
            half::bf16::from_le_bytes(b).to_f64()
        )),
        DataType::Fp32 => each!(4, |o: &mut Vec<u8>, b| write::f64(
            o,
            f64::from(f32::from_le_bytes(b))
        )),
        DataType::Fp64 => each!(8, |o: &mut Vec<u8>, b| write::f64(o, f64::from_le_bytes(b))),
        DataType::Bytes => unreachable!("handled above"),
    }
    out.push(b']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> Bytes {
        v.iter()
            .flat_map(|f| f.to_le_bytes())
            .collect::<Vec<u8>>()
            .into()
    }

    fn add_sub(id: &str) -> InferenceResponse {
        let a: Vec<f32> = (1..=16).map(|x| x as f32).collect();
        let b: Vec<f32> = (-1..15).map(|x| x as f32).collect();
        InferenceResponse {
            model_name: "add_sub".into(),
            model_version: 1,
            id: id.into(),
            outputs: vec![
                Tensor::new("OUTPUT0", DataType::Fp32, vec![16], f32s(&a)),
                Tensor::new("OUTPUT1", DataType::Fp32, vec![16], f32s(&b)),
            ],
            parameters: Default::default(),
        }
    }

    #[test]
    fn json_reply_matches_reference_16() {
        let e = response(&add_sub("req-1"), &OutputKinds::default()).unwrap();
        assert!(!e.has_binary);
        assert_eq!(e.chunks.len(), 1);
        assert_eq!(
            std::str::from_utf8(&e.chunks[0]).unwrap(),
            r#"{"id":"req-1","model_name":"add_sub","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[16],"data":[1.0,2.0,3.0,4.0,5.0,6.0,7.0,8.0,9.0,10.0,11.0,12.0,13.0,14.0,15.0,16.0]},{"name":"OUTPUT1","datatype":"FP32","shape":[16],"data":[-1.0,0.0,1.0,2.0,3.0,4.0,5.0,6.0,7.0,8.0,9.0,10.0,11.0,12.0,13.0,14.0]}]}"#
        );
    }

    #[test]
    fn binary_reply_matches_reference_19() {
        let resp = add_sub("");
        let kinds = OutputKinds {
            default_binary: false,
            named: vec![("OUTPUT0".into(), true), ("OUTPUT1".into(), true)],
            shm: vec![],
        };
        let e = response(&resp, &kinds).unwrap();
        let header = r#"{"model_name":"add_sub","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[16],"parameters":{"binary_data_size":64}},{"name":"OUTPUT1","datatype":"FP32","shape":[16],"parameters":{"binary_data_size":64}}]}"#;
        assert_eq!(std::str::from_utf8(&e.chunks[0]).unwrap(), header);
        assert_eq!(e.json_len, 230);
        assert!(e.has_binary);
        // the outputs' buffers themselves, not copies
        assert_eq!(e.chunks[1].as_ptr(), resp.outputs[0].data.as_ptr());
        assert_eq!(e.chunks[2], resp.outputs[1].data);
        let reference =
            std::fs::read("/work/shared/triton-reference/http/19_infer_add_sub_binary.body.bin");
        if let Ok(bin) = reference {
            let mut all = e.chunks[1].to_vec();
            all.extend_from_slice(&e.chunks[2]);
            assert!(bin.ends_with(&all));
        }
    }

    #[test]
    fn every_datatype_to_json() {
        let t = |dt: DataType, shape: Vec<i64>, data: Vec<u8>| {
            let resp = InferenceResponse {
                model_name: "m".into(),
                model_version: 2,
                outputs: vec![Tensor::new("O", dt, shape, data.into())],
                ..Default::default()
            };
            let e = response(&resp, &OutputKinds::default())
                .map(|e| String::from_utf8(e.chunks[0].to_vec()).unwrap());
            e.map(|s| {
                let start = s.find("\"data\":").unwrap() + 7;
                s[start..s.len() - 3].to_string()
            })
        };
        assert_eq!(
            t(DataType::Bool, vec![2], vec![1, 0]).unwrap(),
            "[true,false]"
        );
        assert_eq!(
            t(DataType::Uint8, vec![2], vec![0, 255]).unwrap(),
            "[0,255]"
        );
        assert_eq!(t(DataType::Int8, vec![1], vec![0x80]).unwrap(), "[-128]");
        assert_eq!(
            t(DataType::Uint16, vec![1], vec![255, 255]).unwrap(),
            "[65535]"
        );
        assert_eq!(
            t(DataType::Int16, vec![1], (-2i16).to_le_bytes().to_vec()).unwrap(),
            "[-2]"
        );
        assert_eq!(
            t(DataType::Uint32, vec![1], u32::MAX.to_le_bytes().to_vec()).unwrap(),
            "[4294967295]"
        );
        assert_eq!(
            t(DataType::Int32, vec![1], i32::MIN.to_le_bytes().to_vec()).unwrap(),
            "[-2147483648]"
        );
        assert_eq!(
            t(DataType::Uint64, vec![1], u64::MAX.to_le_bytes().to_vec()).unwrap(),
            "[18446744073709551615]"
        );
        assert_eq!(
            t(DataType::Int64, vec![1], i64::MIN.to_le_bytes().to_vec()).unwrap(),
            "[-9223372036854775808]"
        );
        assert_eq!(
            t(
                DataType::Fp16,
                vec![1],
                half::f16::from_f32(0.5).to_le_bytes().to_vec()
            )
            .unwrap(),
            "[0.5]"
        );
        assert_eq!(
            t(
                DataType::Bf16,
                vec![1],
                half::bf16::from_f32(-2.0).to_le_bytes().to_vec()
            )
            .unwrap(),
            "[-2.0]"
        );
        assert_eq!(
            t(DataType::Fp32, vec![2], f32s(&[1e-7, 0.25]).to_vec()).unwrap(),
            "[1.0000000116860974e-7,0.25]"
        );
        assert_eq!(
            t(DataType::Fp64, vec![1], 0.1f64.to_le_bytes().to_vec()).unwrap(),
            "[0.1]"
        );
        let mut bytes = Vec::new();
        for s in ["a\"b", "", "é\n"] {
            ferrite_core::tensor::push_bytes_element(&mut bytes, s.as_bytes());
        }
        assert_eq!(
            t(DataType::Bytes, vec![3], bytes.clone()).unwrap(),
            r#"["a\"b","","é\n"]"#
        );
        // sizes that do not match the shape are an error, not a panic
        let e = t(DataType::Fp32, vec![3], vec![0; 8]).unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                ferrite_core::ErrorCode::Internal,
                "output tensor shape does not match size of output for 'O'"
            )
        );
        assert!(t(DataType::Bytes, vec![4], bytes).is_err());
        assert!(t(DataType::Bytes, vec![1], vec![9, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn empty_binary_outputs_add_no_data() {
        let resp = InferenceResponse {
            model_name: "m".into(),
            model_version: 1,
            outputs: vec![Tensor::new("O", DataType::Fp32, vec![0], Bytes::new())],
            parameters: serde_json::json!({"p": 1.0, "q": "s"})
                .as_object()
                .unwrap()
                .clone(),
            ..Default::default()
        };
        let kinds = OutputKinds {
            default_binary: true,
            named: vec![],
            shm: vec![],
        };
        let e = response(&resp, &kinds).unwrap();
        assert!(!e.has_binary);
        assert_eq!(
            std::str::from_utf8(&e.chunks[0]).unwrap(),
            r#"{"model_name":"m","model_version":"1","parameters":{"p":1.0,"q":"s"},"outputs":[{"name":"O","datatype":"FP32","shape":[0],"parameters":{"binary_data_size":0}}]}"#
        );
    }

    #[test]
    fn shared_memory_outputs_are_written_and_named_without_data() {
        use ferrite_core::shm::{RegionRef, SharedMemory};
        let key = format!("/ferrite_http_encode_{}", std::process::id());
        let path = format!("/dev/shm{key}");
        struct Remove<'a>(&'a str);
        impl Drop for Remove<'_> {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(self.0);
            }
        }
        std::fs::write(&path, [0u8; 128]).unwrap();
        let _remove = Remove(&path);
        let shm = SharedMemory::new(true);
        shm.register_system("out", &key, 0, 128).unwrap();
        let region = |offset, byte_size| {
            shm.output(&RegionRef {
                region: "out".into(),
                offset,
                byte_size,
            })
            .unwrap()
        };
        let resp = add_sub("");
        let kinds = OutputKinds {
            default_binary: false,
            named: vec![],
            shm: vec![
                ("OUTPUT0".into(), region(0, 64)),
                ("OUTPUT1".into(), region(64, 64)),
            ],
        };
        write_shared_memory(&resp, &kinds).unwrap();
        let e = response(&resp, &kinds).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[..64], &resp.outputs[0].data[..]);
        assert_eq!(&raw[64..], &resp.outputs[1].data[..]);
        assert!(!e.has_binary);
        assert_eq!(
            std::str::from_utf8(&e.chunks[0]).unwrap(),
            r#"{"model_name":"add_sub","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[16]},{"name":"OUTPUT1","datatype":"FP32","shape":[16]}]}"#
        );
        // one in shared memory, one binary: the binary one alone follows the JSON
        let kinds = OutputKinds {
            default_binary: true,
            named: vec![],
            shm: vec![("OUTPUT0".into(), region(0, 64))],
        };
        let e = response(&resp, &kinds).unwrap();
        assert!(e.has_binary);
        assert_eq!(e.chunks.len(), 2);
        assert_eq!(e.chunks[1], resp.outputs[1].data);
        // a region too small is Triton's INTERNAL error, and nothing is written
        std::fs::write(&path, [0u8; 128]).unwrap();
        let kinds = OutputKinds {
            default_binary: false,
            named: vec![],
            shm: vec![("OUTPUT1".into(), region(0, 60))],
        };
        let err = write_shared_memory(&resp, &kinds).unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (
                ferrite_core::ErrorCode::Internal,
                "shared memory size specified with the request for output 'OUTPUT1' (60 bytes) should be at least 64 bytes to hold the results"
            )
        );
        assert_eq!(std::fs::read(&path).unwrap(), vec![0u8; 128]);
    }
}
