//! `config.pbtxt` (protobuf text format) into [`ModelConfig`].
//!
//! Parsing goes through prost-reflect's text-format parser, after a small
//! pre-pass that makes it accept what protobuf's C++ parser (and so Triton)
//! accepts but prost-reflect does not: a list of messages with no `:` after
//! the field name, `input [ { ... }, { ... } ]`.

use std::{borrow::Cow, fmt};

use miette::Diagnostic;
use prost_reflect::{DynamicMessage, text_format::ParseError};

use crate::{descriptor_pool, inference::ModelConfig, model_config_descriptor};

/// A `config.pbtxt` that could not be parsed: where, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFormatError {
    line: usize,
    column: usize,
    message: String,
}

impl TextFormatError {
    /// 1-based line of the offending token.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column (in characters) of the offending token.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What was wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TextFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for TextFormatError {}

/// Parses a Triton `config.pbtxt` into a [`ModelConfig`].
///
/// Accepts the protobuf text format as Triton does: `#` comments, `,`/`;`
/// separators, `{ }` or `< >` messages, `field: [ ... ]` and
/// `field [ { ... } ]` lists, repeated fields given as repeated entries,
/// maps as `{ key: .. value: .. }` entries. Unknown fields, bad enum values
/// and out-of-range numbers are errors.
pub fn parse_model_config(text: &str) -> Result<ModelConfig, TextFormatError> {
    let (patched, inserted) = add_list_colons(text);
    let message = DynamicMessage::parse_text_format(model_config_descriptor(), &patched)
        .map_err(|e| to_error(text, &patched, &inserted, &e))?;
    message
        .transcode_to::<ModelConfig>()
        .map_err(|e| TextFormatError {
            line: 1,
            column: 1,
            message: format!("internal error converting the parsed configuration: {e}"),
        })
}

fn to_error(original: &str, patched: &str, inserted: &[usize], e: &ParseError) -> TextFormatError {
    // prost-reflect exposes the error's position only through miette.
    let offset = e
        .labels()
        .and_then(|mut labels| labels.next())
        .map_or(patched.len(), |label| label.offset());
    // Every inserted ':' before `offset` shifted the text one byte right.
    let offset = offset - inserted.iter().filter(|&&at| at < offset).count();
    let offset = offset.min(original.len());
    let before = &original[..floor_char_boundary(original, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    TextFormatError {
        line,
        column,
        message: explain(&e.to_string(), field_before(before)),
    }
}

/// The field name a value at the end of `before` belongs to (`kind` in `kind: KIND_X`), if
/// the text there has that shape.
fn field_before(before: &str) -> Option<&str> {
    let rest = before.trim_end();
    let rest = rest.strip_suffix(':').unwrap_or(rest).trim_end();
    let start = rest
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let name = &rest[start..];
    (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then_some(name)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Makes prost-reflect's messages more helpful: lists an enum's values, and
/// suggests the nearest field name for an unknown field.
fn explain(message: &str, field: Option<&str>) -> String {
    let pool = descriptor_pool();
    if let Some((value, enum_name)) = two_quoted(message, "value '", "' was not found for enum '")
        && let Some(desc) = pool.get_enum_by_name(enum_name)
    {
        let names: Vec<_> = desc.values().map(|v| v.name().to_owned()).collect();
        let field = field.map(|f| format!("field '{f}': ")).unwrap_or_default();
        return format!(
            "{field}unknown value '{value}' for enum {enum_name}, expected one of: {}",
            names.join(", ")
        );
    }
    if let Some((field, msg_name)) = two_quoted(message, "field '", "' not found for message '")
        && let Some(desc) = pool.get_message_by_name(msg_name)
    {
        let mut text = format!("field '{field}' not found in message {msg_name}");
        let nearest = desc
            .fields()
            .map(|f| (edit_distance(field, f.name()), f.name().to_owned()))
            .min();
        if let Some((distance, name)) = nearest
            && distance <= 3.max(field.len() / 3)
        {
            text.push_str(&format!(" (did you mean '{name}'?)"));
        }
        return text;
    }
    message.to_owned()
}

/// `<prefix>A<middle>B'` -> (A, B).
fn two_quoted<'a>(message: &'a str, prefix: &str, middle: &str) -> Option<(&'a str, &'a str)> {
    let rest = message.strip_prefix(prefix)?;
    let (a, rest) = rest.split_once(middle)?;
    let b = rest.strip_suffix('\'')?;
    Some((a, b))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Ident,
    Colon,
    LeftBracket,
    Other,
}

/// Inserts the `:` that prost-reflect requires between a field name and a
/// following `[` (`input [ {..} ]` -> `input:[ {..} ]`).
///
/// A field name is an identifier that does not follow a `:` (that would be
/// a value, e.g. an enum). Strings and `#` comments are skipped. Where the
/// name and the `[` are separated by a space or tab, that character becomes
/// the `:`, so every position stays put; otherwise the `:` is inserted.
/// Returns the text and the (patched-text) offsets of inserted characters.
fn add_list_colons(text: &str) -> (Cow<'_, str>, Vec<usize>) {
    let tokens = tokenize(text.as_bytes());
    let mut edits = Vec::new(); // (offset, replace a blank?)
    for (i, w) in tokens.windows(2).enumerate() {
        let [(Tok::Ident, _, name_end), (Tok::LeftBracket, bracket, _)] = *w else {
            continue;
        };
        if i > 0 && tokens[i - 1].0 == Tok::Colon {
            continue;
        }
        match blank_outside_comment(&text.as_bytes()[name_end..bracket]) {
            Some(at) => edits.push((name_end + at, true)),
            None => edits.push((name_end, false)),
        }
    }
    if edits.is_empty() {
        return (Cow::Borrowed(text), Vec::new());
    }
    let mut out = String::with_capacity(text.len() + edits.len());
    let mut inserted = Vec::new();
    let mut last = 0;
    for (at, replace) in edits {
        out.push_str(&text[last..at]);
        if !replace {
            inserted.push(out.len());
        }
        out.push(':');
        last = if replace { at + 1 } else { at };
    }
    out.push_str(&text[last..]);
    (Cow::Owned(out), inserted)
}

/// Offset of the first space or tab in `gap` (whitespace and comments
/// between two tokens) that is not inside a comment.
fn blank_outside_comment(gap: &[u8]) -> Option<usize> {
    let mut in_comment = false;
    for (i, &b) in gap.iter().enumerate() {
        match b {
            b'#' => in_comment = true,
            b'\n' => in_comment = false,
            b' ' | b'\t' if !in_comment => return Some(i),
            _ => {}
        }
    }
    None
}

/// Just enough of a text-format lexer to find field names and `[`:
/// (kind, start, end) of each token, strings and comments skipped over.
fn tokenize(s: &[u8]) -> Vec<(Tok, usize, usize)> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let start = i;
        let kind = match s[i] {
            b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < s.len() && s[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < s.len() && s[i] != quote && s[i] != b'\n' {
                    i += if s[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                Tok::Other
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
                    i += 1;
                }
                Tok::Ident
            }
            b if b.is_ascii_digit() || b == b'.' => {
                // A number (1, -1 after '-', 0x1F, 1.5e-3, 2f) is never a name.
                i += 1;
                while i < s.len() {
                    let exponent_sign =
                        matches!(s[i], b'+' | b'-') && matches!(s[i - 1], b'e' | b'E');
                    if s[i].is_ascii_alphanumeric() || s[i] == b'_' || s[i] == b'.' || exponent_sign
                    {
                        i += 1;
                    } else {
                        break;
                    }
                }
                Tok::Other
            }
            b':' => {
                i += 1;
                Tok::Colon
            }
            b'[' => {
                i += 1;
                Tok::LeftBracket
            }
            _ => {
                i += 1;
                Tok::Other
            }
        };
        tokens.push((kind, start, i.min(s.len())));
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::{
        DataType, model_config::SchedulingChoice, model_input, model_instance_group::Kind,
        model_optimization_policy, model_sequence_batching, model_version_policy::PolicyChoice,
    };

    fn parse(text: &str) -> ModelConfig {
        parse_model_config(text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
    }

    fn err(text: &str) -> TextFormatError {
        parse_model_config(text).expect_err("should not parse")
    }

    fn dynamic_batching(cfg: &ModelConfig) -> &crate::inference::ModelDynamicBatching {
        match &cfg.scheduling_choice {
            Some(SchedulingChoice::DynamicBatching(d)) => d,
            other => panic!("not dynamic batching: {other:?}"),
        }
    }

    fn sequence_batching(cfg: &ModelConfig) -> &crate::inference::ModelSequenceBatching {
        match &cfg.scheduling_choice {
            Some(SchedulingChoice::SequenceBatching(s)) => s,
            other => panic!("not sequence batching: {other:?}"),
        }
    }

    #[test]
    fn pre_pass_keeps_positions_when_a_blank_is_there() {
        let (out, inserted) = add_list_colons("input [ { dims: [ 1 ] } ]\nout\t[]");
        assert_eq!(out, "input:[ { dims: [ 1 ] } ]\nout:[]");
        assert!(inserted.is_empty());
    }

    #[test]
    fn pre_pass_inserts_when_no_blank() {
        let (out, inserted) = add_list_colons("input[{}] output\n[{}]");
        assert_eq!(out, "input:[{}] output:\n[{}]");
        assert_eq!(inserted, vec![5, 17]);
    }

    #[test]
    fn pre_pass_leaves_strings_comments_values_alone() {
        let text = "name: \"a [ b\" # input [\n label: 'x\\' y [' kind: KIND_GPU\nv: [A, B]";
        let (out, inserted) = add_list_colons(text);
        assert_eq!(out, text);
        assert!(inserted.is_empty());
        // a comment between the name and the bracket: its blanks stay.
        let (out, _) = add_list_colons("input#c c\n[ ]");
        assert_eq!(out, "input:#c c\n[ ]");
    }

    #[test]
    fn model_configuration_md_basic() {
        let cfg = parse(
            r#"
  platform: "tensorrt_plan"
  max_batch_size: 8
  input [
    {
      name: "input0"
      data_type: TYPE_FP32
      dims: [ 16 ]
    },
    {
      name: "input1"
      data_type: TYPE_FP32
      dims: [ 16 ]
    }
  ]
  output [
    {
      name: "output0"
      data_type: TYPE_FP32
      dims: [ 16 ]
    }
  ]
  version_policy: { all { }}
"#,
        );
        assert_eq!(cfg.platform, "tensorrt_plan");
        assert_eq!(cfg.max_batch_size, 8);
        assert_eq!(cfg.input.len(), 2);
        assert_eq!(cfg.input[1].name, "input1");
        assert_eq!(cfg.input[1].data_type(), DataType::TypeFp32);
        assert_eq!(cfg.output[0].dims, vec![16]);
        assert!(matches!(
            cfg.version_policy.unwrap().policy_choice,
            Some(PolicyChoice::All(_))
        ));
    }

    #[test]
    fn colon_list_and_comma_separators() {
        // performance_tuning.md
        let cfg = parse(
            r#"name: "densenet_onnx"
backend: "onnxruntime"
max_batch_size: 0
input: [
  {
    name: "data_0",
    data_type: TYPE_FP32,
    dims: [ 1, 3, 224, 224]
  }
]
output: [
  {
    name: "prob_1",
    data_type: TYPE_FP32,
    dims: [ 1, 1000, 1, 1 ]
  }
]"#,
        );
        assert_eq!(cfg.backend, "onnxruntime");
        assert_eq!(cfg.input[0].dims, vec![1, 3, 224, 224]);
        assert_eq!(cfg.output[0].dims, vec![1, 1000, 1, 1]);
    }

    #[test]
    fn reshape_shape_tensor_and_formats() {
        let cfg = parse(
            r#"
  name: "myshapetensormodel"
  input [
    {
      name: "in"
      dims: [ 1 ]
      reshape: { shape: [ ] }
      format: FORMAT_NCHW
    },
    {
      name: "input1"
      data_type: TYPE_INT32
      dims: [ 2 ]
      is_shape_tensor: true
      allow_ragged_batch: True
      optional: t
    }
  ]
  output [ { name: "o" dims: [ 1 , 3] is_non_linear_format_io: 1 label_filename: "labels.txt" } ]
"#,
        );
        assert_eq!(
            cfg.input[0].reshape.as_ref().unwrap().shape,
            Vec::<i64>::new()
        );
        assert_eq!(cfg.input[0].format(), model_input::Format::Nchw);
        assert!(cfg.input[1].is_shape_tensor && cfg.input[1].allow_ragged_batch);
        assert!(cfg.input[1].optional);
        assert!(cfg.output[0].is_non_linear_format_io);
        assert_eq!(cfg.output[0].label_filename, "labels.txt");
    }

    #[test]
    fn instance_groups() {
        let cfg = parse(
            r#"
instance_group [ { count: 2, kind: KIND_CPU } ]
instance_group [{ count: 1 kind: KIND_GPU gpus: [ 0, 1 ] }]
instance_group [
  {
    count: 1
    kind: KIND_GPU
    gpus: [ 0, 1, 2 ]
    rate_limiter {
      resources [
        {
          name: "R1"
          count: 4
        },
        {
          name: "R2"
          global: True
          count: 2
        }
      ]
      priority: 2
    }
  }
]
instance_group { count: 2 kind: KIND_CPU host_policy: "policy_0" profile: ["0", "1"] passive: true }
instance_group [ { count: 2 }]
"#,
        );
        let groups = &cfg.instance_group;
        assert_eq!(groups.len(), 5);
        assert_eq!((groups[0].count, groups[0].kind()), (2, Kind::Cpu));
        assert_eq!(groups[1].gpus, vec![0, 1]);
        let rl = groups[2].rate_limiter.as_ref().unwrap();
        assert_eq!(rl.priority, 2);
        assert!(rl.resources[1].global);
        assert_eq!(rl.resources[1].count, 2);
        assert_eq!(groups[3].host_policy, "policy_0");
        assert_eq!(groups[3].profile, vec!["0", "1"]);
        assert!(groups[3].passive);
        assert_eq!(groups[4].kind(), Kind::Auto);
    }

    #[test]
    fn version_policies() {
        let latest = parse("version_policy: { latest: { num_versions: 2}}");
        let Some(PolicyChoice::Latest(l)) = latest.version_policy.unwrap().policy_choice else {
            panic!("not latest")
        };
        assert_eq!(l.num_versions, 2);
        let specific = parse("version_policy: { specific: { versions: [1,3]}}");
        let Some(PolicyChoice::Specific(s)) = specific.version_policy.unwrap().policy_choice else {
            panic!("not specific")
        };
        assert_eq!(s.versions, vec![1, 3]);
        let all = parse("version_policy < all < > >");
        assert!(matches!(
            all.version_policy.unwrap().policy_choice,
            Some(PolicyChoice::All(_))
        ));
    }

    #[test]
    fn dynamic_batching_forms() {
        let cfg = parse(
            "dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }",
        );
        let db = dynamic_batching(&cfg);
        assert_eq!(db.preferred_batch_size, vec![4, 8]);
        assert_eq!(db.max_queue_delay_microseconds, 100);

        let cfg = parse("dynamic_batching { }");
        assert_eq!(dynamic_batching(&cfg), &Default::default());

        let cfg = parse(
            r#"dynamic_batching {
  preserve_ordering: true
  priority_levels: 2
  default_priority_level: 1
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 5000 allow_timeout_override: true max_queue_size: 16 }
  priority_queue_policy { key: 1 value { max_queue_size: 4 } }
  priority_queue_policy [ { key: 2, value: { timeout_action: REJECT } } ]
}"#,
        );
        let db = dynamic_batching(&cfg);
        assert!(db.preserve_ordering);
        assert_eq!((db.priority_levels, db.default_priority_level), (2, 1));
        let dq = db.default_queue_policy.as_ref().unwrap();
        assert_eq!(dq.default_timeout_microseconds, 5000);
        assert_eq!(dq.max_queue_size, 16);
        assert_eq!(db.priority_queue_policy.len(), 2);
        assert_eq!(db.priority_queue_policy[&1].max_queue_size, 4);
    }

    #[test]
    fn sequence_batching_direct_with_control_inputs() {
        // architecture.md
        let cfg = parse(
            r#"
name: "direct_stateful_model"
platform: "tensorrt_plan"
max_batch_size: 2
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  direct { }
  control_input [
    {
      name: "START"
      control [
        {
          kind: CONTROL_SEQUENCE_START
          fp32_false_true: [ 0, 1 ]
        }
      ]
    },
    {
      name: "READY"
      control [
        {
          kind: CONTROL_SEQUENCE_READY
          fp32_false_true: [ 0, 1 ]
        }
      ]
    },
    {
      name: "CORRID"
      control [
        {
          kind: CONTROL_SEQUENCE_CORRID
          data_type: TYPE_UINT64
        }
      ]
    }
  ]
}
input [
  {
    name: "INPUT"
    data_type: TYPE_FP32
    dims: [ 100, 100 ]
  }
]
instance_group [
  {
    count: 2
  }
]
"#,
        );
        let sb = sequence_batching(&cfg);
        assert_eq!(sb.max_sequence_idle_microseconds, 5_000_000);
        assert!(matches!(
            sb.strategy_choice,
            Some(model_sequence_batching::StrategyChoice::Direct(_))
        ));
        assert_eq!(sb.control_input.len(), 3);
        let start = &sb.control_input[0].control[0];
        assert_eq!(
            start.kind(),
            model_sequence_batching::control::Kind::ControlSequenceStart
        );
        assert_eq!(start.fp32_false_true, vec![0.0, 1.0]);
        let corrid = &sb.control_input[2].control[0];
        assert_eq!(corrid.data_type(), DataType::TypeUint64);
    }

    #[test]
    fn sequence_batching_oldest_states_and_iterative() {
        let cfg = parse(
            r#"
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  oldest
    {
      max_candidate_sequences: 4
      preferred_batch_size: [ 2 ]
      max_queue_delay_microseconds: 100
    }
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END bool_false_true: [ false, true ] } ] }
  ]
  state [
    {
      input_name: "INPUT_STATE"
      output_name: "OUTPUT_STATE"
      data_type: TYPE_INT32
      dims: [ -1 ]
      initial_state: {
       data_type: TYPE_INT32
       dims: [ 1 ]
       zero_data: true
       name: "initial state"
      }
    },
    {
      input_name: "IN2"
      output_name: "OUT2"
      data_type: TYPE_INT32
      dims: [ -1 ]
      initial_state: { data_type: TYPE_INT32 dims: [ 1 ] data_file: "initial_state_data" name: "s" }
      use_same_buffer_for_input_output: true
      use_growable_memory: true
    }
  ]
  iterative_sequence: true
}
"#,
        );
        let sb = sequence_batching(&cfg);
        let Some(model_sequence_batching::StrategyChoice::Oldest(oldest)) = &sb.strategy_choice
        else {
            panic!("not oldest")
        };
        assert_eq!(oldest.max_candidate_sequences, 4);
        assert_eq!(sb.control_input[0].control[0].int32_false_true, vec![0, 1]);
        assert_eq!(
            sb.control_input[1].control[0].bool_false_true,
            vec![false, true]
        );
        assert_eq!(sb.state.len(), 2);
        assert_eq!(sb.state[0].dims, vec![-1]);
        assert_eq!(
            sb.state[0].initial_state[0].state_data,
            Some(model_sequence_batching::initial_state::StateData::ZeroData(
                true
            ))
        );
        assert_eq!(
            sb.state[1].initial_state[0].state_data,
            Some(model_sequence_batching::initial_state::StateData::DataFile(
                "initial_state_data".into()
            ))
        );
        assert!(sb.state[1].use_growable_memory);
        assert!(sb.iterative_sequence);
    }

    #[test]
    fn ensemble_scheduling() {
        // architecture.md
        let cfg = parse(
            r#"
name: "ensemble_model"
platform: "ensemble"
max_batch_size: 1
input [ { name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] } ]
output [
  { name: "CLASSIFICATION" data_type: TYPE_FP32 dims: [ 1000 ] },
  { name: "SEGMENTATION" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] }
]
ensemble_scheduling {
  step [
    {
      model_name: "image_preprocess_model"
      model_version: -1
      input_map {
        key: "RAW_IMAGE"
        value: "IMAGE"
      }
      output_map {
        key: "PREPROCESSED_OUTPUT"
        value: "preprocessed_image"
      }
    },
    {
      model_name: "classification_model"
      model_version: 2
      input_map { key: "FORMATTED_IMAGE" value: "preprocessed_image" }
      input_map { key: "SECOND" value: "IMAGE" }
      output_map [ { key: "CLASSIFICATION_OUTPUT", value: "CLASSIFICATION" } ]
    }
  ]
}
"#,
        );
        let Some(SchedulingChoice::EnsembleScheduling(ens)) = &cfg.scheduling_choice else {
            panic!("not an ensemble")
        };
        assert_eq!(ens.step.len(), 2);
        assert_eq!(ens.step[0].model_version, -1);
        assert_eq!(ens.step[0].input_map["RAW_IMAGE"], "IMAGE");
        assert_eq!(ens.step[1].input_map.len(), 2);
        assert_eq!(
            ens.step[1].output_map["CLASSIFICATION_OUTPUT"],
            "CLASSIFICATION"
        );
        assert_eq!(cfg.output[1].dims, vec![3, 224, 224]);
    }

    #[test]
    fn optimization_execution_accelerators() {
        // optimization.md
        let cfg = parse(
            r#"
optimization { execution_accelerators {
  gpu_execution_accelerator : [ {
    name : "tensorrt"
    parameters { key: "precision_mode" value: "FP16" }
    parameters { key: "max_workspace_size_bytes" value: "1073741824" }
    }]
  cpu_execution_accelerator : [ { name : "openvino" } ]
}}
"#,
        );
        let ea = cfg.optimization.unwrap().execution_accelerators.unwrap();
        let trt = &ea.gpu_execution_accelerator[0];
        assert_eq!(trt.name, "tensorrt");
        assert_eq!(trt.parameters["precision_mode"], "FP16");
        assert_eq!(trt.parameters["max_workspace_size_bytes"], "1073741824");
        assert_eq!(ea.cpu_execution_accelerator[0].name, "openvino");

        let cfg = parse(
            r#"optimization { execution_accelerators {
  gpu_execution_accelerator : [ {
    name : "tensorrt"
    parameters { key: "precision_mode" value: "FP16" }}]
}}"#,
        );
        let ea = cfg.optimization.unwrap().execution_accelerators.unwrap();
        assert_eq!(ea.gpu_execution_accelerator[0].parameters.len(), 1);
    }

    #[test]
    fn optimization_graph_cuda_priority_pinned() {
        let cfg = parse(
            r#"
optimization {
  graph { level: 1
}}
"#,
        );
        assert_eq!(cfg.optimization.unwrap().graph.unwrap().level, 1);
        let cfg = parse(
            r#"optimization {
  priority: PRIORITY_MAX
  cuda { graphs: true busy_wait_events: true output_copy_stream: true
    graph_spec [ { batch_size: 4 input { key: "INPUT0" value: { dim: [ 16 ] } }
                   graph_lower_bound { batch_size: 1 input { key: "INPUT0" value: { dim: [ 8 ] } } } } ] }
  input_pinned_memory { enable: false }
  output_pinned_memory: { enable: true }
  gather_kernel_buffer_threshold: 2
  eager_batching: true
}"#,
        );
        let opt = cfg.optimization.unwrap();
        assert_eq!(
            opt.priority(),
            model_optimization_policy::ModelPriority::PriorityMax
        );
        let cuda = opt.cuda.unwrap();
        assert!(cuda.graphs && cuda.busy_wait_events && cuda.output_copy_stream);
        assert_eq!(cuda.graph_spec[0].input["INPUT0"].dim, vec![16]);
        let lb = cuda.graph_spec[0].graph_lower_bound.as_ref().unwrap();
        assert_eq!(lb.input["INPUT0"].dim, vec![8]);
        assert!(!opt.input_pinned_memory.unwrap().enable);
        assert!(opt.output_pinned_memory.unwrap().enable);
        assert_eq!(opt.gather_kernel_buffer_threshold, 2);
        assert!(opt.eager_batching);
    }

    #[test]
    fn parameters_maps_in_every_form() {
        let cfg = parse(
            r#"
parameters { key: "x" value: { string_value: "y" } }
parameters: { key: "EXECUTION_ENV_PATH", value: {string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz"} }
parameters [ {key: "a", value: {string_value: "1"}}, {key: "b" value {string_value: "2"}} ]
parameters < key: "c" value < string_value: "3" > >
cc_model_filenames [
  {
    key: "7.5"
    value: "resnet50_T4.plan"
  },
  {
    key: "8.0"
    value: "resnet50_A100.plan"
  }
]
metric_tags { key: "team" value: "vision" }
"#,
        );
        let p = &cfg.parameters;
        assert_eq!(p.len(), 5);
        assert_eq!(p["x"].string_value, "y");
        assert_eq!(
            p["EXECUTION_ENV_PATH"].string_value,
            "$$TRITON_MODEL_DIRECTORY/env.tar.gz"
        );
        assert_eq!(p["b"].string_value, "2");
        assert_eq!(p["c"].string_value, "3");
        assert_eq!(cfg.cc_model_filenames["8.0"], "resnet50_A100.plan");
        assert_eq!(cfg.metric_tags["team"], "vision");
    }

    #[test]
    fn batch_input_output_warmup_and_the_rest() {
        // ragged_batching.md, custom_operations.md, response_cache.md, ...
        let cfg = parse(
            r#"
max_batch_size: 16
input [
  {
    name: "INPUT"
    data_type: TYPE_FP32
    dims: [ -1 ]
    allow_ragged_batch: true
  }
]
batch_input [
  {
    kind: BATCH_ACCUMULATED_ELEMENT_COUNT
    target_name: "INDEX"
    data_type: TYPE_FP32
    source_input: "INPUT"
  }
]
batch_output [ { target_name: ["OUT"] kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: ["INPUT"] } ]
model_warmup [
  {
    name: "zeros"
    batch_size: 2
    count: 3
    inputs {
      key: "INPUT"
      value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true }
    }
  },
  {
    name: "file"
    inputs [ { key: "INPUT" value { data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "raw" } } ]
  }
]
model_operations { op_library_filename: "path/to/libtfcustom.so" }
model_transaction_policy { decoupled: True }
model_repository_agents { agents [ { name: "checksum", parameters { key: "MD5:model.onnx" value: "abc" } } ] }
response_cache {
  enable: true
}
default_model_filename: "model.savedmodel"
runtime: "model.py"
"#,
        );
        assert_eq!(cfg.batch_input[0].target_name, vec!["INDEX"]);
        assert_eq!(cfg.batch_output[0].source_input, vec!["INPUT"]);
        assert_eq!(cfg.model_warmup.len(), 2);
        assert_eq!(cfg.model_warmup[0].count, 3);
        assert_eq!(cfg.model_warmup[0].inputs["INPUT"].dims, vec![4]);
        assert_eq!(
            cfg.model_operations.unwrap().op_library_filename,
            vec!["path/to/libtfcustom.so"]
        );
        assert!(cfg.model_transaction_policy.unwrap().decoupled);
        let agents = cfg.model_repository_agents.unwrap().agents;
        assert_eq!(agents[0].parameters["MD5:model.onnx"], "abc");
        assert!(cfg.response_cache.unwrap().enable);
        assert_eq!(cfg.runtime, "model.py");
    }

    #[test]
    fn comments_separators_and_strings() {
        let cfg = parse(
            "# a comment\nname: \"m # not a comment\"; # trailing\nbackend: 'py' \"thon\",\n\
             max_batch_size: 0x10\ninput { name: \"a\\\"b\" dims: -1 dims: 2 }\ninput { name: 'c' }\n",
        );
        assert_eq!(cfg.name, "m # not a comment");
        assert_eq!(cfg.backend, "python");
        assert_eq!(cfg.max_batch_size, 16);
        assert_eq!(cfg.input[0].name, "a\"b");
        assert_eq!(cfg.input[0].dims, vec![-1, 2]);
        assert_eq!(cfg.input[1].name, "c");
        assert_eq!(parse(""), ModelConfig::default());
    }

    #[test]
    fn unknown_field_is_reported_with_position_and_suggestion() {
        let e = err("name: \"m\"\nmax_batchsize: 8\n");
        assert_eq!((e.line(), e.column()), (2, 1));
        assert_eq!(
            e.to_string(),
            "line 2, column 1: field 'max_batchsize' not found in message \
             inference.ModelConfig (did you mean 'max_batch_size'?)"
        );
        let e = err("input [\n  {\n    name: \"x\"\n    dimz: [ 1 ]\n  }\n]");
        assert_eq!((e.line(), e.column()), (4, 5));
        assert!(e.message().contains("inference.ModelInput"), "{e}");
    }

    #[test]
    fn bad_enum_value_lists_the_valid_ones() {
        let e = err("instance_group [ { kind: KIND_TPU } ]");
        assert_eq!((e.line(), e.column()), (1, 26));
        assert_eq!(
            e.message(),
            "field 'kind': unknown value 'KIND_TPU' for enum inference.ModelInstanceGroup.Kind, \
             expected one of: KIND_AUTO, KIND_GPU, KIND_CPU, KIND_MODEL"
        );
    }

    #[test]
    fn positions_after_an_inserted_colon_are_original_positions() {
        // No blank between `input` and `[`: a ':' is inserted, yet the error
        // column is the one in the user's file.
        let e = err("input[ { name: \"x\" bogus: 1 } ]");
        assert_eq!((e.line(), e.column()), (1, 20));
        let e = err("input\n[{ dims: [ \"a\" ] }]");
        assert_eq!((e.line(), e.column()), (2, 12));
    }

    #[test]
    fn other_errors() {
        let e = err("max_batch_size: 99999999999");
        assert_eq!((e.line(), e.column()), (1, 17));
        assert!(e.message().contains("out of range"), "{e}");
        let e = err("name: \"a\"\nname: \"b\"");
        assert_eq!(e.line(), 2);
        assert!(e.message().contains("already set"), "{e}");
        let e = err("dynamic_batching { }\nsequence_batching { }");
        assert_eq!(e.line(), 2);
        assert!(e.message().contains("scheduling_choice"), "{e}");
        let e = err("input [ { name: \"x\"");
        assert_eq!((e.line(), e.column()), (1, 20));
        assert!(e.message().contains("end of input"), "{e}");
        let e = err("name: \"é\" max_batch_size: x");
        assert_eq!((e.line(), e.column()), (1, 27));
        let e = err("input [ { dims: [ 1 2 ] } ]");
        assert_eq!((e.line(), e.column()), (1, 21));
    }
}
