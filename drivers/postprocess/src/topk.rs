//! Backend "topk": the `k` best classes of a score vector (a classifier's logits), optionally
//! as softmax probabilities, with their labels and/or class indices.
//!
//! Configuration: one input `TYPE_FP32` with dims `[N]` (N may be -1; then the checks that
//! need it run per request); parameters `k` (default 5) and `softmax` ("true"/"false",
//! default "false": the scores are passed through). Outputs, told apart by data type, any
//! subset but at least one, each with dims `[k]`:
//!
//! - `TYPE_FP32`: the scores (probabilities with `softmax`), best first;
//! - `TYPE_STRING`: their labels, from the output's `label_filename` (a text file in the
//!   model folder, one label per line, index order; Triton's convention);
//! - `TYPE_INT64`: their class indices.
//!
//! A request's scores `[B, N]` give `[B, k]` outputs (without batching `[N]` gives `[k]`).
//! Equal scores keep index order; NaN ranks below every number.

use std::cmp::Ordering;
use std::path::Path;

use ferrite_driver_sdk::{DataType, Error, Request, Response, Result, bytes_layout};
use serde_json::Value;

use ferrite_driver_sdk::config::{Io, bool_parameter, count_parameter, ios};
use ferrite_driver_sdk::element::values;

/// `k` when the configuration does not say.
pub const DEFAULT_K: usize = 5;

/// A loaded top-k model.
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    pub model: String,
    pub input: String,
    /// Number of classes, `None` when the configuration leaves it variable (-1).
    pub classes: Option<usize>,
    pub k: usize,
    pub softmax: bool,
    /// Output names.
    pub scores: Option<String>,
    pub labels: Option<(String, Vec<String>)>,
    pub class_ids: Option<String>,
}

impl TopK {
    /// Checks the configuration (protobuf JSON) of model `model`, reading label files from
    /// `model_path`.
    pub fn from_config(model: &str, config: &Value, model_path: &Path) -> Result<TopK> {
        let fail = |what: String| Error::invalid_arg(format!("model '{model}': {what}"));
        let inputs = ios(config, "input");
        let [input] = &inputs[..] else {
            return Err(fail(format!(
                "topk takes exactly one input (TYPE_FP32 scores [N]), the configuration has {}",
                inputs.len()
            )));
        };
        if input.data_type != "TYPE_FP32" || input.dims.len() != 1 {
            return Err(fail(format!(
                "input '{}' must be TYPE_FP32 with dims [N], the configuration says {} {:?}",
                input.name, input.data_type, input.dims
            )));
        }
        let classes = usize::try_from(input.dims[0]).ok();
        let k = count_parameter(config, "k", DEFAULT_K).map_err(|e| fail(e.message))?;
        let softmax = bool_parameter(config, "softmax", false).map_err(|e| fail(e.message))?;
        if let Some(n) = classes.filter(|&n| k > n) {
            return Err(fail(format!(
                "k is {k} but input '{}' holds only {n} scores",
                input.name
            )));
        }

        let mut top = TopK {
            model: model.to_string(),
            input: input.name.clone(),
            classes,
            k,
            softmax,
            scores: None,
            labels: None,
            class_ids: None,
        };
        let outputs = ios(config, "output");
        if outputs.is_empty() {
            return Err(fail(
                "topk needs at least one output: TYPE_FP32 scores, TYPE_STRING labels or TYPE_INT64 class ids, dims [k]".to_string(),
            ));
        }
        for output in &outputs {
            if output.dims != [k as i64] && output.dims != [-1] {
                return Err(fail(format!(
                    "output '{}' must have dims [{k}] (k), the configuration says {:?}",
                    output.name, output.dims
                )));
            }
            let slot_taken = match output.data_type.as_str() {
                "TYPE_FP32" => top.scores.replace(output.name.clone()).is_some(),
                "TYPE_INT64" => top.class_ids.replace(output.name.clone()).is_some(),
                "TYPE_STRING" => {
                    let labels = read_labels(model, model_path, output, classes)?;
                    top.labels.replace((output.name.clone(), labels)).is_some()
                }
                other => {
                    return Err(fail(format!(
                        "output '{}' has data type {other}; topk outputs are TYPE_FP32 (scores), TYPE_STRING (labels) or TYPE_INT64 (class ids)",
                        output.name
                    )));
                }
            };
            if slot_taken {
                return Err(fail(format!(
                    "two outputs of type {}: topk has at most one of each type",
                    output.data_type
                )));
            }
        }
        Ok(top)
    }

