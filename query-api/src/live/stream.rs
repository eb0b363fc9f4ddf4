//! One client's stream. It starts with what the client missed (after its `Last-Event-ID`:
//! the retained records of its project, then the crossings that fell in the gap), then
//! forwards its project's events as the feed delivers them. It ends when the client falls
//! further behind than its buffer (after `invalidate`), when its caller may no longer see the
//! project, or at shutdown.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use ksa_bus::Bus;
use ksa_schemas::Timestamp;
use ksa_schemas::bus::{LiveMessage, ORDER_UPDATES};
use ksa_state::StateStore;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use warp::http::HeaderMap;
use warp::reply::{Reply, Response};
use warp::sse::Event;

use super::StreamSlot;
use super::crossings;
use super::hub::{Delivery, Position};
use crate::QueryApi;
use crate::auth::{self, now, policy};
use crate::error::ApiError;
use crate::orders::registry;
use crate::routes::Call;

/// An event to write.
struct Out {
    name: &'static str,
    id: String,
    data: Arc<str>,
}

impl Out {
    fn of(delivery: &Delivery) -> Out {
        Out { name: delivery.name, id: delivery.position.id(), data: delivery.data.clone() }
    }

    fn event(&self) -> Event {
        Event::default().event(self.name).id(self.id.clone()).data(self.data.to_string())
    }
}

fn invalidate(reason: &str, position: &Position) -> Out {
    Out { name: "invalidate", id: position.id(), data: json!({"reason": reason}).to_string().into() }
}

/// `GET /api/stream/orders?project=SLUG`.
pub async fn open<S: StateStore, B: Bus>(call: &Call<'_, S, B>) -> Result<Response, ApiError> {
    let caller = call.caller()?;
    let project = call.project()?.clone();
    let api = call.api.clone();
    let live = api.live.clone();
    if !live.hub.started(std::time::Duration::from_secs(10)).await {
        return Err(ApiError::new(warp::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the live feed is starting; retry shortly"));
    }
    let partitions = live.hub.position().offsets.len();
    let resume =
        match call.request.headers.get("last-event-id").map(|v| v.to_str().unwrap_or("")).or_else(|| call.request.param("last_event_id")) {
            Some(text) => Some(Position::parse(text, partitions).ok_or_else(|| {
                ApiError::bad("Last-Event-ID", "not an event id of this stream (give the `id` of the last event received)")
            })?),
            None => None,
        };
    let slot = live.open_stream(caller.user.id).ok_or_else(|| {
        ApiError::too_many(5, format!("too many live streams open (at most {} per user)", live.config.max_streams_per_user))
    })?;
    // The index is loaded before events flow, so crossings and resumes can be measured.
    let index = registry::index(&api, project.id).await?;
    let (receiver, head) = live.hub.subscribe(project.id);
    crossings::watch(&api, project.id);
    let mut queue = VecDeque::new();
    if let Some(from) = resume {
        queue = replay(&api, project.id, &from, &head).await?;
        let (index, at, to) = (index.clone(), from.at.as_micros(), now().as_micros());
        let missed =
            api.compute(move || index.read().map(|i| crossings::missed(i.entries(), &i.rules, at, to)).unwrap_or_default()).await?;
        queue.extend(missed.into_iter().map(|(_, data)| Out { name: "sla_changed", id: head.id(), data: data.into() }));
    }
    let state = Stream {
        api,
        project_id: project.id,
        headers: call.request.headers.clone(),
        client: call.request.client,
        receiver,
        head,
        queue,
        done: false,
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + live.config.heartbeat, live.config.heartbeat),
        recheck: tokio::time::interval_at(tokio::time::Instant::now() + live.config.recheck, live.config.recheck),
        shutdown: live.shutdown(),
        _slot: slot,
    };
    // The client's buffer: one slot more than it may fall behind by, for the `invalidate`
    // that closes it.
    let (sender, mut receiver) = mpsc::channel::<Event>(live.config.client_buffer + 1);
    tokio::spawn(state.run(sender));
    let events = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx).map(|event| event.map(Ok::<Event, Infallible>)));
    let mut response = warp::sse::reply(events).into_response();
    // Proxies must not hold the events back.
    response.headers_mut().insert("x-accel-buffering", warp::http::HeaderValue::from_static("no"));
    Ok(response)
}

