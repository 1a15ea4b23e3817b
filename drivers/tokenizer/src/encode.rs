//! Texts to padded token tensors: the tokenizer loaded from `tokenizer.json` (its own fixed
//! padding turned off, truncation from the configuration), the texts of a request decoded
//! from a BYTES tensor, and every row of one batch padded to the batch's longest row.

use std::path::{Path, PathBuf};

use ferrite_driver_sdk::{Error, Result, bytes_layout};
use tokenizers::{Encoding, PaddingDirection, Tokenizer, TruncationParams};

/// The file a tokenizer model's folder holds.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A loaded tokenizer with the padding it asks for.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    pad_id: i64,
    pad_type_id: i64,
    pad_left: bool,
}

/// The token tensors of one request: `rows` texts, each padded to `length` tokens, row-major.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub rows: usize,
    pub length: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

/// Where the tokenizer of a model version is: `<version>/tokenizer.json`, else
/// `<model>/tokenizer.json`.
pub fn find_tokenizer(version_path: &Path, model_path: &Path) -> Result<PathBuf> {
    let candidates = [
        version_path.join(TOKENIZER_FILE),
        model_path.join(TOKENIZER_FILE),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            Error::not_found(format!(
                "no {TOKENIZER_FILE} in {} or {}",
                version_path.display(),
                model_path.display()
            ))
        })
}

impl TextEncoder {
    /// Loads `tokenizer.json` from `path`; see [`TextEncoder::new`].
    pub fn from_file(path: &Path, max_length: Option<usize>) -> Result<TextEncoder> {
        let tokenizer = Tokenizer::from_file(path).map_err(|e| {
            Error::invalid_arg(format!("cannot load the tokenizer {}: {e}", path.display()))
        })?;
        TextEncoder::new(tokenizer, max_length)
    }

    /// Takes the pad token id, pad type id and side from the tokenizer's padding settings
    /// (id 0 on the right when it has none), then turns its padding off: the driver pads each
    /// batch to its longest row itself. `max_length`, when given, replaces the tokenizer's
    /// truncation length (counting the special tokens it adds).
    pub fn new(mut tokenizer: Tokenizer, max_length: Option<usize>) -> Result<TextEncoder> {
        let (pad_id, pad_type_id, pad_left) = match tokenizer.get_padding() {
            Some(p) => (
                i64::from(p.pad_id),
                i64::from(p.pad_type_id),
                matches!(p.direction, PaddingDirection::Left),
            ),
            None => (0, 0, false),
        };
        tokenizer.with_padding(None);
        if let Some(max_length) = max_length {
            // The tokenizer subtracts the special tokens from the length unchecked.
            let specials = tokenizer
                .encode_fast("", true)
                .map_err(|e| Error::invalid_arg(format!("the tokenizer cannot encode: {e}")))?
                .len();
            if max_length <= specials {
                return Err(Error::invalid_arg(format!(
                    "max_length {max_length} leaves no room for text: the tokenizer adds {specials} special tokens"
                )));
            }
            let params = TruncationParams {
                max_length,
                ..tokenizer.get_truncation().cloned().unwrap_or_default()
            };
            tokenizer
                .with_truncation(Some(TruncationParams {
                    stride: params.stride.min(max_length - specials - 1),
                    ..params
                }))
                .map_err(|e| Error::invalid_arg(format!("max_length {max_length}: {e}")))?;
        }
        Ok(TextEncoder {
            tokenizer,
            pad_id,
            pad_type_id,
            pad_left,
        })
    }

    /// The truncation length in force, if any.
    pub fn max_length(&self) -> Option<usize> {
        self.tokenizer.get_truncation().map(|t| t.max_length)
    }

