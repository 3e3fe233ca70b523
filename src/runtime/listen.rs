//! Listening sockets and each worker's accept loop.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use super::Shared;
use crate::http::response::json_error;
use crate::proxy::conn::{serve, Client};
use crate::proxy::io::write_all;
use crate::proxy::Worker;
use crate::upstream::pool::Pool;

/// Binds one `SO_REUSEPORT` listener per worker on the same address. The
/// first bind is made without `SO_REUSEPORT` sharing in mind: if another
/// process already holds the port, start-up fails instead of silently
/// sharing its connections. Port 0 picks a free port for all workers.
pub fn bind_all(bind: IpAddr, port: u16, workers: usize) -> io::Result<Vec<StdListener>> {
    let probe = new_socket(bind, false)?;
    probe
        .bind(&SocketAddr::new(bind, port).into())
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{bind}:{port} is already in use by another process; stop it, or choose \
                     another port with --port, DOCKER_PROXY_PORT or global.port"
                    ),
                )
            } else {
                io::Error::new(e.kind(), format!("cannot bind {bind}:{port}: {e}"))
            }
        })?;
    let port = probe
        .local_addr()?
        .as_socket()
        .map(|a| a.port())
        .unwrap_or(port);
    drop(probe);

    let mut listeners = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let socket = new_socket(bind, true)?;
        socket
            .bind(&SocketAddr::new(bind, port).into())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {bind}:{port}: {e}")))?;
        socket.listen(4096)?;
        socket.set_nonblocking(true)?;
        listeners.push(StdListener::from(socket));
    }
    Ok(listeners)
}

fn new_socket(bind: IpAddr, reuse_port: bool) -> io::Result<Socket> {
    let domain = if bind.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    if bind.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    Ok(socket)
}

/// Accepts connections on one core until the process drains.
pub async fn accept_loop(core: usize, shared: Arc<Shared>, listener: StdListener) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(core, %error, "cannot register listener with the runtime");
            std::process::exit(1);
        }
    };
    let pool = Pool::new(
        shared.socket.clone(),
        shared.snapshot.load().settings.limits.upstream_connect,
    );
    let worker = Rc::new(Worker::new(core, shared.clone(), pool));
    monoio::spawn(close_idle_when_draining(worker.clone()));
    loop {
        let accepted = listener.accept().await;
        if shared.is_draining() {
            // Keep the runtime (and the connections it still serves) alive;
            // the signal thread ends the process after the grace period.
            std::future::pending::<()>().await;
        }
        let (stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(core, %error, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let max = shared.snapshot.load().settings.limits.max_connections;
        if !shared.try_open_connection(max) {
            monoio::spawn(refuse_over_limit(stream));
            continue;
        }
        let worker = worker.clone();
        monoio::spawn(async move {
            let shared = worker.shared.clone();
            start_connection(stream, unmap(addr), worker).await;
            shared.close_connection();
        });
    }
}

/// Once the process drains, keeps closing connections that sit idle
/// between requests, so they do not hold shutdown up until the grace ends.
async fn close_idle_when_draining(worker: Rc<Worker>) {
    loop {
        monoio::time::sleep(Duration::from_millis(100)).await;
        if worker.is_draining() {
            worker.close_idle();
        }
    }
}

/// Runs the TLS handshake when TLS is configured, then serves HTTP.
async fn start_connection(stream: monoio::net::TcpStream, addr: SocketAddr, worker: Rc<Worker>) {
    let fd = stream.as_raw_fd();
    let snapshot = worker.snapshot();
    let Some(tls) = snapshot.tls.clone() else {
        drop(snapshot);
        let client = Client {
            io: stream,
            buf: Vec::new(),
            addr,
            peer_cert: None,
            fd,
        };
        return serve(client, worker).await;
    };
    let timeout = snapshot.settings.limits.header_timeout;
    drop(snapshot);
    // Boxed: the TLS state is large, and an inline future would make every
    // plain-TCP connection task as large as a TLS one.
    Box::pin(serve_tls(stream, addr, fd, tls, timeout, worker)).await;
}

async fn serve_tls(
    stream: monoio::net::TcpStream,
    addr: SocketAddr,
    fd: std::os::fd::RawFd,
    tls: Arc<rustls::ServerConfig>,
    timeout: Duration,
    worker: Rc<Worker>,
) {
    match monoio::time::timeout(timeout, crate::tls::accept(tls, stream)).await {
        Ok(Ok(accepted)) => {
            let peer_cert = accepted.peer_cert.map(|cert| cert.to_vec());
            let client = Client {
                io: accepted.stream,
                buf: Vec::new(),
                addr,
                peer_cert,
                fd,
            };
            serve(client, worker).await;
        }
        Ok(Err(error)) => tracing::debug!(client.addr = %addr, %error, "tls handshake failed"),
        Err(_) => tracing::debug!(client.addr = %addr, "tls handshake timed out"),
    }
}

async fn refuse_over_limit(mut stream: monoio::net::TcpStream) {
    let message = "the proxy is at limits.max_connections; retry later";
    let _ = write_all(&mut stream, json_error(503, message, &[], true)).await;
}

/// IPv4-mapped IPv6 peers are treated as IPv4.
pub fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}
