//! `repeat`: the example decoupled (streaming) driver, Triton's repeat backend as a Ferrite
//! driver. Written with the SDK: no `unsafe`.
//!
//! A request carries `IN` (INT32 `[n]`), `DELAY` (UINT32 `[n]`, milliseconds) and `WAIT`
//! (UINT32 `[1]`, milliseconds). The driver answers with `n` responses: the `i`-th, sent
//! `DELAY[i]` ms after the one before, holds `OUT` = `IN[i]` and `IDX` = `i` (both `[1]`).
//! `WAIT` ms after the last it ends the request with the final flag alone. `n` = 0 gives no
//! response at all, only the final flag. The model must be decoupled
//! (`model_transaction_policy { decoupled: true }`); anything else is refused at load.
//!
//! While it waits it checks every few milliseconds whether the client is still there, and
//! stops early when it is not, so a long stream never holds an instance for nobody.

use std::time::{Duration, Instant};

use ferrite_driver_sdk::{
    Batch, DataType, Descriptor, Driver, DriverInfo, Error, ModelLoad, Request, Result, abi,
    config, export_driver,
};

/// How often a wait checks whether the client is still there.
const CANCEL_CHECK: Duration = Duration::from_millis(5);

pub struct Repeat;

impl Driver for Repeat {
    type Model = ();
    type Instance = ();

    fn init(_: &DriverInfo) -> Result<Self> {
        Ok(Repeat)
    }

    fn load_model(&self, model: &mut ModelLoad<'_>) -> Result<()> {
        if !config::decoupled(model.config()) {
            return Err(Error::invalid_arg(format!(
                "repeat: model '{}' must be decoupled (model_transaction_policy {{ decoupled: true }}): it answers a request with one response per element of IN",
                model.name()
            )));
        }
        Ok(())
    }

    fn execute(&self, _: &(), _: &mut (), batch: &mut Batch<'_>) -> Result<()> {
        for i in 0..batch.len() {
            // A bad request fails alone; the others of the batch still stream.
            if let Err(e) = stream(batch, i) {
                batch.fail(i, &e)?;
            }
        }
        Ok(())
    }
}

/// What one request asks for.
struct Plan {
    values: Vec<i32>,
    delays: Vec<u32>,
    wait: u32,
}

fn plan(request: &Request<'_>) -> Result<Plan> {
    let values: Vec<i32> = request.input("IN")?.values()?;
    let delays: Vec<u32> = request.input("DELAY")?.values()?;
    if delays.len() != values.len() {
        return Err(Error::invalid_arg(format!(
            "repeat: DELAY has {} elements and IN {}: one delay per value",
            delays.len(),
            values.len()
        )));
    }
    let wait = request.input("WAIT")?.values::<u32>()?;
    let [wait] = wait[..] else {
        return Err(Error::invalid_arg(format!(
            "repeat: WAIT must hold one value, it holds {}",
            wait.len()
        )));
    };
    Ok(Plan {
        values,
        delays,
        wait,
    })
}

/// Sleeps `ms` milliseconds; false when the client went away meanwhile.
fn wait(batch: &Batch<'_>, i: usize, ms: u32) -> bool {
    let until = Instant::now() + Duration::from_millis(u64::from(ms));
    loop {
        if batch.is_cancelled(i) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep(CANCEL_CHECK.min(until - now));
    }
}

fn stream(batch: &Batch<'_>, i: usize) -> Result<()> {
    let request = batch.request(i);
    let plan = plan(&request)?;
    for (idx, (&value, &delay)) in plan.values.iter().zip(&plan.delays).enumerate() {
        if !wait(batch, i, delay) {
            return batch.complete(i);
        }
        let mut response = batch.respond(i)?;
        if request.wants_output("OUT") {
            response.output_values("OUT", &[1], &[value])?;
        }
        if request.wants_output("IDX") {
            response.output_values("IDX", &[1], &[idx as u32])?;
        }
        response.send_partial()?;
    }
    wait(batch, i, plan.wait);
    batch.complete(i)
}

export_driver!(
    Repeat,
    Descriptor {
        name: "repeat",
        version: env!("CARGO_PKG_VERSION"),
        backends: &["repeat"],
        platforms: &[],
        instance_kinds: abi::INSTANCE_KIND_CPU,
        datatypes: &[DataType::Int32, DataType::Uint32],
    }
);
