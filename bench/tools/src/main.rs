//! bench-tools: the parts of docker-api-proxy's load-test harness that wrk
//! cannot do. Standard library only, one thread per connection (the tools
//! must not be the bottleneck for the figures they produce, and at these
//! connection counts threads are cheap enough).
//!
//! Subcommands (all print one line of `key=value` results on stdout):
//!
//!   engine  --socket PATH [--tcp 127.0.0.1:PORT]
//!       Fake engine for streams and uploads on a unix socket. `Upgrade`
//!       requests get `101` and then, by query `mode=`: `source` (send
//!       `bytes=N` bytes, then close), `sink` (read to EOF, answer the count),
//!       `echo` (echo to EOF, then half-close). POST/PUT bodies (Content-Length
//!       or chunked) are read, discarded and counted: `200 {"received":N}`.
//!       `/_ping` answers `OK`. Keep-alive.
//!   stream  --target T --mode source|sink --bytes N [--token X]
//!       One upgraded stream, N bytes engine->client (source) or
//!       client->engine (sink). Prints GiB/s.
//!   upload  --target T --bytes N [--token X]
//!       One POST /v1.41/images/load with a Content-Length body of N bytes.
//!   streams --target T --n N --bytes K [--token X]
//!       N concurrent upgraded echo streams, all established before any data
//!       moves; each sends K patterned bytes, half-closes, reads the echo to
//!       EOF and checks every byte.
//!   idle    --target T --n N [--token X] [--hold S]
//!       Opens N keep-alive connections, one GET /_ping on each, prints
//!       `READY ...`, holds them until stdin closes (or S seconds), then sends
//!       one more request on every connection and reports how many answered.
//!   hammer  --target T --path P --conns C --secs S [--token X]
//!       Closed-loop keep-alive GET load (for unix-socket targets wrk cannot
//!       reach): req/s, p50, p99, non-2xx, errors.
//!
//! Targets: `tcp:HOST:PORT` or `unix:PATH`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

extern "C" {
    fn listen(fd: i32, backlog: i32) -> i32;
}

const CHUNK: usize = 256 * 1024;

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn connect(target: &str) -> io::Result<Conn> {
        if let Some(addr) = target.strip_prefix("tcp:") {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            Ok(Conn::Tcp(s))
        } else if let Some(path) = target.strip_prefix("unix:") {
            Ok(Conn::Unix(UnixStream::connect(path)?))
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad target {target}"),
            ))
        }
    }
    fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }
    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }
    fn shutdown_read(&self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Read),
            Conn::Unix(s) => s.shutdown(Shutdown::Read),
        }
    }
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(d),
            Conn::Unix(s) => s.set_read_timeout(d),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(b),
            Conn::Unix(s) => s.read(b),
        }
    }
}
impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(b),
            Conn::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A stream with a read buffer, for parsing HTTP/1.1 heads and bodies.
struct Http<S: Read + Write> {
    s: S,
    buf: Vec<u8>,
    pos: usize,
}

