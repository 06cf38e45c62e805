//! File source: NDJSON lines in, Deliveries out, rejects to the hook, stop at EOF.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use redcloud_connectors::source::file::{FileConfig, FileRejection, FileSource};
use redcloud_connectors::source::{Source, SourceError};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn reads_lines_and_reports_rejects_with_line_numbers() -> Result<()> {
    let path = std::env::temp_dir().join(format!("rc-file-{}.ndjson", std::process::id()));
    std::fs::write(&path, "{\"id\":\"a\"}\n\n{bad\r\n{\"id\":\"c\"}")?;
    let rejected: Arc<Mutex<Vec<FileRejection>>> = Arc::default();
    let sink = rejected.clone();
    let src = FileSource::new(FileConfig::new(&path))?
        .with_reject_hook(Arc::new(move |r| sink.lock().unwrap().push(r)));
    let stats = src.stats();
    let (tx, mut rx) = mpsc::channel(1);
    let run = tokio::spawn(Box::new(src).run(tx, CancellationToken::new()));
    let mut payloads = Vec::new();
    while let Some(d) = timeout(Duration::from_secs(5), rx.recv()).await? {
        payloads.push(String::from_utf8(d.payload.to_vec())?);
        if d.payload.starts_with(b"{bad") {
            d.ack.reject("invalid json".into());
        } else {
            d.ack.ack();
        }
    }
    timeout(Duration::from_secs(5), run).await???;
    assert_eq!(payloads, vec!["{\"id\":\"a\"}", "{bad", "{\"id\":\"c\"}"]);
    assert_eq!(
        *rejected.lock().unwrap(),
        vec![FileRejection {
            line: 3,
            reason: "invalid json".into()
        }]
    );
    let snap = stats.snapshot();
    assert_eq!((snap.received, snap.acked, snap.rejected), (3, 2, 1));
    std::fs::remove_file(&path)?;
    Ok(())
}

#[tokio::test]
async fn a_missing_file_is_an_error_naming_it() {
    let src = FileSource::new(FileConfig::new("/nonexistent/rc-events.ndjson")).unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let err = Box::new(src)
        .run(tx, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Io { .. }));
    assert!(err
        .to_string()
        .starts_with("file source: cannot open /nonexistent/rc-events.ndjson"));
}
