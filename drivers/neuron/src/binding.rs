//! Matching a model configuration's inputs and outputs to a NEFF's tensors, and finding the
//! batch size the NEFF was compiled for. Pure: the NEFF's side is its tensor list.
//!
//! A configured tensor is the NEFF tensor of the same name; where the configuration uses
//! Triton's Inferentia naming `<name>__<index>` and the names differ, it is the NEFF's
//! `index`-th input (or output). Sizes are checked in bytes: the runtime's own data type codes
//! changed between versions, so the configuration's type is the one that counts.

use ferrite_driver_sdk::{DataType, Error, Result, config::Io};

use crate::runtime::TensorInfo;

/// One configured input or output and the NEFF tensor behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    /// The configuration's name (what clients use).
    pub name: String,
    /// The NEFF's name for it.
    pub neff_name: String,
    pub datatype: DataType,
    /// Dims of one sample (without the batch dimension when the model batches).
    pub dims: Vec<i64>,
    /// Bytes of one sample.
    pub sample_bytes: usize,
}

/// The whole match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub inputs: Vec<Bound>,
    pub outputs: Vec<Bound>,
    /// The NEFF's tensors, to allocate on every core: (name, is input, bytes).
    pub neff: Vec<TensorInfo>,
    /// The batch size the NEFF was compiled for (1 for a model that does not batch).
    pub compiled: usize,
}

fn datatype(io: &Io) -> Result<DataType> {
    let wire = io.data_type.strip_prefix("TYPE_").unwrap_or(&io.data_type);
    let dt = if wire == "STRING" {
        DataType::Bytes
    } else {
        DataType::from_wire_name(wire).ok_or_else(|| {
            Error::invalid_arg(format!(
                "'{}' has unknown data type {}",
                io.name, io.data_type
            ))
        })?
    };
    if dt == DataType::Bytes {
        return Err(Error::invalid_arg(format!(
            "'{}' is {}: a NEFF's tensors have fixed sizes, so the Neuron driver does not take strings",
            io.name, io.data_type
        )));
    }
    Ok(dt)
}

/// `<name>__<index>` → index.
fn triton_index(name: &str) -> Option<usize> {
    name.rsplit_once("__")?.1.parse().ok()
}

fn bind_side(side: &str, ios: &[Io], neff: &[&TensorInfo]) -> Result<Vec<(Bound, usize)>> {
    let names: Vec<&str> = neff.iter().map(|t| t.name.as_str()).collect();
    ios.iter()
        .map(|io| {
            let dt = datatype(io)?;
            if let Some(d) = io.dims.iter().find(|&&d| d < 0) {
                return Err(Error::invalid_arg(format!(
                    "{side} '{}' has dims {:?}: a NEFF is compiled for static shapes, so every dimension must be fixed (found {d})",
                    io.name, io.dims
                )));
            }
            let position = names.iter().position(|n| *n == io.name).or_else(|| {
                triton_index(&io.name).filter(|&i| i < neff.len())
            });
            let Some(i) = position else {
                return Err(Error::invalid_arg(format!(
                    "{side} '{}' of the configuration is not an {side} of the NEFF (its {side}s: {})",
                    io.name,
                    names.join(", ")
                )));
            };
            let elements: i64 = io.dims.iter().product();
            let sample_bytes = elements as usize * dt.element_size().unwrap_or(1);
            Ok((
                Bound {
                    name: io.name.clone(),
                    neff_name: neff[i].name.clone(),
                    datatype: dt,
                    dims: io.dims.clone(),
                    sample_bytes,
                },
                neff[i].size,
            ))
        })
        .collect()
}

