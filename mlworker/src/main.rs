use clap::Parser;
use kiln_mlworker::cli::{run, Cli};

fn main() {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    if cli.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .with_writer(std::io::stderr)
            .init();
    } else {
        // Log lines scroll above `run`'s live status line (drawn only on a
        // terminal; elsewhere this writer is plain stderr).
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(kiln_mlworker::progress::StatusLineWriter)
            .init();
    }
    if let Err(e) = run(cli) {
        kiln_mlworker::progress::StatusLine::global().finish(&mut std::io::stderr());
        // One line with the whole context chain, no backtrace dump.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
