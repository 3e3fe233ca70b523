//! One client connection: read a head, admit or refuse it, forward it, relay
//! the response, repeat until either side is done.
//!
//! Requests on a connection are handled one after another (pipelined bytes
//! wait in the read buffer). Each request is authenticated and evaluated on
//! its own by `admit`. An upgrade ends the loop and hands both sockets to
//! `tunnel`.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::UnixStream;

use super::admit::{self, Admission, BodyPlan};
use super::copy::{copy_body, CopyError, Relayed};
use super::filter;
use super::io::{read_append, write_all, COPY_BUF};
use super::splice::SpliceIo;
use super::tunnel;
use super::Worker;
use crate::config::Limits;
use crate::http::body::{BodyTracker, Reframe};
use crate::http::head::{self, Framing, RequestHead, ResponseHead};
use crate::http::response::json_error;
use crate::http::ParseError;
use crate::policy::ResponseFilter;
use crate::runtime::Snapshot;

/// What a client socket must be able to do.
pub trait ClientIo: AsyncReadRent + AsyncWriteRent + Split + SpliceIo + 'static {
    /// Resolves when bytes can be read, without holding a buffer while
    /// waiting: an idle keep-alive connection then costs no read buffer.
    fn wait_readable(&self) -> impl std::future::Future<Output = std::io::Result<()>>;
}

impl ClientIo for monoio::net::TcpStream {
    fn wait_readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> {
        self.readable(false)
    }
}

impl ClientIo for monoio_rustls::ServerTlsStream<monoio::net::TcpStream> {
    async fn wait_readable(&self) -> std::io::Result<()> {
        // Decrypted bytes may already be buffered inside the TLS stream, so
        // the socket's readiness says nothing; read directly.
        Ok(())
    }
}

/// A client connection and the bytes read from it but not used yet.
pub struct Client<S> {
    pub io: S,
    pub buf: Vec<u8>,
    pub addr: SocketAddr,
    /// Verified client certificate (DER), when TLS asked for one.
    pub peer_cert: Option<Vec<u8>>,
    /// The TCP socket under `io`, for shutting down idle connections when
    /// the process drains.
    pub fd: std::os::fd::RawFd,
}

/// How a request/response exchange left the client connection.
enum Next {
    KeepAlive,
    Close,
    Upgrade { upstream: UnixStream },
}

/// Serves one client connection to the end.
pub async fn serve<S: ClientIo>(mut client: Client<S>, worker: Rc<Worker>) {
    let mut deadline = Instant::now() + worker.snapshot().settings.limits.header_timeout;
    loop {
        let snapshot = worker.snapshot();
        let head = match read_head(&mut client, &snapshot, &worker, deadline).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(response) => {
                let _ = write_all(&mut client.io, response).await;
                return;
            }
        };
        // Boxed so that an idle connection's task stays small: only the
        // head-reading state lives in it between requests.
        let next = Box::pin(exchange(&mut client, head, &snapshot, &worker)).await;
        match next {
            Next::KeepAlive => {}
            Next::Close => return,
            Next::Upgrade { upstream } => {
                let idle = snapshot.settings.limits.upgrade_idle;
                drop(snapshot);
                Box::pin(tunnel::run(client, upstream, idle)).await;
                return;
            }
        }
        if worker.is_draining() {
            return;
        }
        // Between requests the idle limit applies until the first byte of
        // the next head arrives; `read_head` then switches to header_timeout.
        deadline = Instant::now() + snapshot.settings.limits.keepalive_idle;
    }
}

