//! What the HTTP channels share: the client, the POST with an idempotency key,
//! and the classification of HTTP answers and transport failures.
//!
//! Errors never carry the URL (a robot webhook URL is a credential) nor the
//! body: only the channel, the status or the kind of transport failure.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use super::{ChannelKind, Scope, SendError};

/// Builds a client with the channel's timeout (connect and whole request).
/// `https://` URLs use rustls with the *ring* provider and the platform's
/// root certificates.
pub(crate) fn client(
    channel: ChannelKind,
    timeout: Duration,
) -> Result<reqwest::Client, super::BuildError> {
    // Installing the process-wide provider fails harmlessly when another
    // channel already did.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| super::BuildError {
            channel,
            reason: format!("cannot build the http client: {}", e.without_url()),
        })
}

/// The channel's `url`, parsed once when the channel is built (not on every
/// request). The reason never quotes the URL (a webhook URL can be a
/// credential).
pub(crate) fn parse_url(
    channel: ChannelKind,
    url: Option<&str>,
) -> Result<reqwest::Url, super::BuildError> {
    let url = url.ok_or_else(|| super::BuildError {
        channel,
        reason: "`url` is required".into(),
    })?;
    reqwest::Url::parse(url).map_err(|e| super::BuildError {
        channel,
        reason: format!("`url` is not a valid URL ({e})"),
    })
}

/// A provider's answer.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

/// POSTs `body` as JSON with the `Idempotency-Key` header.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    channel: ChannelKind,
    url: impl reqwest::IntoUrl,
    id: &str,
    body: &serde_json::Value,
) -> Result<Answer, SendError> {
    let resp = client
        .post(url)
        .header("Idempotency-Key", id)
        .json(body)
        .send()
        .await
        .map_err(|e| transport(channel, &e))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| transport(channel, &e))?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn transport(channel: ChannelKind, e: &reqwest::Error) -> SendError {
    let reason = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "answer unreadable"
    } else {
        "request failed"
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
        let url = format!("https://127.0.0.1:{port}/send");
        let err = post_json(&c, ChannelKind::Sms, &url, "id-1", &serde_json::json!({}))
            .await
            .err()
            .expect("a non-TLS peer fails the handshake");
        match err {
            SendError::Retriable { reason, .. } => assert!(!reason.contains("127.0.0.1")),
            other => panic!("expected a retriable error, got {other:?}"),
        }
    }
}
