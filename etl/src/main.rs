//! `coinflow-etl`: the command line. It only parses arguments, sets up logging and maps
//! outcomes to exit codes (0 ok, 1 fatal, 2 partial, 3 database unreachable, 4 locked,
//! 5 a fetch kept some pages but failed others, 6 committed but the summary file could
//! not be written).

use clap::{Args, Parser, Subcommand, ValueEnum};
use coinflow_etl::fetch::cli::{FetchArgs, RequestedFrom};
use coinflow_etl::fetch::client::{Clock, SystemClock};
use coinflow_etl::fetch::watch::{Spec, WatchOptions};
use coinflow_etl::generate::{generate, GenerateOptions};
use coinflow_etl::values::DateOrder;
use coinflow_etl::{parse_duration, EtlError, RunOptions, RunReport};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "coinflow-etl",
    version,
    about = "Load crypto-market CSV exports into the coinflow warehouse"
)]
struct Cli {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// How long to wait for the database at start-up (bounded exponential backoff).
    #[arg(long, env = "ETL_DB_WAIT", default_value = "60s", value_parser = parse_duration, global = true)]
    db_wait: Duration,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Load every new or changed CSV file of the data directory (the default).
    Run(RunArgs),
    /// Parse and validate a directory without a database.
    Check {
        dir: PathBuf,
        #[arg(long, default_value_t = 0.05)]
        max_reject_ratio: f64,
        #[arg(long, value_enum)]
        date_order: Option<DateOrderArg>,
    },
    /// Re-run whenever the data directory's files change; with --fetch, fetch live
    /// sources, load and wait, in cycles.
    Watch {
        /// Wait between checks (default 60s); with --fetch, between cycles (default:
        /// derived from the sources' monthly call budgets).
        #[arg(long, value_parser = parse_duration)]
        interval: Option<Duration>,
        /// Fetch these each cycle: coingecko:markets, coingecko:tickers (the requested
        /// coins), coinmarketcap:listings, cryptocompare:toplist[:N].
        #[arg(long, num_args = 1.., value_parser = Spec::parse)]
        fetch: Vec<Spec>,
        /// coingecko:tickers: how old a requested coin's tickers may get.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        max_age: Duration,
        /// Stop after this many cycles (default: run until stopped).
        #[arg(long)]
        cycles: Option<u32>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Fetch a live source into <data dir>/fetched/SOURCE/ as canonical CSV files.
    Fetch {
        #[command(flatten)]
        fetch: FetchArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Write deterministic, realistic synthetic data in the canonical formats.
    Generate(GenerateOptions),
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Directory scanned recursively for *.csv files.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Exit 0 even when a file was set aside (the run stays `partial` in the ledger).
    #[arg(long)]
    partial_ok: bool,
    /// Exit 4 at once when another run holds the lock, instead of waiting.
    #[arg(long)]
    no_wait_lock: bool,
    /// Reload this file even if it is unchanged (repeatable).
    #[arg(long)]
    force: Vec<PathBuf>,
    /// Re-hash every file: do not trust an unchanged path, size, mtime and inode.
    #[arg(long)]
    verify: bool,
    /// Write the run summary as JSON to this file.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Share of a file's rows that may be rejected before the file is set aside.
    #[arg(long, env = "ETL_MAX_REJECT_RATIO", default_value_t = 0.05)]
    max_reject_ratio: f64,
    /// How old a ranking may be to rank a price snapshot.
    #[arg(long, env = "ETL_RANK_TOLERANCE", default_value = "60s", value_parser = parse_duration)]
    rank_tolerance: Duration,
    /// Force the order of slash dates instead of deciding it per column.
    #[arg(long, value_enum)]
    date_order: Option<DateOrderArg>,
}

#[derive(Clone, Copy, ValueEnum)]
enum DateOrderArg {
    Mdy,
    Dmy,
}

impl From<DateOrderArg> for DateOrder {
    fn from(d: DateOrderArg) -> Self {
        match d {
            DateOrderArg::Mdy => DateOrder::MonthFirst,
            DateOrderArg::Dmy => DateOrder::DayFirst,
        }
    }
}

fn run_options(
    cli_url: Option<&str>,
    db_wait: Duration,
    args: &RunArgs,
) -> Result<RunOptions, String> {
    let url = cli_url.ok_or("DATABASE_URL is not set (or pass --database-url)")?;
    if !(0.0..=1.0).contains(&args.max_reject_ratio) {
        return Err(format!(
            "--max-reject-ratio must be within 0..1, got {}",
            args.max_reject_ratio
        ));
    }
    let mut opts = RunOptions::new(url, &args.data_dir);
    opts.db_wait = db_wait;
    opts.no_wait_lock = args.no_wait_lock;
    opts.force = args.force.clone();
    opts.verify = args.verify;
    opts.max_reject_ratio = args.max_reject_ratio;
    opts.rank_tolerance = args.rank_tolerance;
    opts.date_order = args.date_order.map(Into::into);
    Ok(opts)
}

/// Exit code of a run that committed but whose `--summary` file could not be written.
const EXIT_SUMMARY_NOT_WRITTEN: u8 = 6;

fn finish(report: &RunReport, args: &RunArgs) -> ExitCode {
    print!("{}", report.render());
    if let Some(path) = &args.summary {
        let written = serde_json::to_vec_pretty(report)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json).map_err(|e| e.to_string()));
        if let Err(e) = written {
            // The data is committed: say so, and use a code of its own, not "fatal".
            let run = report
                .run_id
                .map_or_else(String::new, |id| format!(" {id}"));
            eprintln!(
                "coinflow-etl: run{run} committed with status {}, but the summary file {} could not be written: {e}",
                report.status,
                path.display()
            );
            return ExitCode::from(EXIT_SUMMARY_NOT_WRITTEN);
        }
    }
    if report.has_set_aside() && !args.partial_ok {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn fail(e: &EtlError) -> ExitCode {
    // One line naming the problem (for exit 3: host and port, never credentials).
    eprintln!("coinflow-etl: {e}");
    ExitCode::from(e.exit_code() as u8)
}

fn main() -> ExitCode {
    coinflow_shared::config::load_dotenv();
    let cli = Cli::parse();
    coinflow_shared::logging::init();
    let url = cli.database_url.as_deref();
    match cli.command {
        None => run_once(url, cli.db_wait, &cli.run),
        Some(Command::Run(args)) => run_once(url, cli.db_wait, &args),
        Some(Command::Check {
            dir,
            max_reject_ratio,
            date_order,
        }) => {
            let mut opts = RunOptions::new("", &dir);
            opts.max_reject_ratio = max_reject_ratio;
            opts.date_order = date_order.map(Into::into);
            match coinflow_etl::check(&dir, &opts) {
                Ok(report) => {
                    print!("{}", report.render());
                    if report.has_set_aside() {
                        ExitCode::from(2)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => fail(&e),
            }
        }
        Some(Command::Watch {
            interval,
            fetch,
            max_age,
            cycles,
            run,
        }) if !fetch.is_empty() => {
            let opts = WatchOptions {
                specs: fetch,
                interval,
                max_age,
                cycles,
                data_dir: &run.data_dir,
                database_url: url,
                db_wait: cli.db_wait,
            };
            let env = |k: &str| std::env::var(k).ok();
            let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
            let code = coinflow_etl::fetch::watch::watch(&opts, &env, clock, || {
                load_once(url, cli.db_wait, &run).map(|(_, report)| report)
            });
            ExitCode::from(code)
        }
        Some(Command::Watch { interval, run, .. }) => watch(
            url,
            cli.db_wait,
            &run,
            interval.unwrap_or(Duration::from_secs(60)),
        ),
        Some(Command::Fetch { fetch, run }) => fetch_once(url, cli.db_wait, &fetch, &run),
        Some(Command::Generate(opts)) => match generate(&opts) {
            Ok(counts) => {
                for (file, rows) in counts {
                    println!("{}: {rows} rows", opts.out.join(file).display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("coinflow-etl: cannot write to {}: {e}", opts.out.display());
                ExitCode::from(1)
            }
        },
    }
}

fn run_once(url: Option<&str>, db_wait: Duration, args: &RunArgs) -> ExitCode {
    match load_once(url, db_wait, args) {
        Ok((code, _)) => code,
        Err(code) => ExitCode::from(code),
    }
}

/// A run, printed and summarised: its exit code and report, or the code of a failure.
fn load_once(
    url: Option<&str>,
    db_wait: Duration,
    args: &RunArgs,
) -> Result<(ExitCode, RunReport), u8> {
    let opts = match run_options(url, db_wait, args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("coinflow-etl: {e}");
            return Err(1);
        }
    };
    match coinflow_etl::run(&opts) {
        Ok(report) => Ok((finish(&report, args), report)),
        Err(e) => {
            fail(&e);
            Err(e.exit_code() as u8)
        }
    }
}

/// `fetch SOURCE WHAT`: fetch, write the files, then (with --load) run the load and
/// archive the fetched files it loaded. A fetch that failed some pages exits 5 after
/// the load (what was fetched is kept and loaded); a failed load exits with its code.
fn fetch_once(url: Option<&str>, db_wait: Duration, args: &FetchArgs, run: &RunArgs) -> ExitCode {
    use coinflow_etl::fetch;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let from = RequestedFrom {
        database_url: url,
        db_wait,
        data_dir: &run.data_dir,
    };
    let fetched = fetch::cli::target(args, clock.now_utc(), &from).and_then(|target| {
        let mut client = fetch::cli::client_from_env(target.source(), clock.clone())?;
        let options = fetch::FetchOptions {
            per_page: args.per_page,
            restart: args.restart,
        };
        let progress = fetch::progress_bar();
        let report = fetch::fetch(&mut client, &run.data_dir, &target, &options, &progress);
        progress.finish_and_clear();
        report
    });
    let report = match fetched {
        Ok(report) => report,
        Err(e) => {
            eprintln!("coinflow-etl: {e}");
            return ExitCode::from(1);
        }
    };
    print!("{}", report.render());
    if args.load {
        match load_once(url, db_wait, run) {
            Ok((code, loaded)) => {
                if let Err(e) = fetch::output::archive_loaded(&run.data_dir, &loaded) {
                    eprintln!("coinflow-etl: could not archive loaded fetched files: {e}");
                }
                if code != ExitCode::SUCCESS {
                    return code;
                }
            }
            Err(code) => return ExitCode::from(code),
        }
    }
    if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "coinflow-etl: {} {}: {} page(s) failed; what was fetched is kept, re-run to resume",
            report.source,
            report.what,
            report.failures.len()
        );
        ExitCode::from(fetch::EXIT_INCOMPLETE)
    }
}

/// A cheap fingerprint of the directory: paths, sizes and modification times.
fn snapshot(dir: &std::path::Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    coinflow_etl::extract::discover(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (p, size, modified)
        })
        .collect()
}

fn watch(url: Option<&str>, db_wait: Duration, args: &RunArgs, interval: Duration) -> ExitCode {
    let mut last = None;
    loop {
        let current = snapshot(&args.data_dir);
        if last.as_ref() != Some(&current) {
            let code = run_once(url, db_wait, args);
            if code != ExitCode::SUCCESS && code != ExitCode::from(2) {
                return code;
            }
            last = Some(current);
        }
        std::thread::sleep(interval);
    }
}
