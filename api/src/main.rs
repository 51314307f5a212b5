//! `coinflow-api`: reads its settings from the environment and serves the API.

use std::process::ExitCode;

#[rocket::main]
async fn main() -> ExitCode {
    coinflow_shared::config::load_dotenv();
    // Before Rocket is built, so that Rocket does not install its own logger.
    coinflow_shared::logging::init();
    let config = match coinflow_api::ApiConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("coinflow-api: {e}");
            return ExitCode::FAILURE;
        }
    };
    log::info!("starting with {config:?}");
    if let Err(e) = coinflow_api::check_database_at_start(&config.database_url) {
        log::error!("{e}");
        eprintln!("coinflow-api: {e}");
        return ExitCode::FAILURE;
    }
    match coinflow_api::rocket(config).launch().await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coinflow-api: {e}");
            ExitCode::FAILURE
        }
    }
}
