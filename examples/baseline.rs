//! The throughput baseline for `benches/run.sh`: parse each NDJSON line into a
//! `serde_json::Value` and write it back, one line each, to a file. Anything
//! that translates events has at least this much to do.
//!
//! ```sh
//! cargo run --release --example baseline -- INPUT.ndjson OUTPUT.ndjson
//! ```
//!
//! Prints `lines=N bytes=B invalid=I` on standard error. Blank lines are
//! skipped; a line that is not JSON is counted and skipped.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::ExitCode;

fn run(input: &str, output: &str) -> std::io::Result<(u64, u64, u64)> {
    let mut reader = BufReader::with_capacity(256 * 1024, File::open(input)?);
    let mut writer = BufWriter::with_capacity(256 * 1024, File::create(output)?);
    let mut line = Vec::with_capacity(64 * 1024);
    let (mut lines, mut bytes, mut invalid) = (0u64, 0u64, 0u64);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<serde_json::Value>(text) {
            Ok(value) => {
                serde_json::to_writer(&mut writer, &value)?;
                writer.write_all(b"\n")?;
                lines += 1;
            }
            Err(_) => invalid += 1,
        }
    }
    writer.flush()?;
    Ok((lines, bytes, invalid))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: baseline INPUT OUTPUT");
        return ExitCode::from(2);
    };
    match run(input, output) {
        Ok((lines, bytes, invalid)) => {
            eprintln!("lines={lines} bytes={bytes} invalid={invalid}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("baseline: {e}");
            ExitCode::FAILURE
        }
    }
}
