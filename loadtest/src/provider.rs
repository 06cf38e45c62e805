//! The harness's notification provider: an HTTP server on `127.0.0.1:0` that
//! the daemon's dispatcher can be pointed at (any path, `POST`, a JSON body).
//! It records each notification's contract id and arrival time, for the
//! correctness check and end-to-end latency.
//!
//! Accepted bodies: an envelope (`{"notification": {"id": ...}, ...}`), a
//! rendered notification or a push request (`{"id": ...}`), an Aliyun SMS
//! request (`{"OutId": ...}`), a WeCom robot message (the id in its markdown
//! as `<!-- id -->`), an array of them, or NDJSON of them. Anything else is
//! answered 400 and counted as unreadable. The body's text (names, phones,
//! tokens) is never kept nor printed: only the ids.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Router;

use crate::apply::parse_id;

/// What arrived.
#[derive(Debug, Default)]
pub struct Arrivals {
    /// `(id, arrival)`, in arrival order.
    pub got: Vec<(u128, Instant)>,
    /// Bodies that named no notification id.
    pub unreadable: u64,
}

fn ids_in(v: &serde_json::Value, out: &mut Vec<u128>) -> bool {
    match v {
        serde_json::Value::Array(a) => a.iter().all(|x| ids_in(x, out)),
        serde_json::Value::Object(o) => {
            let id = o
                .get("notification")
                .and_then(|n| n.get("id"))
                .or_else(|| o.get("id"))
                .or_else(|| o.get("OutId"))
                .and_then(|i| i.as_str())
                .and_then(parse_id)
                .or_else(|| {
                    o.get("markdown")
                        .and_then(|m| m.get("content"))
                        .and_then(|c| c.as_str())
                        .and_then(markdown_id)
                });
            match id {
                Some(id) => {
                    out.push(id);
                    true
                }
                None => false,
            }
        }
        _ => false,
    }
}

/// The id a WeCom robot message carries at the end of its markdown:
/// `<!-- id -->`.
fn markdown_id(content: &str) -> Option<u128> {
    let rest = &content[content.rfind("<!--")? + 4..];
    parse_id(rest.split("-->").next()?.trim())
}

/// The ids named by a body (JSON or NDJSON); `None` if it names none.
pub fn parse_body(body: &[u8]) -> Option<Vec<u128>> {
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return ids_in(&v, &mut out).then_some(out);
    }
    for line in body.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        if !ids_in(&v, &mut out) {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

async fn receive(State(s): State<Arc<Mutex<Arrivals>>>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let parsed = parse_body(&body);
    let mut a = s.lock().unwrap_or_else(|e| e.into_inner());
    match parsed {
        Some(ids) => {
            a.got.extend(ids.into_iter().map(|id| (id, now)));
            StatusCode::OK
        }
        None => {
            a.unreadable += 1;
            StatusCode::BAD_REQUEST
        }
    }
}

/// A running provider server.
#[derive(Debug)]
pub struct Provider {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What arrived so far.
    pub arrivals: Arc<Mutex<Arrivals>>,
    task: tokio::task::JoinHandle<()>,
}

impl Provider {
    /// Starts the server on `listen` (e.g. `127.0.0.1:0`).
    pub async fn start(listen: &str) -> Result<Provider> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("provider server cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let arrivals = Arc::new(Mutex::new(Arrivals::default()));
        let app = Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(arrivals.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Provider {
            addr,
            arrivals,
            task,
        })
    }

    /// Notifications received so far.
    pub fn count(&self) -> usize {
        self.arrivals.lock().map_or(0, |a| a.got.len())
    }

    /// Stops the server and returns what arrived.
    pub fn stop(self) -> Arrivals {
        self.task.abort();
        let mut a = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_name_ids() {
        let id = format!("{:032x}", 7u128);
        let env = format!("{{\"notification\":{{\"id\":\"{id}\"}}}}");
        assert_eq!(parse_body(env.as_bytes()), Some(vec![7]));
        let nd = format!("{{\"id\":\"{id}\"}}\n{{\"id\":\"{id}\"}}\n");
        assert_eq!(parse_body(nd.as_bytes()), Some(vec![7, 7]));
        assert_eq!(parse_body(b"{\"x\":1}"), None);
        let push = format!("{{\"token\":\"t\",\"title\":\"x\",\"body\":\"y\",\"id\":\"{id}\"}}");
        assert_eq!(parse_body(push.as_bytes()), Some(vec![7]));
        let sms = format!("{{\"PhoneNumbers\":\"1\",\"OutId\":\"{id}\"}}");
        assert_eq!(parse_body(sms.as_bytes()), Some(vec![7]));
        let robot = format!(
            "{{\"msgtype\":\"markdown\",\"markdown\":{{\"content\":\"**t**\\nbody\\n<!-- {id} -->\"}}}}"
        );
        assert_eq!(parse_body(robot.as_bytes()), Some(vec![7]));
        assert_eq!(
            parse_body(b"{\"msgtype\":\"markdown\",\"markdown\":{\"content\":\"no id\"}}"),
            None
        );
    }
}
