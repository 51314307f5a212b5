//! Fairings: one log line per request (method, path, status, duration), and a last guard
//! that turns any error response which is not already a problem document (Rocket's own,
//! or a mounted handler's plain text) into one.

use crate::error::{problem_json, problem_response, Problem};
use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Status;
use rocket::{Data, Request, Response};
use std::time::Instant;

/// Logs `METHOD /path?query STATUS 1.2ms` once per request. For streamed bodies the time
/// is to the response head.
pub(crate) struct RequestLog;

struct Started(Instant);

#[rocket::async_trait]
impl Fairing for RequestLog {
    fn info(&self) -> Info {
        Info {
            name: "request log",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        req.local_cache(|| Started(Instant::now()));
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let started = req.local_cache(|| Started(Instant::now()));
        let ms = started.0.elapsed().as_secs_f64() * 1000.0;
        log::info!(
            target: "coinflow_api::request",
            "{} {} {} {ms:.1}ms",
            req.method(),
            req.uri(),
            res.status().code
        );
    }
}

/// Replaces the body of a non-problem error response with a problem document.
pub(crate) struct ProblemGuard;

#[rocket::async_trait]
impl Fairing for ProblemGuard {
    fn info(&self) -> Info {
        Info {
            name: "problem+json for every error",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, _: &'r Request<'_>, res: &mut Response<'r>) {
        let status = res.status();
        if status.code < 400 || res.content_type().is_some_and(|ct| ct == problem_json()) {
            return;
        }
        let detail = match status {
            Status::NotFound => "there is no such resource".to_string(),
            s => s.reason_lossy().to_string(),
        };
        let fresh = problem_response(&Problem::for_status(status, detail), &[]);
        res.merge(fresh);
    }
}
