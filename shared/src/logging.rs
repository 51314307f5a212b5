//! log4rs set-up. The configuration is the committed YAML file (`config/log4rs.yaml`:
//! console + rolling file), found through `LOG_CONFIG` or under the working directory;
//! `LOG_LEVEL` overrides its root level. Without the file, a console-only configuration
//! with the same pattern is used, so a binary never starts without logs.

use log::LevelFilter;
use log4rs::append::console::{ConsoleAppender, Target};
use log4rs::config::{Appender, Config, Root};
use log4rs::encode::pattern::PatternEncoder;
use std::path::PathBuf;

const PATTERN: &str = "{d(%Y-%m-%dT%H:%M:%S%.3fZ)(utc)} {l:<5} {t} - {m}{n}";

/// Initialises logging; later calls (several tests in one process) keep the first logger.
pub fn init() {
    let level = crate::config::optional("LOG_LEVEL").and_then(|l| l.parse::<LevelFilter>().ok());
    let from_file = config_path()
        .and_then(|path| log4rs::config::load_config_file(path, Default::default()).ok());
    let config = match from_file {
        Some(mut config) => {
            if let Some(level) = level {
                config.root_mut().set_level(level);
            }
            config
        }
        None => match console_only(level.unwrap_or(LevelFilter::Info)) {
            Some(config) => config,
            None => return,
        },
    };
    // Err means a logger is already installed: keep it.
    let _ = log4rs::init_config(config);
}

fn config_path() -> Option<PathBuf> {
    if let Some(p) = crate::config::optional("LOG_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("config/log4rs.yaml");
    local.exists().then_some(local)
}

fn console_only(level: LevelFilter) -> Option<Config> {
    let console = ConsoleAppender::builder()
        .target(Target::Stderr)
        .encoder(Box::new(PatternEncoder::new(PATTERN)))
        .build();
    let root = Root::builder().appender("console").build(level);
    Config::builder()
        .appender(Appender::builder().build("console", Box::new(console)))
        .build(root)
        .ok()
}
