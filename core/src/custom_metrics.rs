//! Metrics that drivers record for the Prometheus endpoint (the driver ABI's
//! `HostApi::metric`, Triton's custom metrics): families of counters and gauges, each sample
//! keyed by its labels. Process-wide, as the drivers are; the metrics frontend renders a
//! [`snapshot`] after Ferrite's own families.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One family and its samples (label sets in order, each `(name, value)` sorted by name).
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    pub samples: BTreeMap<Vec<(String, String)>, f64>,
}

static FAMILIES: Mutex<BTreeMap<String, Family>> = Mutex::new(BTreeMap::new());

fn valid_name(name: &str, colons: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic()
            || c == '_'
            || (colons && c == ':')
            || (!first && c.is_ascii_digit())
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// Adds `value` to a counter, or sets a gauge, of family `name` for `labels`.
pub fn record(
    name: &str,
    help: &str,
    kind: MetricKind,
    labels: &[(String, String)],
    value: f64,
) -> Result<()> {
    if !valid_name(name, true) {
        return Err(Error::invalid_arg(format!(
            "metric name '{name}' is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
        )));
    }
    if let Some((label, _)) = labels
        .iter()
        .find(|(l, _)| !valid_name(l, false) || l.starts_with("__"))
    {
        return Err(Error::invalid_arg(format!(
            "label '{label}' of metric '{name}' is not a Prometheus label name"
        )));
    }
    if !value.is_finite() || (kind == MetricKind::Counter && value < 0.0) {
        return Err(Error::invalid_arg(format!(
            "metric '{name}': {value} is not a valid {} value",
            kind.as_str()
        )));
    }
    let mut key = labels.to_vec();
    key.sort();
    let mut families = FAMILIES.lock().unwrap_or_else(|p| p.into_inner());
    let family = families.entry(name.to_string()).or_insert_with(|| Family {
        name: name.to_string(),
        help: help.to_string(),
        kind,
        samples: BTreeMap::new(),
    });
    if family.kind != kind || family.help != help {
        return Err(Error::invalid_arg(format!(
            "metric '{name}' was recorded before as a {} with help {:?}",
            family.kind.as_str(),
            family.help
        )));
    }
    let sample = family.samples.entry(key).or_insert(0.0);
    match kind {
        MetricKind::Counter => *sample += value,
        MetricKind::Gauge => *sample = value,
    }
    Ok(())
}

/// Every family, by name.
pub fn snapshot() -> Vec<Family> {
    FAMILIES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn counters_add_and_gauges_set_per_label_set() {
        let name = "test_custom_counters_add";
        record(
            name,
            "h",
            MetricKind::Counter,
            &labels(&[("core", "0"), ("model", "m")]),
            2.0,
        )
        .unwrap();
        // Label order does not matter.
        record(
            name,
            "h",
            MetricKind::Counter,
            &labels(&[("model", "m"), ("core", "0")]),
            3.0,
        )
        .unwrap();
        record(
            name,
            "h",
            MetricKind::Counter,
            &labels(&[("core", "1"), ("model", "m")]),
            1.0,
        )
        .unwrap();
        let gauge = "test_custom_gauges_set";
        record(gauge, "g", MetricKind::Gauge, &[], 5.0).unwrap();
        record(gauge, "g", MetricKind::Gauge, &[], 4.0).unwrap();
        let all = snapshot();
        let f = all.iter().find(|f| f.name == name).unwrap();
        assert_eq!(f.samples[&labels(&[("core", "0"), ("model", "m")])], 5.0);
        assert_eq!(f.samples[&labels(&[("core", "1"), ("model", "m")])], 1.0);
        let g = all.iter().find(|f| f.name == gauge).unwrap();
        assert_eq!(g.samples[&Vec::new()], 4.0);
    }

    #[test]
    fn bad_names_values_and_redefinitions_are_refused() {
        assert!(
            record("1bad", "", MetricKind::Gauge, &[], 1.0)
                .unwrap_err()
                .message()
                .contains("not a Prometheus metric name")
        );
        assert!(
            record(
                "ok_name",
                "",
                MetricKind::Gauge,
                &labels(&[("a:b", "x")]),
                1.0
            )
            .unwrap_err()
            .message()
            .contains("label 'a:b'")
        );
        assert!(
            record("ok_name2", "", MetricKind::Counter, &[], -1.0)
                .unwrap_err()
                .message()
                .contains("not a valid counter value")
        );
        assert!(record("ok_name3", "", MetricKind::Gauge, &[], f64::NAN).is_err());
        record("test_custom_redefined", "h", MetricKind::Counter, &[], 1.0).unwrap();
        let e = record("test_custom_redefined", "h", MetricKind::Gauge, &[], 1.0).unwrap_err();
        assert!(
            e.message().contains("recorded before as a counter"),
            "{e:?}"
        );
    }
}