/// Reads one request head. `Ok(None)`: the client closed or idled out
/// between requests. `Err`: a response to send before closing.
async fn read_head<S: ClientIo>(
    client: &mut Client<S>,
    snapshot: &Snapshot,
    worker: &Worker,
    mut deadline: Instant,
) -> Result<Option<RequestHead>, Vec<u8>> {
    let limits = &snapshot.settings.limits;
    let mut started = !client.buf.is_empty();
    loop {
        if !client.buf.is_empty() {
            match head::parse_request(&client.buf, limits.max_head) {
                Ok(Some(head)) => {
                    client.buf.drain(..head.len());
                    return Ok(Some(head));
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(client.addr = %client.addr, %error, "bad request head");
                    return Err(json_error(error.status(), &error.to_string(), &[], true));
                }
            }
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        let mut buf = std::mem::take(&mut client.buf);
        let idle = (!started).then(|| worker.idle_guard(client.fd));
        let buffered = idle.as_ref().and_then(|_| worker.buffered_wait());
        if idle.is_some() && worker.is_draining() {
            return Ok(None);
        }
        if idle.is_some() && buffered.is_none() {
            // Wait without a buffer; waiting can be cancelled by the
            // timeout without losing bytes, unlike a read.
            buf = Vec::new();
            match monoio::time::timeout(wait, client.io.wait_readable()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Ok(None),
            }
        }
        if buf.capacity() == 0 {
            buf = Vec::with_capacity(4096);
        }
        let read = monoio::time::timeout(wait, read_append(&mut client.io, buf, 4096)).await;
        drop(buffered);
        drop(idle);
        match read {
            Err(_) if started => {
                let message = "request head not received within limits.header_timeout";
                return Err(json_error(408, message, &[], true));
            }
            Err(_) => return Ok(None),
            Ok((result, buf)) => {
                client.buf = buf;
                match result {
                    Ok(0) | Err(_) => return Ok(None),
                    Ok(_) => {}
                }
            }
        }
        if !started {
            started = true;
            deadline = Instant::now() + limits.header_timeout;
        }
    }
}

/// Handles one request: admission, forwarding, response relay.
async fn exchange<S: ClientIo>(
    client: &mut Client<S>,
    head: RequestHead,
    snapshot: &Snapshot,
    worker: &Worker,
) -> Next {
    let admission = admit::admit(client, &head, snapshot, worker).await;
    let (plan, context) = match admission {
        Admission::Respond {
            mut response,
            close,
        } => {
            if head.method() == "HEAD" {
                // RFC 9110 9.3.2: same head as GET, no body.
                if let Some(end) = memchr::memmem::find(&response, b"\r\n\r\n") {
                    response.truncate(end + 4);
                }
            }
            if !close && head.keep_alive && head.minor_version == 0 {
                mark_keep_alive(&mut response);
            }
            let (result, _) = write_all(&mut client.io, response).await;
            if result.is_ok() && close && head.framing != Framing::Empty {
                linger(client).await;
            }
            return if close || result.is_err() || !head.keep_alive {
                Next::Close
            } else {
                Next::KeepAlive
            };
        }
        Admission::Forward { body, context } => (body, context),
        Admission::Close => return Next::Close,
    };
    forward(
        client,
        &head,
        plan,
        context.filters.as_deref(),
        context.hijack,
        snapshot,
        worker,
    )
    .await
}

/// Most unread request-body bytes discarded before closing after a refusal.
const LINGER_BYTES: usize = 64 * 1024 * 1024;
/// Longest wait for the client to stop sending after a refusal.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Closes gracefully after refusing a request whose body was not read: the
/// client may still be uploading it, and closing with unread bytes makes
/// the kernel send a reset that can destroy the refusal before the client
/// reads it (the docker CLI then shows "broken pipe" instead of the rule's
/// message). So: shut down our side, then read and discard, bounded.
async fn linger<S: ClientIo>(client: &mut Client<S>) {
    let _ = client.io.shutdown().await;
    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    let mut buf = std::mem::take(&mut client.buf);
    while discarded < LINGER_BYTES {
        buf.clear();
        let wait = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(wait, read_append(&mut client.io, buf, COPY_BUF)).await {
            Ok((Ok(n), next)) if n > 0 => {
                discarded += n;
                buf = next;
            }
            _ => return,
        }
    }
}

/// Sends the request upstream and relays the response.
async fn forward<S: ClientIo>(
    client: &mut Client<S>,
    head: &RequestHead,
    body: BodyPlan,
    filters: Option<&ResponseFilter>,
    hijack: bool,
    snapshot: &Snapshot,
    worker: &Worker,
) -> Next {
    // The head and an inspected body, written to the engine in one piece;
    // a retry writes the same bytes again.
    let mut request_bytes = upstream_request(head, &body);
    let started = Instant::now();
    let retryable = matches!(head.method(), "GET" | "HEAD") && matches!(body, BodyPlan::Empty);
    let mut attempt = 0;
    let (mut upstream, response, leftover, arrived) = loop {
        attempt += 1;
        // A retry never takes a pooled connection.
        let conn = match worker.pool.checkout(attempt > 1, started).await {
            Ok(conn) => conn,
            Err(error) => {
                worker.count_upstream_error();
                tracing::error!(%error, "engine unreachable");
                return respond_and_close(client, 502, &error.to_string()).await;
            }
        };
        let reused = conn.reused;
        let mut stream = conn.stream;
        let (sent, bytes) =
            send_request(client, &mut stream, head, request_bytes, &body, snapshot).await;
        request_bytes = bytes;
        match sent {
            Err(SendError::Client) => return Next::Close,
            Err(SendError::Refused(response)) => {
                let (result, _) = write_all(&mut client.io, response).await;
                if result.is_ok() {
                    linger(client).await;
                }
                return Next::Close;
            }
            Err(SendError::Stalled) => {
                // The engine sees the body end early (EOF) and stops
                // waiting; the client learns why, if it still listens.
                drop(stream);
                tracing::debug!(client.addr = %client.addr, "streamed request body stalled");
                let message = "request body stalled: nothing received for limits.body_timeout \
                               while streaming it to the engine; the request was abandoned";
                let (result, _) =
                    write_all(&mut client.io, json_error(408, message, &[], true)).await;
                if result.is_ok() {
                    linger(client).await;
                }
                return Next::Close;
            }
            Err(SendError::Upstream) | Ok(()) => {}
        }
        match read_response_head(client, &mut stream, snapshot, head).await {
            Ok((response, leftover)) => {
                let arrived = Instant::now();
                let elapsed = arrived.saturating_duration_since(started);
                worker.record_upstream_latency(elapsed);
                tracing::debug!(
                    client.addr = %client.addr,
                    http.method = head.method(),
                    http.target = %String::from_utf8_lossy(head.target()),
                    http.status = response.status,
                    upstream.latency_us = elapsed.as_micros() as u64,
                    "forwarded"
                );
                break (stream, response, leftover, arrived);
            }
            Err(HeadError::NothingReceived) if reused && retryable && attempt == 1 => {
                tracing::debug!("pooled engine connection was closed; retrying once");
                continue;
            }
            Err(HeadError::Client) => return Next::Close,
            Err(error) => {
                worker.count_upstream_error();
                let message = match error {
                    HeadError::Bad(e) => format!("the Docker Engine sent an invalid response: {e}"),
                    _ => "the Docker Engine closed the connection without a response".to_string(),
                };
                tracing::warn!(%message, "upstream failure");
                return respond_and_close(client, 502, &message).await;
            }
        }
    };

    if response.status == 101 {
        if !head.upgrade {
            // Tunnelling now would send the client's next (pipelined)
            // request to the engine unauthenticated and unchecked.
            drop(upstream);
            worker.count_upstream_error();
            tracing::warn!(
                client.addr = %client.addr,
                http.method = head.method(),
                "engine answered 101 to a request that asked for no upgrade"
            );
            let message = "the Docker Engine switched protocols (101) although the request \
                           asked for no upgrade; the connection is closed";
            return respond_and_close(client, 502, message).await;
        }
        let out = response_head_bytes(&response, BodyOut::Upgrade, Persist::Implied);
        let (result, _) = write_all(&mut client.io, join(out, &leftover)).await;
        if result.is_err() {
            return Next::Close;
        }
        worker.count_upgrade();
        return Next::Upgrade { upstream };
    }
    let framing = match response.framing(head.method()) {
        Ok(framing) => framing,
        Err(e) => {
            worker.count_upstream_error();
            return respond_and_close(
                client,
                502,
                &format!("invalid response from the engine: {e}"),
            )
            .await;
        }
    };
    if hijack && framing == Framing::UntilClose && is_raw_stream(&response) {
        // A hijacked attach without an upgrade: a two-way raw stream. To
        // any other request such a response is an ordinary body delimited
        // by close, relayed one way below (the client connection closes
        // after it, so nothing the client sends meanwhile is forwarded).
        let out = response_head_bytes(&response, BodyOut::AsIs, Persist::Close);
        let (result, _) = write_all(&mut client.io, join(out, &leftover)).await;
        if result.is_err() {
            return Next::Close;
        }
        return Next::Upgrade { upstream };
    }
    if let Some(filters) = filters.filter(|_| wants_filter(&response, framing)) {
        return relay_filtered(
            client, upstream, head, &response, framing, leftover, filters, snapshot, worker,
            arrived,
        )
        .await;
    }
    // HTTP/1.0 clients do not know chunked: they get the data, delimited
    // by closing the connection.
    let unchunk = head.minor_version == 0 && framing == Framing::Chunked;
    let close_client =
        !head.keep_alive || framing == Framing::UntilClose || unchunk || worker.is_draining();
    let (body, reframe) = if unchunk {
        (BodyOut::Unframed, Reframe::Decode)
    } else if framing == Framing::Empty {
        // `ResponseHead::framing` already says HEAD, 204 and 304 have no
        // body; for an empty 200 `NoBody` changes nothing.
        (BodyOut::NoBody, Reframe::AsIs)
    } else {
        (BodyOut::AsIs, Reframe::AsIs)
    };
    let out = response_head_bytes(&response, body, Persist::after(close_client, head));
    let tracker = BodyTracker::reframing(framing, reframe);
    let relayed = relay_body(client, &mut upstream, tracker, out, leftover).await;
    finish(relayed, upstream, &response, close_client, worker, arrived)
}

/// After a relayed response: the engine connection goes back to the pool
/// when it stopped at a clean message end and the engine keeps it open.
/// `arrived` is when the response head arrived.
fn finish(
    relayed: Relayed,
    upstream: UnixStream,
    response: &ResponseHead,
    close_client: bool,
    worker: &Worker,
    arrived: Instant,
) -> Next {
    match relayed {
        Relayed::Complete { upstream_reusable } => {
            if upstream_reusable && response.keep_alive {
                worker.pool.checkin(upstream, arrived);
            }
            if close_client {
                Next::Close
            } else {
                Next::KeepAlive
            }
        }
        Relayed::Broken => Next::Close,
    }
}

/// JSON bodies are filtered; anything else passes as is.
fn wants_filter(response: &ResponseHead, framing: Framing) -> bool {
    framing != Framing::Empty && response.media_type() == "application/json"
}

/// Relays a JSON response through the request's response filters.
#[allow(clippy::too_many_arguments)]
async fn relay_filtered<S: ClientIo>(
    client: &mut Client<S>,
    mut upstream: UnixStream,
    head: &RequestHead,
    response: &ResponseHead,
    framing: Framing,
    leftover: Vec<u8>,
    filters: &ResponseFilter,
    snapshot: &Snapshot,
    worker: &Worker,
    arrived: Instant,
) -> Next {
    if filter::is_compressed(response.header("content-encoding")) {
        tracing::error!("compressed JSON response cannot be filtered; not sent");
        let message = "the engine's response is compressed and cannot be filtered by policy";
        return respond_and_close(client, 502, message).await;
    }
    // HTTP/1.0 clients cannot read chunked bodies: they get the filtered
    // documents unframed, delimited by closing the connection.
    let chunked = head.minor_version >= 1;
    let close_client = !head.keep_alive || !chunked || worker.is_draining();
    let body = if chunked {
        BodyOut::Rechunked
    } else {
        BodyOut::Unframed
    };
    let out = response_head_bytes(response, body, Persist::after(close_client, head));
    let cap = snapshot.settings.limits.max_filter_document;
    let relayed = filter::relay(
        client,
        &mut upstream,
        framing,
        out,
        leftover,
        filters,
        cap,
        chunked,
    )
    .await;
    finish(relayed, upstream, response, close_client, worker, arrived)
}

enum SendError {
    /// The client went away or broke framing mid-body.
    Client,
    /// The client's body was refused before any of it reached the engine
    /// in a usable form; the response says why.
    Refused(Vec<u8>),
    /// Writing to the engine failed; its response may still say why.
    Upstream,
    /// The client sent no body bytes for `limits.body_timeout`.
    Stalled,
}

/// Writes the head and body to the engine: `request` (the head and an
/// inspected body) first, then a streamed body. Hands `request` back.
async fn send_request<S: ClientIo>(
    client: &mut Client<S>,
    upstream: &mut UnixStream,
    head: &RequestHead,
    request: Vec<u8>,
    body: &BodyPlan,
    snapshot: &Snapshot,
) -> (Result<(), SendError>, Vec<u8>) {
    let (result, request) = write_all(upstream, request).await;
    if result.is_err() {
        return (Err(SendError::Upstream), request);
    }
    let framing = match body {
        BodyPlan::Empty | BodyPlan::Buffered(_) => return (Ok(()), request),
        BodyPlan::Length(n) => Framing::Length(*n),
        BodyPlan::Chunked => Framing::Chunked,
    };
    let limits = &snapshot.settings.limits;
    (
        stream_body(client, upstream, head, framing, limits).await,
        request,
    )
}

/// Streams the request body from the client to the engine.
async fn stream_body<S: ClientIo>(
    client: &mut Client<S>,
    upstream: &mut UnixStream,
    head: &RequestHead,
    framing: Framing,
    limits: &Limits,
) -> Result<(), SendError> {
    if head.expect_continue {
        send_continue(client).await?;
    }
    let pending = std::mem::take(&mut client.buf);
    // The client's chunk framing never reaches the engine: a parser that
    // disagrees with ours about where the body ends could run the rest as
    // an unchecked request.
    let tracker = BodyTracker::reframing(framing, Reframe::Canonical);
    // No total deadline (a `docker load` of many GiB is fine), but a
    // client that stops sending does not hold both connections forever.
    let idle = Some(limits.body_timeout);
    match copy_body(
        &mut client.io,
        upstream,
        tracker,
        Vec::new(),
        pending,
        None,
        idle,
    )
    .await
    {
        // Bytes past the body belong to the next pipelined request.
        Ok(extra) => {
            client.buf = extra;
            Ok(())
        }
        Err(CopyError::Read | CopyError::ClientGone) => Err(SendError::Client),
        Err(CopyError::Idle) => Err(SendError::Stalled),
        Err(CopyError::Write) => Err(SendError::Upstream),
        Err(CopyError::Framing(error)) => Err(SendError::Refused(json_error(
            400,
            &error.to_string(),
            &[],
            true,
        ))),
    }
}

async fn send_continue<S: ClientIo>(client: &mut Client<S>) -> Result<(), SendError> {
    let (result, _) = write_all(&mut client.io, b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()).await;
    result.map_err(|_| SendError::Client)
}

enum HeadError {
    /// The engine closed before sending anything.
    NothingReceived,
    /// The engine closed or failed mid-head.
    Truncated,
    Bad(ParseError),
    /// The client went away while we relayed an interim response.
    Client,
}

/// Reads the final response head, relaying interim 1xx responses (other
/// than 101) to the client.
async fn read_response_head<S: ClientIo>(
    client: &mut Client<S>,
    upstream: &mut UnixStream,
    snapshot: &Snapshot,
    request: &RequestHead,
) -> Result<(ResponseHead, Vec<u8>), HeadError> {
    let max_head = snapshot.settings.limits.max_head.max(64 * 1024);
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut received = false;
    loop {
        if !buf.is_empty() {
            match head::parse_response(&buf, max_head) {
                Ok(Some(response)) => {
                    buf.drain(..response.len());
                    if (100..200).contains(&response.status) && response.status != 101 {
                        // We answer Expect ourselves, so the engine's own
                        // 100 Continue is not relayed.
                        // RFC 9110 15.2: never a 1xx to an HTTP/1.0 client.
                        let interim_ok = request.minor_version >= 1
                            && (response.status != 100 || !request.expect_continue);
                        if interim_ok {
                            let out =
                                response_head_bytes(&response, BodyOut::AsIs, Persist::Implied);
                            let (result, _) = write_all(&mut client.io, out).await;
                            result.map_err(|_| HeadError::Client)?;
                        }
                        continue;
                    }
                    return Ok((response, buf));
                }
                Ok(None) => {}
                Err(e) => return Err(HeadError::Bad(e)),
            }
        }
        let (result, next) = read_append(upstream, buf, 16 * 1024).await;
        buf = next;
        match result {
            Ok(0) | Err(_) if !received => return Err(HeadError::NothingReceived),
            Ok(0) | Err(_) => return Err(HeadError::Truncated),
            Ok(_) => received = true,
        }
    }
}

/// Sends the response head and relays the body as it arrives.
async fn relay_body<S: ClientIo>(
    client: &mut Client<S>,
    upstream: &mut UnixStream,
    tracker: BodyTracker,
    head: Vec<u8>,
    pending: Vec<u8>,
) -> Relayed {
    let until_close = tracker.framing() == Framing::UntilClose;
    let watch = super::watch::for_body(tracker.framing(), client.fd);
    match copy_body(
        upstream,
        &mut client.io,
        tracker,
        head,
        pending,
        watch,
        None,
    )
    .await
    {
        // The engine connection is reusable only at a clean message end.
        Ok(extra) => Relayed::Complete {
            upstream_reusable: extra.is_empty() && !until_close,
        },
        Err(CopyError::Framing(error)) => {
            tracing::warn!(%error, "engine sent a malformed chunked body");
            Relayed::Broken
        }
        Err(_) => Relayed::Broken,
    }
}

/// The request as the engine gets it: original request line, headers
/// without hop-by-hop fields or credentials, framing matching `body`, and
/// the body itself when it was read for inspection.
fn upstream_request(head: &RequestHead, body: &BodyPlan) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 64 + body.inline_len());
    out.extend_from_slice(head.method().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let listed = head::connection_listed(head.headers());
    let mut has_host = false;
    for (name, value) in head.headers() {
        if head::is_hop_by_hop(name)
            || name.eq_ignore_ascii_case("authorization")
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("expect")
            || listed.contains(name)
        {
            continue;
        }
        has_host |= name.eq_ignore_ascii_case("host");
        push_header(&mut out, name.as_bytes(), value);
    }
    if !has_host {
        out.extend_from_slice(b"Host: docker\r\n");
    }
    if head.upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
        for value in head
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case("upgrade"))
        {
            push_header(&mut out, b"Upgrade", value.1);
        }
    }
    match body {
        BodyPlan::Empty => {
            if head.framing != Framing::Empty || matches!(head.method(), "POST" | "PUT" | "PATCH") {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
        }
        BodyPlan::Buffered(bytes) => push_content_length(&mut out, bytes.len() as u64),
        BodyPlan::Length(n) => push_content_length(&mut out, *n),
        BodyPlan::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if let BodyPlan::Buffered(bytes) = body {
        out.extend_from_slice(bytes);
    }
    out
}

fn push_content_length(out: &mut Vec<u8>, length: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, length);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal, without going through `fmt`.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// How the body after a response head reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyOut {
    /// Relayed byte for byte: the engine's framing headers stay.
    AsIs,
    /// A 101: the connection becomes a tunnel.
    Upgrade,
    /// Filtered, so lengths change: re-framed as chunked.
    Rechunked,
    /// Filtered for an HTTP/1.0 client: delimited by closing.
    Unframed,
    /// A response that has no body (to HEAD, 204, 304): no
    /// `Transfer-Encoding`, and a 204 no `Content-Length` either (RFC 9110
    /// sections 8.6, 15.3.5). The Content-Length of a HEAD or 304 response
    /// describes the representation and stays.
    NoBody,
}

