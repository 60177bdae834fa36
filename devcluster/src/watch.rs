//! Watch streams: newline-delimited JSON events, resume from the history window, bookmarks,
//! `timeoutSeconds`, and 410 Gone as an ERROR event.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use crate::errors::ApiError;
use crate::resources::ResourceInfo;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{App, Ctx};
use crate::store::{EventType, WatchEvent, present};
use crate::table;

/// Longest watch the server keeps open when the client gives no timeout.
const MAX_WATCH: Duration = Duration::from_secs(30 * 60);

struct Filter {
    info: ResourceInfo,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    shape: table::Shape,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// Translates a store event for this watcher (selector transitions become ADDED/DELETED).
    fn translate(&self, ev: &WatchEvent) -> Option<&'static str> {
        if ev.gr != self.info.gr() {
            return None;
        }
        if self.ns.as_ref().is_some_and(|n| *n != ev.namespace) {
            return None;
        }
        let cur = self.matches(&ev.object);
        let t = match ev.etype {
            EventType::Added => cur.then_some("ADDED"),
            EventType::Deleted => cur.then_some("DELETED"),
            EventType::Modified => {
                let prev = ev.prev.as_ref().is_none_or(|p| self.matches(p));
                match (prev, cur) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }?;
        Some(t)
    }

    /// Encodes a translated store event, reusing the event's shared encoding when possible.
    fn encode(&self, ev: &WatchEvent, t: &'static str) -> Bytes {
        let same_version = ev.object.get("apiVersion").and_then(Value::as_str)
            == Some(&self.info.api_version())
            && ev.object.get("kind").and_then(Value::as_str) == Some(&self.info.kind);
        if self.shape == table::Shape::Full && same_version && t == ev.etype.as_str() {
            return ev.line.get_or_init(|| raw_line(t, &ev.object)).clone();
        }
        self.line(t, present(&ev.object, &self.info))
    }

    fn line(&self, etype: &str, obj: Value) -> Bytes {
        let obj = match self.shape {
            _ if etype == "BOOKMARK" || etype == "ERROR" => obj,
            table::Shape::Table => {
                let rv = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
                table::table(std::slice::from_ref(&obj), rv, "Metadata", &self.info)
            }
            table::Shape::Metadata => table::partial(&obj),
            table::Shape::Full => obj,
        };
        let mut b = serde_json::to_vec(&json!({"type": etype, "object": obj})).unwrap_or_default();
        b.push(b'\n');
        Bytes::from(b)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.line(
            "BOOKMARK",
            json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": meta}),
        )
    }
}

fn raw_line(etype: &str, obj: &Value) -> Bytes {
    let mut b = format!("{{\"type\":\"{etype}\",\"object\":").into_bytes();
    if serde_json::to_writer(&mut b, obj).is_err() {
        return Bytes::new();
    }
    b.extend_from_slice(b"}\n");
    Bytes::from(b)
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = ReceiverStream::new(rx);
    let body = Body::from_stream(futures::StreamExt::map(
        stream,
        Ok::<Bytes, std::convert::Infallible>,
    ));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn expired_response(filter: &Filter, e: &ApiError) -> Response {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(filter.line("ERROR", e.to_status()));
    stream_response(rx)
}

/// Starts a watch for `info` in `ns` (None = all namespaces); `name` pins one object (`/resource/name?watch`).
pub fn start(
    app: Arc<App>,
    ctx: &Ctx,
    info: ResourceInfo,
    ns: Option<String>,
    name: Option<String>,
) -> Result<Response, ApiError> {
    let labels = LabelSelector::parse(ctx.q("labelSelector").unwrap_or_default())?;
    let mut field_sel = ctx.q("fieldSelector").unwrap_or_default().to_string();
    if let Some(n) = &name {
        if !field_sel.is_empty() {
            field_sel.push(',');
        }
        field_sel.push_str(&format!("metadata.name={n}"));
    }
    let fields = FieldSelector::parse(&field_sel, &info.plural)?.renamed(info.storage_field_paths());
    let shape = table::shape(ctx.header("accept"));
    let filter = Filter {
        info,
        ns,
        labels,
        fields,
        shape,
    };
    let bookmarks = ctx
        .q("allowWatchBookmarks")
        .is_some_and(|v| v == "true" || v == "1");
    let send_initial = ctx.q("sendInitialEvents").is_some_and(|v| v == "true");
    let timeout = ctx
        .q("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(MAX_WATCH)
        .min(MAX_WATCH);
    let rv_param = ctx.q("resourceVersion").filter(|v| !v.is_empty());
    let since = match rv_param {
        None | Some("0") => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: {v:?}: must be a non-negative integer"
            ))
        })?),
    };
    if since.is_some_and(|rv| app.faults.expire_watch(&ctx.user.name, rv)) {
        let e = ApiError::expired(format!(
            "too old resource version: {} (injected)",
            since.unwrap_or_default()
        ));
        return Ok(expired_response(&filter, &e));
    }
    let (initial, sub) = {
        let st = app.store.lock();
        let sub = match st.subscribe(since) {
            Ok(s) => s,
            Err(e) => return Ok(expired_response(&filter, &e)),
        };
        let initial: Vec<Value> = if since.is_none() || send_initial {
            st.list(&filter.info, filter.ns.as_deref(), None)
                .filter(|(_, o)| filter.matches(o))
                .map(|(_, o)| present(o, &filter.info))
                .collect()
        } else {
            Vec::new()
        };
        (initial, sub)
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let drop_after = app.faults.watch_drop_after(&ctx.user.name);
    let dropping = drop_after.is_some_and(|d| d < timeout);
    let counters = Arc::clone(&app);
    let mut shutdown = app.shutdown.clone();
    let interval = app.bookmark_interval;
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + drop_after.map_or(timeout, |d| d.min(timeout));
        let mut last_rv = sub.rv;
        let mut rx_events = sub.rx;
        for obj in initial {
            if tx.send(filter.line("ADDED", obj)).await.is_err() {
                return;
            }
        }
        if send_initial && tx.send(filter.bookmark(last_rv, true)).await.is_err() {
            return;
        }
        for ev in sub.backlog {
            if let Some(t) = filter.translate(&ev)
                && tx.send(filter.encode(&ev, t)).await.is_err()
            {
                return;
            }
        }
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                r = rx_events.recv() => match r {
                    Ok(ev) => {
                        if ev.rv <= last_rv { continue; }
                        last_rv = ev.rv;
                        if let Some(t) = filter.translate(&ev)
                            && tx.send(filter.encode(&ev, t)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        debug!(skipped = n, "watcher lagged; closing so the client resumes");
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(filter.bookmark(last_rv, false)).await.is_err() { return; }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if dropping {
                        let rv = counters.store.lock().current_rv();
                        counters.faults.count_watch_dropped(rv);
                    }
                    return;
                }
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(stream_response(rx))
}
