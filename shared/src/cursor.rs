//! The cursor codec of chunked reads. A cursor is an opaque, URL-safe token that carries
//! everything needed to continue a keyset scan: the dataset, its filters, the sort key of
//! the last row served, the chunk size and the dataset's data version at the time.
//!
//! Format: `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`, both without
//! padding; the payload is compact JSON. The MAC makes a cursor tamper-evident: a client
//! can read it (it is not secret) but any change to it is rejected. Decoding never panics,
//! whatever the input.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// Cursors longer than this are refused before any decoding work.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The payload format; bumped if the payload layout ever changes.
const FORMAT: u8 = 1;

/// A decoded cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The served dataset name (`market`, `daily`, …, or `task_results`).
    #[serde(rename = "d")]
    pub dataset: String,
    /// The dataset's data version when the scan started.
    #[serde(rename = "v")]
    pub version: i64,
    /// The chunk size.
    #[serde(rename = "s")]
    pub size: u32,
    /// The filters of the scan, by query-parameter name (normalised values).
    #[serde(rename = "f", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filters: BTreeMap<String, String>,
    /// The sort key of the last row served, one text value per key column.
    #[serde(rename = "k")]
    pub after: Vec<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CursorError {
    #[error("the cursor is not a valid cursor token")]
    Malformed,
    #[error("the cursor failed its integrity check (it was altered or made by another server)")]
    Forged,
    #[error("the cursor is longer than {MAX_TOKEN_LEN} characters")]
    TooLong,
    #[error("the cursor was made by an incompatible version of the server")]
    Incompatible,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    #[serde(rename = "x")]
    format: u8,
    #[serde(flatten)]
    cursor: Cursor,
}

/// Signs and verifies cursors with one secret key.
#[derive(Clone)]
pub struct CursorCodec {
    keyed: HmacSha256,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("CursorCodec").finish_non_exhaustive()
    }
}

impl CursorCodec {
    /// A codec keyed with `key` (any length; HMAC hashes long keys).
    #[allow(clippy::expect_used)]
    pub fn new(key: &[u8]) -> CursorCodec {
        CursorCodec {
            keyed: HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length"),
        }
    }

    fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }

    /// The token for `cursor`.
    pub fn encode(&self, cursor: &Cursor) -> String {
        let envelope = Envelope {
            format: FORMAT,
            cursor: cursor.clone(),
        };
        // Serialising plain strings and integers to JSON cannot fail.
        let payload = serde_json::to_vec(&envelope).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The cursor in `token`, if it is well-formed and carries a valid MAC.
    pub fn decode(&self, token: &str) -> Result<Cursor, CursorError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(CursorError::TooLong);
        }
        let (payload_b64, tag_b64) = token.split_once('.').ok_or(CursorError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| CursorError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| CursorError::Malformed)?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| CursorError::Forged)?;
        let envelope: Envelope =
            serde_json::from_slice(&payload).map_err(|_| CursorError::Malformed)?;
        if envelope.format != FORMAT {
            return Err(CursorError::Incompatible);
        }
        Ok(envelope.cursor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sample() -> Cursor {
        Cursor {
            dataset: "market".into(),
            version: 3,
            size: 100,
            filters: BTreeMap::from([("coin".to_string(), "bitcoin".to_string())]),
            after: vec!["bitcoin".into(), "2024-01-01T00:00:00.000000Z".into()],
        }
    }

    #[test]
    fn a_cursor_survives_a_round_trip() {
        let codec = CursorCodec::new(b"secret");
        let token = codec.encode(&sample());
        assert_eq!(codec.decode(&token), Ok(sample()));
    }

    #[test]
    fn tokens_are_url_safe() {
        let token = CursorCodec::new(b"k").encode(&sample());
        assert!(token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'));
    }

    #[test]
    fn a_changed_payload_is_forged() {
        let codec = CursorCodec::new(b"secret");
        let token = codec.encode(&sample());
        let (payload, tag) = token.split_once('.').unwrap();
        let mut json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        json["s"] = serde_json::json!(10_000);
        let altered = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap()),
            tag
        );
        assert_eq!(codec.decode(&altered), Err(CursorError::Forged));
    }

    #[test]
    fn another_key_rejects_the_token() {
        let token = CursorCodec::new(b"one").encode(&sample());
        assert_eq!(
            CursorCodec::new(b"two").decode(&token),
            Err(CursorError::Forged)
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let codec = CursorCodec::new(b"k");
        for garbage in ["", ".", "abc", "a.b.c", "%%%.%%%", "eyJ4IjoxfQ.", "🦀.🦀"] {
            assert!(codec.decode(garbage).is_err(), "{garbage:?} decoded");
        }
        assert_eq!(
            codec.decode(&"a".repeat(MAX_TOKEN_LEN + 1)),
            Err(CursorError::TooLong)
        );
    }
}