struct Head {
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn status(&self) -> u16 {
        self.first
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
    fn chunked(&self) -> bool {
        self.get("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false)
    }
    fn content_length(&self) -> Option<u64> {
        self.get("content-length")
            .and_then(|v| v.trim().parse().ok())
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl<S: Read + Write> Http<S> {
    fn new(s: S) -> Self {
        Http {
            s,
            buf: Vec::with_capacity(16 * 1024),
            pos: 0,
        }
    }
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 64 * 1024, 0);
        let n = match self.s.read(&mut self.buf[old..]) {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(old);
                return Err(e);
            }
        };
        self.buf.truncate(old + n);
        Ok(n)
    }
    /// Reads one head; Ok(None) on clean EOF before any byte.
    fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(i) = find(&self.buf[self.pos..], b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&self.buf[self.pos..self.pos + i]).into_owned();
                self.pos += i + 4;
                let mut lines = text.split("\r\n");
                let first = lines.next().unwrap_or("").to_string();
                let headers = lines
                    .filter_map(|l| {
                        l.split_once(':')
                            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    })
                    .collect();
                return Ok(Some(Head { first, headers }));
            }
            if self.buf.len() - self.pos > 1 << 20 {
                return Err(bad("head too large"));
            }
            if self.fill()? == 0 {
                if self.buf.len() == self.pos {
                    return Ok(None);
                }
                return Err(bad("eof in head"));
            }
        }
    }
    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf[self.pos..], b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[self.pos..self.pos + i]).into_owned();
                self.pos += i + 2;
                return Ok(l);
            }
            if self.fill()? == 0 {
                return Err(bad("eof in line"));
            }
        }
    }
    /// Consumes up to `n` bytes, calling `f` on each piece; returns bytes consumed.
    fn consume(&mut self, mut n: u64, f: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let want = n;
        while n > 0 {
            if self.pos == self.buf.len() && self.fill()? == 0 {
                return Ok(want - n);
            }
            let take = ((self.buf.len() - self.pos) as u64).min(n) as usize;
            f(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            n -= take as u64;
        }
        Ok(want)
    }
    /// Reads a message body per its head (request: no framing = empty).
    fn read_body(&mut self, head: &Head, f: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        if head.chunked() {
            let mut total = 0;
            loop {
                let line = self.read_line()?;
                let size = u64::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| bad("bad chunk size"))?;
                if size == 0 {
                    while !self.read_line()?.is_empty() {}
                    return Ok(total);
                }
                if self.consume(size, f)? != size {
                    return Err(bad("eof in chunk"));
                }
                total += size;
                self.read_line()?;
            }
        } else if let Some(cl) = head.content_length() {
            if self.consume(cl, f)? != cl {
                return Err(bad("eof in body"));
            }
            Ok(cl)
        } else {
            Ok(0)
        }
    }
    fn leftover(&mut self) -> Vec<u8> {
        let v = self.buf[self.pos..].to_vec();
        self.pos = self.buf.len();
        v
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn query(target: &str) -> HashMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn pattern(stream: u64, i: u64) -> u8 {
    ((i.wrapping_mul(31)).wrapping_add(stream.wrapping_mul(7)) % 251) as u8
}

// ---------------------------------------------------------------- engine

fn engine(sock: &str, tcp: &str) -> io::Result<()> {
    let _ = std::fs::remove_file(sock);
    let l = UnixListener::bind(sock)?;
    unsafe { listen(l.as_raw_fd(), 8192) };
    if !tcp.is_empty() {
        // The same engine on loopback TCP: the transport clients use to reach
        // a proxy, so "direct over TCP" is the fair ceiling for stream figures.
        let t = std::net::TcpListener::bind(tcp)?;
        unsafe { listen(t.as_raw_fd(), 8192) };
        std::thread::spawn(move || {
            for s in t.incoming().flatten() {
                let _ = s.set_nodelay(true);
                let _ = std::thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn(move || {
                        let _ = serve(Conn::Tcp(s));
                    });
            }
        });
    }
    println!("engine listening on {sock} {tcp}");
    for s in l.incoming() {
        let s = match s {
            Ok(s) => s,
            Err(_) => continue,
        };
        let _ = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                let _ = serve(Conn::Unix(s));
            });
    }
    Ok(())
}

