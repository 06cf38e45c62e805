//! Helpers of the daemon's end-to-end tests: start the real `redcloud run`
//! binary on a free port with a temporary config, talk HTTP to it with a tiny
//! blocking client, read its stdout (the console sink), stop it with SIGTERM.
//! Every wait is bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The embedded default config: the policies every test runs with.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The admin token the tests configure.
pub const TOKEN: &str = "test-token-123";

/// A unique suffix for queue, stream and source names.
pub fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A running daemon; killed on drop if still running.
pub struct Daemon {
    child: Option<Child>,
    /// The listener's port.
    pub port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
}

/// How to start a daemon.
#[derive(Default)]
pub struct Opts<'a> {
    /// TOML appended to the default config (sections other than `[admin]`
    /// and `[daemon]`).
    pub extra: &'a str,
    /// Extra `[daemon]` keys.
    pub daemon: &'a str,
    /// Configure the admin token.
    pub no_token: bool,
    /// Environment.
    pub env: Vec<(&'a str, String)>,
}

impl Daemon {
    /// Starts `redcloud run` and waits for `/healthz`.
    pub fn start(o: Opts<'_>) -> Result<Daemon> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("redcloud-test-{}", suffix()));
        std::fs::create_dir_all(&dir)?;
        let token = if o.no_token {
            String::new()
        } else {
            format!("token = \"{TOKEN}\"\n")
        };
        // Each daemon keeps its state in its own directory unless the test
        // names one.
        let data = if o.daemon.contains("data_dir") {
            String::new()
        } else {
            format!("data_dir = \"{}\"\n", dir.join("data").display())
        };
        let config = format!(
            "{DEFAULT_TOML}\n[admin]\nlisten = \"127.0.0.1:{port}\"\n{token}\n[daemon]\nshards = 2\ntick = \"100ms\"\nshutdown_timeout = \"15s\"\n{data}{}\n{}\n",
            o.daemon, o.extra
        );
        let path = dir.join("redcloud.toml");
        std::fs::write(&path, config)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_redcloud"));
        cmd.arg("run")
            .arg("--config")
            .arg(&path)
            .env_remove("REDCLOUD_ADMIN_TOKEN")
            .env_remove("REDCLOUD_FAKE_NOW")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("cannot start redcloud")?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), stdout.clone());
        collect(child.stderr.take().unwrap(), stderr.clone());
        let d = Daemon {
            child: Some(child),
            port,
            stdout,
            stderr,
            dir,
        };
        d.wait(Duration::from_secs(20), "healthz", || {
            Ok(d.request("GET", "/healthz", None, "")
                .is_ok_and(|(s, _)| s == 200))
        })?;
        Ok(d)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self, limit: Duration) -> Result<()> {
        self.wait(limit, "readyz", || {
            Ok(self
                .request("GET", "/readyz", None, "")
                .is_ok_and(|(s, _)| s == 200))
        })
    }

    /// Polls `cond` every 50 ms until it holds or `limit` passes.
    pub fn wait(
        &self,
        limit: Duration,
        what: &str,
        mut cond: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if cond()? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{what}: not reached within {limit:?}; daemon log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One HTTP/1.1 request; returns status and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let (head, rest) = text
            .split_once("\r\n\r\n")
            .context("no end of headers in the answer")?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .context("no status")?
            .parse()
            .context("bad status")?;
        Ok((status, rest.to_string()))
    }

    /// GET with the admin token.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        self.request("GET", path, Some(TOKEN), "")
    }

    /// GET with the admin token, JSON body.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let (s, b) = self.get(path)?;
        if s != 200 {
            bail!("GET {path}: {s} {b}");
        }
        Ok(serde_json::from_str(&b)?)
    }

    /// `POST /v1/events`.
    pub fn post_events(&self, lines: &[String], token: Option<&str>) -> Result<(u16, String)> {
        let mut body = lines.join("\n");
        body.push('\n');
        self.request("POST", "/v1/events", token, &body)
    }

    /// The value of one metric line (`name{labels}` exactly as printed).
    pub fn metric(&self, series: &str) -> Result<Option<f64>> {
        let (s, text) = self.get("/metrics")?;
        if s != 200 {
            bail!("/metrics: {s} {text}");
        }
        Ok(text.lines().find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse().ok())?
        }))
    }

    /// Lines printed on stdout so far (the console sink).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The log so far (stderr).
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGTERM and waits up to `limit` for the exit.
    pub fn terminate(&mut self, limit: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        if !st.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = child.try_wait()? {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "no exit within {limit:?} after SIGTERM; log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn collect(r: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => into.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    });
}

/// An event line.
pub fn ev(id: &str, ty: &str, at: &str, fields: &str) -> String {
    let sep = if fields.is_empty() { "" } else { "," };
    format!(r#"{{"id":"{id}","type":"{ty}","at":"{at}"{sep}{fields}}}"#)
}