/// The `Connection` field a response head gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// `Connection: close`: the client connection closes after it.
    Close,
    /// `Connection: keep-alive`: an HTTP/1.0 client closes after a
    /// response without it.
    KeepAlive,
    /// None: HTTP/1.1 keeps the connection by default.
    Implied,
}

impl Persist {
    /// After a response to `request`, the client connection closes when
    /// `close`.
    fn after(close: bool, request: &RequestHead) -> Persist {
        if close {
            Persist::Close
        } else if request.minor_version == 0 {
            Persist::KeepAlive
        } else {
            Persist::Implied
        }
    }
}

/// The response head as the client gets it: hop-by-hop fields removed,
/// framing headers matching `body`, a `Connection` field as `persist` says.
fn response_head_bytes(response: &ResponseHead, body: BodyOut, persist: Persist) -> Vec<u8> {
    let mut out = Vec::with_capacity(response.len() + 32);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(&mut out, u64::from(response.status));
    out.push(b' ');
    out.extend_from_slice(response.reason());
    out.extend_from_slice(b"\r\n");
    let listed = head::connection_listed(response.headers());
    let reframed = matches!(body, BodyOut::Rechunked | BodyOut::Unframed)
        || (body == BodyOut::NoBody && response.status == 204);
    for (name, value) in response.headers() {
        // The chunked framing of a body relayed as is stays valid.
        let keep_te = body == BodyOut::AsIs && name.eq_ignore_ascii_case("transfer-encoding");
        if (head::is_hop_by_hop(name) && !keep_te)
            || (reframed && name.eq_ignore_ascii_case("content-length"))
            || listed.contains(name)
        {
            continue;
        }
        push_header(&mut out, name.as_bytes(), value);
    }
    match body {
        BodyOut::Upgrade => {
            out.extend_from_slice(b"Connection: Upgrade\r\n");
            for (_, value) in response
                .headers()
                .filter(|(n, _)| n.eq_ignore_ascii_case("upgrade"))
            {
                push_header(&mut out, b"Upgrade", value);
            }
        }
        BodyOut::Rechunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyOut::AsIs | BodyOut::Unframed | BodyOut::NoBody => {}
    }
    match persist {
        Persist::Close if body != BodyOut::Upgrade => {
            out.extend_from_slice(b"Connection: close\r\n")
        }
        Persist::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persist::Close | Persist::Implied => {}
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Adds `Connection: keep-alive` to a complete local response (head and
/// body) for an HTTP/1.0 client whose connection stays open (relayed
/// heads get it from [`Persist::KeepAlive`]).
fn mark_keep_alive(response: &mut Vec<u8>) {
    if let Some(end) = memchr::memmem::find(response, b"\r\n\r\n") {
        let at = end + 2;
        response.splice(at..at, b"Connection: keep-alive\r\n".iter().copied());
    }
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn join(mut head: Vec<u8>, rest: &[u8]) -> Vec<u8> {
    head.extend_from_slice(rest);
    head
}

/// Raw-stream content types the engine uses for hijacked attach/exec.
fn is_raw_stream(response: &ResponseHead) -> bool {
    response.status == 200
        && matches!(
            response.media_type().as_str(),
            "application/vnd.docker.raw-stream" | "application/vnd.docker.multiplexed-stream"
        )
}

async fn respond_and_close<S: ClientIo>(
    client: &mut Client<S>,
    status: u16,
    message: &str,
) -> Next {
    let _ = write_all(&mut client.io, json_error(status, message, &[], true)).await;
    Next::Close
}

/// Reads a whole request body (for inspection), up to
/// `limits.max_inspect_body` bytes of data, within `limits.body_timeout`
/// and with no gap between reads longer than `limits.header_timeout`.
pub async fn read_body<S: ClientIo>(
    client: &mut Client<S>,
    framing: Framing,
    limits: &Limits,
    expect_continue: bool,
) -> Result<Vec<u8>, BodyReadError> {
    let cap = limits.max_inspect_body;
    let deadline = Instant::now() + limits.body_timeout;
    if expect_continue && framing != Framing::Empty {
        let (result, _) =
            write_all(&mut client.io, b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()).await;
        result.map_err(|_| BodyReadError::Closed)?;
    }
    if let Framing::Length(n) = framing {
        if n > cap as u64 {
            return Err(BodyReadError::TooLarge);
        }
    }
    // Requests have no close-delimited bodies; that framing reads nothing.
    let framing = if framing == Framing::UntilClose {
        Framing::Empty
    } else {
        framing
    };
    let mut tracker = BodyTracker::new(framing);
    let mut data = Vec::new();
    loop {
        let used = tracker
            .advance_decoding(&client.buf, &mut data)
            .map_err(BodyReadError::Framing)?;
        client.buf.drain(..used);
        if data.len() > cap {
            return Err(BodyReadError::TooLarge);
        }
        if tracker.is_done() {
            return Ok(data);
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(limits.header_timeout);
        let buf = std::mem::take(&mut client.buf);
        // On expiry the read in flight is abandoned; the connection closes.
        let read = monoio::time::timeout(wait, read_append(&mut client.io, buf, COPY_BUF)).await;
        let Ok((result, buf)) = read else {
            return Err(BodyReadError::TimedOut);
        };
        client.buf = buf;
        match result {
            Ok(0) | Err(_) => return Err(BodyReadError::Closed),
            Ok(_) => {}
        }
    }
}

/// Why an inspected body could not be read.
#[derive(Debug)]
pub enum BodyReadError {
    TooLarge,
    Closed,
    /// `limits.body_timeout` passed, or a gap of `limits.header_timeout`.
    TimedOut,
    Framing(ParseError),
}

impl BodyPlan {
    fn inline_len(&self) -> usize {
        match self {
            BodyPlan::Buffered(bytes) => bytes.len(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_request_drops_credentials_and_hop_by_hop_fields() {
        let raw = "POST /v1.41/containers/create?name=x HTTP/1.1\r\nHost: h\r\n\
                   Authorization: Bearer secret\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
                   Keep-Alive: timeout=5\r\nTE: trailers\r\nContent-Type: application/json\r\n\
                   Content-Length: 2\r\nExpect: 100-continue\r\n\r\n";
        let head = head::parse_request(raw.as_bytes(), 65536).unwrap().unwrap();
        let out = String::from_utf8(upstream_request(&head, &BodyPlan::Length(2))).unwrap();
        assert!(out.starts_with("POST /v1.41/containers/create?name=x HTTP/1.1\r\n"));
        for gone in [
            "Authorization",
            "X-Hop",
            "Keep-Alive",
            "TE:",
            "Connection",
            "Expect",
        ] {
            assert!(!out.contains(gone), "{gone} forwarded in {out}");
        }
        assert!(out.contains("Content-Type: application/json\r\n"));
        assert!(out.contains("Content-Length: 2\r\n"));
        assert!(out.contains("Host: h\r\n"));
    }

    #[test]
    fn upstream_request_keeps_upgrade_headers_for_upgrades() {
        let raw = "POST /exec/1/start HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n\
                   Upgrade: tcp\r\nContent-Length: 2\r\n\r\n";
        let head = head::parse_request(raw.as_bytes(), 65536).unwrap().unwrap();
        let out = String::from_utf8(upstream_request(&head, &BodyPlan::Buffered(b"{}".to_vec())))
            .unwrap();
        assert!(out.contains("Connection: Upgrade\r\n"));
        assert!(out.contains("Upgrade: tcp\r\n"));
        assert!(out.ends_with("Content-Length: 2\r\n\r\n{}"), "{out}");
    }

    #[test]
    fn decimals_are_written_without_fmt() {
        for n in [0, 7, 10, 200, 4096, 1 << 40, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn response_head_marks_close_and_drops_hop_by_hop() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nKeep-Alive: x\r\n\
                   Transfer-Encoding: chunked\r\n\r\n";
        let response = head::parse_response(raw.as_bytes(), 65536)
            .unwrap()
            .unwrap();
        let out = String::from_utf8(response_head_bytes(
            &response,
            BodyOut::AsIs,
            Persist::Close,
        ))
        .unwrap();
        assert!(out.contains("Transfer-Encoding: chunked\r\n"));
        assert!(!out.contains("Keep-Alive"));
        assert!(out.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn bodiless_responses_lose_their_framing_headers() {
        let head_of = |raw: &str| {
            let response = head::parse_response(raw.as_bytes(), 65536)
                .unwrap()
                .unwrap();
            String::from_utf8(response_head_bytes(
                &response,
                BodyOut::NoBody,
                Persist::Implied,
            ))
            .unwrap()
        };
        let out = head_of(
            "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\
             Content-Length: 5\r\nX-A: 1\r\n\r\n",
        );
        assert!(!out.contains("Transfer-Encoding") && !out.contains("Content-Length"));
        assert!(out.contains("X-A: 1\r\n"), "{out}");
        for status in ["304 Not Modified", "200 OK"] {
            let out = head_of(&format!(
                "HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
            ));
            assert!(!out.contains("Transfer-Encoding"), "{out}");
            assert!(out.contains("Content-Length: 5\r\n"), "{out}");
        }
    }

    #[test]
    fn filtered_response_head_is_rechunked_without_a_length() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n";
        let response = head::parse_response(raw.as_bytes(), 65536)
            .unwrap()
            .unwrap();
        let out = response_head_bytes(&response, BodyOut::Rechunked, Persist::Implied);
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("Content-Length"), "{out}");
        assert!(out.ends_with("Transfer-Encoding: chunked\r\n\r\n"), "{out}");
        let out = response_head_bytes(&response, BodyOut::Unframed, Persist::Close);
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("Content-Length") && !out.contains("Transfer-Encoding"));
        assert!(out.ends_with("Connection: close\r\n\r\n"), "{out}");
    }
}
