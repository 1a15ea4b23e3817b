//! The post-processing driver: small CPU models that turn a network's raw outputs into
//! answers, so a pipeline needs no Python step after its model. One driver, two backends;
//! the model's `backend` field picks the behaviour:
//!
//! - `"pooling"` ([`pooling`]): mean pooling of a transformer's hidden state over its
//!   attention mask, L2-normalised: sentence embeddings;
//! - `"topk"` ([`topk`]): the `k` best classes of a score vector, with softmax, labels and
//!   class indices.
//!
//! Every request is answered on its own: one with bad inputs fails alone, with INVALID_ARG.
//!
//! Written with the SDK: no `unsafe` here.

pub mod pooling;
pub mod topk;

use ferrite_driver_sdk::{
    Batch, DataType, Descriptor, Driver, DriverInfo, Error, InstanceInfo, LogLevel, ModelLoad,
    Result, abi, export_driver, log,
};

use crate::pooling::Pooling;
use crate::topk::TopK;

pub struct PostprocessDriver;

/// A loaded post-processing model: what its backend does, configured.
#[derive(Clone, Debug, PartialEq)]
pub enum PostprocessModel {
    Pooling(Pooling),
    TopK(TopK),
}

impl Driver for PostprocessDriver {
    type Model = PostprocessModel;
    type Instance = ();

    fn init(_: &DriverInfo) -> Result<Self> {
        Ok(PostprocessDriver)
    }

    fn load_model(&self, model: &mut ModelLoad<'_>) -> Result<PostprocessModel> {
        let name = model.name();
        let config = model.config();
        let backend = config
            .get("backend")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        let loaded = match backend {
            "pooling" => PostprocessModel::Pooling(Pooling::from_config(name, config)?),
            "topk" => PostprocessModel::TopK(TopK::from_config(name, config, model.model_path())?),
            other => {
                return Err(Error::invalid_arg(format!(
                    "model '{name}': the post-processing driver serves backends \"pooling\" and \"topk\", not \"{other}\""
                )));
            }
        };
        log(
            LogLevel::Info,
            &format!("model '{name}': {backend} {loaded:?}"),
        );
        Ok(loaded)
    }

    fn create_instance(&self, _: &PostprocessModel, _: &InstanceInfo) -> Result<()> {
        Ok(())
    }

    fn execute(&self, model: &PostprocessModel, _: &mut (), batch: &mut Batch<'_>) -> Result<()> {
        batch.mark_infer_start();
        for (i, request) in batch.requests().enumerate() {
            let mut response = batch.respond(i)?;
            let result = match model {
                PostprocessModel::Pooling(p) => p.run(&request, &mut response),
                PostprocessModel::TopK(t) => t.run(&request, &mut response),
            };
            match result {
                Ok(()) => response.send()?,
                Err(e) => response.send_error(&e)?,
            }
        }
        batch.mark_infer_end();
        Ok(())
    }
}

export_driver!(
    PostprocessDriver,
    Descriptor {
        name: "postprocess",
        version: env!("CARGO_PKG_VERSION"),
        backends: &["pooling", "topk"],
        platforms: &[],
        instance_kinds: abi::INSTANCE_KIND_CPU | abi::INSTANCE_KIND_MODEL,
        datatypes: &[DataType::Fp32, DataType::Int64, DataType::Bytes],
    }
);
