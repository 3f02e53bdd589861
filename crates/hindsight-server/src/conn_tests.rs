//! Connection limits and timeouts over real sockets: a served listener,
//! raw TCP clients that misbehave (half-sent heads, trickled or silent
//! bodies, idle keep-alive, many open connections), and shutdown.
//!
//! Timeouts are configured short (hundreds of milliseconds) and each
//! closing is asserted within a generous bound of them (`BOUND`), never
//! a tight one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tests::App;
use crate::{serve, AppState, ServerConfig};

/// How long a connection may take to be closed after its timeout passes,
/// generously (the machine may be loaded).
const BOUND: Duration = Duration::from_secs(10);

struct Server {
    app: App,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), crate::ServerError>>,
}

impl Server {
    async fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Server {
        let app = App::new(tweak);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(app.state.clone(), listener, async move {
            let _ = rx.await;
        }));
        Server {
            app,
            addr,
            stop: Some(tx),
            task,
        }
    }

    fn state(&self) -> &Arc<AppState> {
        &self.app.state
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Sends one request with `Connection: close` and reads the whole
    /// answer: (status, JSON body).
    async fn request(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let mut s = self.connect().await;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let text = read_to_close(&mut s).await.expect("the server answers");
        parse(&text)
    }

    fn metric(&self, line_start: &str) -> f64 {
        let text = self.state().metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// Reads until the server closes the connection (or resets it); `None`
/// when it is still open after [`BOUND`].
async fn read_to_close(s: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&out).into_owned())
}