fn serve(s: Conn) -> io::Result<()> {
    let writer = s.try_clone()?;
    let mut w = writer;
    let mut h = Http::new(s);
    loop {
        let head = match h.read_head()? {
            Some(h) => h,
            None => return Ok(()),
        };
        let mut parts = head.first.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let path = target.split('?').next().unwrap_or("").to_string();
        if head.get("upgrade").is_some() {
            // Requests with an Upgrade header have a (normally empty) body first.
            h.read_body(&head, &mut |_| {})?;
            w.write_all(
                b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n\
                  Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
            )?;
            let q = query(&target);
            let early = h.leftover();
            let mut r = h.s;
            match q.get("mode").map(|s| s.as_str()).unwrap_or("echo") {
                "source" => {
                    let n: u64 = q
                        .get("bytes")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1 << 30);
                    let drain = std::thread::spawn(move || {
                        let mut b = vec![0u8; 64 * 1024];
                        while matches!(r.read(&mut b), Ok(k) if k > 0) {}
                    });
                    let buf = vec![b'x'; CHUNK];
                    let mut left = n;
                    while left > 0 {
                        let k = (left as usize).min(CHUNK);
                        w.write_all(&buf[..k])?;
                        left -= k as u64;
                    }
                    w.shutdown_write()?;
                    let _ = drain.join();
                }
                "sink" => {
                    let mut total = early.len() as u64;
                    let mut b = vec![0u8; CHUNK];
                    loop {
                        let k = r.read(&mut b)?;
                        if k == 0 {
                            break;
                        }
                        total += k as u64;
                    }
                    w.write_all(format!("{total}\n").as_bytes())?;
                    w.shutdown_write()?;
                }
                _ => {
                    w.write_all(&early)?;
                    let mut b = vec![0u8; 64 * 1024];
                    loop {
                        let k = r.read(&mut b)?;
                        if k == 0 {
                            break;
                        }
                        w.write_all(&b[..k])?;
                    }
                    w.shutdown_write()?;
                }
            }
            return Ok(());
        }
        let close = head
            .get("connection")
            .map(|v| v.eq_ignore_ascii_case("close"))
            .unwrap_or(false);
        if close {
            // answer this one request, then end the connection
            let _ = w.shutdown_read();
        }
        if path.ends_with("/_ping") {
            h.read_body(&head, &mut |_| {})?;
            w.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                          Api-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK",
            )?;
            continue;
        }
        if method == "POST" || method == "PUT" {
            let n = h.read_body(&head, &mut |_| {})?;
            let body = format!("{{\"received\":{n}}}");
            w.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \
                         {}\r\n\r\n{}",
                    body.len(),
                    body
                )
                .as_bytes(),
            )?;
            continue;
        }
        h.read_body(&head, &mut |_| {})?;
        let body = b"{\"message\":\"page not found\"}";
        w.write_all(
            format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )?;
        w.write_all(body)?;
    }
}

// ---------------------------------------------------------------- clients

fn auth(token: &Option<String>) -> String {
    token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default()
}

fn upgrade(
    target: &str,
    token: &Option<String>,
    query: &str,
) -> io::Result<(Conn, Http<Conn>, Vec<u8>)> {
    let c = Conn::connect(target)?;
    let mut w = c.try_clone()?;
    let req = format!(
        "POST /v1.41/containers/bench/attach?stream=1&stdin=1&stdout=1&{query} HTTP/1.1\r\n\
         Host: docker\r\nUser-Agent: bench-tools\r\n{}Content-Length: 0\r\n\
         Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
        auth(token)
    );
    w.write_all(req.as_bytes())?;
    let mut h = Http::new(c);
    let head = h.read_head()?.ok_or_else(|| bad("eof before 101"))?;
    if head.status() != 101 {
        return Err(bad(&format!("expected 101, got {}", head.first)));
    }
    let early = h.leftover();
    Ok((w, h, early))
}