/// Matches the configuration (`inputs`, `outputs`; `batching` when `max_batch_size > 0`) to
/// the NEFF's tensors.
pub fn bind(inputs: &[Io], outputs: &[Io], neff: &[TensorInfo], batching: bool) -> Result<Binding> {
    let neff_inputs: Vec<&TensorInfo> = neff.iter().filter(|t| t.input).collect();
    let neff_outputs: Vec<&TensorInfo> = neff.iter().filter(|t| !t.input).collect();
    let bound_inputs = bind_side("input", inputs, &neff_inputs)?;
    let bound_outputs = bind_side("output", outputs, &neff_outputs)?;
    // Every NEFF input needs data.
    for t in &neff_inputs {
        if !bound_inputs.iter().any(|(b, _)| b.neff_name == t.name) {
            return Err(Error::invalid_arg(format!(
                "the NEFF's input '{}' is not in the configuration, and a NEFF runs only with all of its inputs",
                t.name
            )));
        }
    }
    let mut compiled: Option<(usize, String)> = None;
    for (side, bound) in [("input", &bound_inputs), ("output", &bound_outputs)] {
        for (b, neff_bytes) in bound.iter() {
            let shape = format!("{} {:?}", b.datatype.config_name(), b.dims);
            let this = if !batching {
                if *neff_bytes != b.sample_bytes {
                    return Err(Error::invalid_arg(format!(
                        "{side} '{}' is {} bytes in the configuration ({shape}) but {neff_bytes} bytes in the NEFF",
                        b.name, b.sample_bytes
                    )));
                }
                1
            } else {
                if b.sample_bytes == 0 || neff_bytes % b.sample_bytes != 0 || *neff_bytes == 0 {
                    return Err(Error::invalid_arg(format!(
                        "{side} '{}': the NEFF's tensor is {neff_bytes} bytes, not a whole number of samples of {} bytes ({shape} per sample)",
                        b.name, b.sample_bytes
                    )));
                }
                neff_bytes / b.sample_bytes
            };
            match &compiled {
                None => compiled = Some((this, b.name.clone())),
                Some((c, first)) if *c != this => {
                    return Err(Error::invalid_arg(format!(
                        "the NEFF holds {c} sample(s) of '{first}' but {this} of '{}': its tensors disagree on the batch size it was compiled for",
                        b.name
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(Binding {
        inputs: bound_inputs.into_iter().map(|(b, _)| b).collect(),
        outputs: bound_outputs.into_iter().map(|(b, _)| b).collect(),
        neff: neff.to_vec(),
        compiled: compiled.map_or(1, |(c, _)| c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(name: &str, ty: &str, dims: &[i64]) -> Io {
        Io {
            name: name.into(),
            data_type: ty.into(),
            dims: dims.to_vec(),
            label_filename: String::new(),
        }
    }

    fn t(name: &str, input: bool, size: usize) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            input,
            size,
        }
    }

    #[test]
    fn the_compiled_batch_size_comes_from_the_byte_sizes() {
        let neff = [t("x", true, 4 * 3 * 4), t("y", false, 4 * 2 * 4)];
        let b = bind(
            &[io("x", "TYPE_FP32", &[3])],
            &[io("y", "TYPE_INT32", &[2])],
            &neff,
            true,
        )
        .unwrap();
        assert_eq!(b.compiled, 4);
        assert_eq!(b.inputs[0].sample_bytes, 12);
        assert_eq!(b.outputs[0].sample_bytes, 8);
        assert_eq!(b.outputs[0].datatype, DataType::Int32);
    }

    #[test]
    fn triton_inferentia_names_map_by_index() {
        let neff = [t("in_a", true, 8), t("in_b", true, 8), t("out", false, 8)];
        let b = bind(
            &[
                io("INPUT__1", "TYPE_FP32", &[2]),
                io("INPUT__0", "TYPE_FP32", &[2]),
            ],
            &[io("OUTPUT__0", "TYPE_FP32", &[2])],
            &neff,
            false,
        )
        .unwrap();
        assert_eq!(b.inputs[0].neff_name, "in_b");
        assert_eq!(b.inputs[1].neff_name, "in_a");
        assert_eq!(b.outputs[0].neff_name, "out");
        assert_eq!(b.compiled, 1);
    }

    #[test]
    fn mismatches_are_explained() {
        let neff = [t("x", true, 12), t("y", false, 12)];
        let e = bind(&[io("z", "TYPE_FP32", &[3])], &[], &neff, false).unwrap_err();
        assert!(
            e.message.contains(
                "input 'z' of the configuration is not an input of the NEFF (its inputs: x)"
            ),
            "{e}"
        );
        let e = bind(&[], &[io("y", "TYPE_FP32", &[3])], &neff, false).unwrap_err();
        assert!(
            e.message
                .contains("the NEFF's input 'x' is not in the configuration"),
            "{e}"
        );
        let e = bind(&[io("x", "TYPE_FP32", &[4])], &[], &neff, false).unwrap_err();
        assert!(e.message.contains("input 'x' is 16 bytes in the configuration (TYPE_FP32 [4]) but 12 bytes in the NEFF"), "{e}");
        let e = bind(&[io("x", "TYPE_FP32", &[5])], &[], &neff, true).unwrap_err();
        assert!(
            e.message
                .contains("not a whole number of samples of 20 bytes"),
            "{e}"
        );
        let e = bind(&[io("x", "TYPE_FP32", &[-1])], &[], &neff, true).unwrap_err();
        assert!(e.message.contains("every dimension must be fixed"), "{e}");
        let e = bind(&[io("x", "TYPE_STRING", &[1])], &[], &neff, true).unwrap_err();
        assert!(e.message.contains("does not take strings"), "{e}");
        // Inputs say 3 samples, outputs 1.
        let neff = [t("x", true, 12), t("y", false, 12)];
        let e = bind(
            &[io("x", "TYPE_FP32", &[1])],
            &[io("y", "TYPE_FP32", &[3])],
            &neff,
            true,
        )
        .unwrap_err();
        assert!(e.message.contains("disagree on the batch size"), "{e}");
    }

    #[test]
    fn outputs_the_configuration_leaves_out_are_allowed() {
        let neff = [t("x", true, 4), t("y", false, 4), t("extra", false, 64)];
        let b = bind(
            &[io("x", "TYPE_FP32", &[1])],
            &[io("y", "TYPE_FP32", &[1])],
            &neff,
            true,
        )
        .unwrap();
        assert_eq!(b.outputs.len(), 1);
        assert_eq!(b.neff.len(), 3);
    }
}
