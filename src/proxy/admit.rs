//! Admission of one request: health endpoints, target checks, and the
//! decision whether and how its body is forwarded.
//!
//! Returns either a response the proxy writes itself or a plan for the
//! body. Authentication and policy evaluation plug in here.

use monoio::io::AsyncReadRent;

use super::conn::{Client, ClientIo};
use super::Worker;
use crate::http::head::{Framing, RequestHead};
use crate::http::response::{json_error, with_body};
use crate::http::target;
use crate::runtime::Snapshot;

/// How the request body reaches the engine.
#[derive(Debug)]
pub enum BodyPlan {
    Empty,
    /// Read whole (for inspection); forwarded with Content-Length.
    Buffered(Vec<u8>),
    /// Streamed: exactly this many bytes.
    Length(u64),
    /// Streamed: chunked, byte for byte.
    Chunked,
}

/// Per-request state that lives until the response is relayed.
#[derive(Debug, Default)]
pub struct RequestContext {}

pub enum Admission {
    Respond { response: Vec<u8>, close: bool },
    Forward { body: BodyPlan, context: RequestContext },
}

fn refuse(status: u16, message: &str, head: &RequestHead) -> Admission {
    // A refused request's body was not read: the connection cannot be
    // reused unless there was none.
    let close = head.framing != Framing::Empty || !head.keep_alive;
    Admission::Respond { response: json_error(status, message, &[], close), close }
}

pub async fn admit<S: ClientIo>(
    client: &mut Client<S>,
    head: &RequestHead,
    snapshot: &Snapshot,
    worker: &Worker,
) -> Admission
where
    S: AsyncReadRent,
{
    worker.count_request();
    if let Some(response) = local_endpoint(head, snapshot, worker) {
        return Admission::Respond { response, close: !head.keep_alive };
    }
    let target = match target::canonicalize(head.target()) {
        Ok(target) => target,
        Err(error) => {
            tracing::debug!(client.addr = %client.addr, %error, "refused request target");
            return refuse(400, &error.to_string(), head);
        }
    };
    if is_form_body(head) {
        let message = "form-encoded request bodies are refused: the engine would read \
                       parameters from them that rules cannot see; send them in the query";
        return refuse(400, message, head);
    }
    let _ = &target;
    let body = match head.framing {
        Framing::Empty => BodyPlan::Empty,
        Framing::Length(n) => BodyPlan::Length(n),
        Framing::Chunked => BodyPlan::Chunked,
        Framing::UntilClose => BodyPlan::Empty,
    };
    Admission::Forward { body, context: RequestContext::default() }
}

/// `application/x-www-form-urlencoded`, in any case, with any parameters.
fn is_form_body(head: &RequestHead) -> bool {
    head.headers().filter(|(n, _)| n.eq_ignore_ascii_case("content-type")).any(|(_, v)| {
        let media = v.split(|&b| b == b';').next().unwrap_or(b"");
        crate::http::head::trim(media).eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
    })
}

/// Health endpoints answered by the proxy itself.
fn local_endpoint(head: &RequestHead, snapshot: &Snapshot, worker: &Worker) -> Option<Vec<u8>> {
    let health = &snapshot.settings.health;
    if !health.enabled || !matches!(head.method(), "GET" | "HEAD") {
        return None;
    }
    let path = head.target().split(|&b| b == b'?').next().unwrap_or(b"");
    let close = !head.keep_alive;
    if path == health.live_path.as_bytes() {
        return Some(with_body(200, "text/plain", b"ok\n", close));
    }
    if path == health.ready_path.as_bytes() {
        return Some(if worker.shared.engine_ready() {
            with_body(200, "text/plain", b"ready\n", close)
        } else {
            json_error(503, "the Docker Engine has not answered _ping recently", &[], close)
        });
    }
    None
}
