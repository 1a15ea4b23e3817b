//! What happens to a model's outputs (a driver's, or an ensemble's) before the client sees
//! them: ordering, the requested subset, and Triton's classification extension.

use bytes::Bytes;

use crate::request::RequestedOutput;
use crate::tensor::{DataType, Tensor, push_bytes_element};
use crate::{Error, Result};

/// A model's outputs as configured: name and labels (empty without a label file).
#[derive(Clone, Debug, Default)]
pub struct OutputSpec {
    pub name: String,
    pub labels: Vec<String>,
    /// With a configured `reshape`: the shape the model produces (`reshape.shape`) and the
    /// one clients see (`dims`), both after the batch dimension.
    pub reshape: Option<(Vec<i64>, Vec<i64>)>,
}

impl OutputSpec {
    /// `output` in the shape clients see: the model's shape mapped back onto `dims`.
    fn restore_shape(&self, model: &str, batching: bool, output: &mut Tensor) -> Result<()> {
        let Some((from, to)) = &self.reshape else {
            return Ok(());
        };
        let skip = usize::from(batching);
        let mapped = output
            .shape
            .get(skip..)
            .and_then(|rest| crate::reshape::map_shape(from, to, rest))
            .ok_or_else(|| {
                Error::internal(format!(
                    "model '{model}' produced output '{}' of shape {}, which does not fit its reshape {}",
                    output.name,
                    crate::tensor::shape_string(&output.shape),
                    crate::tensor::shape_string(from)
                ))
            })?;
        output.shape.truncate(skip);
        output.shape.extend(mapped);
        Ok(())
    }
}

/// Turns a driver's outputs into the response's: the requested ones in the order asked for
/// (or every configured output in configuration order), in their configured `dims` (a
/// `reshape` undone), classification applied.
pub fn finish(
    model: &str,
    specs: &[OutputSpec],
    requested: &[RequestedOutput],
    batching: bool,
    mut raw: Vec<Tensor>,
) -> Result<Vec<Tensor>> {
    let mut take = |name: &str| -> Result<Tensor> {
        let pos = raw.iter().position(|o| o.name == name).ok_or_else(|| {
            Error::internal(format!("model '{model}' produced no output '{name}'"))
        })?;
        let mut output = raw.swap_remove(pos);
        if let Some(spec) = specs.iter().find(|s| s.name == name) {
            spec.restore_shape(model, batching, &mut output)?;
        }
        Ok(output)
    };
    let mut out = Vec::new();
    if requested.is_empty() {
        for spec in specs {
            out.push(take(&spec.name)?);
        }
        return Ok(out);
    }
    for r in requested {
        let o = take(&r.name)?;
        let tensor = match r.classification {
            Some(k) => {
                let labels = specs
                    .iter()
                    .find(|s| s.name == r.name)
                    .map(|s| s.labels.as_slice())
                    .unwrap_or(&[]);
                classify(&o, k, labels, batching)?
            }
            None => o,
        };
        out.push(tensor);
    }
    Ok(out)
}

fn values_f64(o: &Tensor) -> Result<Vec<f64>> {
    let d = &o.data;
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            d.chunks_exact($n)
                .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk")) as f64)
                .collect()
        };
    }
    Ok(match o.datatype {
        DataType::Bool | DataType::Uint8 => d.iter().map(|&b| b as f64).collect(),
        DataType::Int8 => d.iter().map(|&b| b as i8 as f64).collect(),
        DataType::Uint16 => conv!(u16, 2),
        DataType::Int16 => conv!(i16, 2),
        DataType::Uint32 => conv!(u32, 4),
        DataType::Int32 => conv!(i32, 4),
        DataType::Uint64 => conv!(u64, 8),
        DataType::Int64 => conv!(i64, 8),
        DataType::Fp32 => conv!(f32, 4),
        DataType::Fp64 => conv!(f64, 8),
        DataType::Fp16 => d
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        DataType::Bf16 => d
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        DataType::Bytes => {
            return Err(Error::invalid_arg(format!(
                "classification is not supported for BYTES output '{}'",
                o.name
            )));
        }
    })
}