    /// Answers one request into `response`.
    pub fn run(&self, request: &Request<'_>, response: &mut Response) -> Result<()> {
        let fail = |what: String| Error::invalid_arg(format!("model '{}': {what}", self.model));
        let input = request.input(&self.input)?;
        let shape = input.shape;
        let Some((&n, lead)) = shape.split_last() else {
            return Err(fail(format!(
                "input '{}' has no dimensions; expected [..., N]",
                self.input
            )));
        };
        if input.datatype != DataType::Fp32
            || shape.iter().any(|&d| d < 0)
            || input.data.len() != input.element_count() * 4
        {
            return Err(fail(format!(
                "input '{}' must be FP32 data of shape [..., N], got {} {shape:?} in {} bytes",
                self.input,
                input.datatype,
                input.data.len()
            )));
        }
        let n = n as usize;
        if n < self.k {
            return Err(fail(format!(
                "k is {} but input '{}' holds only {n} scores",
                self.k, self.input
            )));
        }
        if let Some((name, labels)) = &self.labels
            && labels.len() < n
        {
            return Err(fail(format!(
                "input '{}' holds {n} scores but output '{name}' has only {} labels",
                self.input,
                labels.len()
            )));
        }
        let values = values::<f32>(input.data);
        let mut best_scores = Vec::new();
        let mut best_ids = Vec::new();
        for row in values.chunks_exact(n.max(1)) {
            let row = if self.softmax {
                softmax(row)
            } else {
                row.to_vec()
            };
            for i in top_k(&row, self.k) {
                best_ids.push(i);
                best_scores.push(row[i]);
            }
        }
        let mut out_shape = lead.to_vec();
        out_shape.push(self.k as i64);
        if let Some(name) = &self.scores
            && request.wants_output(name)
        {
            let bytes: Vec<u8> = best_scores.iter().flat_map(|v| v.to_le_bytes()).collect();
            response.output_from(name, DataType::Fp32, &out_shape, &bytes)?;
        }
        if let Some(name) = &self.class_ids
            && request.wants_output(name)
        {
            let bytes: Vec<u8> = best_ids
                .iter()
                .flat_map(|&i| (i as i64).to_le_bytes())
                .collect();
            response.output_from(name, DataType::Int64, &out_shape, &bytes)?;
        }
        if let Some((name, labels)) = &self.labels
            && request.wants_output(name)
        {
            let mut bytes = Vec::new();
            for &i in &best_ids {
                bytes_layout::push(&mut bytes, labels[i].as_bytes());
            }
            response.output_from(name, DataType::Bytes, &out_shape, &bytes)?;
        }
        Ok(())
    }
}

/// The labels of `output`: `label_filename` in the model folder, one per line (a trailing
/// `\r` dropped), at least `classes` of them when that is known.
fn read_labels(
    model: &str,
    model_path: &Path,
    output: &Io,
    classes: Option<usize>,
) -> Result<Vec<String>> {
    if output.label_filename.is_empty() {
        return Err(Error::invalid_arg(format!(
            "model '{model}': output '{}' (TYPE_STRING) holds labels, so it needs a label_filename",
            output.name
        )));
    }
    let path = model_path.join(&output.label_filename);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::invalid_arg(format!(
            "model '{model}': cannot read the label file {} of output '{}': {e}",
            path.display(),
            output.name
        ))
    })?;
    let labels: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    if let Some(n) = classes.filter(|&n| labels.len() < n) {
        return Err(Error::invalid_arg(format!(
            "model '{model}': the label file {} has {} labels, fewer than the {n} scores",
            path.display(),
            labels.len()
        )));
    }
    Ok(labels)
}

