//! The `boxoffice` binary: parse the command line, read the configuration, run.

use clap::Parser;

use boxoffice::cli::{self, Cli};
use boxoffice::config::Settings;
use boxoffice::telemetry;

/// mimalloc instead of the system allocator: request handling allocates many small
/// short-lived objects, which glibc's malloc serves noticeably slower under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    telemetry::init_logging(&settings.log_format);
    if let Err(e) = cli::run(cli, settings).await {
        // One line an operator can act on, not a backtrace.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
