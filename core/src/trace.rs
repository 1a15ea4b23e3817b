//! The trace extension: settings (global and per model, Triton's names and string values)
//! and per-request timelines written as JSON to the trace file.
//!
//! A request is sampled when its model's effective `trace_level` is TIMESTAMPS: every
//! `trace_rate`-th request of that model, while `trace_count` (-1: no limit) lasts. A sampled
//! request carries a [`TraceCell`] through the queue and the instance; it collects
//! REQUEST_START, QUEUE_START, COMPUTE_START, COMPUTE_INPUT_END, COMPUTE_OUTPUT_START,
//! COMPUTE_END and REQUEST_END (nanoseconds on the process's monotonic clock) and is written
//! when the final response goes out. Output follows Triton: a JSON array of objects, a
//! trace's `{"id", "model_name", "model_version", "request_id"}` then `{"id", "timestamps":
//! [{"name", "ns"}, ...]}`. With `log_frequency` 0 every trace goes to `trace_file` (written
//! when settings change and at shutdown); with N > 0, each N traces go to
//! `trace_file.<index>` as they complete.
//!
//! Requests of models with tracing off cost one atomic load.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::{Error, Result};

/// One scope's settings, as the API shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceSettings {
    pub trace_file: String,
    /// `["OFF"]` or `["TIMESTAMPS"]`.
    pub trace_level: Vec<String>,
    pub trace_rate: u64,
    /// -1: no limit.
    pub trace_count: i64,
    pub log_frequency: u64,
    pub trace_mode: String,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            trace_file: String::new(),
            trace_level: vec!["OFF".into()],
            trace_rate: 1000,
            trace_count: -1,
            log_frequency: 0,
            trace_mode: "triton".into(),
        }
    }
}

impl TraceSettings {
    fn on(&self) -> bool {
        self.trace_level.iter().any(|l| l == "TIMESTAMPS")
    }

    /// The API's map: every value as a list of strings.
    pub fn to_map(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![
            ("trace_file", vec![self.trace_file.clone()]),
            ("trace_level", self.trace_level.clone()),
            ("trace_rate", vec![self.trace_rate.to_string()]),
            ("trace_count", vec![self.trace_count.to_string()]),
            ("log_frequency", vec![self.log_frequency.to_string()]),
            ("trace_mode", vec![self.trace_mode.clone()]),
        ]
    }
}

/// A change to one scope: for each setting, absent (`None`), cleared back to the global
/// value (`Some(None)`, model scope only) or set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceUpdate {
    pub settings: Vec<(String, Option<Vec<String>>)>,
}

/// A model's overrides.
#[derive(Clone, Debug, Default)]
struct Overrides {
    trace_level: Option<Vec<String>>,
    trace_rate: Option<u64>,
    trace_count: Option<i64>,
    log_frequency: Option<u64>,
}

#[derive(Default)]
struct Sampling {
    seen: u64,
    /// Traces left (`trace_count` when the setting was made; -1: no limit).
    remaining: i64,
}

struct State {
    global: TraceSettings,
    models: HashMap<String, Overrides>,
    sampling: HashMap<String, Sampling>,
    /// Completed traces not yet written (log_frequency > 0), or all of them (0).
    pending: Vec<String>,
    /// Traces in `pending` since the last indexed file.
    next_index: u64,
}

impl State {
    fn effective(&self, model: &str) -> TraceSettings {
        let mut s = self.global.clone();
        if let Some(o) = self.models.get(model) {
            if let Some(v) = &o.trace_level {
                s.trace_level = v.clone();
            }
            if let Some(v) = o.trace_rate {
                s.trace_rate = v;
            }
            if let Some(v) = o.trace_count {
                s.trace_count = v;
            }
            if let Some(v) = o.log_frequency {
                s.log_frequency = v;
            }
        }
        s
    }

    fn any_on(&self) -> bool {
        self.global.on()
            || self.models.values().any(|o| {
                o.trace_level
                    .as_ref()
                    .is_some_and(|l| l.iter().any(|x| x == "TIMESTAMPS"))
            })
    }
}

/// The server's tracer.
pub struct Tracer {
    state: Mutex<State>,
    any_on: AtomicBool,
    next_id: AtomicU64,
}

/// A sampled request's timeline, filled in along its way.
pub struct TraceCell {
    tracer: Arc<Tracer>,
    inner: Mutex<TraceRecord>,
}

