//! Running a batch through a session: inputs from the requests (gathered along the batch
//! dimension when the model batches), one `run`, outputs back to each request.

use std::borrow::Cow;

use ferrite_driver_sdk::{Batch, DataType, Error, Response, Result, bytes_layout};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorElementType, TensorRef, ValueType};

use crate::strings::{string_tensor, string_tensor_bytes};
use crate::types::from_ort;
use crate::{OnnxInstance, OnnxModel};

/// An input ready for the session.
struct Input<'a> {
    name: &'a str,
    datatype: DataType,
    shape: Vec<i64>,
    data: Cow<'a, [u8]>,
}

/// An output as the session produced it, as raw little-endian bytes.
struct Output {
    name: String,
    datatype: DataType,
    shape: Vec<i64>,
    data: Vec<u8>,
}

/// Runs `batch` on `instance`. A batching model runs the whole batch at once; otherwise each
/// request runs alone. A request that fails gets its own error without failing the others.
pub fn execute(
    model: &OnnxModel,
    instance: &mut OnnxInstance,
    batch: &mut Batch<'_>,
) -> Result<()> {
    // Ragged models run every batch whole, also a batch of one (the model takes ragged inputs
    // flat and batch inputs beside them).
    if (model.batching && batch.len() > 1) || !model.ragged.is_empty() {
        return execute_batched(model, instance, batch);
    }
    for i in 0..batch.len() {
        let request = batch.request(i);
        let inputs: Vec<Input<'_>> = request
            .inputs()
            .map(|t| Input {
                name: t.name,
                datatype: t.datatype,
                shape: t.shape.to_vec(),
                data: Cow::Borrowed(t.data),
            })
            .collect();
        let wanted = |name: &str| request.wants_output(name);
        batch.mark_infer_start();
        let result = run(&mut instance.session, model, &inputs, &wanted);
        batch.mark_infer_end();
        match result {
            Ok(outputs) => {
                let mut response = batch.respond(i)?;
                for o in outputs {
                    response.output_from(&o.name, o.datatype, &o.shape, &o.data)?;
                }
                response.send()?;
            }
            Err(e) => batch.fail(i, &e)?,
        }
    }
    Ok(())
}

