//! The program: read the model, preprocess the images, send the batches (synchronously, all
//! at once with `-a`, or through a gRPC stream with `--streaming`), print the classes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use ferrite_client::{Client, InferRequest, InferResult, InputTensor, RequestedOutput};

use crate::Error;
use crate::args::{Args, Protocol};
use crate::model::{ModelInfo, TensorMeta, parse_model};
use crate::preprocess::preprocess_file;

/// The program, from parsed arguments; results are printed on stdout.
pub fn main(args: Args) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(format!("cannot start the async runtime: {e}")))?;
    let mut out = std::io::stdout().lock();
    runtime.block_on(run(&args, &mut out))
}

fn client_error(what: &str) -> impl Fn(ferrite_client::Error) -> Error + '_ {
    move |e| Error::new(format!("{what}: {e}"))
}

/// The image files: the file itself, or every file of the folder, sorted by path.
pub fn image_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::new(format!("Failed to find '{}': {e}", path.display())))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let read =
        |e: std::io::Error| Error::new(format!("cannot read folder '{}': {e}", path.display()));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read)? {
        let file = entry.map_err(read)?.path();
        // Files (links followed), as Triton's Python client takes them.
        if file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::new(format!(
            "no image files in folder '{}'",
            path.display()
        )));
    }
    Ok(files)
}

/// One request to send: its id, the files of its batch and its input data.
pub struct Batch {
    pub id: String,
    pub files: Vec<PathBuf>,
    pub data: Bytes,
}

/// Groups the images into batches of `batch_size`; when the count is not a multiple, the last
/// batch is filled by starting over with the first images (Triton's client does the same,
/// so one image with `-b 4` is sent four times). Ids count from 0, as Triton's C++ client.
pub fn batches(files: &[PathBuf], images: &[Bytes], batch_size: usize) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut next = 0;
    let mut last = false;
    while !last {
        let mut batch_files = Vec::with_capacity(batch_size);
        let mut data = BytesMut::with_capacity(batch_size * images[0].len());
        for _ in 0..batch_size {
            batch_files.push(files[next].clone());
            data.extend_from_slice(&images[next]);
            next = (next + 1) % images.len();
            if next == 0 {
                last = true;
            }
        }
        out.push(Batch {
            id: out.len().to_string(),
            files: batch_files,
            data: data.freeze(),
        });
    }
    out
}

fn request(args: &Args, model: &ModelInfo, batch: &Batch) -> InferRequest {
    InferRequest::new(args.model_name.clone())
        .version(args.model_version.clone())
        .id(batch.id.clone())
        .input(InputTensor::raw(
            model.input_name.clone(),
            model.input.datatype.name(),
            model.input_shape(batch.files.len()),
            batch.data.clone(),
        ))
        .output(RequestedOutput::new(model.output_name.clone()).classification(args.classes))
}

/// Writes "Image '<file>':" and its classes, "    <score> (<index>) = <label>", for every
/// image of one result (Triton's C++ client's format).
pub fn print_result(
    out: &mut impl Write,
    result: &InferResult,
    model: &ModelInfo,
    files: &[PathBuf],
) -> Result<(), Error> {
    let name = &model.output_name;
    let output = result
        .output(name)
        .ok_or_else(|| Error::new(format!("unable to get shape for {name}")))?;
    if output.datatype != "BYTES" {
        return Err(Error::new(format!(
            "received incorrect datatype for {name}: {}",
            output.datatype
        )));
    }
    let good_shape = if model.batching() {
        output.shape.len() == 2 && output.shape[0] == files.len() as i64
    } else {
        output.shape.len() == 1
    };
    if !good_shape {
        return Err(Error::new(format!(
            "received incorrect shape for {name}: {:?}",
            output.shape
        )));
    }
    let classes = output
        .strings()
        .map_err(|e| Error::new(format!("unable to get data for {name}: {e}")))?;
    let per_image = *output.shape.last().unwrap_or(&0) as usize;
    if classes.len() != per_image * files.len() {
        return Err(Error::new(format!(
            "unexpected number of strings in the result, expected {}, got {}",
            per_image * files.len(),
            classes.len()
        )));
    }
    let write = |e: std::io::Error| Error::new(format!("cannot write the results: {e}"));
    for (i, file) in files.iter().enumerate() {
        writeln!(out, "Image '{}':", file.display()).map_err(write)?;
        for class in &classes[i * per_image..(i + 1) * per_image] {
            // "score:index:label"; the label may itself contain ':'.
            let mut parts = class.splitn(3, ':');
            let score = parts.next().unwrap_or_default();
            let mut line = format!("    {score}");
            if let Some(index) = parts.next() {
                line.push_str(&format!(" ({index})"));
            }
            if let Some(label) = parts.next() {
                line.push_str(&format!(" = {label}"));
            }
            writeln!(out, "{line}").map_err(write)?;
        }
    }
    Ok(())
}

fn tensors(ts: &[ferrite_client::TensorMeta]) -> Vec<TensorMeta<'_>> {
    ts.iter()
        .map(|t| TensorMeta {
            name: &t.name,
            datatype: &t.datatype,
            shape: &t.shape,
        })
        .collect()
}

