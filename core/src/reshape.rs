//! Triton's `reshape` of a configured input or output: clients see `dims` (after the batch
//! dimension, when the model batches), the model sees `reshape.shape`. The core maps a
//! request's input shapes onto the model's before they are queued (as Triton's
//! `InferenceRequest::Normalize`) and a response's output shapes back onto `dims` before the
//! client sees them (as `InferenceResponse::Output::Reshape`), so every driver, ensemble step
//! and batcher works in the model's shapes. Load-time checks are Triton's `ValidateIOShape`.

/// Maps `actual`, a shape that fits the pattern `from` (same rank, the same sizes where
/// `from` is fixed; `-1` where any size is allowed), onto the pattern `to`: each `-1` of `to`
/// takes, in order, the size `actual` has at a `-1` of `from`. `None` when `actual` does not
/// fit `from` or `to` has more variable dimensions than `from` (a configuration [`check`]
/// refuses).
pub fn map_shape(from: &[i64], to: &[i64], actual: &[i64]) -> Option<Vec<i64>> {
    if from.len() != actual.len() || from.iter().zip(actual).any(|(&f, &a)| f != -1 && f != a) {
        return None;
    }
    let mut variable = from
        .iter()
        .zip(actual)
        .filter(|&(&f, _)| f == -1)
        .map(|(_, &a)| a);
    to.iter()
        .map(|&d| if d == -1 { variable.next() } else { Some(d) })
        .collect()
}

/// Element count as Triton's `GetElementCount` has it: `-1` when a dimension is variable, 0
/// for an empty shape, `None` on overflow.
fn element_count(dims: &[i64]) -> Option<i64> {
    if dims.contains(&-1) {
        return Some(-1);
    }
    if dims.is_empty() {
        return Some(0);
    }
    dims.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d))
}

/// The element counts of the runs of fixed dimensions between variable ones: `[2, 4, -1, 6]`
/// gives `[8, 6]`.
fn runs(dims: &[i64]) -> Vec<i64> {
    let mut out = vec![1i64];
    for &d in dims {
        if d == -1 {
            out.push(1);
        } else if let Some(last) = out.last_mut() {
            *last = last.saturating_mul(d);
        }
    }
    out
}

/// Triton's checks of a tensor's `reshape` against its `dims`, with its texts: `prefix` is
/// `"model input "` or `"model output "`. Dims that are themselves invalid are reported
/// elsewhere (the configuration's dims check).
pub fn check(
    prefix: &str,
    name: &str,
    dims: &[i64],
    shape: &[i64],
    max_batch_size: i32,
) -> Result<(), String> {
    let named = format!("{prefix}'{name}' ");
    if shape.is_empty() && max_batch_size == 0 {
        return Err(format!(
            "{named}cannot have empty reshape for non-batching model as scalar tensors are not supported"
        ));
    }
    if shape.iter().any(|&d| d < 1 && d != -1) {
        return Err(format!(
            "{named}reshape dimensions must be integer >= 1, or -1 to indicate a variable-size dimension"
        ));
    }
    let overflow = |what: &str| {
        format!(
            "element count for tensor '{name} {what}' exceeds maximum size of {}",
            i64::MAX
        )
    };
    let dims_size = element_count(dims).ok_or_else(|| overflow("dims"))?;
    let reshape_size = element_count(shape).ok_or_else(|| overflow("reshape"))?;
    if dims_size != reshape_size && (reshape_size != 0 || dims_size != 1) {
        return Err(format!("{named}has different size for dims and reshape"));
    }
    if dims_size == -1 {
        let (a, b) = (runs(dims), runs(shape));
        if a.len() != b.len() {
            return Err(format!(
                "{named}has different number of variable-size dimensions for dims and reshape"
            ));
        }
        if a != b {
            return Err(format!("{named}has different size for dims and reshape"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_fixed_and_variable_dimensions() {
        // densenet_onnx: [3,224,224] -> [1,3,224,224] and back.
        assert_eq!(
            map_shape(&[3, 224, 224], &[1, 3, 224, 224], &[3, 224, 224]),
            Some(vec![1, 3, 224, 224])
        );
        assert_eq!(
            map_shape(&[1, 1000, 1, 1], &[1000], &[1, 1000, 1, 1]),
            Some(vec![1000])
        );
        // Variable sizes travel in order: [2,4,-1,6] -> [8,-1,1,6].
        assert_eq!(
            map_shape(&[2, 4, -1, 6], &[8, -1, 1, 6], &[2, 4, 5, 6]),
            Some(vec![8, 5, 1, 6])
        );
        assert_eq!(
            map_shape(&[-1, 3, -1], &[-1, -1, 3], &[7, 3, 9]),
            Some(vec![7, 9, 3])
        );
        // An empty reshape: a [1] tensor is a scalar to the model, and back.
        assert_eq!(map_shape(&[1], &[], &[1]), Some(vec![]));
        assert_eq!(map_shape(&[], &[1], &[]), Some(vec![1]));
        assert_eq!(map_shape(&[3, 4], &[12], &[3]), None);
        // A model output of another size than the reshape says is no [1000].
        assert_eq!(map_shape(&[1, 1000, 1, 1], &[1000], &[1, 999, 1, 1]), None);
        assert_eq!(map_shape(&[4], &[-1], &[4]), None);
    }

    #[test]
    fn triton_refusals() {
        let c =
            |dims: &[i64], shape: &[i64], mbs: i32| check("model input ", "x", dims, shape, mbs);
        assert_eq!(c(&[3, 224, 224], &[1, 3, 224, 224], 0), Ok(()));
        assert_eq!(c(&[1], &[], 8), Ok(()));
        assert_eq!(c(&[2, 4, -1, 6], &[8, -1, 1, 6], 0), Ok(()));
        assert_eq!(
            c(&[1], &[], 0).unwrap_err(),
            "model input 'x' cannot have empty reshape for non-batching model as scalar tensors are not supported"
        );
        assert_eq!(
            c(&[4], &[2, 0], 0).unwrap_err(),
            "model input 'x' reshape dimensions must be integer >= 1, or -1 to indicate a variable-size dimension"
        );
        assert_eq!(
            c(&[3, 224, 224], &[1, 3, 224, 225], 0).unwrap_err(),
            "model input 'x' has different size for dims and reshape"
        );
        assert_eq!(
            c(&[2], &[], 4).unwrap_err(),
            "model input 'x' has different size for dims and reshape"
        );
        assert_eq!(
            c(&[2, 4, -1, 6], &[4, -1, 2, 6], 0).unwrap_err(),
            "model input 'x' has different size for dims and reshape"
        );
        assert_eq!(
            c(&[-1, 6], &[-1, -1, 6], 0).unwrap_err(),
            "model input 'x' has different number of variable-size dimensions for dims and reshape"
        );
        // A fixed shape against a variable one: the counts differ.
        assert!(c(&[-1], &[4], 0).is_err());
        assert!(
            c(&[i64::MAX, 4], &[1], 0)
                .unwrap_err()
                .contains("exceeds maximum size of 9223372036854775807")
        );
    }
}