fn stream(target: &str, token: &Option<String>, mode: &str, n: u64) -> io::Result<()> {
    let (mut w, h, early) = upgrade(target, token, &format!("mode={mode}&bytes={n}"))?;
    let mut r = h.s;
    let t0 = Instant::now();
    let moved;
    if mode == "source" {
        let mut got = early.len() as u64;
        let mut b = vec![0u8; CHUNK];
        loop {
            let k = r.read(&mut b)?;
            if k == 0 {
                break;
            }
            got += k as u64;
        }
        moved = got;
        let _ = w.shutdown_write();
    } else {
        let buf = vec![b'y'; CHUNK];
        let mut left = n;
        while left > 0 {
            let k = (left as usize).min(CHUNK);
            w.write_all(&buf[..k])?;
            left -= k as u64;
        }
        w.shutdown_write()?;
        let mut reply = early;
        r.read_to_end(&mut reply)?;
        moved = String::from_utf8_lossy(&reply).trim().parse().unwrap_or(0);
    }
    let secs = t0.elapsed().as_secs_f64();
    let gibs = moved as f64 / secs / (1u64 << 30) as f64;
    println!(
        "ok={} bytes={moved} expected={n} secs={secs:.3} gibps={gibs:.3}",
        (moved == n) as u8
    );
    Ok(())
}

fn upload(target: &str, token: &Option<String>, n: u64) -> io::Result<()> {
    let c = Conn::connect(target)?;
    let mut w = c.try_clone()?;
    let req = format!(
        "POST /v1.41/images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nUser-Agent: bench-tools\r\n\
         {}Content-Type: application/x-tar\r\nContent-Length: {n}\r\n\r\n",
        auth(token)
    );
    let t0 = Instant::now();
    w.write_all(req.as_bytes())?;
    let buf = vec![b'z'; CHUNK];
    let mut left = n;
    while left > 0 {
        let k = (left as usize).min(CHUNK);
        w.write_all(&buf[..k])?;
        left -= k as u64;
    }
    let mut h = Http::new(c);
    let head = h.read_head()?.ok_or_else(|| bad("eof before response"))?;
    let mut body = Vec::new();
    h.read_body(&head, &mut |b| body.extend_from_slice(b))?;
    let secs = t0.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&body);
    let received: u64 = text
        .split("\"received\":")
        .nth(1)
        .and_then(|s| s.trim_end_matches('}').trim().parse().ok())
        .unwrap_or(0);
    let gibs = received as f64 / secs / (1u64 << 30) as f64;
    println!(
        "ok={} status={} bytes={received} expected={n} secs={secs:.3} gibps={gibs:.3}",
        (received == n) as u8,
        head.status()
    );
    Ok(())
}

