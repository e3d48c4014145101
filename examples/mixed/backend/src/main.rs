//! backend: the mixed app's container half, and the `http-echo` test image. A std-only
//! HTTP/1.1 server on `0.0.0.0:8080` (`PORT` overrides) that answers every request with JSON
//! naming who answered and what was asked:
//!
//! ```text
//! {"from":"backend","pod":"<POD_NAME>","method":"GET","path":"/api/hello"}
//! ```
//!
//! One thread per connection, one request per connection (`Connection: close`). A request
//! body (by `Content-Length`) is read and discarded; chunked request bodies are not
//! supported (411). Logs one line per request to stdout.
//!
//! Signals: in its container this is PID 1, and the kernel ignores a signal for PID 1 unless
//! a handler is installed — SIGTERM would do nothing and every stop would wait for the
//! SIGKILL at the end of the grace period. So SIGTERM and SIGINT get a handler that exits 0
//! at once (in-flight requests are cut; this server holds no state).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Largest request head (request line + headers) accepted.
const MAX_HEAD: usize = 16 * 1024;

fn main() {
    signals::exit_on_term();
    let port = match std::env::var("PORT") {
        Ok(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => fail(&format!("PORT={p:?} is not a port number")),
        },
        Err(_) => 8080,
    };
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => fail(&format!("binding 0.0.0.0:{port}: {e}")),
    };
    let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "unknown".into());
    println!("backend {pod} listening on 0.0.0.0:{port}");
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let pod = pod.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(stream, &pod) {
                        eprintln!("connection: {e}");
                    }
                });
            }
            // EMFILE and friends: say so and back off instead of spinning.
            Err(e) => {
                eprintln!("accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("backend: {msg}");
    std::process::exit(1)
}

/// Serves the one request on `stream`.
fn serve(stream: TcpStream, pod: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = Vec::new();
    let mut line = String::new();
    // Request line, then headers up to the empty line.
    loop {
        line.clear();
        let n = (&mut reader).take(MAX_HEAD as u64).read_line(&mut line)?;
        if n == 0 {
            return Ok(()); // closed before a full head: nothing to answer
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            if head.is_empty() {
                continue; // tolerate blank lines before the request line (RFC 9112 §2.2)
            }
            break;
        }
        head.push(l.to_string());
        if head.iter().map(String::len).sum::<usize>() > MAX_HEAD {
            return respond(&stream, 431, "request head too large", None, pod);
        }
    }
    let mut parts = head[0].split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return respond(&stream, 400, "malformed request line", None, pod);
    };
    if !version.starts_with("HTTP/1.") {
        return respond(&stream, 505, "only HTTP/1.x", None, pod);
    }
    let header = |name: &str| {
        head[1..].iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    if header("transfer-encoding").is_some() {
        return respond(&stream, 411, "send a Content-Length body", None, pod);
    }
    let length = match header("content-length").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return respond(&stream, 400, "bad Content-Length", None, pod),
    };
    // Read (and drop) the body so the client is not reset while it is still sending.
    std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink())?;

    println!("{method} {target}");
    respond(&stream, 200, "", Some((method, target)), pod)
}

/// Writes a JSON response and closes. `req` is the (method, target) echoed on success.
fn respond(
    mut stream: &TcpStream,
    status: u16,
    error: &str,
    req: Option<(&str, &str)>,
    pod: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        411 => "Length Required",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    };
    let body = match req {
        Some((method, path)) => format!(
            "{{\"from\":\"backend\",\"pod\":\"{}\",\"method\":\"{}\",\"path\":\"{}\"}}\n",
            json_escape(pod),
            json_escape(method),
            json_escape(path)
        ),
        None => format!(
            "{{\"from\":\"backend\",\"pod\":\"{}\",\"error\":\"{}\"}}\n",
            json_escape(pod),
            json_escape(error)
        ),
    };
    let head_only = req.is_some_and(|(m, _)| m == "HEAD");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(&body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// SIGTERM/SIGINT → exit 0, through libc's `signal` (std links libc anyway), so the crate
/// stays dependency-free. `_exit` is async-signal-safe; `std::process::exit` is not.
mod signals {
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15; // the same numbers on x86_64 and aarch64 Linux

    unsafe extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        fn _exit(status: i32) -> !;
    }

    extern "C" fn on_term(_signum: i32) {
        // SAFETY: `_exit` is async-signal-safe and takes no pointers.
        unsafe { _exit(0) }
    }

    pub fn exit_on_term() {
        for sig in [SIGTERM, SIGINT] {
            // SAFETY: installs a handler that only calls `_exit`; nothing else touches these
            // signals' dispositions in this program.
            unsafe {
                signal(sig, on_term);
            }
        }
    }
}
