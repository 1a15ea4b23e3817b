use std::process::ExitCode;

use ferrite_image_client::args::Args;

fn main() -> ExitCode {
    let args = Args::parse_checked();
    match ferrite_image_client::run::main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
