//! Container logs: size-bounded files in the CRI format the kubelet writes
//! (`2026-01-01T00:00:00.000000000Z stdout F hello`), one directory per Pod
//! (`<data_dir>/logs/<ns>_<pod>_<uid>/<container>.log`, rotated to `.log.1`).
//!
//! The guest never waits on the disk: [`FileSink::write`] splits output into lines and hands
//! them to a bounded channel; a writer task appends them. When the channel is full lines are
//! dropped and counted, and the count is written as a line of its own once there is room.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ketch_api::time::now_nano;
use tokio::sync::mpsc;

use ketch_workload::{OutputSink, OutputStream};

/// Rotate a container's log file when it would grow past this.
pub const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;
/// Lines queued for the writer task per container before new ones are dropped.
const QUEUE_LINES: usize = 4096;
/// A line longer than this is written in pieces tagged `P` (partial), as the CRI does.
const MAX_LINE_BYTES: usize = 16 * 1024;

/// The directory holding one Pod's logs.
pub fn pod_dir(logs_root: &Path, namespace: &str, pod: &str, uid: &str) -> PathBuf {
    logs_root.join(format!("{namespace}_{pod}_{uid}"))
}

/// A container's current log file in a pod directory.
pub fn container_file(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join(format!("{container}.log"))
}

/// Formats one CRI log line (with its trailing newline).
pub fn cri_line(timestamp: &str, stream: OutputStream, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(timestamp.len() + content.len() + 12);
    line.extend_from_slice(timestamp.as_bytes());
    line.push(b' ');
    line.extend_from_slice(stream.as_str().as_bytes());
    line.extend_from_slice(if partial { b" P " } else { b" F " });
    line.extend_from_slice(content);
    line.push(b'\n');
    line
}

/// One parsed CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLine<'a> {
    pub timestamp: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub content: &'a str,
}

/// Parses a CRI log line (without its newline); `None` when it is not one.
pub fn parse_cri(line: &str) -> Option<CriLine<'_>> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    if !matches!(stream, "stdout" | "stderr") || !matches!(tag, "F" | "P") {
        return None;
    }
    Some(CriLine {
        timestamp,
        stream,
        partial: tag == "P",
        content,
    })
}

/// Renders one stored line for a reader: the content alone, or `<timestamp> <content>` with
/// `timestamps`. A partial line gets no newline, so pieces join up again.
pub fn render(line: &str, timestamps: bool) -> String {
    match parse_cri(line) {
        Some(l) => {
            let nl = if l.partial { "" } else { "\n" };
            if timestamps {
                format!("{} {}{nl}", l.timestamp, l.content)
            } else {
                format!("{}{nl}", l.content)
            }
        }
        None => format!("{line}\n"),
    }
}

/// The last `n` lines of `text` (all when `None`).
pub fn tail(text: &str, n: Option<usize>) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    match n {
        Some(n) if n < lines.len() => lines[lines.len() - n..].to_vec(),
        _ => lines,
    }
}

/// An append-only log file that rotates to `<file>.1` before growing past `max_bytes`.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    file: Option<std::fs::File>,
    size: u64,
}

impl RotatingFile {
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        Self {
            path,
            max_bytes,
            file: None,
            size: 0,
        }
    }

    /// Appends `bytes`, rotating first if they would not fit.
    ///
    /// # Errors
    /// Creating, renaming or writing the file failed.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_bytes {
            self.file = None;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, rotated)?;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = 0;
            self.file = Some(f);
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(bytes)?;
            self.size += bytes.len() as u64;
        }
        Ok(())
    }
}

struct Queued {
    stream: OutputStream,
    partial: bool,
    timestamp: String,
    content: Vec<u8>,
}

/// The [`OutputSink`] of one container: line-buffers each stream and queues whole lines for
/// a writer task that owns the [`RotatingFile`].
pub struct FileSink {
    tx: mpsc::Sender<Queued>,
    /// The writer's file; `None` once closed (the Pod was deleted and its logs removed).
    file: Arc<Mutex<Option<RotatingFile>>>,
    pending: Mutex<[Vec<u8>; 2]>,
    dropped: Arc<AtomicU64>,
}