fn streams(target: &str, token: &Option<String>, n: usize, k: u64) -> io::Result<()> {
    let barrier = Arc::new(Barrier::new(n + 1));
    let sent = Arc::new(AtomicU64::new(0));
    let recvd = Arc::new(AtomicU64::new(0));
    let established = Arc::new(AtomicU64::new(0));
    let bad_streams = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for i in 0..n {
        let (target, token) = (target.to_string(), token.clone());
        let (barrier, sent, recvd, established, bad_streams) = (
            barrier.clone(),
            sent.clone(),
            recvd.clone(),
            established.clone(),
            bad_streams.clone(),
        );
        let h = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let up = upgrade(&target, &token, "mode=echo");
                if up.is_ok() {
                    established.fetch_add(1, Ordering::Relaxed);
                }
                barrier.wait();
                let (mut w, h, early) = match up {
                    Ok(x) => x,
                    Err(e) => {
                        if i < 5 {
                            eprintln!("stream {i}: {e}");
                        }
                        bad_streams.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                let sid = i as u64;
                let sent2 = sent.clone();
                let writer = std::thread::Builder::new().stack_size(128 * 1024).spawn(
                    move || -> io::Result<()> {
                        let mut buf = vec![0u8; 16 * 1024];
                        let mut off = 0u64;
                        while off < k {
                            let m = ((k - off) as usize).min(buf.len());
                            for (j, b) in buf[..m].iter_mut().enumerate() {
                                *b = pattern(sid, off + j as u64);
                            }
                            w.write_all(&buf[..m])?;
                            sent2.fetch_add(m as u64, Ordering::Relaxed);
                            off += m as u64;
                        }
                        w.shutdown_write()
                    },
                );
                let mut r = h.s;
                let _ = r.set_read_timeout(Some(Duration::from_secs(60)));
                let mut pos = 0u64;
                let mut ok = true;
                let mut check = |data: &[u8], pos: &mut u64| {
                    for &b in data {
                        if b != pattern(sid, *pos) {
                            ok = false;
                        }
                        *pos += 1;
                    }
                };
                check(&early, &mut pos);
                let mut b = vec![0u8; 64 * 1024];
                loop {
                    match r.read(&mut b) {
                        Ok(0) => break,
                        Ok(m) => check(&b[..m], &mut pos),
                        Err(e) => {
                            if i < 5 {
                                eprintln!("stream {i}: read: {e}");
                            }
                            ok = false;
                            break;
                        }
                    }
                }
                recvd.fetch_add(pos, Ordering::Relaxed);
                let wrote = writer
                    .map(|j| j.join().map(|r| r.is_ok()).unwrap_or(false))
                    .unwrap_or(false);
                if !ok || pos != k || !wrote {
                    bad_streams.fetch_add(1, Ordering::Relaxed);
                }
            });
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("spawn: {e}");
                return Err(e);
            }
        }
    }
    barrier.wait();
    let t0 = Instant::now();
    for h in handles {
        let _ = h.join();
    }
    let secs = t0.elapsed().as_secs_f64();
    let (s, r) = (sent.load(Ordering::Relaxed), recvd.load(Ordering::Relaxed));
    println!(
        "ok={} streams={n} established={} bad_streams={} bytes_out={s} bytes_in={r} expected={} \
         secs={secs:.3}",
        (s == r && r == n as u64 * k && bad_streams.load(Ordering::Relaxed) == 0) as u8,
        established.load(Ordering::Relaxed),
        bad_streams.load(Ordering::Relaxed),
        n as u64 * k
    );
    Ok(())
}

fn ping(h: &mut Http<Conn>, token: &Option<String>) -> io::Result<u16> {
    let req = format!(
        "GET /v1.41/_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: bench-tools\r\n{}\r\n",
        auth(token)
    );
    h.s.write_all(req.as_bytes())?;
    let head = h.read_head()?.ok_or_else(|| bad("eof"))?;
    h.read_body(&head, &mut |_| {})?;
    Ok(head.status())
}

fn idle(target: &str, token: &Option<String>, n: usize, hold: u64) -> io::Result<()> {
    let threads = 8;
    let t0 = Instant::now();
    let mut hs = Vec::new();
    for t in 0..threads {
        let (target, token) = (target.to_string(), token.clone());
        let count = n / threads + usize::from(t < n % threads);
        hs.push(std::thread::spawn(move || {
            let mut conns = Vec::new();
            let mut fails = 0;
            for _ in 0..count {
                match Conn::connect(&target).and_then(|c| {
                    let mut h = Http::new(c);
                    let st = ping(&mut h, &token)?;
                    if st == 200 {
                        Ok(h)
                    } else {
                        Err(bad(&format!("status {st}")))
                    }
                }) {
                    Ok(h) => conns.push(h),
                    Err(e) => {
                        if fails < 3 {
                            eprintln!("idle connect: {e}");
                        }
                        fails += 1
                    }
                }
            }
            (conns, fails)
        }));
    }
    let mut all = Vec::new();
    let mut fails = 0;
    for h in hs {
        let (c, f) = h.join().unwrap();
        all.extend(c);
        fails += f;
    }
    println!(
        "READY open={} failed={fails} secs={:.2}",
        all.len(),
        t0.elapsed().as_secs_f64()
    );
    io::stdout().flush()?;
    // Hold until stdin closes or the deadline passes.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = io::stdin().read_to_end(&mut sink);
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(hold));
    let mut alive = 0;
    for h in all.iter_mut() {
        let _ = h.s.set_read_timeout(Some(Duration::from_secs(5)));
        if matches!(ping(h, token), Ok(200)) {
            alive += 1;
        }
    }
    println!("open={} failed={fails} alive_after_hold={alive}", all.len());
    Ok(())
}

