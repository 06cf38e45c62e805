//! SMS over HTTP, with Aliyun-style fields (docs/dispatch.md has the mapping).
//!
//! Request: `POST <url>` with header `Idempotency-Key: <id>` and the body
//! `{"PhoneNumbers","SignName","TemplateCode","TemplateParam","OutId"}`, where
//! `TemplateParam` is a JSON *string* of the template variables (as Aliyun's
//! `SendSms` takes it) and `OutId` is the idempotency key.
//!
//! Answer: `{"Code":"OK",...}` is delivered. `isv.BUSINESS_LIMIT_CONTROL` /
//! `isv.DAY_LIMIT_CONTROL` (per-number limits) pause the recipient;
//! `Throttling.*` and `isv.AMOUNT_NOT_ENOUGH` pause the channel; `isp.*` and
//! 5xx are retried; other `isv.*` codes (invalid number, template, sign) are
//! final. Without a `Code`, the HTTP status decides.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::http::{classify_status, post_json, short};
use super::{
    sms_segments, BoxFuture, BuildError, Channel, ChannelKind, Delivered, Outgoing, Scope,
    SendError,
};
use crate::dispatch::config::ChannelConfig;

const KIND: ChannelKind = ChannelKind::Sms;

/// The SMS channel.
#[derive(Clone)]
pub struct SmsChannel {
    inner: Arc<Inner>,
}

struct Inner {
    client: super::http::Client,
    url: http::Uri,
    sign_name: String,
    template_code: String,
}

impl SmsChannel {
    /// Builds the channel from `[dispatch.channels.sms]`.
    pub fn new(cfg: &ChannelConfig) -> Result<Self, BuildError> {
        let url = super::http::parse_url(KIND, cfg.url.as_deref())?;
        Ok(SmsChannel {
            inner: Arc::new(Inner {
                client: super::http::client(KIND, cfg.timeout)?,
                url,
                sign_name: cfg.sign_name.clone().unwrap_or_default(),
                template_code: cfg.template_code.clone().unwrap_or_default(),
            }),
        })
    }

    /// The request body for `msg` (public for the docs' examples and tests).
    pub fn body(&self, msg: &Outgoing) -> serde_json::Value {
        let params: serde_json::Map<String, serde_json::Value> = msg
            .params
            .iter()
            .map(|(k, v)| ((*k).to_string(), serde_json::Value::String(v.clone())))
            .collect();
        let code = msg
            .template_code
            .as_deref()
            .unwrap_or(&self.inner.template_code);
        serde_json::json!({
            "PhoneNumbers": msg.address,
            "SignName": self.inner.sign_name,
            "TemplateCode": code,
            "TemplateParam": serde_json::Value::Object(params).to_string(),
            "OutId": msg.id,
        })
    }

    /// Billed segments of `msg`: `【SignName】` plus the rendered text.
    pub fn segments(&self, msg: &Outgoing) -> u32 {
        sms_segments(self.inner.sign_name.chars().count() + 2 + msg.body.chars().count())
    }
}

#[derive(Deserialize)]
struct AliyunAnswer {
    #[serde(rename = "Code")]
    code: Option<String>,
}

/// Classifies an Aliyun `Code`.
fn classify_code(code: &str) -> Result<(), SendError> {
    match code {
        "OK" => Ok(()),
        "isv.BUSINESS_LIMIT_CONTROL" | "isv.DAY_LIMIT_CONTROL" => Err(SendError::Retriable {
            channel: KIND,
            reason: format!("code {code}"),
            retry_after: Some(Duration::from_secs(60)),
            scope: Scope::Recipient,
        }),
        "isv.AMOUNT_NOT_ENOUGH" => Err(SendError::Retriable {
            channel: KIND,
            reason: format!("code {code}"),
            retry_after: Some(Duration::from_secs(60)),
            scope: Scope::Channel,
        }),
        c if c.starts_with("Throttling") => Err(SendError::Retriable {
            channel: KIND,
            reason: format!("code {}", short(c)),
            retry_after: Some(Duration::from_secs(1)),
            scope: Scope::Channel,
        }),
        c if c.starts_with("isp.") || c.starts_with("SignatureNonceUsed") => {
            Err(SendError::retriable(KIND, format!("code {}", short(c))))
        }
        c => Err(SendError::final_(KIND, format!("code {}", short(c)))),
    }
}

impl Channel for SmsChannel {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    fn send(&self, msg: Arc<Outgoing>) -> BoxFuture<Result<Delivered, SendError>> {
        let this = self.clone();
        Box::pin(async move {
            let body = this.body(&msg);
            let answer = post_json(
                &this.inner.client,
                KIND,
                this.inner.url.clone(),
                &msg.id,
                &body,
            )
            .await?;
            let parsed: Option<AliyunAnswer> = serde_json::from_slice(&answer.body).ok();
            match parsed.and_then(|a| a.code) {
                // A 5xx with a code is still an outage; otherwise the code decides.
                Some(code) if !answer.status.is_server_error() => classify_code(&code)?,
                _ => classify_status(KIND, &answer)?,
            }
            Ok(Delivered {
                segments: this.segments(&msg),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        assert!(classify_code("OK").is_ok());
        let e = classify_code("isv.BUSINESS_LIMIT_CONTROL").unwrap_err();
        assert!(matches!(
            e,
            SendError::Retriable {
                scope: Scope::Recipient,
                ..
            }
        ));
        assert!(!classify_code("isv.MOBILE_NUMBER_ILLEGAL")
            .unwrap_err()
            .is_retriable());
        assert!(classify_code("isp.SYSTEM_ERROR")
            .unwrap_err()
            .is_retriable());
        assert!(classify_code("Throttling.User").unwrap_err().is_retriable());
    }
}
