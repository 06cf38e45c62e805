//! What the HTTP channels share: the client, the POST with an idempotency key,
//! and the classification of HTTP answers and transport failures.
//!
//! The client is hyper's pooled client with rustls, used directly: a
//! notification costs one request on a kept-alive connection and nothing
//! else (no redirects to follow, no URL parsed again per request, the body
//! serialized straight into the request), which matters at tens of thousands
//! of notifications a second on the cores the broker needs too
//! (docs/performance.md, "Fewer layers per notification").
//!
//! Errors never carry the URL (a robot webhook URL is a credential) nor the
//! body: only the channel, the status or the kind of transport failure.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{ChannelKind, Scope, SendError};

/// The largest answer read from a provider; a longer one is unreadable.
const MAX_ANSWER: usize = 1 << 20;

/// A channel's HTTP client: pooled keep-alive connections, `http://` and
/// `https://`, and the channel's timeout on each whole request.
#[derive(Clone)]
pub(crate) struct Client {
    inner: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// Builds a client with the channel's timeout (connect and whole request).
/// `https://` URLs use rustls with the *ring* provider and the platform's
/// root certificates.
pub(crate) fn client(channel: ChannelKind, timeout: Duration) -> Result<Client, super::BuildError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
        .map_err(|e| super::BuildError {
            channel,
            reason: format!("cannot set up TLS for the http client: {e}"),
        })?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build(https);
    Ok(Client { inner, timeout })
}

/// Parses an absolute `http://` or `https://` URL. The reason never quotes
/// the URL (a webhook URL can be a credential).
pub(crate) fn parse_uri(url: &str) -> Result<Uri, String> {
    let uri = Uri::try_from(url).map_err(|e| e.to_string())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("the scheme must be http or https".into()),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(uri),
        _ => Err("no host".into()),
    }
}

/// The channel's `url`, parsed once when the channel is built (not on every
/// request). The reason never quotes the URL.
pub(crate) fn parse_url(channel: ChannelKind, url: Option<&str>) -> Result<Uri, super::BuildError> {
    let url = url.ok_or_else(|| super::BuildError {
        channel,
        reason: "`url` is required".into(),
    })?;
    parse_uri(url).map_err(|e| super::BuildError {
        channel,
        reason: format!("`url` is not a valid URL ({e})"),
    })
}

/// A provider's answer.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a request failed, before the answer was read.
enum Failure {
    Timeout,
    Connect,
    Request,
    Answer,
}

/// POSTs `body` as JSON with the `Idempotency-Key` header.
pub(crate) async fn post_json<T: serde::Serialize + ?Sized>(
    client: &Client,
    channel: ChannelKind,
    uri: Uri,
    id: &str,
    body: &T,
) -> Result<Answer, SendError> {
    let body = serde_json::to_vec(body)
        .map_err(|_| SendError::final_(channel, "the request body cannot be encoded"))?;
    let key = HeaderValue::from_str(id)
        .map_err(|_| SendError::final_(channel, "the notification id is not a header value"))?;
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| SendError::final_(channel, "the request cannot be built"))?;
    let exchange = async {
        let resp = client.inner.request(req).await.map_err(|e| {
            if e.is_connect() {
                Failure::Connect
            } else {
                Failure::Request
            }
        })?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| Failure::Answer)?
            .to_bytes();
        Ok::<_, Failure>(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    match tokio::time::timeout(client.timeout, exchange).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(f)) => Err(transport(channel, f)),
        Err(_) => Err(transport(channel, Failure::Timeout)),
    }
}

fn transport(channel: ChannelKind, f: Failure) -> SendError {
    let reason = match f {
        Failure::Timeout => "timeout",
        Failure::Connect => "connection failed",
        Failure::Answer => "answer unreadable",
        Failure::Request => "request failed",
    };
    SendError::retriable(channel, reason)
}

/// The `Retry-After` header in seconds (the HTTP-date form is read too).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let now = chrono::Utc::now();
    let d = at.signed_duration_since(now).to_std().ok()?;
    Some(d)
}

/// Classifies the HTTP status: `Ok(())` for 2xx; 429 pauses the channel;
/// 408 and 5xx are retriable; any other status is final.
pub(crate) fn classify_status(channel: ChannelKind, a: &Answer) -> Result<(), SendError> {
    let s = a.status;
    if s.is_success() {
        return Ok(());
    }
    if s == StatusCode::TOO_MANY_REQUESTS {
        return Err(SendError::Retriable {
            channel,
            reason: "http 429".into(),
            retry_after: retry_after(&a.headers),
            scope: Scope::Channel,
        });
    }
    if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT {
        return Err(SendError::Retriable {
            channel,
            reason: format!("http {}", s.as_u16()),
            retry_after: retry_after(&a.headers),
            scope: Scope::Message,
        });
    }
    Err(SendError::final_(channel, format!("http {}", s.as_u16())))
}

/// Keeps a provider's short code printable and bounded (it goes into dead
/// letters and logs).
pub(crate) fn short(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_url_is_parsed_once_and_a_bad_one_is_refused_without_quoting_it() {
        let u = parse_url(ChannelKind::Push, Some("http://127.0.0.1:9/push?x=1")).unwrap();
        assert_eq!(u.path(), "/push");
        let e = parse_url(ChannelKind::Push, Some("http://secret-token host/")).unwrap_err();
        assert!(
            e.reason.starts_with("`url` is not a valid URL"),
            "{}",
            e.reason
        );
        assert!(!e.reason.contains("secret"), "{}", e.reason);
        let e = parse_url(ChannelKind::Sms, None).unwrap_err();
        assert_eq!(e.reason, "`url` is required");
    }

    /// `https://` goes through rustls: a plain-TCP peer that is not TLS makes
    /// the handshake fail, which is a retriable transport error (no panic, no
    /// URL in the reason).
    #[tokio::test]
    async fn https_is_built_in_and_a_failed_handshake_is_retriable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\n\r\nnot tls").await;
            }
        });
        let c = client(ChannelKind::Sms, Duration::from_secs(2)).unwrap();
        let url = parse_uri(&format!("https://127.0.0.1:{port}/send")).unwrap();
        let err = post_json(&c, ChannelKind::Sms, url, "id-1", &serde_json::json!({}))
            .await
            .err()
            .expect("a non-TLS peer fails the handshake");
        match err {
            SendError::Retriable { reason, .. } => assert!(!reason.contains("127.0.0.1")),
            other => panic!("expected a retriable error, got {other:?}"),
        }
    }
}