/// Softmax of `x`, shifted by its largest value so that `exp` cannot overflow.
pub fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let shift = if max.is_finite() { max } else { 0.0 };
    let exp: Vec<f32> = x.iter().map(|v| (v - shift).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// Best first; equal scores by lower index; NaN after every number.
fn rank(scores: &[f32], a: usize, b: usize) -> Ordering {
    let (x, y) = (scores[a], scores[b]);
    match (x.is_nan(), y.is_nan()) {
        (false, false) => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
        (a_nan, b_nan) => a_nan.cmp(&b_nan),
    }
    .then(a.cmp(&b))
}

/// Indices of the `k` best scores (all of them when there are fewer), best first.
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let k = k.min(order.len());
    if k == 0 {
        return Vec::new();
    }
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, |&a, &b| rank(scores, a, b));
        order.truncate(k);
    }
    order.sort_unstable_by(|&a, &b| rank(scores, a, b));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn orders_best_first_with_ties_by_index() {
        let s = [0.1, 0.9, 0.5, 0.9, -1.0, 0.5];
        assert_eq!(top_k(&s, 3), vec![1, 3, 2]);
        assert_eq!(top_k(&s, 6), vec![1, 3, 2, 5, 0, 4]);
        assert_eq!(top_k(&s, 10), vec![1, 3, 2, 5, 0, 4]);
        assert!(top_k(&s, 0).is_empty());
        assert!(top_k(&[], 3).is_empty());
        let nan = [f32::NAN, 1.0, f32::NEG_INFINITY, f32::NAN, 2.0];
        assert_eq!(top_k(&nan, 5), vec![4, 1, 2, 0, 3]);
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 2.0, 3.0, 1000.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[3] > 0.99);
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!(p[0] < p[1] && p[1] < p[2]);
        let q = softmax(&[0.0, (2f32).ln()]);
        assert!((q[0] - 1.0 / 3.0).abs() < 1e-6 && (q[1] - 2.0 / 3.0).abs() < 1e-6);
        assert!(softmax(&[]).is_empty());
    }

    fn model_dir(labels: &str) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferrite-topk-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("labels.txt"), labels).unwrap();
        dir
    }

    fn config(n: i64, k: &str) -> Value {
        json!({
            "max_batch_size": 4,
            "input": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [n]}],
            "output": [
                {"name": "SCORES", "data_type": "TYPE_FP32", "dims": [2]},
                {"name": "LABELS", "data_type": "TYPE_STRING", "dims": [2],
                 "label_filename": "labels.txt"},
                {"name": "CLASS_IDS", "data_type": "TYPE_INT64", "dims": [-1]}
            ],
            "parameters": {"k": {"string_value": k}, "softmax": {"string_value": "true"}}
        })
    }

    #[test]
    fn reads_the_configuration_and_its_labels() {
        let dir = model_dir("cat\r\ndog\nbird\n");
        let t = TopK::from_config("top", &config(3, "2"), &dir).unwrap();
        assert_eq!(t.k, 2);
        assert!(t.softmax);
        assert_eq!(t.classes, Some(3));
        assert_eq!(t.scores.as_deref(), Some("SCORES"));
        assert_eq!(t.class_ids.as_deref(), Some("CLASS_IDS"));
        let (name, labels) = t.labels.unwrap();
        assert_eq!(name, "LABELS");
        assert_eq!(labels, vec!["cat", "dog", "bird"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_bad_configurations() {
        let dir = model_dir("cat\ndog\n");
        let err = |c: Value| TopK::from_config("top", &c, &dir).unwrap_err().message;
        assert!(err(config(3, "2")).contains("has 2 labels, fewer than the 3 scores"));
        assert!(err(config(1, "2")).contains("k is 2 but input 'logits' holds only 1"));
        assert!(err(config(2, "0")).contains("'k' must be a positive integer"));
        let mut c = config(2, "2");
        c["output"][0]["dims"] = json!([3]);
        assert!(err(c).contains("dims [2]"));
        let mut c = config(2, "2");
        c["output"][1]["label_filename"] = json!("");
        assert!(err(c).contains("needs a label_filename"));
        let mut c = config(2, "2");
        c["output"][1]["label_filename"] = json!("missing.txt");
        assert!(err(c).contains("cannot read the label file"));
        let mut c = config(2, "2");
        c["output"][2]["data_type"] = json!("TYPE_FP32");
        assert!(err(c).contains("two outputs of type TYPE_FP32"));
        let mut c = config(2, "2");
        c["input"][0]["data_type"] = json!("TYPE_FP16");
        assert!(err(c).contains("must be TYPE_FP32"));
        let mut c = config(2, "2");
        c["output"] = json!([]);
        let e = err(c);
        assert!(
            e.contains("at least one output") && e.contains("model 'top'"),
            "{e}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