/// The whole batch in one run: inputs gathered along the batch dimension, outputs split back
/// into the requests' rows. With Triton's ragged batching, ragged inputs are concatenated flat
/// (`[total element count]`), batch inputs are made beside them, and batch outputs are cut by
/// their source input's shapes.
fn execute_batched(
    model: &OnnxModel,
    instance: &mut OnnxInstance,
    batch: &mut Batch<'_>,
) -> Result<()> {
    let ragged = &model.ragged;
    let requests: Vec<_> = batch.requests().collect();
    let names: Vec<String> = batch
        .request(0)
        .inputs()
        .map(|t| t.name.to_string())
        .collect();
    // Each request's share of the batch dimension (every input agrees, the core checked).
    let batch_sizes: Vec<usize> = requests
        .iter()
        .map(|r| {
            let first = r.inputs().next();
            match (model.batching, first) {
                (true, Some(t)) => t.shape.first().copied().unwrap_or(1).max(0) as usize,
                _ => 1,
            }
        })
        .collect();
    let source_shapes = |source: &str| -> Result<Vec<Vec<i64>>> {
        requests
            .iter()
            .map(|r| r.input(source).map(|t| t.shape.to_vec()))
            .collect()
    };
    if instance.scratch.len() < names.len() {
        instance.scratch.resize_with(names.len(), Vec::new);
    }
    let OnnxInstance { session, scratch } = instance;
    let mut inputs = Vec::with_capacity(names.len() + ragged.batch_inputs.len());
    for (name, buf) in names.iter().zip(scratch.iter_mut()) {
        if ragged.is_ragged(name) {
            // Concatenated whatever each request's shape: one flat tensor.
            buf.clear();
            let mut count = 0i64;
            let mut datatype = None;
            for r in &requests {
                let t = r.input(name)?;
                if datatype.is_some_and(|d| d != t.datatype) {
                    return Err(Error::invalid_arg(format!(
                        "ragged input '{name}' has more than one data type in a batch"
                    )));
                }
                datatype = Some(t.datatype);
                let elements = t
                    .shape
                    .iter()
                    .try_fold(1i64, |n, &d| n.checked_mul(d.max(0)))
                    .unwrap_or(i64::MAX);
                count = count.saturating_add(elements);
                buf.extend_from_slice(t.data);
            }
            let data: &[u8] = buf;
            inputs.push(Input {
                name,
                datatype: datatype.unwrap_or(DataType::Fp32),
                shape: vec![count],
                data: Cow::Borrowed(data),
            });
        } else {
            let g = batch.gather_into(name, buf)?;
            inputs.push(Input {
                name,
                datatype: g.datatype,
                shape: g.shape,
                data: g.data,
            });
        }
    }
    for b in &ragged.batch_inputs {
        let shapes = source_shapes(&b.source)?;
        let views: Vec<&[i64]> = shapes.iter().map(Vec::as_slice).collect();
        let (shape, data) = crate::ragged::batch_input_tensor(b, &views);
        for target in &b.targets {
            inputs.push(Input {
                name: target,
                datatype: b.datatype,
                shape: shape.clone(),
                data: Cow::Owned(data.clone()),
            });
        }
    }
    let wanted = |name: &str| requests.iter().any(|r| r.wants_output(name));
    batch.mark_infer_start();
    let outputs = run(session, model, &inputs, &wanted)?;
    batch.mark_infer_end();
    let mut responses: Vec<Response> = (0..batch.len())
        .map(|i| batch.respond(i))
        .collect::<Result<_>>()?;
    for o in &outputs {
        match ragged.batch_output(&o.name) {
            Some(bo) => {
                // Each request's share, in order, in the shape of its source input.
                let size = o.datatype.element_size().ok_or_else(|| {
                    Error::unsupported(format!(
                        "batch output '{}' of type BYTES is not supported",
                        o.name
                    ))
                })?;
                let mut offset = 0usize;
                for (i, source) in source_shapes(&bo.source)?.iter().enumerate() {
                    let shape = crate::ragged::scatter_shape(bo, source);
                    let len = shape.iter().map(|&d| d.max(0) as usize).product::<usize>() * size;
                    let part = o.data.get(offset..offset + len).ok_or_else(|| {
                        Error::internal(format!(
                            "batch output '{}' holds {} bytes, fewer than its requests' shapes need",
                            o.name,
                            o.data.len()
                        ))
                    })?;
                    offset += len;
                    if batch.request(i).wants_output(&o.name) {
                        responses[i].output_from(&o.name, o.datatype, &shape, part)?;
                    }
                }
            }
            None if model.batching => batch.scatter(
                &mut responses,
                &batch_sizes,
                &o.name,
                o.datatype,
                &o.shape,
                &o.data,
            )?,
            None => {
                if batch.request(0).wants_output(&o.name) {
                    responses[0].output_from(&o.name, o.datatype, &o.shape, &o.data)?;
                }
            }
        }
    }
    for r in responses {
        r.send()?;
    }
    Ok(())
}

