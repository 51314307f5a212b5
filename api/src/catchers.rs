//! JSON catchers: whatever Rocket itself refuses becomes `application/problem+json` too.
//! A 404 whose path exists under another method becomes 405 with `Allow`; Rocket's 422
//! (a path or query value its guards could not parse) becomes a 400.

use crate::error::{ApiError, Problem};
use rocket::http::{Method, Status};
use rocket::{Catcher, Request};

pub(crate) fn all() -> Vec<Catcher> {
    rocket::catchers![not_found, unparsable_value, default]
}

/// Whether a route path pattern (`/read/<dataset>`, `/docs/<tail..>`) matches `path`.
fn pattern_matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/').filter(|s| !s.is_empty());
    let mut got = path.split('/').filter(|s| !s.is_empty());
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), _) if w.starts_with('<') && w.ends_with("..>") => return true,
            (Some(w), Some(g)) => {
                let dynamic = w.starts_with('<') && w.ends_with('>');
                if !dynamic && w != g {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The methods that have a route for this request's path.
fn allowed_methods(req: &Request<'_>) -> Vec<Method> {
    let path = req.uri().path().as_str();
    let mut methods: Vec<Method> = req
        .rocket()
        .routes()
        .filter(|r| pattern_matches(r.uri.path(), path))
        .map(|r| r.method)
        .collect();
    if methods.contains(&Method::Get) {
        methods.push(Method::Head);
    }
    methods.sort_by_key(|m| m.as_str());
    methods.dedup();
    methods
}

#[rocket::catch(404)]
fn not_found(req: &Request<'_>) -> ApiError {
    let allowed = allowed_methods(req);
    if !allowed.is_empty() && !allowed.contains(&req.method()) {
        let names: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
        return ApiError::MethodNotAllowed {
            detail: format!(
                "{} is not allowed on {}; use {}",
                req.method(),
                req.uri().path(),
                names.join(", ")
            ),
            allowed,
        };
    }
    ApiError::NotFound(format!("there is no resource at {}", req.uri().path()))
}

#[rocket::catch(422)]
fn unparsable_value(req: &Request<'_>) -> ApiError {
    ApiError::bad_request(format!(
        "a value in {} could not be parsed",
        req.uri().path()
    ))
}

#[rocket::catch(default)]
fn default(status: Status, req: &Request<'_>) -> Problem {
    let detail = match status.code {
        400 => "the request is malformed".to_string(),
        413 => "the request body is too large".to_string(),
        500 => {
            log::error!(
                "{} {}: internal error without a response",
                req.method(),
                req.uri()
            );
            "an internal error occurred; it has been logged".to_string()
        }
        503 => "the service is unavailable; retry later".to_string(),
        _ => status.reason_lossy().to_string(),
    };
    Problem::for_status(status, detail)
}

#[cfg(test)]
mod tests {
    use super::pattern_matches;

    #[test]
    fn route_patterns_match_paths() {
        assert!(pattern_matches("/read/<dataset>", "/read/market"));
        assert!(!pattern_matches("/read/<dataset>", "/read/market/x"));
        assert!(pattern_matches("/docs/<_..>", "/docs"));
        assert!(pattern_matches("/docs/<_..>", "/docs/a/b"));
        assert!(pattern_matches("/", "/"));
        assert!(!pattern_matches("/top", "/"));
    }
}
