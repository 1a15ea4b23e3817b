//! Running a batch: each request's encoded images, one per batch row, decoded, resized,
//! converted and laid out into one output tensor of shape `[rows, ...dims]`. A bad image
//! fails its own request (INVALID_ARG naming the model, the input and the row); the other
//! requests of the batch are answered as usual.

use ferrite_driver_sdk::{Batch, DataType, Error, Result, Tensor, bytes_layout};

use crate::config::ImageModel;

/// One request's output: its shape and bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Output {
    pub shape: Vec<i64>,
    pub data: Vec<u8>,
}

/// Runs `batch`: every request gets its output or its own error.
pub fn execute(model: &ImageModel, batch: &mut Batch<'_>) -> Result<()> {
    batch.mark_infer_start();
    let outputs = preprocess_all(model, batch.requests().map(|r| r.input(&model.input)));
    batch.mark_infer_end();
    for (i, output) in outputs.into_iter().enumerate() {
        match output {
            Ok(output) => {
                let mut response = batch.respond(i)?;
                if batch.request(i).wants_output(&model.output) {
                    response.output_from(
                        &model.output,
                        model.output_type,
                        &output.shape,
                        &output.data,
                    )?;
                }
                response.send()?;
            }
            Err(e) => batch.fail(i, &e)?,
        }
    }
    Ok(())
}

/// Each request's output, from each request's input (or the error finding it).
pub fn preprocess_all<'a>(
    model: &ImageModel,
    inputs: impl Iterator<Item = Result<Tensor<'a>>>,
) -> Vec<Result<Output>> {
    inputs
        .map(|input| input.and_then(|t| preprocess_request(model, &t)))
        .collect()
}