    /// Tokenises `texts` (with the tokenizer's special tokens), unpadded.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoding>> {
        texts
            .iter()
            .enumerate()
            .map(|(row, text)| {
                self.tokenizer
                    .encode_fast(*text, true)
                    .map_err(|e| Error::invalid_arg(format!("row {row}: cannot tokenize: {e}")))
            })
            .collect()
    }

    /// Lays out `encodings` as `[rows, length]` tensors, each row padded to `length` with
    /// the pad id, the pad type id and mask 0. Rows longer than `length` are cut (not
    /// reached when `length` is the batch's longest row).
    pub fn pad(&self, encodings: &[Encoding], length: usize) -> Tokens {
        let size = encodings.len() * length;
        let mut tokens = Tokens {
            rows: encodings.len(),
            length,
            input_ids: Vec::with_capacity(size),
            attention_mask: Vec::with_capacity(size),
            token_type_ids: Vec::with_capacity(size),
        };
        for e in encodings {
            let n = e.len().min(length);
            let padding = length - n;
            let pad = |t: &mut Tokens| {
                t.input_ids
                    .extend(std::iter::repeat_n(self.pad_id, padding));
                t.attention_mask.extend(std::iter::repeat_n(0, padding));
                t.token_type_ids
                    .extend(std::iter::repeat_n(self.pad_type_id, padding));
            };
            if self.pad_left {
                pad(&mut tokens);
            }
            let widen = |v: &[u32]| v.iter().take(n).map(|&x| i64::from(x)).collect::<Vec<_>>();
            tokens.input_ids.extend(widen(e.get_ids()));
            tokens.attention_mask.extend(widen(e.get_attention_mask()));
            tokens.token_type_ids.extend(widen(e.get_type_ids()));
            if !self.pad_left {
                pad(&mut tokens);
            }
        }
        tokens
    }

    /// Tokenises the texts of every request of a batch and pads all rows of all requests to
    /// the longest one. A request whose texts cannot be tokenized gets its error and does
    /// not count towards the length; the others are unaffected.
    pub fn encode_batch(&self, requests: &[Result<Vec<&str>>]) -> Vec<Result<Tokens>> {
        let encoded: Vec<Result<Vec<Encoding>>> = requests
            .iter()
            .map(|texts| {
                texts
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|t| self.encode(t))
            })
            .collect();
        let length = encoded
            .iter()
            .flatten()
            .flatten()
            .map(Encoding::len)
            .max()
            .unwrap_or(0);
        encoded
            .into_iter()
            .map(|e| e.map(|e| self.pad(&e, length)))
            .collect()
    }
}