/// The program, writing the results to `out`.
pub async fn run(args: &Args, out: &mut impl Write) -> Result<(), Error> {
    let url = args.url();
    let protocol = match args.protocol {
        Protocol::Http => ferrite_client::Protocol::Http,
        Protocol::Grpc => ferrite_client::Protocol::Grpc,
    };
    let client = Client::connect(protocol, &url)
        .await
        .map_err(client_error("unable to create client for inference"))?;

    // Is the model one this client can feed?
    let (name, version) = (args.model_name.as_str(), args.model_version.as_str());
    let metadata = client
        .model_metadata(name, version)
        .await
        .map_err(client_error("failed to get model metadata"))?;
    let config = client
        .model_config(name, version)
        .await
        .map_err(client_error("failed to get model config"))?;
    let write = |e: std::io::Error| Error::new(format!("cannot write the results: {e}"));
    if args.verbose {
        writeln!(out, "model metadata: {metadata:?}").map_err(write)?;
        let text = serde_json::to_string_pretty(&config).unwrap_or_default();
        writeln!(out, "model config: {text}").map_err(write)?;
    }
    let model_name = if metadata.name.is_empty() {
        name
    } else {
        &metadata.name
    };
    let model = parse_model(
        model_name,
        &tensors(&metadata.inputs),
        &tensors(&metadata.outputs),
        &config,
        args.batch_size,
    )?;

    // The images, preprocessed.
    let files = image_files(&args.image)?;
    let mut images = Vec::with_capacity(files.len());
    for file in &files {
        images.push(Bytes::from(preprocess_file(
            file,
            &model.input,
            args.scaling,
        )?));
    }
    if let Some(path) = &args.preprocessed {
        std::fs::write(path, &images[0])
            .map_err(|e| Error::new(format!("cannot write '{}': {e}", path.display())))?;
    }

    let batches = batches(&files, &images, args.batch_size as usize);
    let requests: Vec<InferRequest> = batches.iter().map(|b| request(args, &model, b)).collect();
    if args.verbose {
        for b in &batches {
            writeln!(
                out,
                "request {}: {} image(s) {:?}, input '{}' {} {:?}, top {} of '{}'",
                b.id,
                b.files.len(),
                b.files,
                model.input_name,
                model.input.datatype.name(),
                model.input_shape(b.files.len()),
                args.classes,
                model.output_name
            )
            .map_err(write)?;
        }
    }

    let results: Vec<InferResult> = if args.streaming {
        stream(&client, &requests).await?
    } else if args.async_set {
        let mut pending = Vec::with_capacity(requests.len());
        for r in requests {
            let client = client.clone();
            pending.push(tokio::spawn(async move { client.infer(&r).await }));
        }
        let mut results = Vec::with_capacity(pending.len());
        for p in pending {
            let result = p
                .await
                .map_err(|e| Error::new(format!("inference task failed: {e}")))?;
            results
                .push(result.map_err(client_error("failed sending asynchronous infer request"))?);
        }
        results
    } else {
        let mut results = Vec::with_capacity(requests.len());
        for r in &requests {
            results.push(
                client
                    .infer(r)
                    .await
                    .map_err(client_error("failed sending synchronous infer request"))?,
            );
        }
        results
    };

    for (batch, result) in batches.iter().zip(&results) {
        writeln!(out, "Request {}, batch size {}", batch.id, args.batch_size).map_err(write)?;
        print_result(out, result, &model, &batch.files)?;
    }
    Ok(())
}

/// Sends every request on one gRPC stream, then collects the responses (in any order) and
/// returns them in the order sent, matched by request id.
async fn stream(client: &Client, requests: &[InferRequest]) -> Result<Vec<InferResult>, Error> {
    let Client::Grpc(grpc) = client else {
        return Err(Error::new("Streaming is only allowed with gRPC protocol"));
    };
    let mut stream = grpc
        .stream()
        .await
        .map_err(client_error("failed to establish the stream"))?;
    for r in requests {
        stream
            .send(r)
            .map_err(client_error("failed sending asynchronous infer request"))?;
    }
    let mut by_id: BTreeMap<String, InferResult> = BTreeMap::new();
    while by_id.len() < requests.len() {
        match stream.recv().await {
            Some(Ok(result)) => {
                by_id.insert(result.id.clone(), result);
            }
            Some(Err(e)) => return Err(Error::new(format!("inference failed: {e}"))),
            None => {
                return Err(Error::new(format!(
                    "the stream ended after {} of {} responses",
                    by_id.len(),
                    requests.len()
                )));
            }
        }
    }
    requests
        .iter()
        .map(|r| {
            by_id
                .remove(&r.id)
                .ok_or_else(|| Error::new(format!("no response for request {}", r.id)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cycle_like_triton() {
        let files: Vec<PathBuf> = ["a", "b", "c"].iter().map(PathBuf::from).collect();
        let images: Vec<Bytes> = [b"A", b"B", b"C"]
            .iter()
            .map(|b| Bytes::from_static(*b))
            .collect();
        let b = batches(&files, &images, 2);
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].id.as_str(), b[1].id.as_str()), ("0", "1"));
        assert_eq!(b[0].files, vec![PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(b[1].files, vec![PathBuf::from("c"), PathBuf::from("a")]);
        assert_eq!(&b[1].data[..], b"CA");
        let b = batches(&files[..1], &images[..1], 3);
        assert_eq!(b.len(), 1);
        assert_eq!(&b[0].data[..], b"AAA");
        let b = batches(&files, &images, 1);
        assert_eq!(b.len(), 3);
        assert_eq!(&b[2].data[..], b"C");
    }
}