fn run(
    session: &mut Session,
    onnx: &OnnxModel,
    inputs: &[Input<'_>],
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Output>> {
    let model = onnx.name.as_str();
    let scalars = &onnx.scalars;
    let mut values: Vec<(String, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
    for input in inputs {
        // A scalar of the model's arrives as [1] (Triton's rule) and runs with no dimensions.
        let scalar = scalars.inputs.iter().any(|n| n == input.name);
        values.push((input.name.to_string(), to_value(input, scalar)?));
    }
    let output_names: Vec<String> = session
        .outputs()
        .iter()
        .map(|o| o.name().to_string())
        .filter(|n| wanted(n))
        .collect();
    let outputs = session
        .run(values)
        .map_err(|e| Error::internal(format!("onnx runtime error running model '{model}': {e}")))?;
    output_names
        .into_iter()
        .map(|name| {
            let value = outputs.get(&name).ok_or_else(|| {
                Error::internal(format!("model '{model}' produced no output '{name}'"))
            })?;
            let mut output = from_value(&name, value)?;
            if output.shape.is_empty()
                && let Some((_, dims)) = scalars.outputs.iter().find(|(n, _)| *n == name)
            {
                output.shape = dims.clone();
            }
            Ok(output)
        })
        .collect()
}

/// The session's value for `input`: a view of the request's (or the gathered batch's) bytes
/// when they are aligned for the element type, so the tensor is not copied again; a copy
/// otherwise (a tensor's data may start anywhere in a request body). A `scalar` has no
/// dimensions, whatever the request's shape.
fn to_value<'a>(input: &'a Input<'_>, scalar: bool) -> Result<SessionInputValue<'a>> {
    let shape = if scalar {
        Vec::new()
    } else {
        input.shape.clone()
    };
    let data: &'a [u8] = &input.data;
    let fail = |e: ort::Error| Error::invalid_arg(format!("input '{}': {e}", input.name));
    macro_rules! pod {
        ($t:ty) => {
            match bytemuck::try_cast_slice::<u8, $t>(data) {
                Ok(view) => TensorRef::<$t>::from_array_view((shape, view))
                    .map_err(fail)?
                    .into(),
                Err(_) => {
                    Tensor::<$t>::from_array((shape, bytemuck::pod_collect_to_vec::<u8, $t>(data)))
                        .map_err(fail)?
                        .into()
                }
            }
        };
    }
    Ok(match input.datatype {
        DataType::Bool => {
            Tensor::<bool>::from_array((shape, data.iter().map(|&b| b != 0).collect::<Vec<_>>()))
                .map_err(fail)?
                .into()
        }
        DataType::Uint8 => pod!(u8),
        DataType::Int8 => pod!(i8),
        DataType::Uint16 => pod!(u16),
        DataType::Int16 => pod!(i16),
        DataType::Uint32 => pod!(u32),
        DataType::Int32 => pod!(i32),
        DataType::Uint64 => pod!(u64),
        DataType::Int64 => pod!(i64),
        DataType::Fp16 => pod!(half::f16),
        DataType::Bf16 => pod!(half::bf16),
        DataType::Fp32 => pod!(f32),
        DataType::Fp64 => pod!(f64),
        DataType::Bytes => string_tensor(&shape, &bytes_elements(input.name, data)?)?.into(),
    })
}

fn bytes_elements<'d>(name: &str, data: &'d [u8]) -> Result<Vec<&'d [u8]>> {
    bytes_layout::elements(data)
        .map(|element| element.map_err(|e| Error::invalid_arg(format!("input '{name}': {e}"))))
        .collect()
}

fn from_value(name: &str, value: &DynValue) -> Result<Output> {
    let ValueType::Tensor { ty, shape, .. } = value.dtype() else {
        return Err(Error::unsupported(format!(
            "output '{name}' is not a tensor"
        )));
    };
    let datatype = from_ort(*ty).ok_or_else(|| {
        Error::unsupported(format!(
            "output '{name}' has element type {ty:?}, which has no Triton data type"
        ))
    })?;
    let shape: Vec<i64> = shape.iter().copied().collect();
    let fail = |e: ort::Error| Error::internal(format!("reading output '{name}': {e}"));
    macro_rules! pod {
        ($t:ty) => {
            bytemuck::cast_slice::<$t, u8>(value.try_extract_tensor::<$t>().map_err(fail)?.1)
                .to_vec()
        };
    }
    let data = match ty {
        TensorElementType::Bool => value
            .try_extract_tensor::<bool>()
            .map_err(fail)?
            .1
            .iter()
            .map(|&b| b as u8)
            .collect(),
        TensorElementType::Uint8 => pod!(u8),
        TensorElementType::Int8 => pod!(i8),
        TensorElementType::Uint16 => pod!(u16),
        TensorElementType::Int16 => pod!(i16),
        TensorElementType::Uint32 => pod!(u32),
        TensorElementType::Int32 => pod!(i32),
        TensorElementType::Uint64 => pod!(u64),
        TensorElementType::Int64 => pod!(i64),
        TensorElementType::Float16 => pod!(half::f16),
        TensorElementType::Bfloat16 => pod!(half::bf16),
        TensorElementType::Float32 => pod!(f32),
        TensorElementType::Float64 => pod!(f64),
        TensorElementType::String => {
            let count = shape.iter().map(|&d| d.max(0) as usize).product();
            string_tensor_bytes(value, count)?
        }
        other => {
            return Err(Error::unsupported(format!(
                "output '{name}' has element type {other:?}, which has no Triton data type"
            )));
        }
    };
    Ok(Output {
        name: name.to_string(),
        datatype,
        shape,
        data,
    })
}
