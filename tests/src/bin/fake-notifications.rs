//! A freedesktop.org notification server for the end-to-end tests: a real D-Bus peer that owns
//! `org.freedesktop.Notifications` on the bus in `DBUS_SESSION_BUS_ADDRESS`, records every call
//! as a JSON line, and answers each notification as its script says.
//!
//! ```text
//! fake-notifications --record FILE [--script allow,deny,...] [--caps actions,body] [--delay-ms N]
//! ```
//! Script steps, one per notification in order (the last one repeats):
//! `allow`, `always`, `deny` (press that button: ActionInvoked then NotificationClosed),
//! `default` (a click on the notification's body), `dismiss` (closed by the person, reason 2),
//! `expire` (closed by the server, reason 1), `never` (no answer at all).
//! Prints `ready` on stdout once it owns the name; exits when its stdin closes.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zbus::{interface, Connection, OwnedVariant};

const PATH: &str = "/org/freedesktop/Notifications";
const INTERFACE: &str = "org.freedesktop.Notifications";

struct Server {
    script: Vec<String>,
    asked: usize,
    next_id: u32,
    caps: Vec<String>,
    delay: Duration,
    record: Arc<Mutex<std::fs::File>>,
    /// zbus calls the methods on its own thread: the delayed answers run on this runtime.
    runtime: tokio::runtime::Handle,
}

impl Server {
    /// Appends one JSON line in a single write: `Value`'s Display writes token by token,
    /// and a test reading the file meanwhile would see half a record.
    fn record(&self, line: Value) {
        let mut text = line.to_string();
        text.push('\n');
        let mut f = self.record.lock().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.flush().unwrap();
    }
}

async fn action_invoked(conn: &Connection, id: u32, key: &str) {
    if let Err(e) = conn
        .emit_signal(None::<&str>, PATH, INTERFACE, "ActionInvoked", &(id, key))
        .await
    {
        eprintln!("fake-notifications: cannot emit ActionInvoked: {e}");
    }
}

async fn notification_closed(conn: &Connection, id: u32, reason: u32) {
    if let Err(e) = conn
        .emit_signal(
            None::<&str>,
            PATH,
            INTERFACE,
            "NotificationClosed",
            &(id, reason),
        )
        .await
    {
        eprintln!("fake-notifications: cannot emit NotificationClosed: {e}");
    }
}

#[interface(name = "org.freedesktop.Notifications")]
impl Server {
    fn get_capabilities(&self) -> Vec<String> {
        self.record(json!({"event": "get_capabilities"}));
        self.caps.clone()
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "keyport-fake-notifications".into(),
            "keyport".into(),
            "0.1".into(),
            "1.2".into(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &mut self,
        app_name: String,
        replaces_id: u32,
        app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        hints: BTreeMap<String, OwnedVariant>,
        expire_timeout: i32,
        #[zbus(connection)] conn: &Connection,
    ) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let step = self
            .script
            .get(self.asked)
            .or(self.script.last())
            .cloned()
            .unwrap_or_else(|| "never".into());
        self.asked += 1;
        let hints: BTreeMap<String, String> = hints
            .into_iter()
            .map(|(k, v)| (k, format!("{v:?}")))
            .collect();
        self.record(json!({
            "event": "notify", "id": id, "app_name": app_name, "replaces_id": replaces_id,
            "app_icon": app_icon, "summary": summary, "body": body, "actions": actions,
            "hints": hints, "expire_timeout": expire_timeout, "answer": step,
        }));
        let conn = conn.clone();
        let delay = self.delay;
        self.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            match step.as_str() {
                "allow" | "always" | "deny" | "default" => {
                    action_invoked(&conn, id, &step).await;
                    notification_closed(&conn, id, 2).await;
                }
                "dismiss" => notification_closed(&conn, id, 2).await,
                "expire" => notification_closed(&conn, id, 1).await,
                _ => {}
            }
        });
        id
    }

    async fn close_notification(&mut self, id: u32, #[zbus(connection)] conn: &Connection) {
        self.record(json!({"event": "close", "id": id}));
        notification_closed(conn, id, 3).await;
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let record = arg(&args, "--record").ok_or("--record FILE is required")?;
    let list = |s: String| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let server = Server {
        script: list(arg(&args, "--script").unwrap_or_else(|| "never".into())),
        asked: 0,
        next_id: 1,
        caps: list(arg(&args, "--caps").unwrap_or_else(|| "actions,body".into())),
        delay: Duration::from_millis(
            arg(&args, "--delay-ms")
                .map(|d| d.parse())
                .transpose()?
                .unwrap_or(100),
        ),
        record: Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&record)?,
        )),
        runtime: tokio::runtime::Handle::current(),
    };
    let _conn = zbus::connection::Builder::session()
        .name(INTERFACE)
        .serve_at(PATH, server)
        .build()
        .await?;
    println!("ready");
    std::io::stdout().flush()?;
    // Run until the test closes our stdin (or dies).
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await?;
    Ok(())
}