/// The project's records retained after `from` up to `head`, as events, in the order they
/// were appended (partitions merged); `invalidate` alone when some are no longer retained or
/// there are more than a client's buffer.
async fn replay<S: StateStore, B: Bus>(
    api: &Arc<QueryApi<S, B>>,
    project_id: i64,
    from: &Position,
    head: &Position,
) -> Result<VecDeque<Out>, ApiError> {
    let limit = api.live.config.client_buffer;
    // Per partition, the project's records in offset order: (offset, appended_at, message).
    let mut partitions: Vec<VecDeque<(i64, Timestamp, LiveMessage)>> = Vec::with_capacity(from.offsets.len());
    let mut count = 0;
    for (partition, (&after, &until)) in from.offsets.iter().zip(head.offsets.iter()).enumerate() {
        let mut found = VecDeque::new();
        let mut after = after;
        let mut first = true;
        while after < until {
            let records = api
                .bus
                .read(ORDER_UPDATES, partition as u32, after, 1_000, std::time::Duration::ZERO)
                .await
                .map_err(|e| ApiError::new(warp::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()))?;
            let Some(last) = records.last().map(|r| r.offset) else { break };
            if first && records[0].offset > after + 1 {
                return Ok(VecDeque::from([invalidate("too_old", head)]));
            }
            first = false;
            for record in records.into_iter().take_while(|r| r.offset <= until) {
                let Ok(message) = serde_json::from_slice::<LiveMessage>(&record.payload) else { continue };
                if message.project_id() != project_id {
                    continue;
                }
                count += 1;
                if count > limit {
                    return Ok(VecDeque::from([invalidate("too_far_behind", head)]));
                }
                found.push_back((record.offset, record.appended_at, message));
            }
            after = last;
        }
        partitions.push(found);
    }
    let mut out = VecDeque::with_capacity(count);
    let mut position = Position { offsets: from.offsets.clone(), at: from.at };
    loop {
        // The partition whose next record was appended first.
        let next = partitions.iter().enumerate().filter_map(|(p, records)| records.front().map(|r| (r.1, p))).min();
        let Some((_, partition)) = next else { break };
        let Some((offset, appended_at, message)) = partitions[partition].pop_front() else { break };
        position.offsets[partition] = offset;
        position.at = position.at.max(appended_at);
        let (name, data): (&'static str, Arc<str>) = match message {
            LiveMessage::OrderUpdated { project_id, row } => ("order_updated", api.live.row_data(&api.state, project_id, &row).await),
            LiveMessage::Invalidate { revision, .. } => {
                ("invalidate", json!({"reason": "settings", "revision": revision}).to_string().into())
            }
            LiveMessage::Recompute { revision, orders_done, orders_total, state, .. } => (
                "recompute",
                json!({"revision": revision, "orders_done": orders_done, "orders_total": orders_total, "state": state}).to_string().into(),
            ),
        };
        out.push_back(Out { name, id: position.id(), data });
    }
    Ok(out)
}

struct Stream<S, B> {
    api: Arc<QueryApi<S, B>>,
    project_id: i64,
    /// The credentials the stream was opened with, checked again every few seconds.
    headers: HeaderMap,
    client: ksa_edge::ClientAddr,
    receiver: broadcast::Receiver<Arc<Delivery>>,
    /// Where live events start: records up to it came by replay.
    head: Position,
    queue: VecDeque<Out>,
    done: bool,
    heartbeat: tokio::time::Interval,
    recheck: tokio::time::Interval,
    shutdown: tokio::sync::watch::Receiver<bool>,
    _slot: StreamSlot,
}

impl<S: StateStore, B: Bus> Stream<S, B> {
    /// Hands events to the client's buffer until the stream ends; a full buffer (the client
    /// reads too slowly) ends it with `invalidate`.
    async fn run(mut self, sender: mpsc::Sender<Event>) {
        let limit = self.api.live.config.client_buffer;
        while let Some(event) = self.next(&sender).await {
            let free = sender.capacity();
            if free <= 1 && limit > 0 {
                let position = self.api.live.hub.position();
                let _ = sender.try_send(invalidate("too_slow", &position).event());
                return;
            }
            if sender.try_send(event).is_err() {
                return;
            }
        }
    }

    async fn next(&mut self, sender: &mpsc::Sender<Event>) -> Option<Event> {
        loop {
            if let Some(out) = self.queue.pop_front() {
                return Some(out.event());
            }
            if self.done {
                return None;
            }
            let mut recheck = false;
            tokio::select! {
                delivery = self.receiver.recv() => match delivery {
                    Ok(delivery) => {
                        let replayed = delivery.record.is_some_and(|(p, o)| self.head.offsets.get(p as usize).is_some_and(|h| o <= *h));
                        if !replayed {
                            return Some(Out::of(&delivery).event());
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        self.done = true;
                        let position = self.api.live.hub.position();
                        self.queue.push_back(invalidate("too_slow", &position));
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => return Some(Event::default().comment("")),
                _ = self.shutdown.wait_for(|stop| *stop) => return None,
                // The client went away.
                _ = sender.closed() => return None,
                _ = self.recheck.tick() => recheck = true,
            }
            if recheck && !self.allowed().await {
                return None;
            }
        }
    }

    /// Whether the caller may still see the project (not disabled, session not ended, token
    /// not revoked, membership kept).
    async fn allowed(&self) -> bool {
        let api = &self.api;
        match auth::authenticate(&api.state, &api.config.auth, &self.headers, self.client).await {
            Ok(caller) => policy::sees(&caller.user, self.project_id),
            Err(_) => false,
        }
    }
}
