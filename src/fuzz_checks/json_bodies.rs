//! The API's JSON request bodies (the per-route body types of `api/*.rs`, through
//! `namespaces::parse_body` as every handler does) on arbitrary bytes. The first byte picks the
//! body type, the rest is the body. Never panics; a refused body is a 400; an accepted body is
//! JSON whose canonical and pretty re-encodings are accepted too and decode to the same value
//! (so what a client library re-serialises means the same).

use crate::api::namespaces::parse_body;
use crate::api::{kv, namespaces, queue, stream, ts};

/// Decodes `$data` as `$t` and checks the answer; see the module doc.
macro_rules! body {
    ($t:ty, $data:expr) => {{
        let data: &[u8] = $data;
        match parse_body::<$t>(data) {
            Err(e) => {
                assert_eq!(e.status(), 400, "{e:?}");
                assert!(!e.message().is_empty());
            }
            Ok(v) => {
                let json: serde_json::Value = serde_json::from_slice(data).expect("an accepted body is JSON");
                for again in [
                    serde_json::to_vec(&json).expect("JSON re-encodes"),
                    serde_json::to_vec_pretty(&json).expect("JSON re-encodes"),
                ] {
                    match parse_body::<$t>(&again) {
                        Ok(back) => assert_eq!(
                            format!("{back:?}"),
                            format!("{v:?}"),
                            "{}",
                            String::from_utf8_lossy(&again)
                        ),
                        Err(e) => panic!(
                            "{:?} accepted, its re-encoding {:?} refused: {e:?}",
                            String::from_utf8_lossy(data),
                            String::from_utf8_lossy(&again)
                        ),
                    }
                }
            }
        }
    }};
}

/// Checks one input; panics on a violation.
pub fn check(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 16 {
        0 => body!(kv::PutBody, body),
        1 => body!(namespaces::CreateBody, body),
        2 => body!(queue::MessageBody, body),
        3 => body!(queue::BatchBody, body),
        4 => body!(queue::DequeueBody, body),
        5 => body!(queue::SeqsBody, body),
        6 => body!(queue::Empty, body),
        7 => body!(stream::AppendRequest<'_>, body),
        8 => body!(stream::TrimBody, body),
        9 => body!(stream::RetentionBody, body),
        10 => body!(stream::GroupBody, body),
        11 => body!(stream::GroupReadBody, body),
        12 => body!(stream::AckBody, body),
        13 => body!(ts::QueryBody, body),
        14 => body!(ts::RetentionBody, body),
        _ => body!(serde_json::Value, body),
    }
}
