//! `ModelStreamInfer`: many requests in flight on one bidirectional stream.
//!
//! Each request runs in its own task as soon as it is read, so requests execute concurrently
//! (and batch together where the model batches). As in Triton (`EnqueueForResponse` in
//! stream_infer_handler.cc), responses of ordinary (non-decoupled) models go back in the order
//! their requests came — a sequencer forwards each request's responses once all earlier ones
//! are out — while a decoupled model's responses go out as they are produced. Every response
//! carries `triton_final_response`; when a decoupled model ends a request with the final flag
//! alone, an empty final response goes out only if the request set
//! `triton_enable_empty_final_response` (tritonclient's `enable_empty_final_response`).
//!
//! Errors never close the stream: they go back in `error_message`. An error before the request
//! could be queued carries only the request's id (Triton's issue-time error); an error of the
//! execution also carries the model name and the requested version and, like every streamed
//! response, the `triton_final_response` parameter. The stream ends, with OK, once the client
//! has half-closed and every response is out. When the client goes away, requests still queued
//! are abandoned (the core answers them CANCELLED without running them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use ferrite_core::{Error, Parameters};
use ferrite_proto::inference::infer_parameter::ParameterChoice;
use ferrite_proto::inference::{
    InferParameter, ModelInferRequest, ModelInferResponse, ModelStreamInferResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::decode::{self, Rpc, ShmOutputs};
use crate::encode;
use crate::service::Frontend;

type Item = Result<ModelStreamInferResponse, Status>;

/// The responses of one `ModelStreamInfer` call.
pub type ResponseStream = ReceiverStream<Item>;

/// Responses waiting for the client to read them, before the producers wait.
const OUT_CAPACITY: usize = 32;

/// Starts serving one stream: a reader task, a sequencer task and a task per request.
pub fn start(
    frontend: Frontend,
    inbound: Streaming<ModelInferRequest>,
    deadline: Option<Instant>,
    forwarded: Parameters,
) -> ResponseStream {
    let (out_tx, out_rx) = mpsc::channel(OUT_CAPACITY);
    let (order_tx, order_rx) = mpsc::unbounded_channel();
    tokio::spawn(sequence(order_rx, out_tx.clone()));
    tokio::spawn(read(
        frontend,
        inbound,
        deadline,
        Arc::new(forwarded),
        order_tx,
        out_tx,
    ));
    ReceiverStream::new(out_rx)
}

/// Forwards each ordered request's responses, request after request.
async fn sequence(
    mut order: mpsc::UnboundedReceiver<mpsc::Receiver<Item>>,
    out: mpsc::Sender<Item>,
) {
    while let Some(mut responses) = order.recv().await {
        while let Some(item) = responses.recv().await {
            let end = item.is_err();
            if out.send(item).await.is_err() || end {
                return;
            }
        }
    }
}

/// Reads requests until the client half-closes, fails, or goes away.
async fn read(
    frontend: Frontend,
    mut inbound: Streaming<ModelInferRequest>,
    deadline: Option<Instant>,
    forwarded: Arc<Parameters>,
    order: mpsc::UnboundedSender<mpsc::Receiver<Item>>,
    out: mpsc::Sender<Item>,
) {
    loop {
        let next = tokio::select! {
            next = inbound.message() => next,
            () = out.closed() => return,
        };
        match next {
            Ok(Some(request)) => {
                let decoupled = decode::is_decoupled(
                    frontend.server(),
                    &request.model_name,
                    &request.model_version,
                );
                let sink = if decoupled {
                    out.clone()
                } else {
                    let (tx, rx) = mpsc::channel(2);
                    if order.send(rx).is_err() {
                        return;
                    }
                    tx
                };
                // Decoded and queued here, in arrival order (the requests of a sequence must
                // reach the model in the order they were sent); only the wait for the
                // responses runs on a task of its own.
                let empty_final = matches!(
                    request
                        .parameters
                        .get("triton_enable_empty_final_response")
                        .and_then(|p| p.parameter_choice.as_ref()),
                    Some(ParameterChoice::BoolParam(true))
                );
                let names = Names {
                    id: request.id.clone(),
                    model_name: request.model_name.clone(),
                    model_version: request.model_version.clone(),
                };
                let server = frontend.server();
                let submitted =
                    decode::decode(server, request, deadline, &forwarded, Rpc::ModelStreamInfer)
                        .and_then(|decoded| {
                            server
                                .infer(decoded.request)
                                .map(|responses| (responses, decoded.shm_outputs))
                        });
                match submitted {
                    Ok((responses, shm_outputs)) => {
                        tokio::spawn(forward(
                            frontend.clone(),
                            names,
                            responses,
                            shm_outputs,
                            decoupled,
                            empty_final,
                            sink,
                            out.clone(),
                        ));
                    }
                    Err(e) => {
                        let reply = names.issue_error(&e);
                        tokio::spawn(async move {
                            let _ = sink.send(Ok(reply)).await;
                        });
                    }
                }
            }
            Ok(None) => return,
            Err(status) => {
                // The stream itself failed (a message too large, undecodable, a reset): end it
                // with that status once the responses before it are out.
                tracing::debug!("ModelStreamInfer read failed: {status}");
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.try_send(Err(status));
                let _ = order.send(rx);
                return;
            }
        }
    }
}

fn final_flag(is_final: bool) -> BTreeMap<String, InferParameter> {
    BTreeMap::from([(
        "triton_final_response".to_string(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(is_final)),
        },
    )])
}

/// What the client knows a request by, for its error responses.
struct Names {
    id: String,
    model_name: String,
    model_version: String,
}