struct TraceRecord {
    id: u64,
    model: String,
    version: i64,
    request_id: String,
    stamps: Vec<(&'static str, u64)>,
    written: bool,
}

impl TraceCell {
    pub fn stamp(&self, name: &'static str, ns: u64) {
        self.inner.lock().stamps.push((name, ns));
    }

    /// Records REQUEST_END and hands the timeline to the tracer (once).
    pub fn finish(&self, end_ns: u64) {
        let line = {
            let mut r = self.inner.lock();
            if r.written {
                return;
            }
            r.written = true;
            r.stamps.push(("REQUEST_END", end_ns));
            let head = serde_json::json!({
                "id": r.id,
                "model_name": r.model,
                "model_version": r.version,
                "request_id": r.request_id,
            });
            let stamps: Vec<serde_json::Value> = r
                .stamps
                .iter()
                .map(|(name, ns)| serde_json::json!({"name": name, "ns": ns}))
                .collect();
            let body = serde_json::json!({"id": r.id, "timestamps": stamps});
            format!("{head},{body}")
        };
        self.tracer.complete(line);
    }
}

impl Tracer {
    /// A tracer with the command line's global settings.
    pub fn new(global: TraceSettings) -> Result<Arc<Tracer>> {
        check_level(&global.trace_level)?;
        let on = global.on();
        Ok(Arc::new(Tracer {
            state: Mutex::new(State {
                global,
                models: HashMap::new(),
                sampling: HashMap::new(),
                pending: Vec::new(),
                next_index: 0,
            }),
            any_on: AtomicBool::new(on),
            next_id: AtomicU64::new(1),
        }))
    }

    /// Whether to trace this request of `model`: a cell to fill in, or `None`.
    pub fn sample(
        self: &Arc<Self>,
        model: &str,
        version: i64,
        request_id: &str,
        received_ns: u64,
    ) -> Option<Arc<TraceCell>> {
        if !self.any_on.load(Ordering::Relaxed) {
            return None;
        }
        let mut state = self.state.lock();
        let settings = state.effective(model);
        if !settings.on() || settings.trace_file.is_empty() {
            return None;
        }
        let sampling = state
            .sampling
            .entry(model.to_string())
            .or_insert_with(|| Sampling {
                seen: 0,
                remaining: settings.trace_count,
            });
        sampling.seen += 1;
        let rate = settings.trace_rate.max(1);
        if !(sampling.seen - 1).is_multiple_of(rate) || sampling.remaining == 0 {
            return None;
        }
        if sampling.remaining > 0 {
            sampling.remaining -= 1;
        }
        drop(state);
        Some(Arc::new(TraceCell {
            tracer: Arc::clone(self),
            inner: Mutex::new(TraceRecord {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                model: model.to_string(),
                version,
                request_id: request_id.to_string(),
                stamps: vec![("REQUEST_START", received_ns)],
                written: false,
            }),
        }))
    }

    fn complete(&self, line: String) {
        let mut state = self.state.lock();
        state.pending.push(line);
        let frequency = state.global.log_frequency;
        if frequency > 0 && state.pending.len() as u64 >= frequency {
            let path = format!("{}.{}", state.global.trace_file, state.next_index);
            state.next_index += 1;
            let lines = std::mem::take(&mut state.pending);
            drop(state);
            write_file(&path, &lines);
        }
    }

    /// Writes what log_frequency 0 keeps for the end (every trace so far) to the trace file.
    pub fn flush(&self) {
        let state = self.state.lock();
        if state.global.log_frequency == 0 && !state.global.trace_file.is_empty() {
            let (path, lines) = (state.global.trace_file.clone(), state.pending.clone());
            drop(state);
            if !lines.is_empty() {
                write_file(&path, &lines);
            }
        }
    }

    /// The effective settings of a model, or the global ones.
    pub fn settings(&self, model: Option<&str>) -> TraceSettings {
        let state = self.state.lock();
        match model {
            Some(m) => state.effective(m),
            None => state.global.clone(),
        }
    }

