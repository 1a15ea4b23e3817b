//! Load generation on one thread: concurrency mode (N requests always outstanding, one task
//! each), request-rate mode (open loop, a scheduler spawns each request on time), either over
//! plain requests or one gRPC stream. Completed requests are recorded into the current
//! measurement window.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ferrite_client::proto::inference::InferParameter;
use ferrite_client::proto::inference::infer_parameter::ParameterChoice;
use ferrite_client::{Client, Prepared, PreparedGrpcInfer, StreamSender};
use tokio::task::JoinHandle;

use crate::args::Distribution;
use crate::inputs::Rng;

/// What completed since the window began.
#[derive(Default)]
pub struct Window {
    pub latencies_ns: Vec<u64>,
    pub send_ns: u64,
    pub recv_ns: u64,
}

#[derive(Default)]
struct Recorder {
    window: Window,
    completed: u64,
    error: Option<ferrite_client::Error>,
}

impl Recorder {
    fn record(&mut self, latency: Duration, send_ns: u64, recv_ns: u64) {
        self.window.latencies_ns.push(latency.as_nanos() as u64);
        self.window.send_ns += send_ns;
        self.window.recv_ns += recv_ns;
        self.completed += 1;
    }

    fn fail(&mut self, e: ferrite_client::Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

/// How requests go out.
pub enum Transport {
    /// One request per call (HTTP or gRPC `ModelInfer`).
    Unary(Box<Client>),
    /// One gRPC `ModelStreamInfer` stream.
    Stream(StreamSender),
}

struct Shared {
    transport: Transport,
    prepared: Vec<Prepared>,
    recorder: RefCell<Recorder>,
    stop: Cell<bool>,
    /// Concurrency mode: the number of workers that should run.
    target: Cell<usize>,
    alive: RefCell<Vec<bool>>,
    outstanding: Cell<usize>,
    /// Request-rate mode: requests per second (0: paused).
    rate: Cell<f64>,
    next_request: Cell<usize>,
    /// Streaming: send time of each outstanding request, by id.
    stream_sent: RefCell<HashMap<u64, Instant>>,
    next_id: Cell<u64>,
}

/// The running load. Lives on a `LocalSet`.
pub struct Load {
    shared: Rc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    streaming: bool,
}

/// The most requests outstanding in request-rate mode (a server that falls behind does not
/// make the client pile up requests without bound).
const MAX_OUTSTANDING: usize = 16_384;

impl Load {
    /// A load that sends `prepared` in turn over `transport`; idle until a target is set.
    /// For a stream, `receiver` gets the responses.
    pub fn new(
        transport: Transport,
        prepared: Vec<Prepared>,
        receiver: Option<ferrite_client::StreamReceiver>,
    ) -> Load {
        let streaming = matches!(transport, Transport::Stream(_));
        let shared = Rc::new(Shared {
            transport,
            prepared,
            recorder: RefCell::default(),
            stop: Cell::new(false),
            target: Cell::new(0),
            alive: RefCell::default(),
            outstanding: Cell::new(0),
            rate: Cell::new(0.0),
            next_request: Cell::new(0),
            stream_sent: RefCell::default(),
            next_id: Cell::new(0),
        });
        let mut tasks = Vec::new();
        if let Some(receiver) = receiver {
            tasks.push(tokio::task::spawn_local(stream_receiver(
                shared.clone(),
                receiver,
            )));
        }
        Load {
            shared,
            tasks,
            streaming,
        }
    }

    /// Concurrency mode: keep `n` requests outstanding.
    pub fn set_concurrency(&mut self, n: usize) {
        let s = &self.shared;
        s.target.set(n);
        if self.streaming {
            while s.outstanding.get() < n && !s.stop.get() {
                stream_send(s);
            }
            return;
        }
        let mut alive = s.alive.borrow_mut();
        if alive.len() < n {
            alive.resize(n, false);
        }
        for (i, running) in alive.iter_mut().enumerate().take(n) {
            if !*running {
                *running = true;
                self.tasks
                    .push(tokio::task::spawn_local(worker(self.shared.clone(), i)));
            }
        }
    }

    /// Request-rate mode: send `rate` requests per second from now on.
    pub fn set_rate(&mut self, rate: f64, distribution: Distribution, seed: u64) {
        let first = self.shared.rate.get() == 0.0;
        self.shared.rate.set(rate);
        if first {
            self.tasks.push(tokio::task::spawn_local(scheduler(
                self.shared.clone(),
                distribution,
                seed,
            )));
        }
    }

    /// Takes what completed since the last call.
    pub fn take_window(&self) -> Window {
        let mut r = self.shared.recorder.borrow_mut();
        let capacity = r.window.latencies_ns.capacity();
        std::mem::replace(
            &mut r.window,
            Window {
                latencies_ns: Vec::with_capacity(capacity),
                ..Window::default()
            },
        )
    }

    /// Requests completed since the start.
    pub fn completed(&self) -> u64 {
        self.shared.recorder.borrow().completed
    }

    /// Requests completed in the current window so far.
    pub fn window_count(&self) -> usize {
        self.shared.recorder.borrow().window.latencies_ns.len()
    }

    /// The first request error, if any (the load stops at the first).
    pub fn error(&self) -> Option<ferrite_client::Error> {
        self.shared.recorder.borrow().error.clone()
    }

    /// Stops sending and waits up to `grace` for the outstanding requests.
    pub async fn stop(self, grace: Duration) {
        self.shared.stop.set(true);
        self.shared.target.set(0);
        let deadline = Instant::now() + grace;
        while self.shared.outstanding.get() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for t in self.tasks {
            t.abort();
        }
    }
}

fn next_prepared(s: &Shared) -> &Prepared {
    let k = s.next_request.get();
    s.next_request.set(k.wrapping_add(1));
    &s.prepared[k % s.prepared.len()]
}

async fn unary(s: &Shared, client: &Client) {
    let prepared = next_prepared(s);
    s.outstanding.set(s.outstanding.get() + 1);
    let start = Instant::now();
    let result = client.infer_prepared_timed(prepared).await;
    let latency = start.elapsed();
    s.outstanding.set(s.outstanding.get() - 1);
    let mut r = s.recorder.borrow_mut();
    match result {
        Ok((_, t)) => r.record(latency, t.send_ns, t.recv_ns),
        Err(e) => {
            r.fail(e);
            s.stop.set(true);
        }
    }
}

async fn worker(s: Rc<Shared>, index: usize) {
    let Transport::Unary(client) = &s.transport else {
        return;
    };
    while index < s.target.get() && !s.stop.get() {
        unary(&s, client).await;
    }
    s.alive.borrow_mut()[index] = false;
}

/// `prepared` as request `id` of a stream. A decoupled model ends each request with a final
/// response; ask for it even when the model sends no last response of its own (other models
/// ignore the setting).
pub fn stream_request(prepared: &PreparedGrpcInfer, id: u64) -> PreparedGrpcInfer {
    let mut message = prepared.0.clone();
    message.id = id.to_string();
    message.parameters.insert(
        "triton_enable_empty_final_response".into(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(true)),
        },
    );
    PreparedGrpcInfer(message)
}

fn stream_send(s: &Shared) {
    let Transport::Stream(sender) = &s.transport else {
        return;
    };
    let Prepared::Grpc(prepared) = next_prepared(s) else {
        return;
    };
    let start = Instant::now();
    let id = s.next_id.get();
    s.next_id.set(id + 1);
    let message = stream_request(prepared, id);
    s.stream_sent.borrow_mut().insert(id, start);
    s.outstanding.set(s.outstanding.get() + 1);
    if let Err(e) = sender.send_prepared(&message) {
        s.recorder.borrow_mut().fail(e);
        s.stop.set(true);
    }
}

async fn stream_receiver(s: Rc<Shared>, mut receiver: ferrite_client::StreamReceiver) {
    while let Some(item) = receiver.recv().await {
        let (id, error) = match item {
            // A decoupled model's response before its last: the request is still running
            // (its latency is the time to its final response, as perf_analyzer counts it).
            Ok(r) if !r.is_final() => continue,
            Ok(r) => (r.id.parse::<u64>().ok(), None),
            Err(e) => (e.request_id().and_then(|i| i.parse().ok()), Some(e)),
        };
        let sent = id.and_then(|id| s.stream_sent.borrow_mut().remove(&id));
        s.outstanding.set(s.outstanding.get().saturating_sub(1));
        match (error, sent) {
            (Some(e), _) => {
                s.recorder.borrow_mut().fail(e);
                s.stop.set(true);
            }
            (None, Some(start)) => s.recorder.borrow_mut().record(start.elapsed(), 0, 0),
            (None, None) => {}
        }
        // Concurrency mode: replace the completed request.
        while s.rate.get() == 0.0 && s.outstanding.get() < s.target.get() && !s.stop.get() {
            stream_send(&s);
        }
    }
    if !s.stop.get() {
        s.recorder.borrow_mut().fail(ferrite_client::Error::new(
            ferrite_client::ErrorKind::Io,
            "the server closed the stream",
        ));
        s.stop.set(true);
    }
}

async fn scheduler(s: Rc<Shared>, distribution: Distribution, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut next = tokio::time::Instant::now();
    while !s.stop.get() {
        let rate = s.rate.get();
        let gap = match distribution {
            Distribution::Constant => 1.0 / rate,
            Distribution::Poisson => -(1.0 - rng.next_f64()).ln() / rate,
        };
        next += Duration::from_secs_f64(gap);
        tokio::time::sleep_until(next).await;
        if s.stop.get() {
            break;
        }
        if s.outstanding.get() >= MAX_OUTSTANDING {
            continue;
        }
        match &s.transport {
            Transport::Stream(_) => stream_send(&s),
            Transport::Unary(_) => {
                let shared = s.clone();
                tokio::task::spawn_local(async move {
                    if let Transport::Unary(client) = &shared.transport {
                        unary(&shared, client).await;
                    }
                });
            }
        }
    }
}