/// Top-`k` classes of each batch row as BYTES `"score:index[:label]"`, as Triton does.
fn classify(o: &Tensor, k: usize, labels: &[String], batching: bool) -> Result<Tensor> {
    let values = values_f64(o)?;
    let rows = if batching {
        o.shape.first().copied().unwrap_or(1).max(1) as usize
    } else {
        1
    };
    let per_row = values.len() / rows.max(1);
    let k = k.min(per_row);
    let mut data = Vec::new();
    for row in values.chunks(per_row.max(1)).take(rows) {
        let mut idx: Vec<usize> = (0..row.len()).collect();
        // Highest first; ties keep the lower index first.
        idx.sort_by(|&a, &b| {
            row[b]
                .partial_cmp(&row[a])
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        for &i in idx.iter().take(k) {
            let text = match labels.get(i) {
                Some(label) => format!("{:.6}:{i}:{label}", row[i]),
                None => format!("{:.6}:{i}", row[i]),
            };
            push_bytes_element(&mut data, text.as_bytes());
        }
    }
    let shape = if batching {
        vec![rows as i64, k as i64]
    } else {
        vec![k as i64]
    };
    Ok(Tensor::new(
        o.name.clone(),
        DataType::Bytes,
        shape,
        Bytes::from(data),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::bytes_elements;

    fn fp32(name: &str, shape: Vec<i64>, v: &[f32]) -> Tensor {
        Tensor::new(
            name,
            DataType::Fp32,
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    #[test]
    fn classification_top_k_with_labels() {
        let specs = vec![OutputSpec {
            name: "logits".into(),
            labels: vec!["cat".into(), "dog".into(), "mug".into()],
            ..Default::default()
        }];
        let req = vec![RequestedOutput {
            name: "logits".into(),
            classification: Some(2),
            ..Default::default()
        }];
        let out = finish(
            "m",
            &specs,
            &req,
            true,
            vec![fp32("logits", vec![2, 3], &[0.1, 2.5, 1.0, 3.0, 0.0, -1.0])],
        )
        .unwrap();
        assert_eq!(out[0].shape, vec![2, 2]);
        assert_eq!(out[0].datatype, DataType::Bytes);
        let els: Vec<String> = bytes_elements(&out[0].data)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.to_vec()).unwrap())
            .collect();
        assert_eq!(
            els,
            vec![
                "2.500000:1:dog",
                "1.000000:2:mug",
                "3.000000:0:cat",
                "0.000000:1:dog"
            ]
        );
    }

    #[test]
    fn outputs_leave_in_their_dims() {
        // densenet_onnx: the model makes [1,1000,1,1], clients see [1000] and classify it.
        let specs = vec![OutputSpec {
            name: "fc6_1".into(),
            labels: vec![],
            reshape: Some((vec![1, 1000, 1, 1], vec![1000])),
        }];
        let mut logits = vec![0f32; 1000];
        logits[504] = 9.0;
        logits[968] = 7.0;
        let raw = || vec![fp32("fc6_1", vec![1, 1000, 1, 1], &logits)];
        let out = finish("densenet_onnx", &specs, &[], false, raw()).unwrap();
        assert_eq!(out[0].shape, vec![1000]);
        let req = vec![RequestedOutput {
            name: "fc6_1".into(),
            classification: Some(2),
            ..Default::default()
        }];
        let out = finish("densenet_onnx", &specs, &req, false, raw()).unwrap();
        assert_eq!(out[0].shape, vec![2]);
        assert_eq!(
            bytes_elements(&out[0].data).unwrap(),
            vec![&b"9.000000:504"[..], &b"7.000000:968"[..]]
        );
        // Batching: the batch dimension stays, variable sizes come back in order.
        let specs = vec![OutputSpec {
            name: "Y".into(),
            labels: vec![],
            reshape: Some((vec![-1, 2], vec![2, -1])),
        }];
        let out = finish(
            "m",
            &specs,
            &[],
            true,
            vec![fp32("Y", vec![3, 5, 2], &[0.0; 30])],
        );
        assert_eq!(out.unwrap()[0].shape, vec![3, 2, 5]);
        let bad = finish(
            "m",
            &specs,
            &[],
            true,
            vec![fp32("Y", vec![3, 10], &[0.0; 30])],
        );
        assert!(
            bad.unwrap_err()
                .message()
                .contains("does not fit its reshape [-1,2]")
        );
    }

    #[test]
    fn order_and_subset() {
        let specs = vec![
            OutputSpec {
                name: "A".into(),
                ..Default::default()
            },
            OutputSpec {
                name: "B".into(),
                ..Default::default()
            },
        ];
        let raw = || vec![fp32("B", vec![1], &[2.0]), fp32("A", vec![1], &[1.0])];
        let all = finish("m", &specs, &[], false, raw()).unwrap();
        assert_eq!(
            all.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            vec!["A", "B"]
        );
        let only_b = finish(
            "m",
            &specs,
            &[RequestedOutput {
                name: "B".into(),
                ..Default::default()
            }],
            false,
            raw(),
        )
        .unwrap();
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].name, "B");
        let missing =
            finish("m", &specs, &[], false, vec![fp32("A", vec![1], &[1.0])]).unwrap_err();
        assert!(missing.message().contains("no output 'B'"));
    }
}