    /// Applies a change to the global settings or a model's; returns the scope's settings.
    pub fn update(&self, model: Option<&str>, update: &TraceUpdate) -> Result<TraceSettings> {
        let mut state = self.state.lock();
        // Checked in full first, so a bad value changes nothing.
        let mut global = state.global.clone();
        let mut overrides = model
            .map(|m| state.models.get(m).cloned().unwrap_or_default())
            .unwrap_or_default();
        for (key, value) in &update.settings {
            let single = |v: &Vec<String>| -> Result<String> {
                match v.as_slice() {
                    [one] => Ok(one.clone()),
                    _ => Err(Error::invalid_arg(format!(
                        "expect a single value for trace setting '{key}', got {}",
                        v.len()
                    ))),
                }
            };
            let number = |v: &Vec<String>| -> Result<i64> {
                let text = single(v)?;
                text.parse::<i64>().map_err(|_| {
                    Error::invalid_arg(format!(
                        "unable to parse '{key}', got: '{text}' (expected a number)"
                    ))
                })
            };
            match (key.as_str(), value) {
                ("trace_file", Some(v)) => {
                    if single(v)? != global.trace_file {
                        return Err(Error::invalid_arg(
                            "trace file location can not be updated through network protocol",
                        ));
                    }
                }
                ("trace_file", None) => {}
                ("trace_mode", Some(v)) => {
                    if single(v)? != "triton" {
                        return Err(Error::invalid_arg(
                            "trace_mode can not be changed at run time (Ferrite traces in mode 'triton')",
                        ));
                    }
                }
                ("trace_mode", None) => {}
                ("trace_level", v) => {
                    if let Some(v) = v {
                        check_level(v)?;
                    }
                    match model {
                        Some(_) => overrides.trace_level = v.clone(),
                        None => {
                            global.trace_level = v.clone().unwrap_or_else(|| vec!["OFF".into()])
                        }
                    }
                }
                ("trace_rate", v) => {
                    let n = v.as_ref().map(number).transpose()?;
                    if n.is_some_and(|n| n < 1) {
                        return Err(Error::invalid_arg("trace_rate must be at least 1"));
                    }
                    let n = n.map(|n| n as u64);
                    match model {
                        Some(_) => overrides.trace_rate = n,
                        None => global.trace_rate = n.unwrap_or(1000),
                    }
                }
                ("trace_count", v) => {
                    let n = v.as_ref().map(number).transpose()?;
                    if n.is_some_and(|n| n < -1) {
                        return Err(Error::invalid_arg("trace_count must be -1 or more"));
                    }
                    match model {
                        Some(_) => overrides.trace_count = n,
                        None => global.trace_count = n.unwrap_or(-1),
                    }
                }
                ("log_frequency", v) => {
                    let n = v.as_ref().map(number).transpose()?;
                    if n.is_some_and(|n| n < 0) {
                        return Err(Error::invalid_arg("log_frequency must not be negative"));
                    }
                    let n = n.map(|n| n as u64);
                    match model {
                        Some(_) => overrides.log_frequency = n,
                        None => global.log_frequency = n.unwrap_or(0),
                    }
                }
                (other, _) => {
                    return Err(Error::invalid_arg(format!(
                        "unknown trace setting '{other}' (trace_file, trace_level, trace_rate, trace_count, log_frequency, trace_mode)"
                    )));
                }
            }
        }
        state.global = global;
        match model {
            Some(m) => {
                state.models.insert(m.to_string(), overrides);
                state.sampling.remove(m);
            }
            None => state.sampling.clear(),
        }
        self.any_on.store(state.any_on(), Ordering::Relaxed);
        let out = match model {
            Some(m) => state.effective(m),
            None => state.global.clone(),
        };
        drop(state);
        // What was collected under the old settings is written out now.
        self.flush();
        Ok(out)
    }
}

fn check_level(level: &[String]) -> Result<()> {
    for l in level {
        match l.as_str() {
            "OFF" | "TIMESTAMPS" => {}
            "TENSORS" => {
                return Err(Error::unsupported(
                    "trace level TENSORS is not supported by Ferrite (OFF or TIMESTAMPS)",
                ));
            }
            other => {
                return Err(Error::invalid_arg(format!(
                    "unknown trace level '{other}' (OFF, TIMESTAMPS)"
                )));
            }
        }
    }
    if level.len() > 1 && level.iter().any(|l| l == "OFF") {
        return Err(Error::invalid_arg(
            "trace level OFF cannot be combined with another level",
        ));
    }
    Ok(())
}

fn write_file(path: &str, lines: &[String]) {
    let text = format!("[{}]\n", lines.join(","));
    let path = PathBuf::from(path);
    if let Err(e) = std::fs::write(&path, text) {
        tracing::error!("failed to write trace file {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &[&str]) -> (String, Option<Vec<String>>) {
        (
            key.to_string(),
            Some(value.iter().map(|s| s.to_string()).collect()),
        )
    }

    #[test]
    fn samples_every_rate_th_request_while_the_count_lasts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.json").display().to_string();
        let tracer = Tracer::new(TraceSettings {
            trace_file: file.clone(),
            ..Default::default()
        })
        .unwrap();
        assert!(tracer.sample("m", 1, "", 0).is_none(), "off by default");
        tracer
            .update(
                None,
                &TraceUpdate {
                    settings: vec![
                        set("trace_level", &["TIMESTAMPS"]),
                        set("trace_rate", &["2"]),
                        set("trace_count", &["2"]),
                    ],
                },
            )
            .unwrap();
        let picked: Vec<bool> = (0..8)
            .map(|i| {
                let cell = tracer.sample("m", 1, &format!("r{i}"), 10);
                if let Some(c) = &cell {
                    c.stamp("QUEUE_START", 11);
                    c.finish(20);
                }
                cell.is_some()
            })
            .collect();
        assert_eq!(
            picked,
            [true, false, true, false, false, false, false, false]
        );
        tracer.flush();
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let items = doc.as_array().unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0]["request_id"], "r0");
        assert_eq!(items[2]["request_id"], "r2");
        let names: Vec<&str> = items[1]["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["REQUEST_START", "QUEUE_START", "REQUEST_END"]);
    }

