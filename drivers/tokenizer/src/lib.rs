//! The tokenizer driver (`backend: "tokenizer"`): turns texts into the token tensors a
//! transformer takes, with a Hugging Face `tokenizer.json`, so a text model can be served
//! without a Python pre-processing step.
//!
//! A model version loads `tokenizer.json` from its version folder, else from the model
//! folder. The configuration (see [`config`]) has one `TYPE_STRING` input and any of the
//! `TYPE_INT64` outputs `input_ids`, `attention_mask` and `token_type_ids`; the parameter
//! `max_length` sets the truncation length (default: the tokenizer.json's own).
//!
//! Padding is dynamic: the tokenizer.json's own padding is turned off and every row of
//! every request of one `execute` call is padded, with the tokenizer's pad id and mask 0,
//! to the longest row of that call, so each request gets `[rows, L]` outputs. A request
//! with a text that is not UTF-8 fails alone, with INVALID_ARG naming the row.
//!
//! Written with the SDK: no `unsafe` here.

pub mod config;
pub mod encode;

use ferrite_driver_sdk::{
    Batch, DataType, Descriptor, Driver, DriverInfo, Error, InstanceInfo, LogLevel, ModelLoad,
    Request, Result, abi, export_driver, log,
};

use crate::config::{OutputKind, TokenizerConfig};
use crate::encode::{TextEncoder, Tokens};

pub struct TokenizerDriver;

/// A loaded tokenizer model.
pub struct TokenizerModel {
    config: TokenizerConfig,
    encoder: TextEncoder,
}

impl Driver for TokenizerDriver {
    type Model = TokenizerModel;
    type Instance = ();

    fn init(_: &DriverInfo) -> Result<Self> {
        Ok(TokenizerDriver)
    }

    fn load_model(&self, model: &mut ModelLoad<'_>) -> Result<TokenizerModel> {
        let config = TokenizerConfig::from_json(model.name(), model.config())?;
        let path = encode::find_tokenizer(model.version_path(), model.model_path())
            .map_err(|e| Error::new(e.code, format!("model '{}': {e}", model.name())))?;
        let encoder = TextEncoder::from_file(&path, config.max_length)
            .map_err(|e| Error::new(e.code, format!("model '{}': {e}", model.name())))?;
        log(
            LogLevel::Info,
            &format!(
                "model '{}': tokenizer {}, truncation {}",
                model.name(),
                path.display(),
                encoder
                    .max_length()
                    .map_or("off".to_string(), |n| format!("at {n} tokens"))
            ),
        );
        Ok(TokenizerModel { config, encoder })
    }

    fn create_instance(&self, _: &TokenizerModel, _: &InstanceInfo) -> Result<()> {
        Ok(())
    }

    fn execute(&self, model: &TokenizerModel, _: &mut (), batch: &mut Batch<'_>) -> Result<()> {
        let config = &model.config;
        let requests: Vec<Request<'_>> = batch.requests().collect();
        let texts: Vec<Result<Vec<&str>>> =
            requests.iter().map(|r| request_texts(config, r)).collect();
        batch.mark_infer_start();
        let tokens = model.encoder.encode_batch(&texts);
        batch.mark_infer_end();
        for (i, (request, tokens)) in requests.iter().zip(tokens).enumerate() {
            match tokens {
                Ok(tokens) => respond(config, batch, i, request, &tokens)?,
                Err(e) => batch.fail(i, &e)?,
            }
        }
        Ok(())
    }
}

/// The texts of one request, or an INVALID_ARG error naming the model, the input and what
/// is wrong with it.
fn request_texts<'a>(config: &TokenizerConfig, request: &Request<'a>) -> Result<Vec<&'a str>> {
    let fail = |what: &dyn std::fmt::Display| {
        Error::invalid_arg(format!(
            "model '{}', input '{}': {what}",
            config.model, config.input
        ))
    };
    let input = request.input(&config.input)?;
    if input.datatype != DataType::Bytes {
        return Err(fail(&format_args!(
            "expected BYTES texts, got {}",
            input.datatype
        )));
    }
    encode::texts(input.data, input.element_count()).map_err(|e| fail(&e))
}

/// Sends request `index` the outputs it asked for, shaped `[rows, length]`.
fn respond(
    config: &TokenizerConfig,
    batch: &Batch<'_>,
    index: usize,
    request: &Request<'_>,
    tokens: &Tokens,
) -> Result<()> {
    let shape = [tokens.rows as i64, tokens.length as i64];
    let mut response = batch.respond(index)?;
    for (name, kind) in &config.outputs {
        if !request.wants_output(name) {
            continue;
        }
        let values = match kind {
            OutputKind::InputIds => &tokens.input_ids,
            OutputKind::AttentionMask => &tokens.attention_mask,
            OutputKind::TokenTypeIds => &tokens.token_type_ids,
        };
        let buffer = response.output(name, DataType::Int64, &shape, values.len() * 8)?;
        for (chunk, v) in buffer.chunks_exact_mut(8).zip(values) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
    }
    response.send()
}

export_driver!(
    TokenizerDriver,
    Descriptor {
        name: "tokenizer",
        version: env!("CARGO_PKG_VERSION"),
        backends: &["tokenizer"],
        platforms: &[],
        instance_kinds: abi::INSTANCE_KIND_CPU | abi::INSTANCE_KIND_MODEL,
        datatypes: &[DataType::Bytes, DataType::Int64],
    }
);
