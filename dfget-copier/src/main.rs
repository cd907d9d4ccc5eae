//! dfget-copier: the tools image's entrypoint. Copies the tools listed in the image's
//! `SHA256SUMS` into the shared volume, verified, so an application container never sees a
//! half-written or corrupted dfget.

use dfget_copier::{copy_tools, Options};
use std::process::ExitCode;

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("dfget-copier: {message}");
            return ExitCode::from(2);
        }
    };
    match copy_tools(&options, &mut std::io::stdout().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", error.to_json_line());
            ExitCode::FAILURE
        }
    }
}
