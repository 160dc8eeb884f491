//! `crosswire-bench`: crosswire's benchmark. See `BENCHMARKS.md` for the scenarios and figures.
//!
//! ```text
//! crosswire-bench <scenario> [flags]   run a scenario against crosswire and the baseline
//! crosswire-bench serve --kind K ...   (internal) one server process under test
//! ```

mod servers;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => servers::serve_main(&args[1..]),
        _ => Err("usage: crosswire-bench serve --kind crosswire|baseline".to_string()),
    };
    if let Err(message) = result {
        eprintln!("crosswire-bench: {message}");
        std::process::exit(2);
    }
}
