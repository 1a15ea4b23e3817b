//! The command line: Triton's `image_client` options.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, ValueEnum};

use crate::preprocess::Scaling;

/// `-i`: the protocol, case-insensitive as in Triton's client ("HTTP", "gRPC", ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    /// The server's default address for the protocol.
    pub fn default_url(self) -> &'static str {
        match self {
            Protocol::Http => "localhost:8000",
            Protocol::Grpc => "localhost:8001",
        }
    }
}

/// Classifies images with an image classification model served by Ferrite or Triton
/// (Triton's image_client).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "image_client",
    version,
    after_help = "\
For -b, a single image is replicated and sent in a batch of the specified size; a folder of
images is grouped into batches, starting over with the first images to fill the last batch.
Images are decoded to RGB (grey for a one-channel model) and stretched to the model's
width x height with Pillow's BILINEAR filter, then converted to the input's data type and
scaled by -s, as Triton's image_client.py does.
If -x is not given, the model's version policy picks the version (the latest by default).
Output: \"Request <id>, batch size <n>\", then for each image \"Image '<file>':\" and its classes,
\"    <score> (<index>) = <label>\", as Triton's C++ image_client prints them."
)]
pub struct Args {
    /// Print the model's metadata and configuration and each request sent
    #[arg(short, long)]
    pub verbose: bool,

    /// Use the asynchronous API: send every request, then collect the results
    #[arg(short = 'a', long = "async")]
    pub async_set: bool,

    /// Send the requests through one gRPC bidirectional stream (gRPC only)
    #[arg(long)]
    pub streaming: bool,

    /// Name of the model
    #[arg(short = 'm', long = "model-name", value_name = "MODEL")]
    pub model_name: String,

    /// Version of the model [default: the model's version policy picks it]
    #[arg(
        short = 'x',
        long = "model-version",
        value_name = "VERSION",
        default_value = "",
        hide_default_value = true
    )]
    pub model_version: String,

    /// Batch size
    #[arg(short = 'b', long = "batch-size", value_name = "N", default_value_t = 1,
          value_parser = positive)]
    pub batch_size: u32,

    /// Number of class results to report
    #[arg(short = 'c', long = "classes", value_name = "N", default_value_t = 1,
          value_parser = positive)]
    pub classes: u32,

    /// Scaling of the pixel values x after the resize
    #[arg(short = 's', long = "scaling", value_enum, ignore_case = true, default_value_t = Scaling::None)]
    pub scaling: Scaling,

    /// Server address, HOST:PORT or http://HOST:PORT [default: localhost:8000 for HTTP,
    /// localhost:8001 for gRPC]
    #[arg(short = 'u', long = "url", value_name = "URL")]
    pub url: Option<String>,

    /// Protocol used to talk to the server
    #[arg(short = 'i', long = "protocol", value_enum, ignore_case = true, default_value_t = Protocol::Http)]
    pub protocol: Protocol,

    /// Write the first image's preprocessed tensor (raw little-endian bytes, no batch
    /// dimension) to this file
    #[arg(short = 'p', long = "preprocessed", value_name = "FILE")]
    pub preprocessed: Option<PathBuf>,

    /// An image file (PNG or JPEG), or a folder whose files are all images
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
}

/// `-b` and `-c`: a whole number > 0.
fn positive(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err("must be > 0".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expecting a whole number > 0".into()),
    }
}

impl Args {
    /// Parses the command line; on a bad one prints the error and the usage message on
    /// stderr and exits with status 2 (`--help` / `--version`: stdout, status 0).
    pub fn parse_checked() -> Args {
        match Args::try_parse_checked(std::env::args_os()) {
            Ok(args) => args,
            Err(e) if !e.use_stderr() => e.exit(),
            Err(e) => {
                let mut text = e.render().to_string();
                if !text.contains("Usage:") {
                    // Value errors do not show the usage: add it before the --help hint.
                    let usage = format!("\n{}\n", Args::command().render_usage());
                    match text.find("\nFor more information") {
                        Some(at) => text.insert_str(at, &usage),
                        None => text.push_str(&usage),
                    }
                }
                eprint!("{text}");
                std::process::exit(2);
            }
        }
    }

    /// [`Args::parse_checked`] without exiting, for tests.
    pub fn try_parse_checked<I, T>(argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = Args::try_parse_from(argv)?;
        if args.streaming && args.protocol != Protocol::Grpc {
            return Err(Args::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "Streaming is only allowed with gRPC protocol",
            ));
        }
        Ok(args)
    }

    /// The server address: `-u`, or the protocol's default.
    pub fn url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| self.protocol.default_url().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_checked(std::iter::once("image_client").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let a = parse(&["-m", "m", "x.png"]).unwrap();
        assert_eq!(a.batch_size, 1);
        assert_eq!(a.classes, 1);
        assert_eq!(a.scaling, Scaling::None);
        assert_eq!(a.protocol, Protocol::Http);
        assert_eq!(a.url(), "localhost:8000");
        assert_eq!(a.model_version, "");
        assert!(!a.async_set && !a.streaming && !a.verbose);
    }

    #[test]
    fn triton_spellings() {
        let a = parse(&[
            "-m",
            "m",
            "-i",
            "gRPC",
            "-s",
            "inception",
            "-b",
            "2",
            "-c",
            "3",
            "-x",
            "1",
            "-a",
            "--streaming",
            "-v",
            "dir",
        ])
        .unwrap();
        assert_eq!(a.protocol, Protocol::Grpc);
        assert_eq!(a.url(), "localhost:8001");
        assert_eq!(a.scaling, Scaling::Inception);
        assert_eq!((a.batch_size, a.classes), (2, 3));
        assert_eq!(a.model_version, "1");
        assert!(a.async_set && a.streaming && a.verbose);
    }

    #[test]
    fn refusals() {
        use clap::error::ErrorKind;
        assert_eq!(
            parse(&["x.png"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["-m", "m"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["-m", "m", "-b", "0", "x"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["-m", "m", "-c", "0", "x"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["-m", "m", "-s", "FOO", "x"]).unwrap_err().kind(),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            parse(&["-m", "m", "-i", "udp", "x"]).unwrap_err().kind(),
            ErrorKind::InvalidValue
        );
        let e = parse(&["-m", "m", "--streaming", "x"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        assert!(
            e.to_string()
                .contains("Streaming is only allowed with gRPC protocol")
        );
    }
}