impl Names {
    /// An error before the request was queued: the message and the request's id.
    fn issue_error(&self, e: &Error) -> ModelStreamInferResponse {
        log_failure(&self.id, e);
        ModelStreamInferResponse {
            error_message: e.message().to_string(),
            infer_response: Some(ModelInferResponse {
                id: self.id.clone(),
                ..Default::default()
            }),
        }
    }

    /// The final flag alone, with the request's id, model name and version.
    fn empty_final(&self) -> ModelStreamInferResponse {
        ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(ModelInferResponse {
                id: self.id.clone(),
                model_name: self.model_name.clone(),
                model_version: self.model_version.clone(),
                parameters: final_flag(true),
                ..Default::default()
            }),
        }
    }

    /// An error of the execution: the message, id, model name and version, final flag.
    fn complete_error(&self, e: &Error, is_final: bool) -> ModelStreamInferResponse {
        log_failure(&self.id, e);
        ModelStreamInferResponse {
            error_message: e.message().to_string(),
            infer_response: Some(ModelInferResponse {
                id: self.id.clone(),
                model_name: self.model_name.clone(),
                model_version: self.model_version.clone(),
                parameters: final_flag(is_final),
                ..Default::default()
            }),
        }
    }
}

fn log_failure(id: &str, e: &Error) {
    let id = if id.is_empty() { "<id_unknown>" } else { id };
    tracing::debug!(request_id = id, "Infer failed: {}", e.message());
}

/// Sends a queued request's responses to `sink`, each with its `triton_final_response` flag,
/// as they come; gives up when the client goes away.
#[allow(clippy::too_many_arguments)]
async fn forward(
    frontend: Frontend,
    names: Names,
    mut responses: ferrite_core::ResponseStream,
    shm_outputs: ShmOutputs,
    decoupled: bool,
    empty_final: bool,
    sink: mpsc::Sender<Item>,
    out: mpsc::Sender<Item>,
) {
    let work = async {
        let mut sent = 0usize;
        while let Some(message) = responses.recv().await {
            let is_final = message.final_response;
            let reply = match message.response {
                Some(Ok(resp)) => match encode::response(
                    resp,
                    &shm_outputs,
                    frontend.options().max_encoding_message_size,
                )
                .await
                {
                    Ok(mut m) => {
                        m.parameters.extend(final_flag(is_final));
                        ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(m),
                        }
                    }
                    Err(e) => names.complete_error(&e, is_final),
                },
                Some(Err(e)) => names.complete_error(&e, is_final),
                // A decoupled model ended the request without another response: the client
                // hears of it only when it asked (Triton's `enable_empty_final_response`).
                None if empty_final => names.empty_final(),
                None => continue,
            };
            if sink.send(Ok(reply)).await.is_err() {
                return;
            }
            sent += 1;
        }
        if sent == 0 && !decoupled {
            let e = Error::internal("expected a single response, got 0");
            let _ = sink.send(Ok(names.complete_error(&e, true))).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = out.closed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(id: &str) -> Item {
        Ok(ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(ModelInferResponse {
                id: id.into(),
                ..Default::default()
            }),
        })
    }

    fn id(item: Item) -> String {
        item.unwrap().infer_response.unwrap().id
    }

    /// Requests finish out of order; their responses still go out in request order, each as
    /// soon as the ones before it are out.
    #[tokio::test]
    async fn responses_go_out_in_request_order() {
        let (order_tx, order_rx) = mpsc::unbounded_channel();
        let (out_tx, mut out_rx) = mpsc::channel(8);
        let sequencer = tokio::spawn(sequence(order_rx, out_tx));
        let mut sinks = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = mpsc::channel(2);
            order_tx.send(rx).unwrap();
            sinks.push(tx);
        }
        drop(order_tx);
        sinks[2].send(reply("c")).await.unwrap();
        sinks[1].send(reply("b")).await.unwrap();
        tokio::task::yield_now().await;
        assert!(
            out_rx.try_recv().is_err(),
            "nothing before the first is done"
        );
        sinks[0].send(reply("a")).await.unwrap();
        drop(sinks);
        let got: Vec<String> = [
            out_rx.recv().await.unwrap(),
            out_rx.recv().await.unwrap(),
            out_rx.recv().await.unwrap(),
        ]
        .into_iter()
        .map(id)
        .collect();
        assert_eq!(got, ["a", "b", "c"]);
        assert!(
            out_rx.recv().await.is_none(),
            "the stream ends after the last"
        );
        sequencer.await.unwrap();
    }

    /// A failed read ends the stream with its status after the responses before it.
    #[tokio::test]
    async fn a_stream_error_comes_last() {
        let (order_tx, order_rx) = mpsc::unbounded_channel();
        let (out_tx, mut out_rx) = mpsc::channel(8);
        tokio::spawn(sequence(order_rx, out_tx));
        let (tx, rx) = mpsc::channel(2);
        order_tx.send(rx).unwrap();
        let (etx, erx) = mpsc::channel(1);
        etx.try_send(Err(Status::internal("broken"))).unwrap();
        order_tx.send(erx).unwrap();
        let (late_tx, late_rx) = mpsc::channel(1);
        late_tx.try_send(reply("never")).unwrap();
        order_tx.send(late_rx).unwrap();
        tx.send(reply("first")).await.unwrap();
        drop(tx);
        assert_eq!(id(out_rx.recv().await.unwrap()), "first");
        assert_eq!(
            out_rx.recv().await.unwrap().unwrap_err().message(),
            "broken"
        );
        assert!(out_rx.recv().await.is_none());
    }
}