fn hammer(
    target: &str,
    token: &Option<String>,
    path: &str,
    conns: usize,
    secs: f64,
) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut hs = Vec::new();
    for _ in 0..conns {
        let (target, token, path) = (target.to_string(), token.clone(), path.to_string());
        hs.push(std::thread::spawn(move || {
            let mut lat = Vec::with_capacity(100_000);
            let (mut non2xx, mut errors) = (0u64, 0u64);
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: bench-tools\r\n{}\r\n",
                auth(&token)
            );
            let mut h: Option<Http<Conn>> = None;
            while Instant::now() < deadline {
                if h.is_none() {
                    match Conn::connect(&target) {
                        Ok(c) => h = Some(Http::new(c)),
                        Err(_) => {
                            errors += 1;
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                    }
                }
                let c = h.as_mut().unwrap();
                let t = Instant::now();
                let r = c.s.write_all(req.as_bytes()).and_then(|_| {
                    let head = c.read_head()?.ok_or_else(|| bad("eof"))?;
                    c.read_body(&head, &mut |_| {})?;
                    Ok(head.status())
                });
                match r {
                    Ok(st) => {
                        lat.push(t.elapsed().as_micros() as u64);
                        if !(200..300).contains(&st) {
                            non2xx += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        h = None;
                    }
                }
            }
            (lat, non2xx, errors)
        }));
    }
    let t0 = Instant::now();
    let mut all = Vec::new();
    let (mut non2xx, mut errors) = (0, 0);
    for h in hs {
        let (l, n, e) = h.join().unwrap();
        all.extend(l);
        non2xx += n;
        errors += e;
    }
    let el = t0.elapsed().as_secs_f64().max(secs);
    all.sort_unstable();
    let pct = |p: f64| {
        if all.is_empty() {
            0
        } else {
            all[((all.len() as f64 * p) as usize).min(all.len() - 1)]
        }
    };
    println!(
        "requests={} rps={:.1} p50_us={} p99_us={} non2xx={non2xx} errors={errors}",
        all.len(),
        all.len() as f64 / el,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.len() < 2 {
        eprintln!("usage: bench-tools engine|stream|upload|streams|idle|hammer --key value ...");
        std::process::exit(2);
    }
    let mut o: HashMap<String, String> = HashMap::new();
    let mut it = argv[2..].iter();
    while let Some(k) = it.next() {
        let v = it.next().cloned().unwrap_or_default();
        o.insert(k.trim_start_matches("--").to_string(), v);
    }
    let s = |k: &str| o.get(k).cloned().unwrap_or_default();
    let num = |k: &str, d: u64| o.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let token = o.get("token").cloned().filter(|t| !t.is_empty());
    let r = match argv[1].as_str() {
        "engine" => engine(&s("socket"), &s("tcp")),
        "stream" => stream(&s("target"), &token, &s("mode"), num("bytes", 1 << 31)),
        "upload" => upload(&s("target"), &token, num("bytes", 1 << 31)),
        "streams" => streams(
            &s("target"),
            &token,
            num("n", 1000) as usize,
            num("bytes", 256 * 1024),
        ),
        "idle" => idle(
            &s("target"),
            &token,
            num("n", 10000) as usize,
            num("hold", 30),
        ),
        "hammer" => hammer(
            &s("target"),
            &token,
            &s("path"),
            num("conns", 10) as usize,
            num("secs", 5) as f64,
        ),
        other => Err(bad(&format!("unknown subcommand {other}"))),
    };
    if let Err(e) = r {
        println!("ok=0 error={}", e.to_string().replace(' ', "_"));
        eprintln!("bench-tools: {e}");
        std::process::exit(1);
    }
}