/// The texts of a BYTES tensor of `expected` elements, each valid UTF-8. Errors name the
/// row (the element index) and say what is wrong; the caller adds the model and input.
pub fn texts(data: &[u8], expected: usize) -> Result<Vec<&str>> {
    let mut texts = Vec::with_capacity(expected);
    for (row, element) in bytes_layout::elements(data).enumerate() {
        let element = element.map_err(|e| Error::invalid_arg(e.message))?;
        let text = std::str::from_utf8(element).map_err(|e| {
            Error::invalid_arg(format!(
                "row {row} is not valid UTF-8 ({e}); the tokenizer takes text"
            ))
        })?;
        texts.push(text);
    }
    if texts.len() != expected {
        return Err(Error::invalid_arg(format!(
            "the tensor holds {} strings, its shape says {expected}",
            texts.len()
        )));
    }
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use tokenizers::PaddingParams;

    /// A small BERT-like tokenizer.json: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, then words,
    /// with the fixed padding a tokenizer.json may ask for.
    const TOKENIZER_JSON: &str = r###"{
        "version": "1.0",
        "truncation": null,
        "padding": {"strategy": {"Fixed": 32}, "direction": "Right", "pad_to_multiple_of": null,
                    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": null,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100,
                  "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a": 4, "man": 5,
                            "is": 6, "eating": 7, "food": 8, ".": 9}}
    }"###;

    fn tokenizer() -> Tokenizer {
        Tokenizer::from_str(TOKENIZER_JSON).unwrap()
    }

    fn bytes(texts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for t in texts {
            bytes_layout::push(&mut out, t);
        }
        out
    }

    #[test]
    fn pads_every_request_of_a_batch_to_the_longest_row() {
        let enc = TextEncoder::new(tokenizer(), None).unwrap();
        let a = vec!["A man"];
        let b = vec!["a man is eating food.", "food"];
        let out = enc.encode_batch(&[Ok(a), Ok(b)]);
        let a = out[0].as_ref().unwrap();
        let b = out[1].as_ref().unwrap();
        // [CLS] a man is eating food . [SEP]: 8 tokens, not the tokenizer's fixed 32.
        assert_eq!((a.rows, a.length), (1, 8));
        assert_eq!((b.rows, b.length), (2, 8));
        assert_eq!(a.input_ids, vec![2, 4, 5, 3, 0, 0, 0, 0]);
        assert_eq!(a.attention_mask, vec![1, 1, 1, 1, 0, 0, 0, 0]);
        assert_eq!(a.token_type_ids, vec![0; 8]);
        assert_eq!(
            b.input_ids,
            vec![2, 4, 5, 6, 7, 8, 9, 3, 2, 8, 3, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            b.attention_mask,
            vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn a_failed_request_does_not_count_or_spoil_the_others() {
        let enc = TextEncoder::new(tokenizer(), None).unwrap();
        let bad = Err(Error::invalid_arg("row 0 is not valid UTF-8"));
        let out = enc.encode_batch(&[bad, Ok(vec!["food"])]);
        assert!(out[0].is_err());
        let ok = out[1].as_ref().unwrap();
        assert_eq!((ok.rows, ok.length), (1, 3));
        assert_eq!(ok.input_ids, vec![2, 8, 3]);
    }

    #[test]
    fn truncates_to_max_length() {
        let enc = TextEncoder::new(tokenizer(), Some(4)).unwrap();
        assert_eq!(enc.max_length(), Some(4));
        let out = enc.encode_batch(&[Ok(vec!["a man is eating food.", "a"])]);
        let t = out[0].as_ref().unwrap();
        assert_eq!(t.length, 4);
        assert_eq!(t.input_ids, vec![2, 4, 5, 3, 2, 4, 3, 0]);
        assert_eq!(t.attention_mask, vec![1, 1, 1, 1, 1, 1, 1, 0]);

        let e = TextEncoder::new(tokenizer(), Some(2)).err().unwrap();
        assert!(e.message.contains("special tokens"), "{e}");
    }

    #[test]
    fn empty_batches_and_texts() {
        let enc = TextEncoder::new(tokenizer(), None).unwrap();
        let out = enc.encode_batch(&[Ok(vec![])]);
        assert_eq!(out[0].as_ref().unwrap(), &Tokens::default());
        let out = enc.encode_batch(&[Ok(vec![""])]);
        assert_eq!(out[0].as_ref().unwrap().input_ids, vec![2, 3]);
    }

    #[test]
    fn pads_on_the_left_when_the_tokenizer_says_so() {
        let mut t = tokenizer();
        t.with_padding(Some(PaddingParams {
            direction: PaddingDirection::Left,
            pad_id: 0,
            pad_type_id: 1,
            pad_token: "[PAD]".into(),
            ..Default::default()
        }));
        let enc = TextEncoder::new(t, None).unwrap();
        let out = enc.encode_batch(&[Ok(vec!["a", "a man"])]);
        let t = out[0].as_ref().unwrap();
        assert_eq!(t.input_ids, vec![0, 2, 4, 3, 2, 4, 5, 3]);
        assert_eq!(t.attention_mask, vec![0, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(t.token_type_ids, vec![1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn decodes_texts_and_refuses_bad_utf8() {
        let data = bytes(&[b"hello", "héllo".as_bytes()]);
        assert_eq!(texts(&data, 2).unwrap(), vec!["hello", "héllo"]);

        let data = bytes(&[b"ok", b"\xff\xfe"]);
        let e = texts(&data, 2).unwrap_err();
        assert!(e.message.contains("row 1 is not valid UTF-8"), "{e}");

        assert!(texts(&data[..5], 1).is_err(), "cut short");
        let e = texts(&bytes(&[b"a"]), 2).unwrap_err();
        assert!(e.message.contains("holds 1 strings"), "{e}");
    }

    #[test]
    fn finds_the_tokenizer_in_the_version_then_the_model_folder() {
        let dir = std::env::temp_dir().join(format!("ferrite-tok-{}", std::process::id()));
        let version = dir.join("1");
        std::fs::create_dir_all(&version).unwrap();
        assert_eq!(
            find_tokenizer(&version, &dir).unwrap_err().code,
            ferrite_driver_sdk::ErrorCode::NotFound
        );
        std::fs::write(dir.join(TOKENIZER_FILE), "{}").unwrap();
        assert_eq!(
            find_tokenizer(&version, &dir).unwrap(),
            dir.join(TOKENIZER_FILE)
        );
        let e = TextEncoder::from_file(&dir.join(TOKENIZER_FILE), None)
            .err()
            .unwrap();
        assert!(e.message.contains("cannot load the tokenizer"), "{e}");
        std::fs::write(version.join(TOKENIZER_FILE), TOKENIZER_JSON).unwrap();
        let path = find_tokenizer(&version, &dir).unwrap();
        assert_eq!(path, version.join(TOKENIZER_FILE));
        let enc = TextEncoder::from_file(&path, Some(16)).unwrap();
        assert_eq!(enc.max_length(), Some(16));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
