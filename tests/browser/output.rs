//! What a child process (chromedriver, `authbridge demo`) writes, kept for failure messages.
//!
//! Both pipes must be drained while the child runs: a child that logs every request (the demo does) would
//! otherwise block on a full pipe and look like a hang.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;

#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<String>>);

impl Output {
    /// Takes the child's piped stdout and stderr and collects them, line by line, as they arrive.
    pub fn capture(child: &mut Child) -> Self {
        let output = Self::default();
        if let Some(stdout) = child.stdout.take() {
            output.drain(stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            output.drain(stderr);
        }
        output
    }

    fn drain(&self, pipe: impl AsyncRead + Unpin + Send + 'static) {
        let text = Arc::clone(&self.0);
        tokio::spawn(async move {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            // Bytes, not `lines()`: one invalid UTF-8 byte must not end the draining.
            while matches!(reader.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
                text.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
        });
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The last `lines` lines: enough to explain a failure without burying it.
    pub fn tail(&self, lines: usize) -> String {
        let text = self.text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