/// One request: its input tensor of encoded images to the output tensor.
pub fn preprocess_request(model: &ImageModel, input: &Tensor<'_>) -> Result<Output> {
    let refuse = |what: String| {
        Error::invalid_arg(format!(
            "model '{}' input '{}': {what}",
            model.name, model.input
        ))
    };
    if input.datatype != DataType::Bytes {
        return Err(refuse(format!(
            "expected BYTES (encoded images), got {}",
            input.datatype
        )));
    }
    let (rows, expected_shape) = if model.batching {
        let rows = input.shape.first().copied().unwrap_or(-1);
        (rows, vec![rows, 1])
    } else {
        (1, vec![1])
    };
    if rows < 0 || input.shape != expected_shape.as_slice() {
        return Err(refuse(format!(
            "expected shape {}, got {:?} (one encoded image per batch row)",
            if model.batching { "[-1, 1]" } else { "[1]" },
            input.shape
        )));
    }
    let images = bytes_layout::split(input.data).map_err(|e| refuse(e.message))?;
    if images.len() as i64 != rows {
        return Err(refuse(format!(
            "shape {:?} holds {rows} images but the data holds {}",
            input.shape,
            images.len()
        )));
    }

    let image_bytes = model.spec.byte_size();
    let mut data = Vec::new();
    data.try_reserve_exact(images.len().saturating_mul(image_bytes))
        .map_err(|_| {
            Error::unavailable(format!(
                "model '{}': cannot allocate {} images of {image_bytes} bytes",
                model.name,
                images.len()
            ))
        })?;
    for (row, encoded) in images.iter().enumerate() {
        let in_row = |e: ferrite_imaging::Error| {
            Error::invalid_arg(format!(
                "model '{}' input '{}' row {row}: {e}",
                model.name, model.input
            ))
        };
        let image = ferrite_imaging::decode_with_limits(encoded, &model.limits).map_err(in_row)?;
        let tensor =
            ferrite_imaging::preprocess(&image, &model.spec, model.scaling).map_err(in_row)?;
        data.extend_from_slice(&tensor);
    }

    let shape = if model.batching {
        let mut shape = vec![rows];
        shape.extend(model.spec.shape());
        shape
    } else {
        model.output_dims.clone()
    };
    Ok(Output { shape, data })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use ferrite_driver_sdk::ErrorCode;
    use ferrite_imaging::{ElementType, Format, InputSpec, Scaling};
    use image::ImageFormat;
    use serde_json::json;

    use super::*;
    use crate::config::tests::config;

    fn model(patch: serde_json::Value) -> ImageModel {
        ImageModel::from_config("preprocess_image", &config(patch)).unwrap()
    }

    fn encoded(format: ImageFormat, width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 9) as u8, (y * 5) as u8, 200])
        });
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    fn images(list: &[&[u8]]) -> Vec<u8> {
        let mut data = Vec::new();
        for image in list {
            bytes_layout::push(&mut data, image);
        }
        data
    }

    fn tensor<'a>(shape: &'a [i64], data: &'a [u8]) -> Tensor<'a> {
        Tensor {
            name: "IMAGE",
            datatype: DataType::Bytes,
            shape,
            data,
        }
    }

    /// What the library makes of `bytes`, for comparison.
    fn expected(bytes: &[u8], spec: &InputSpec, scaling: Scaling) -> Vec<u8> {
        let image = ferrite_imaging::decode(bytes).unwrap();
        ferrite_imaging::preprocess(&image, spec, scaling).unwrap()
    }

    #[test]
    fn png_and_jpeg_rows() {
        let m = model(json!({}));
        let png = encoded(ImageFormat::Png, 300, 200);
        let jpeg = encoded(ImageFormat::Jpeg, 64, 48);
        let data = images(&[&png, &jpeg]);
        let out = preprocess_request(&m, &tensor(&[2, 1], &data)).unwrap();
        assert_eq!(out.shape, vec![2, 3, 224, 224]);
        let one = 3 * 224 * 224 * 4;
        assert_eq!(out.data.len(), 2 * one);
        assert_eq!(out.data[..one], expected(&png, &m.spec, Scaling::Lite)[..]);
        assert_eq!(out.data[one..], expected(&jpeg, &m.spec, Scaling::Lite)[..]);
    }

    #[test]
    fn layout_and_scaling_parameters_are_applied() {
        let m = model(json!({
            "output": [{"name": "out", "data_type": "TYPE_UINT8", "dims": [4, 6, 1]}],
            "parameters": {
                "layout": {"string_value": "NHWC"},
                "scaling": {"string_value": "NONE"}
            }
        }));
        let png = encoded(ImageFormat::Png, 12, 8);
        let data = images(&[&png]);
        let out = preprocess_request(&m, &tensor(&[1, 1], &data)).unwrap();
        assert_eq!(out.shape, vec![1, 4, 6, 1]);
        let spec = InputSpec {
            channels: 1,
            height: 4,
            width: 6,
            format: Format::Nhwc,
            datatype: ElementType::Uint8,
        };
        assert_eq!(out.data, expected(&png, &spec, Scaling::None));
    }

    #[test]
    fn without_batching_the_shape_is_the_configured_one() {
        let m = model(json!({
            "max_batch_size": 0,
            "output": [{"name": "input", "data_type": "TYPE_FP32", "dims": [1, 3, 16, 16]}]
        }));
        let png = encoded(ImageFormat::Png, 20, 20);
        let data = images(&[&png]);
        let out = preprocess_request(&m, &tensor(&[1], &data)).unwrap();
        assert_eq!(out.shape, vec![1, 3, 16, 16]);
        assert_eq!(out.data.len(), 3 * 16 * 16 * 4);
        let err = preprocess_request(&m, &tensor(&[1, 1], &data)).unwrap_err();
        assert!(
            err.message.contains("expected shape [1]"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_bad_image_fails_only_its_request() {
        let m = model(json!({}));
        let png = encoded(ImageFormat::Png, 30, 30);
        let good = images(&[&png]);
        let bad = images(&[&png, b"GIF? no, just text"]);
        let jpeg = encoded(ImageFormat::Jpeg, 40, 40);
        let cut = images(&[&jpeg[..jpeg.len() / 2]]);
        let empty = images(&[b""]);
        let inputs = [
            tensor(&[1, 1], &good),
            tensor(&[2, 1], &bad),
            tensor(&[1, 1], &cut),
            tensor(&[1, 1], &empty),
        ];
        let mut outputs = preprocess_all(&m, inputs.into_iter().map(Ok)).into_iter();
        assert_eq!(outputs.next().unwrap().unwrap().shape, vec![1, 3, 224, 224]);
        let err = outputs.next().unwrap().unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArg);
        assert_eq!(
            err.message,
            "model 'preprocess_image' input 'IMAGE' row 1: not a PNG or JPEG image"
        );
        let err = outputs.next().unwrap().unwrap_err();
        assert_eq!(
            err.message,
            "model 'preprocess_image' input 'IMAGE' row 0: truncated JPEG image: the data ends before the image"
        );
        let err = outputs.next().unwrap().unwrap_err();
        assert!(
            err.message.ends_with("row 0: empty image (0 bytes)"),
            "{}",
            err.message
        );
        // a missing input fails its request too
        let missing = Err(Error::invalid_arg(
            "input 'IMAGE' is missing from the request",
        ));
        let outputs = preprocess_all(&m, [missing, Ok(tensor(&[1, 1], &good))].into_iter());
        assert!(outputs[0].is_err() && outputs[1].is_ok());
    }

    #[test]
    fn malformed_tensors_are_refused() {
        let m = model(json!({}));
        let png = encoded(ImageFormat::Png, 8, 8);
        let data = images(&[&png]);
        let message = |t: Tensor<'_>| preprocess_request(&m, &t).unwrap_err().message;
        let e = message(tensor(&[2, 1], &data));
        assert!(e.contains("holds 2 images but the data holds 1"), "{e}");
        let e = message(tensor(&[1, 1], &data[..10]));
        assert!(e.contains("BYTES element 0 claims"), "{e}");
        let e = message(tensor(&[1, 2], &data));
        assert!(e.contains("expected shape [-1, 1]"), "{e}");
        let e = message(Tensor {
            datatype: DataType::Uint8,
            ..tensor(&[1, 1], &data)
        });
        assert!(e.contains("expected BYTES"), "{e}");
        // no rows: an empty output
        let out = preprocess_request(&m, &tensor(&[0, 1], &[])).unwrap();
        assert_eq!((out.shape, out.data.len()), (vec![0, 3, 224, 224], 0));
    }
}
