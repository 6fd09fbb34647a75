use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = segrelay::cli::Cli::parse();
    match segrelay::run(cli) {
        Ok(status) => ExitCode::from(status as u8),
        Err(error) if segrelay::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("segrelay: {error:#}");
            ExitCode::from(segrelay::exit_code(&error))
        }
    }
}
