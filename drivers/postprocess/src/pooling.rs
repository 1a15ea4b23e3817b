//! Backend "pooling": a sentence embedding from a transformer's hidden state, as
//! sentence-transformers does it: the mean of the token vectors over the positions the
//! attention mask keeps, then (parameter `normalize`, default "true") scaled to unit length.
//!
//! Configuration: two inputs told apart by data type, the hidden state `TYPE_FP32` with
//! dims `[-1, D]` and the attention mask `TYPE_INT64` with dims `[-1]` (any names); one
//! output `TYPE_FP32` with dims `[D]`. A request's hidden state `[B, S, D]` and mask `[B, S]`
//! give `[B, D]` (without batching: `[S, D]` and `[S]` give `[D]`). A mask value other than 0
//! keeps the position; a row whose mask keeps nothing pools to zeros (as sentence-transformers,
//! which clamps the count).

use ferrite_driver_sdk::{DataType, Error, Request, Response, Result};
use serde_json::Value;

use ferrite_driver_sdk::config::{Io, bool_parameter, ios};
use ferrite_driver_sdk::element::values;

/// A loaded pooling model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pooling {
    pub model: String,
    pub hidden: String,
    pub mask: String,
    pub output: String,
    /// Embedding width, `None` when the configuration leaves it variable (-1).
    pub dim: Option<usize>,
    pub normalize: bool,
}

impl Pooling {
    /// Checks the configuration (protobuf JSON) of model `model`.
    pub fn from_config(model: &str, config: &Value) -> Result<Pooling> {
        let fail = |what: String| Error::invalid_arg(format!("model '{model}': {what}"));
        let inputs = ios(config, "input");
        let find = |data_type: &str| -> Result<&Io> {
            let mut found = inputs.iter().filter(|io| io.data_type == data_type);
            match (found.next(), found.next()) {
                (Some(io), None) => Ok(io),
                _ => Err(fail(format!(
                    "pooling takes two inputs told apart by data type: one TYPE_FP32 hidden state [-1, D] and one TYPE_INT64 attention mask [-1]; the configuration has {}",
                    describe(&inputs)
                ))),
            }
        };
        let hidden = find("TYPE_FP32")?;
        let mask = find("TYPE_INT64")?;
        if inputs.len() != 2 {
            return Err(fail(format!(
                "pooling takes exactly two inputs, the configuration has {}",
                describe(&inputs)
            )));
        }
        if hidden.dims.len() != 2 {
            return Err(fail(format!(
                "hidden state input '{}' must have dims [-1, D], the configuration says {:?}",
                hidden.name, hidden.dims
            )));
        }
        if mask.dims.len() != 1 {
            return Err(fail(format!(
                "attention mask input '{}' must have dims [-1], the configuration says {:?}",
                mask.name, mask.dims
            )));
        }
        let outputs = ios(config, "output");
        let [output] = &outputs[..] else {
            return Err(fail(format!(
                "pooling has exactly one output (TYPE_FP32 [D]), the configuration has {}",
                describe(&outputs)
            )));
        };
        let dim = hidden.dims[1];
        if output.data_type != "TYPE_FP32" || output.dims != [dim] {
            return Err(fail(format!(
                "output '{}' must be TYPE_FP32 with dims [{dim}] (the hidden state's width), the configuration says {} {:?}",
                output.name, output.data_type, output.dims
            )));
        }
        let normalize = bool_parameter(config, "normalize", true).map_err(|e| fail(e.message))?;
        Ok(Pooling {
            model: model.to_string(),
            hidden: hidden.name.clone(),
            mask: mask.name.clone(),
            output: output.name.clone(),
            dim: usize::try_from(dim).ok(),
            normalize,
        })
    }

    /// Pools one request into `response`.
    pub fn run(&self, request: &Request<'_>, response: &mut Response) -> Result<()> {
        let fail = |what: String| Error::invalid_arg(format!("model '{}': {what}", self.model));
        let hidden = request.input(&self.hidden)?;
        let mask = request.input(&self.mask)?;
        if hidden.datatype != DataType::Fp32 || mask.datatype != DataType::Int64 {
            return Err(fail(format!(
                "inputs '{}' and '{}' must be FP32 and INT64, got {} and {}",
                self.hidden, self.mask, hidden.datatype, mask.datatype
            )));
        }
        let h = hidden.shape;
        let m = mask.shape;
        let shapes_fit = h.len() >= 2
            && m.len() + 1 == h.len()
            && h[..h.len() - 1] == *m
            && h.iter().all(|&d| d >= 0);
        if !shapes_fit {
            return Err(fail(format!(
                "hidden state '{}' {h:?} and attention mask '{}' {m:?} do not fit: expected [..., S, D] and [..., S]",
                self.hidden, self.mask
            )));
        }
        let dim = h[h.len() - 1] as usize;
        let seq = h[h.len() - 2] as usize;
        if self.dim.is_some_and(|d| d != dim) {
            return Err(fail(format!(
                "hidden state '{}' is {dim} wide, the model expects {}",
                self.hidden,
                self.dim.unwrap_or_default()
            )));
        }
        if hidden.data.len() != hidden.element_count() * 4
            || mask.data.len() != mask.element_count() * 8
        {
            return Err(fail(
                "the inputs' data do not match their shapes".to_string(),
            ));
        }
        let rows = mask.element_count().checked_div(seq).unwrap_or(0);
        let pooled = mean_pool(
            &values::<f32>(hidden.data),
            &values::<i64>(mask.data),
            rows,
            seq,
            dim,
            self.normalize,
        );
        let mut shape = h[..h.len() - 2].to_vec();
        shape.push(dim as i64);
        let bytes: Vec<u8> = pooled.iter().flat_map(|v| v.to_le_bytes()).collect();
        response.output_from(&self.output, DataType::Fp32, &shape, &bytes)
    }
}