    #[test]
    fn model_settings_override_and_clear() {
        let tracer = Tracer::new(TraceSettings {
            trace_file: "/dev/null".into(),
            ..Default::default()
        })
        .unwrap();
        let s = tracer
            .update(
                Some("m"),
                &TraceUpdate {
                    settings: vec![
                        set("trace_level", &["TIMESTAMPS"]),
                        set("trace_rate", &["1"]),
                    ],
                },
            )
            .unwrap();
        assert_eq!(s.trace_level, ["TIMESTAMPS"]);
        assert_eq!(tracer.settings(None).trace_level, ["OFF"]);
        assert!(tracer.sample("m", 1, "", 0).is_some());
        assert!(tracer.sample("other", 1, "", 0).is_none());
        let s = tracer
            .update(
                Some("m"),
                &TraceUpdate {
                    settings: vec![("trace_level".into(), None)],
                },
            )
            .unwrap();
        assert_eq!(s.trace_level, ["OFF"]);
        assert!(tracer.sample("m", 1, "", 0).is_none());
    }

    #[test]
    fn bad_updates_change_nothing() {
        let tracer = Tracer::new(TraceSettings::default()).unwrap();
        for (update, text) in [
            (set("trace_rate", &["x"]), "unable to parse 'trace_rate'"),
            (set("trace_level", &["LOUD"]), "unknown trace level 'LOUD'"),
            (set("trace_level", &["TENSORS"]), "TENSORS is not supported"),
            (set("trace_file", &["/tmp/x"]), "can not be updated"),
            (set("nope", &["1"]), "unknown trace setting 'nope'"),
        ] {
            let e = tracer
                .update(
                    None,
                    &TraceUpdate {
                        settings: vec![set("trace_rate", &["5"]), update],
                    },
                )
                .unwrap_err();
            assert!(e.message().contains(text), "{}", e.message());
        }
        assert_eq!(tracer.settings(None).trace_rate, 1000);
    }

    #[test]
    fn log_frequency_writes_indexed_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.json").display().to_string();
        let tracer = Tracer::new(TraceSettings {
            trace_file: file.clone(),
            trace_level: vec!["TIMESTAMPS".into()],
            trace_rate: 1,
            log_frequency: 2,
            ..Default::default()
        })
        .unwrap();
        for _ in 0..5 {
            tracer.sample("m", 1, "", 0).unwrap().finish(1);
        }
        for i in 0..2 {
            let text = std::fs::read_to_string(format!("{file}.{i}")).unwrap();
            let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                doc.as_array().unwrap().len(),
                4,
                "two traces, two objects each"
            );
        }
        assert!(!std::path::Path::new(&format!("{file}.2")).exists());
    }
}
