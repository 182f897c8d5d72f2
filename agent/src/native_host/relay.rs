//! The host's life: the hello, the agent's WebSocket, then the relay until either side ends.
//!
//! Three threads: one reads frames from stdin, one writes frames to stdout (each blocking on
//! its pipe, each behind a bounded queue), and the runtime's, which owns the WebSocket. A
//! browser that stops reading holds up the relay (and then the agent closes the connection at
//! its backlog bound); it never makes the host buffer without end. The process ends when the
//! browser closes stdin, when the agent closes the connection, or when stdout breaks; it starts
//! nothing that outlives it.

use super::frame::{self, Frame, MAX_TO_BROWSER};
use super::hello;
use crate::config::{Config, ConfigError};
use crate::limits::MAX_RESPONSE_BYTES;
use crate::logging::quote;
use crate::server::rpc::{oversize_reply, OVERSIZE_CODE};
use futures_util::{SinkExt, StreamExt};
use keyport_protocol::{Door, ErrorReason, DOOR_HEADER};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How long the extension has to send its hello once the browser started the host.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reaching the agent may take (TCP and the WebSocket handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the frames still queued for the browser may take to go out at the end.
const FLUSH_GRACE: Duration = Duration::from_secs(2);
/// Frames queued in each direction.
const QUEUE: usize = 16;

/// What the stdin thread reads.
enum Incoming {
    Frame(Frame),
    /// The browser closed the port (stdin ended between messages).
    End,
    /// stdin broke, or ended inside a message.
    Broken(std::io::Error),
}

/// Run the host: `config` is the agent's (for `listen` and `max_message_bytes`).
pub fn run(config: Result<Config, ConfigError>, caller: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("native host: cannot start its runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let max_request = config
        .as_ref()
        .map(|c| c.max_message_bytes as usize)
        .unwrap_or(256 * 1024);
    let (in_tx, in_rx) = mpsc::channel(QUEUE);
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    // Neither thread is joined: the reader may sit in a read that only the browser can end, and
    // the process exits past it.
    if let Err(e) = std::thread::Builder::new()
        .name("keyport-stdin".into())
        .spawn(move || read_stdin(in_tx, max_request))
    {
        tracing::error!("native host: cannot start its reader: {e}");
        return ExitCode::FAILURE;
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    if let Err(e) = std::thread::Builder::new()
        .name("keyport-stdout".into())
        .spawn(move || {
            write_stdout(out_rx);
            let _ = done_tx.send(());
        })
    {
        tracing::error!("native host: cannot start its writer: {e}");
        return ExitCode::FAILURE;
    }
    // Every host appends to one log: each line says which process wrote it.
    let span = tracing::info_span!("host", pid = std::process::id());
    let _entered = span.enter();
    tracing::info!(caller = %quote(caller, 120), "native host started");
    let ok = runtime.block_on(serve(config, in_rx, out_tx));
    // The frames still queued (the last answers, an error) go out if the browser reads them.
    let _ = done_rx.recv_timeout(FLUSH_GRACE);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// stdin without std's buffer: that buffer lives as long as the process and would keep the last
/// small frames, PINs among them, in clear (each frame is read into a vector of its own, which the
/// zeroizing allocator wipes when it is freed).
fn unbuffered_stdin() -> std::io::Result<std::fs::File> {
    #[cfg(unix)]
    let fd = std::os::fd::AsFd::as_fd(&std::io::stdin()).try_clone_to_owned()?;
    #[cfg(windows)]
    let fd = std::os::windows::io::AsHandle::as_handle(&std::io::stdin()).try_clone_to_owned()?;
    Ok(std::fs::File::from(fd))
}

fn read_stdin(tx: mpsc::Sender<Incoming>, max: usize) {
    let mut stdin = match unbuffered_stdin() {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.blocking_send(Incoming::Broken(e));
            return;
        }
    };
    loop {
        let item = match frame::read(&mut stdin, max) {
            Ok(Some(f)) => Incoming::Frame(f),
            Ok(None) => Incoming::End,
            Err(e) => Incoming::Broken(e),
        };
        let last = !matches!(item, Incoming::Frame(_));
        if tx.blocking_send(item).is_err() || last {
            return;
        }
    }
}

fn write_stdout(mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut stdout = std::io::stdout().lock();
    while let Some(body) = rx.blocking_recv() {
        if let Err(e) = frame::write(&mut stdout, &body) {
            tracing::info!("native host: the browser no longer reads ({e})");
            return;
        }
    }
}

/// Why the hello got no agent.
fn unavailable(message: String) -> Vec<u8> {
    hello::error(ErrorReason::AgentUnavailable, &message)
}

/// The hello, the connection, the relay. Returns whether the host served the port.
async fn serve(
    config: Result<Config, ConfigError>,
    mut from_browser: mpsc::Receiver<Incoming>,
    to_browser: mpsc::Sender<Vec<u8>>,
) -> bool {
    let first = match tokio::time::timeout(HELLO_TIMEOUT, from_browser.recv()).await {
        Err(_) => {
            tracing::info!("native host: no hello within {HELLO_TIMEOUT:?}");
            let _ = to_browser
                .send(hello::error(
                    ErrorReason::InvalidRequest,
                    "The extension sent no hello.",
                ))
                .await;
            return false;
        }
        Ok(Some(Incoming::Frame(Frame::Message(m)))) => m,
        Ok(Some(Incoming::Frame(Frame::TooLarge(n)))) => {
            let e = hello::HelloError::NotAHello(format!("{n} bytes"));
            let _ = to_browser
                .send(hello::error(e.reason(), &e.to_string()))
                .await;
            return false;
        }
        Ok(_) => {
            tracing::info!("native host: the browser closed the port before the hello");
            return true;
        }
    };
    let hello = match hello::parse(&first) {
        Ok(h) => h,
        Err(e) => {
            tracing::info!("native host: refused the hello: {e}");
            let _ = to_browser
                .send(hello::error(e.reason(), &e.to_string()))
                .await;
            return false;
        }
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("native host: the configuration is invalid: {e}");
            let msg =
                format!("Keyport's configuration is invalid ({e}): `keyport doctor` says more.");
            let _ = to_browser.send(unavailable(msg)).await;
            return false;
        }
    };
    let origin = hello.origin.as_str();
    let mut ws = match connect(config.listen, origin).await {
        Ok(ws) => ws,
        Err(why) => {
            tracing::info!(origin, "native host: no agent: {why}");
            let _ = to_browser.send(unavailable(why)).await;
            return false;
        }
    };
    let url = agent_url(config.listen);
    tracing::info!(origin, agent = %url, "native host: connected to the agent");
    if to_browser.send(hello::ready(&url)).await.is_err() {
        return true;
    }
    let max_request = config.max_message_bytes as usize;
    let (mut up, mut down) = (0u64, 0u64);
    let why = loop {
        tokio::select! {
            msg = from_browser.recv() => match msg {
                Some(Incoming::Frame(Frame::Message(bytes))) => {
                    up += 1;
                    match String::from_utf8(bytes) {
                        Ok(text) => {
                            if ws.send(Message::text(text)).await.is_err() {
                                break "the agent's connection broke";
                            }
                        }
                        Err(_) => {
                            tracing::info!("native host: a message that is not UTF-8");
                            if to_browser.send(not_json()).await.is_err() {
                                break "the browser no longer reads";
                            }
                        }
                    }
                }
                Some(Incoming::Frame(Frame::TooLarge(n))) => {
                    tracing::info!(bytes = n, limit = max_request, "native host: refused a message over the request limit");
                    if to_browser.send(oversize_reply(max_request).into_bytes()).await.is_err() {
                        break "the browser no longer reads";
                    }
                }
                Some(Incoming::End) | None => break "the browser closed the port",
                Some(Incoming::Broken(e)) => {
                    tracing::info!("native host: stdin broke: {e}");
                    break "the browser's pipe broke";
                }
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    down += 1;
                    let Some(out) = for_browser(text.as_str()) else { continue };
                    if to_browser.send(out).await.is_err() {
                        break "the browser no longer reads";
                    }
                }
                Some(Ok(Message::Close(_))) | None => break "the agent closed the connection",
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::info!("native host: the agent's connection failed: {e}");
                    break "the agent's connection failed";
                }
            },
            _ = to_browser.closed() => break "the browser no longer reads",
        }
    };
    tracing::info!(origin, up, down, "native host: done: {why}");
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    true
}

