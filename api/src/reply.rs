//! Successful responses: a body (bytes, or a stream of byte pieces fed by a blocking
//! database task), a content type, extra headers, and conditional-request support
//! (`ETag`, `If-None-Match` → 304).

use crate::format::Format;
use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::stream::ReaderStream;
use rocket::response::{self, Responder, Response};
use rocket::tokio::sync::mpsc;
use sha2::{Digest, Sha256};
use std::io::Cursor;
use std::sync::Arc;

/// The largest piece Rocket hands to hyper at once.
const MAX_WRITE: usize = 1 << 20;

/// The largest piece of a streamed body: a chunk's body is handed to the response stream
/// in pieces of at most this size, and one that fits in one piece goes out with a
/// `Content-Length`.
pub(crate) const PIECE_BYTES: usize = 256 * 1024;

enum Body {
    Bytes(Vec<u8>),
    Shared(Arc<[u8]>),
    Stream(mpsc::Receiver<Vec<u8>>),
    Empty,
}

/// A successful response.
pub(crate) struct Reply {
    status: Status,
    content_type: Option<ContentType>,
    body: Body,
    headers: Vec<Header<'static>>,
}

impl Reply {
    pub(crate) fn bytes(content_type: ContentType, bytes: Vec<u8>) -> Reply {
        Reply {
            status: Status::Ok,
            content_type: Some(content_type),
            body: Body::Bytes(bytes),
            headers: Vec::new(),
        }
    }

    pub(crate) fn formatted(format: Format, bytes: Vec<u8>) -> Reply {
        Reply::bytes(format.content_type(), bytes)
    }

    /// A body shared with a cache.
    pub(crate) fn shared(format: Format, bytes: Arc<[u8]>) -> Reply {
        Reply {
            status: Status::Ok,
            content_type: Some(format.content_type()),
            body: Body::Shared(bytes),
            headers: Vec::new(),
        }
    }

    /// A body streamed from pieces sent on `rx`; the response ends when the sender drops.
    pub(crate) fn stream(content_type: ContentType, rx: mpsc::Receiver<Vec<u8>>) -> Reply {
        Reply {
            status: Status::Ok,
            content_type: Some(content_type),
            body: Body::Stream(rx),
            headers: Vec::new(),
        }
    }

    pub(crate) fn not_modified(etag: &str) -> Reply {
        Reply {
            status: Status::NotModified,
            content_type: None,
            body: Body::Empty,
            headers: vec![Header::new("ETag", etag.to_string())],
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push(Header::new(name, value.into()));
        self
    }

    pub(crate) fn etag(self, etag: &str) -> Reply {
        self.header("ETag", etag.to_string())
    }
}

impl<'r> Responder<'r, 'static> for Reply {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut response = Response::build();
        response.status(self.status);
        if let Some(ct) = self.content_type {
            response.header(ct);
        }
        for header in self.headers {
            response.header_adjoin(header);
        }
        // Rocket hands a body to hyper in chunks of `max_chunk_size` (4 KiB by default),
        // each through a channel with a task wake-up: a 250 KiB chunk of rows would go
        // out as 60 hand-offs. A body already in memory goes out in one (set after the
        // body: setting a body resets it).
        match self.body {
            Body::Bytes(bytes) => {
                let chunk = bytes.len().clamp(4096, MAX_WRITE);
                response.sized_body(bytes.len(), Cursor::new(bytes));
                response.max_chunk_size(chunk);
            }
            Body::Shared(bytes) => {
                let chunk = bytes.len().clamp(4096, MAX_WRITE);
                response.sized_body(bytes.len(), Cursor::new(bytes));
                response.max_chunk_size(chunk);
            }
            Body::Stream(rx) => {
                let pieces = rocket::futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|piece| (Cursor::new(piece), rx))
                });
                response.streamed_body(ReaderStream::from(pieces));
                response.max_chunk_size(PIECE_BYTES);
            }
            Body::Empty => {}
        }
        Ok(response.finalize())
    }
}

/// A strong entity tag from the parts that determine a response's bytes.
pub(crate) fn etag(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether an `If-None-Match` header value matches `etag` (weak comparison, `*` matches).
pub(crate) fn none_match(header: Option<&str>, etag: &str) -> bool {
    let Some(header) = header else { return false };
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    header
        .split(',')
        .any(|candidate| candidate.trim() == "*" || bare(candidate) == bare(etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_lists() {
        let tag = etag(&["market", "3", "/read/market"]);
        assert!(none_match(Some(&tag), &tag));
        assert!(none_match(Some(&format!("\"x\", W/{tag}")), &tag));
        assert!(none_match(Some("*"), &tag));
        assert!(!none_match(Some("\"other\""), &tag));
        assert!(!none_match(None, &tag));
        assert_ne!(tag, etag(&["market", "4", "/read/market"]));
    }
}
