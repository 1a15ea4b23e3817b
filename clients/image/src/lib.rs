//! `image_client`: Triton's image classification example client (`image_client.cc` /
//! `image_client.py`) in Rust, over HTTP or gRPC, against Ferrite or Triton.
//!
//! The pieces are public so that tests (and other tools) can use the exact preprocessing:
//! [`preprocess`] turns an image file into the model's input tensor the way
//! `scripts/models/preprocess.py` and Triton's Python client do (Pillow's BILINEAR resize,
//! reproduced bit for bit in [`resize`]; both are the `ferrite-imaging` library, which the
//! server's `image` driver uses too); [`model`] checks that a model is an image classifier
//! and reads its input's shape; [`run`] is the program.

pub mod args;
pub mod model;
pub mod preprocess;
pub mod run;

pub use ferrite_imaging::resize;

use std::fmt;

/// An error of the client: a message meant for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}
