//! The binary: parse the command line, set up logging, start the runtime,
//! hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use pgpool_rs::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if cli.check {
        let (ok, text) = pgpool_rs::config::check_report(&cli.config);
        if ok {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        eprintln!("{text}");
        return ExitCode::from(1);
    }
    // One thread by default, like PgBouncer: measured on 2 cores, a single
    // event loop spends less CPU per transaction than work-stealing across
    // threads (fewer wake-ups and context switches). PGPOOL_WORKERS=N (N > 1)
    // runs the multi-threaded runtime instead.
    let workers = std::env::var("PGPOOL_WORKERS")
        .ok()
        .and_then(|w| w.parse::<usize>().ok())
        .unwrap_or(1);
    // One thread runs every session: per-transaction counters need no locked adds.
    pgpool_rs::observe::stats::set_one_writer(workers <= 1);
    let built = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if workers > 1 {
            b.worker_threads(workers);
        }
        b.enable_all().build()
    };
    let runtime = match built {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgpool-rs: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        None => runtime
            .block_on(pgpool_rs::app::run(&cli.config))
            .map_err(|e| e.to_string()),
        Some(Command::Demo(opts)) => runtime
            .block_on(pgpool_rs::demo::run(opts))
            .map_err(|e| e.to_string()),
        Some(Command::Health(opts)) => runtime
            .block_on(pgpool_rs::health_check::run(&opts, &cli.config))
            .map(|line| println!("{line}")),
        Some(Command::Convert { file }) => convert(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgpool-rs: {e}");
            ExitCode::from(1)
        }
    }
}

/// `convert`: the pool.toml on stdout, a one-line summary on stderr.
fn convert(file: &std::path::Path) -> Result<(), String> {
    let done = pgpool_rs::convert::convert_file(file).map_err(|e| e.to_string())?;
    print!("{}", done.toml);
    eprintln!(
        "pgpool-rs: converted {}: {} setting(s) not carried over, {} database entr{} \
         commented out (see the comments in the output)",
        file.display(),
        done.not_carried,
        done.disabled_databases,
        if done.disabled_databases == 1 {
            "y"
        } else {
            "ies"
        },
    );
    Ok(())
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("PGPOOL_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