fn agent_url(listen: SocketAddr) -> String {
    format!("ws://{listen}/")
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Open the agent's WebSocket as the page `origin`; `Err` is a sentence for the page.
async fn connect(listen: SocketAddr, origin: &str) -> Result<Ws, String> {
    if listen.port() == 0 {
        return Err(
            "The Keyport agent is configured to listen on any free port (`listen` \
                    port 0): the extension cannot find it. Set a fixed port."
                .into(),
        );
    }
    let url = agent_url(listen);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("Bad agent address {url}: {e}"))?;
    let headers = request.headers_mut();
    headers.insert(
        http::header::ORIGIN,
        http::HeaderValue::from_str(origin).map_err(|e| e.to_string())?,
    );
    headers.insert(
        http::HeaderName::from_bytes(DOOR_HEADER.as_bytes()).map_err(|e| e.to_string())?,
        http::HeaderValue::from_static(Door::Extension.as_str()),
    );
    // The agent's answers are at most MAX_RESPONSE_BYTES; its notifications are small.
    let config = WebSocketConfig::default()
        .max_message_size(Some(2 * MAX_RESPONSE_BYTES))
        .max_frame_size(Some(2 * MAX_RESPONSE_BYTES));
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(listen).await.map_err(|e| {
            format!("The Keyport agent is not running (nothing answers on {listen}: {e}).")
        })?;
        tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| refused(e, origin))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "The Keyport agent on {listen} did not answer within {CONNECT_TIMEOUT:?}."
            ))
        })
}

