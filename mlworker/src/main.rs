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
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    if let Err(e) = run(cli) {
        // One line with the whole context chain, no backtrace dump.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
