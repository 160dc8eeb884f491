//! `crosswire-bench`: crosswire's benchmark. See `BENCHMARKS.md` for the scenarios and figures.
//!
//! ```text
//! crosswire-bench <scenario> [flags]   run a scenario against crosswire and the baseline
//! crosswire-bench serve --kind K ...   (internal) one server process under test
//! crosswire-bench generate ...         (internal) one load-generator process (`scale`)
//! ```
//!
//! The flags are in [`scenarios::Cli`] (`crosswire-bench --help`).

mod generators;
mod load;
mod report;
mod scenarios;
pub mod servers;

use clap::{CommandFactory, Parser};

use scenarios::Cli;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `serve` is the child side, started by the parent with its own flags (not for people).
    if args.get(1).map(String::as_str) == Some("serve") {
        if let Err(message) = servers::serve_main(&args[2..]) {
            eprintln!("crosswire-bench: {message}");
            std::process::exit(2);
        }
        return;
    }
    // `generate` is a generator process of the `scale` scenario, started by the parent.
    if args.get(1).map(String::as_str) == Some("generate") {
        if let Err(message) = generators::generate_main(&args[2..]) {
            eprintln!("crosswire-bench generate: {message}");
            std::process::exit(2);
        }
        return;
    }
    if args.len() < 2 {
        let _ = Cli::command().print_long_help();
        return;
    }
    let cli = Cli::parse();
    if let Err(message) = bench(&cli) {
        eprintln!("crosswire-bench: {message}");
        std::process::exit(2);
    }
}

/// The parent side: raises the file limit, then runs the scenario.
fn bench(cli: &Cli) -> Result<(), String> {
    let opts = match cli.options() {
        Ok(opts) => opts,
        Err(message) => Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit(),
    };
    match load::limits::raise_nofile() {
        Ok(limit) => eprintln!(
            "RLIMIT_NOFILE: soft {} hard {} (the servers inherit it)",
            limit.soft, limit.hard
        ),
        Err(error) => eprintln!("could not raise RLIMIT_NOFILE: {error}"),
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if cli.gen_threads > 0 {
        runtime.worker_threads(cli.gen_threads);
    }
    let runtime = runtime.build().map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(scenarios::run(&cli.scenario.name(), &opts))
}