impl FileSink {
    /// Creates the sink and spawns its writer task, which ends when the sink is dropped.
    pub fn spawn(path: PathBuf) -> Arc<Self> {
        let (tx, mut rx) = mpsc::channel::<Queued>(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let seen_dropped = dropped.clone();
        let file = Arc::new(Mutex::new(Some(RotatingFile::new(path, MAX_LOG_BYTES))));
        let writer_file = file.clone();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, 256).await > 0 {
                let mut buf = Vec::new();
                let lost = seen_dropped.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let msg = format!("[ketch-agent: {lost} log lines dropped: writer busy]");
                    buf.extend(cri_line(
                        &now_nano(),
                        OutputStream::Stderr,
                        false,
                        msg.as_bytes(),
                    ));
                }
                for q in batch.drain(..) {
                    buf.extend(cri_line(&q.timestamp, q.stream, q.partial, &q.content));
                }
                // Small appends to a local file: blocking the worker briefly is cheaper than a
                // hop to the blocking pool per batch.
                let mut file = writer_file.lock().unwrap_or_else(|p| p.into_inner());
                let Some(file) = file.as_mut() else { return };
                if let Err(e) = file.append(&buf) {
                    tracing::warn!(error = %e, "writing container log");
                }
            }
        });
        Arc::new(Self {
            tx,
            file,
            pending: Mutex::new([Vec::new(), Vec::new()]),
            dropped,
        })
    }

    fn send(&self, stream: OutputStream, partial: bool, content: Vec<u8>) {
        let q = Queued {
            stream,
            partial,
            timestamp: now_nano(),
            content,
        };
        if self.tx.try_send(q).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stops writing for good: after this returns the file is never touched again, so its
    /// directory can be removed.
    pub fn close(&self) {
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Writes out a final partial line of each stream (the guest did not end it with `\n`).
    pub fn flush(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (i, stream) in [OutputStream::Stdout, OutputStream::Stderr]
            .into_iter()
            .enumerate()
        {
            if !pending[i].is_empty() {
                let rest = std::mem::take(&mut pending[i]);
                self.send(stream, false, rest);
            }
        }
    }
}

impl OutputSink for FileSink {
    fn write(&self, stream: OutputStream, bytes: &[u8]) {
        let idx = match stream {
            OutputStream::Stdout => 0,
            OutputStream::Stderr => 1,
        };
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let buf = &mut pending[idx];
        buf.extend_from_slice(bytes);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.send(stream, false, line);
        }
        while buf.len() > MAX_LINE_BYTES {
            let piece: Vec<u8> = buf.drain(..MAX_LINE_BYTES).collect();
            self.send(stream, true, piece);
        }
    }
}

/// Reads a container's stored log (the rotated file first), lossily as UTF-8.
pub async fn read_all(file: &Path) -> String {
    let mut rotated = file.to_path_buf().into_os_string();
    rotated.push(".1");
    let mut out = String::new();
    for p in [PathBuf::from(rotated), file.to_path_buf()] {
        if let Ok(bytes) = tokio::fs::read(&p).await {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_round_trip_through_the_parser() {
        let line = cri_line(
            "2026-01-01T00:00:00.000000000Z",
            OutputStream::Stdout,
            false,
            b"hello world",
        );
        assert_eq!(
            line,
            b"2026-01-01T00:00:00.000000000Z stdout F hello world\n"
        );
        let text = std::str::from_utf8(&line).unwrap().trim_end();
        let parsed = parse_cri(text).unwrap();
        assert_eq!(parsed.stream, "stdout");
        assert!(!parsed.partial);
        assert_eq!(parsed.content, "hello world");
        assert_eq!(render(text, false), "hello world\n");
        assert_eq!(
            render(text, true),
            "2026-01-01T00:00:00.000000000Z hello world\n"
        );
    }

    #[test]
    fn partial_lines_render_without_a_newline_and_junk_renders_as_is() {
        assert_eq!(render("t stderr P abc", false), "abc");
        assert_eq!(render("not a cri line", false), "not a cri line\n");
        assert_eq!(parse_cri("t stdout F").unwrap().content, "");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let text = "a\nb\nc\n";
        assert_eq!(tail(text, Some(2)), ["b", "c"]);
        assert_eq!(tail(text, Some(10)), ["a", "b", "c"]);
        assert_eq!(tail(text, None), ["a", "b", "c"]);
        assert!(tail(text, Some(0)).is_empty());
    }

    #[test]
    fn the_log_file_rotates_keeping_one_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod/app.log");
        let mut f = RotatingFile::new(path.clone(), 10);
        f.append(b"12345\n").unwrap();
        f.append(b"67890\n").unwrap(); // would exceed 10 bytes: rotates first
        f.append(b"abcdef\n").unwrap(); // rotates again, dropping "12345"
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abcdef\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pod/app.log.1")).unwrap(),
            "67890\n"
        );
    }

    #[tokio::test]
    async fn the_sink_splits_output_into_timestamped_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let sink = FileSink::spawn(path.clone());
        sink.write(OutputStream::Stdout, b"hel");
        sink.write(OutputStream::Stdout, b"lo\nwor");
        sink.write(OutputStream::Stderr, b"oops\r\n");
        sink.write(OutputStream::Stdout, b"ld\n");
        sink.flush();
        let mut text = String::new();
        for _ in 0..100 {
            text = read_all(&path).await;
            if text.lines().count() == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let rendered: Vec<String> = text.lines().map(|l| render(l, false)).collect();
        assert_eq!(rendered, ["hello\n", "oops\n", "world\n"]);
        let first = parse_cri(text.lines().next().unwrap()).unwrap();
        assert!(ketch_api::time::parse(first.timestamp).is_some());
        assert_eq!(
            parse_cri(text.lines().nth(1).unwrap()).unwrap().stream,
            "stderr"
        );
    }
}