fn describe(ios: &[Io]) -> String {
    if ios.is_empty() {
        return "none".to_string();
    }
    ios.iter()
        .map(|io| format!("'{}' {} {:?}", io.name, io.data_type, io.dims))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Mean of `hidden` (`[rows, seq, dim]`) over the positions where `mask` (`[rows, seq]`) is
/// not 0, each row then scaled to unit length when `normalize` (a zero vector stays zero).
/// Missing data reads as nothing (the caller checks the lengths).
pub fn mean_pool(
    hidden: &[f32],
    mask: &[i64],
    rows: usize,
    seq: usize,
    dim: usize,
    normalize: bool,
) -> Vec<f32> {
    let mut out = vec![0f32; rows * dim];
    if dim == 0 {
        return out;
    }
    for (row, pooled) in out.chunks_exact_mut(dim).enumerate() {
        let mut count = 0usize;
        for pos in 0..seq {
            if mask.get(row * seq + pos).is_none_or(|&m| m == 0) {
                continue;
            }
            let start = (row * seq + pos) * dim;
            let Some(vector) = hidden.get(start..start + dim) else {
                continue;
            };
            count += 1;
            for (p, v) in pooled.iter_mut().zip(vector) {
                *p += v;
            }
        }
        if count > 0 {
            let n = count as f32;
            pooled.iter_mut().for_each(|p| *p /= n);
        }
        if normalize {
            // torch.nn.functional.normalize's eps.
            let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            pooled.iter_mut().for_each(|p| *p /= norm);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Value {
        json!({
            "max_batch_size": 8,
            "input": [
                {"name": "attention_mask", "data_type": "TYPE_INT64", "dims": [-1]},
                {"name": "last_hidden_state", "data_type": "TYPE_FP32", "dims": [-1, 3]}
            ],
            "output": [{"name": "embedding", "data_type": "TYPE_FP32", "dims": [3]}],
        })
    }

    #[test]
    fn averages_only_the_masked_positions() {
        // Two rows of three positions, width 2.
        let hidden = [
            1.0, 2.0, 3.0, 4.0, 100.0, 100.0, //
            2.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let mask = [1, 1, 0, 1, 0, 0];
        let out = mean_pool(&hidden, &mask, 2, 3, 2, false);
        assert_eq!(out, vec![2.0, 3.0, 2.0, 0.0]);
    }

    #[test]
    fn normalises_to_unit_length_and_keeps_empty_rows_zero() {
        let hidden = [3.0, 4.0, 0.0, 0.0, 9.0, 9.0];
        let out = mean_pool(&hidden, &[1, 1, 0], 1, 3, 2, true);
        assert!((out[0] - 0.6).abs() < 1e-6 && (out[1] - 0.8).abs() < 1e-6);
        let out = mean_pool(&hidden, &[0, 0, 0], 1, 3, 2, true);
        assert_eq!(out, vec![0.0, 0.0]);
        // Mask values other than 1 keep the position, once.
        let out = mean_pool(&hidden, &[7, 0, 0], 1, 3, 2, false);
        assert_eq!(out, vec![3.0, 4.0]);
        // Short data never panics.
        assert_eq!(
            mean_pool(&hidden[..3], &[1, 1], 2, 3, 2, false),
            vec![3.0, 4.0, 0.0, 0.0]
        );
        assert!(mean_pool(&[], &[], 0, 0, 0, true).is_empty());
    }

    #[test]
    fn reads_the_configuration() {
        let p = Pooling::from_config("pool", &config()).unwrap();
        assert_eq!(p.hidden, "last_hidden_state");
        assert_eq!(p.mask, "attention_mask");
        assert_eq!(p.output, "embedding");
        assert_eq!(p.dim, Some(3));
        assert!(p.normalize);

        let mut c = config();
        c["parameters"] = json!({"normalize": {"string_value": "false"}});
        assert!(!Pooling::from_config("pool", &c).unwrap().normalize);
    }

    #[test]
    fn refuses_bad_configurations() {
        let err = |c: Value| Pooling::from_config("pool", &c).unwrap_err().message;

        let mut c = config();
        c["input"][0]["data_type"] = json!("TYPE_FP32");
        assert!(err(c).contains("told apart by data type"));

        let mut c = config();
        c["output"][0]["dims"] = json!([4]);
        assert!(err(c).contains("dims [3]"));

        let mut c = config();
        c["input"][1]["dims"] = json!([3]);
        assert!(err(c).contains("[-1, D]"));

        let mut c = config();
        c["parameters"] = json!({"normalize": {"string_value": "maybe"}});
        let e = err(c);
        assert!(
            e.contains("'normalize'") && e.contains("model 'pool'"),
            "{e}"
        );
    }
}
