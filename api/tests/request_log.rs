//! One log line per request, through whatever logger the process installed (log4rs in the
//! binary): method, path, status and duration.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Mutex;

static LINES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LINES
            .lock()
            .unwrap()
            .push((record.target().to_string(), record.args().to_string()));
    }
    fn flush(&self) {}
}

#[test]
fn each_request_logs_one_line_with_method_path_status_and_duration() {
    // Installed before Rocket is built, as main.rs does with log4rs.
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let app = common::App::new();
    LINES.lock().unwrap().clear();

    app.get("/health/live");
    app.get("/read/first-chunk?size=2");
    app.get("/nowhere");

    let lines: Vec<String> = LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|(target, _)| target == "coinflow_api::request")
        .map(|(_, line)| line.clone())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let shape = |line: &str, method: &str, path: &str, status: &str| {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 4, "{line}");
        assert_eq!(
            (parts[0], parts[1], parts[2]),
            (method, path, status),
            "{line}"
        );
        assert!(
            parts[3].ends_with("ms") && parts[3].trim_end_matches("ms").parse::<f64>().is_ok(),
            "{line}"
        );
    };
    shape(&lines[0], "GET", "/health/live", "200");
    shape(&lines[1], "GET", "/read/first-chunk?size=2", "200");
    shape(&lines[2], "GET", "/nowhere", "404");
}