fn parse(response: &str) -> (u16, Value) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_head_is_closed_after_the_header_timeout() {
    let srv = Server::start(|c| {
        c.header_read_timeout_ms = 300;
        c.idle_timeout_ms = 600_000;
    })
    .await;
    let mut s = srv.connect().await;
    s.write_all(b"POST /v1/behaviors HTTP/1.1\r\nhost: t\r\ncontent-le")
        .await
        .unwrap();
    assert!(
        read_to_close(&mut s).await.is_some(),
        "still open after the header timeout"
    );
    assert_eq!(
        srv.metric(r#"hindsight_connection_timeouts_total{kind="header"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_and_the_connection_closes() {
    let srv = Server::start(|c| {
        c.body_read_timeout_ms = 500;
        c.idle_timeout_ms = 600_000;
        c.header_read_timeout_ms = 600_000;
    })
    .await;
    let mut s = srv.connect().await;
    s.write_all(b"POST /v1/behaviors HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    // One byte a second, for longer than the body timeout.
    let trickle = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if s.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), trickle).await;
    let text = read_to_close(&mut s).await.expect("closed");
    let (status, body) = parse(&text);
    assert_eq!(status, 408, "{text}");
    assert_eq!(body["error"]["code"], "body_timeout", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_deadline_bounds_the_body_too() {
    let srv = Server::start(|c| {
        c.request_timeout_ms = 400;
        c.body_read_timeout_ms = 600_000;
    })
    .await;
    let mut s = srv.connect().await;
    s.write_all(b"POST /v1/behaviors HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\n{")
        .await
        .unwrap();
    let text = read_to_close(&mut s).await.expect("closed");
    assert_eq!(parse(&text).0, 408, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_chunked_body_declaring_a_huge_size_is_closed() {
    let srv = Server::start(|c| {
        c.body_read_timeout_ms = 300;
        c.idle_timeout_ms = 600_000;
        c.header_read_timeout_ms = 600_000;
    })
    .await;
    let mut s = srv.connect().await;
    s.write_all(
        b"POST /v1/behaviors HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\nFFFFFFFFFFFFFFF\r\n{",
    )
    .await
    .unwrap();
    let text = read_to_close(&mut s).await.expect("closed");
    let (status, body) = parse(&text);
    // The body limit (413) or the body timeout (408), whichever the
    // stack meets first; never a hang.
    assert!(status == 408 || status == 413, "{text}");
    assert!(body["error"]["code"].is_string(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let srv = Server::start(|c| {
        c.idle_timeout_ms = 300;
        c.header_read_timeout_ms = 600_000;
    })
    .await;
    let mut s = srv.connect().await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let text = read_to_close(&mut s).await.expect("closed");
    assert_eq!(parse(&text), (200, json!({"status": "ok"})));
    assert_eq!(
        srv.metric(r#"hindsight_connection_timeouts_total{kind="idle"}"#),
        1.0
    );
    // A connection that never sends anything is idle too.
    let mut s = srv.connect().await;
    assert_eq!(read_to_close(&mut s).await.as_deref(), Some(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_beyond_the_limits_through_hyper_gets_the_json_431() {
    let srv = Server::start(|c| c.max_header_bytes = 2000).await;
    let mut s = srv.connect().await;
    let mut req = String::from("GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n");
    for i in 0..150 {
        req.push_str(&format!("x-{i}: v\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let (status, body) = parse(&read_to_close(&mut s).await.expect("closed"));
    assert_eq!(
        (status, &body["error"]["code"]),
        (431, &json!("headers_too_large"))
    );
    // A request line hyper cannot parse is hyper's own bare 400: closed.
    let mut s = srv.connect().await;
    s.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    let text = read_to_close(&mut s).await.expect("closed");
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_a_client_gets_a_json_503() {
    let srv = Server::start(|c| {
        c.max_connections = 3;
        c.retry_after_secs = 2;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(srv.connect().await);
    }
    // Let the server accept them.
    while srv.metric("hindsight_open_connections") < 3.0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut s = srv.connect().await;
    let text = read_to_close(&mut s).await.expect("closed");
    let (status, body) = parse(&text);
    assert_eq!(status, 503, "{text}");
    assert_eq!(body["error"]["code"], "too_many_connections");
    assert!(text.to_lowercase().contains("retry-after: 2"), "{text}");
    assert_eq!(srv.metric("hindsight_connections_refused_total"), 1.0);
    // Once one closes, a new client is served again.
    drop(held.pop());
    let mut served = false;
    for _ in 0..200 {
        if srv.request("GET", "/healthz", "").await.0 == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_goes_on_while_a_thousand_silent_connections_are_open() {
    // 1,000 client sockets and 1,000 server sockets: 2,000 descriptors;
    // this machine's open-file limit is 20,000 (`ulimit -n`).
    let srv = Server::start(|c| {
        c.max_connections = 1100;
        c.idle_timeout_ms = 600_000;
        c.header_read_timeout_ms = 600_000;
    })
    .await;
    let mut held = Vec::with_capacity(1000);
    for i in 0..1000 {
        let mut s = srv.connect().await;
        if i % 2 == 0 {
            // Half of them send one byte of a head and stop.
            s.write_all(b"P").await.unwrap();
        }
        held.push(s);
    }
    while srv.metric("hindsight_open_connections") < 1000.0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    #[cfg(feature = "model")]
    {
        let body =
            json!({"user_id": 5, "candidates": [{"item_id": 101}, {"item_id": 3}]}).to_string();
        for _ in 0..5 {
            let (status, r) = srv.request("POST", "/v1/score", &body).await;
            assert_eq!(status, 200, "{r}");
            assert_eq!(r["scores"].as_array().map(Vec::len), Some(2));
        }
    }
    let (status, r) = srv
        .request("GET", "/v1/users/5/behaviors?limit=3", "")
        .await;
    assert_eq!((status, r["history_len"].as_u64()), (200, Some(60)), "{r}");
    assert_eq!(srv.request("GET", "/healthz", "").await.0, 200);
    assert_eq!(srv.metric("hindsight_connections_refused_total"), 0.0);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_on_silent_or_half_sent_connections() {
    let mut srv = Server::start(|c| {
        c.shutdown_grace_secs = 120;
        c.idle_timeout_ms = 600_000;
        c.header_read_timeout_ms = 600_000;
    })
    .await;
    let silent = srv.connect().await;
    let mut half = srv.connect().await;
    half.write_all(b"POST /v1/behaviors HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    while srv.metric("hindsight_open_connections") < 2.0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    srv.stop.take().unwrap().send(()).unwrap();
    let stopped = tokio::time::timeout(BOUND, &mut srv.task).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the server did not stop well within its 120 s grace: {stopped:?}"
    );
    drop((silent, half));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_a_request_in_flight_before_closing() {
    let mut srv = Server::start(|c| {
        c.shutdown_grace_secs = 120;
        c.body_read_timeout_ms = 60_000;
        c.request_timeout_ms = 60_000;
    })
    .await;
    // A request whose body is still on its way when the shutdown starts.
    let body = json!({"behaviors": [{"user_id": 5, "item_id": 101, "timestamp": 7}]}).to_string();
    let mut s = srv.connect().await;
    let head = format!(
        "POST /v1/behaviors HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..5]).await.unwrap();
    while srv.metric("hindsight_open_connections") < 1.0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The head is parsed and the handler waits for the body.
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(&body.as_bytes()[5..]).await.unwrap();
    // The request is answered (not cut off): draining, the handler
    // refuses new work with a JSON 503, and the connection then closes.
    let text = read_to_close(&mut s)
        .await
        .expect("closed after the answer");
    let (status, r) = parse(&text);
    assert_eq!(
        (status, &r["error"]["code"]),
        (503, &json!("shutting_down")),
        "{text}"
    );
    let stopped = tokio::time::timeout(BOUND, &mut srv.task).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
}