/// Why the agent refused the handshake, in its own words when it gave some.
fn refused(e: WsError, origin: &str) -> String {
    match e {
        WsError::Http(resp) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            format!(
                "The Keyport agent refused {origin} (HTTP {}): {}",
                resp.status().as_u16(),
                quote(body.trim(), 300)
            )
        }
        other => format!("The Keyport agent's WebSocket handshake failed: {other}"),
    }
}

/// The answer to a frame that is not UTF-8 (browsers send JSON, so only a broken one would).
fn not_json() -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": null,
           "error": {"code": -32700, "message": "Parse error: the message is not JSON."}})
    .to_string()
    .into_bytes()
}

/// What goes to the browser for the agent's message `text`: the message itself when it fits
/// the browser's 1 MB; else an error for each id it answers (a notification that does not fit
/// is dropped: nobody waits for it).
fn for_browser(text: &str) -> Option<Vec<u8>> {
    if text.len() <= MAX_TO_BROWSER {
        return Some(text.as_bytes().to_vec());
    }
    let error = |id: &Value| {
        json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": OVERSIZE_CODE,
            "message": format!(
                "The agent's answer ({} bytes) is larger than a browser lets an extension \
                 receive ({MAX_TO_BROWSER} bytes). Ask for less at once, or use the WebSocket door.",
                text.len()
            ),
            "data": {"reason": ErrorReason::MessageTooLarge.as_str()},
        }})
    };
    let answer = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(batch)) => {
            let errors: Vec<Value> = batch
                .iter()
                .filter_map(|m| m.get("id").map(error))
                .collect();
            (!errors.is_empty()).then_some(Value::Array(errors))
        }
        Ok(msg) => msg.get("id").map(error),
        Err(_) => None,
    };
    tracing::info!(
        bytes = text.len(),
        "native host: an answer over the browser's 1 MB limit: {}",
        if answer.is_some() {
            "answered with MESSAGE_TOO_LARGE"
        } else {
            "dropped (no id)"
        }
    );
    answer.map(|a| a.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big_result(id: Value) -> String {
        json!({"jsonrpc": "2.0", "id": id, "result": "x".repeat(MAX_TO_BROWSER)}).to_string()
    }

    #[test]
    fn answers_that_fit_go_out_verbatim() {
        let text = r#"{"jsonrpc":"2.0","id":7,"result":{"a" : 1}}"#;
        assert_eq!(for_browser(text).unwrap(), text.as_bytes());
        let edge = "x".repeat(MAX_TO_BROWSER);
        assert_eq!(for_browser(&edge).unwrap().len(), MAX_TO_BROWSER);
    }

    #[test]
    fn a_too_large_answer_becomes_an_error_for_its_id() {
        for id in [json!(7), json!("req-1"), json!(-1.5)] {
            let out: Value =
                serde_json::from_slice(&for_browser(&big_result(id.clone())).unwrap()).unwrap();
            assert_eq!(out["id"], id);
            assert_eq!(out["error"]["code"], -32007);
            assert_eq!(out["error"]["data"]["reason"], "MESSAGE_TOO_LARGE");
            assert!(out["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1048576"));
        }
        // A batch: one error per answer.
        let half = "x".repeat(MAX_TO_BROWSER / 2 + 10);
        let batch = json!([
            {"jsonrpc": "2.0", "id": 1, "result": half},
            {"jsonrpc": "2.0", "id": 2, "result": half},
        ])
        .to_string();
        let out: Value = serde_json::from_slice(&for_browser(&batch).unwrap()).unwrap();
        assert_eq!(out[0]["id"], 1);
        assert_eq!(out[1]["id"], 2);
        assert_eq!(out[1]["error"]["data"]["reason"], "MESSAGE_TOO_LARGE");
        // A notification nobody waits for is dropped.
        let note = json!({"jsonrpc": "2.0", "method": "pkcs11.slotEvent", "params": {"x": half, "y": half}})
            .to_string();
        assert_eq!(for_browser(&note), None);
    }

    #[test]
    fn the_agents_address() {
        assert_eq!(
            agent_url("127.0.0.1:10443".parse().unwrap()),
            "ws://127.0.0.1:10443/"
        );
        assert_eq!(agent_url("[::1]:4000".parse().unwrap()), "ws://[::1]:4000/");
    }
}
