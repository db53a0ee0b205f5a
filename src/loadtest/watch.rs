//! `loadtest --subscribers N`: N buyers' seat maps following the event's live stream
//! (`GET /events/{id}/inventory/stream`) while the load runs, and checked afterwards: every
//! subscriber, applying only what it received on its own connection, must end showing
//! exactly what PostgreSQL holds.
//!
//! Ten thousand subscribers on the same two cores as the server must cost the server as
//! little as possible, so the client side is lean: each subscriber keeps its seats as one
//! byte each, and a message is parsed once for all of them. That is sound because the server
//! sends one message per id to everyone: the first subscriber to receive an id parses it,
//! and every other one compares the bytes it received with the parsed message's bytes (a
//! `memcmp`) before applying the parsed form — a subscriber that got different bytes for an
//! id is reported, never silently trusted. Each subscriber is one task on a plain socket
//! (an HTTP/1.0 request, so the stream comes without chunked framing) reading into one
//! buffer it reuses: nothing is allocated per message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Reconnections one subscriber may make (after the server dropped it) before giving up.
const RECONNECTS_MAX: u32 = 100;
/// Subscribers connecting at once.
const CONNECTING_AT_ONCE: usize = 256;
/// The largest message a subscriber accepts (a whole state of a 200,000-seat event fits).
const MESSAGE_BYTES_MAX: usize = 64 << 20;

/// Seat statuses, one byte each.
const AVAILABLE: u8 = 0;
const HELD: u8 = 1;
const BOOKED: u8 = 2;

fn status_byte(status: &str) -> anyhow::Result<u8> {
    Ok(match status {
        "AVAILABLE" => AVAILABLE,
        "RESERVED" => HELD,
        "BOOKED" => BOOKED,
        other => bail!("unknown seat status {other:?}"),
    })
}

/// Where each seat and section sits in a subscriber's arrays: fixed by the first whole
/// state any subscriber receives (the run's event gains no section while it runs).
#[derive(Default)]
struct Layout {
    seat_at: HashMap<i64, u32>,
    section_at: HashMap<i64, u32>,
}

/// Counts per section: available, held, booked.
type Counts = (u32, u32, u32);

/// A message in the form subscribers apply.
enum Parsed {
    State {
        seats: Vec<u8>,
        sections: Vec<Counts>,
    },
    Change {
        seats: Vec<(u32, u8)>,
        sections: Vec<(u32, Counts)>,
    },
}

#[derive(Deserialize)]
struct WireRow {
    /// Runs of seats: `[first id, first number, count]`.
    seats: Vec<[i64; 3]>,
}

#[derive(Deserialize)]
struct WireSection {
    id: i64,
    available: u32,
    held: u32,
    booked: u32,
    #[serde(default)]
    rows: Option<Vec<WireRow>>,
    /// Seats that are not available, by status.
    #[serde(default)]
    seats: HashMap<String, Vec<IdOrRun>>,
}

/// An item of a seat list: a lone id, or a run `[first, count]` of neighbours.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdOrRun {
    One(i64),
    Run([i64; 2]),
}

fn expand(list: &[IdOrRun]) -> impl Iterator<Item = i64> + '_ {
    list.iter().flat_map(|item| match *item {
        IdOrRun::One(id) => id..id + 1,
        IdOrRun::Run([first, count]) => first..first + count,
    })
}

impl WireSection {
    fn seat_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.rows
            .iter()
            .flatten()
            .flat_map(|row| &row.seats)
            .flat_map(|&[first, _, count]| first..first + count)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    sections: Vec<WireSection>,
    #[serde(default)]
    seats: HashMap<String, Vec<IdOrRun>>,
    #[serde(default)]
    new_sections: Vec<WireSection>,
}

/// Every message seen, parsed once: id → (the data's bytes, the parsed form), for whole
/// states and changes apart (a whole state carries the id of the change it follows).
#[derive(Default)]
struct Messages {
    states: HashMap<Vec<u8>, (Vec<u8>, Arc<Parsed>)>,
    changes: HashMap<Vec<u8>, (Vec<u8>, Arc<Parsed>)>,
}

impl Messages {
    fn of(&mut self, state: bool) -> &mut HashMap<Vec<u8>, (Vec<u8>, Arc<Parsed>)> {
        if state {
            &mut self.states
        } else {
            &mut self.changes
        }
    }
}

/// What one subscriber shows.
#[derive(Default)]
struct View {
    seats: Vec<u8>,
    sections: Vec<Counts>,
    /// Set once a whole state was applied.
    started: bool,
    /// The id of the last message applied (empty before the first).
    last_id: Vec<u8>,
    /// Why the subscriber stopped following, if it did.
    failed: Option<String>,
}

/// What the subscribers saw, for the report.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchReport {
    pub subscribers: usize,
    /// Seconds until every subscriber had its first whole state.
    pub connect_seconds: f64,
    pub messages: u64,
    pub messages_per_subscriber: f64,
    pub bytes: u64,
    /// Times the server closed a subscriber's stream (too slow) and it resumed.
    pub reconnects: u64,
    /// Subscribers whose seats and counts equal PostgreSQL's at the end.
    pub matching: usize,
    /// The others, with the first reasons.
    pub mismatched: usize,
    pub failures: Vec<String>,
}

/// N subscribers following one event.
pub struct Watchers {
    views: Vec<Arc<Mutex<View>>>,
    layout: Arc<OnceLock<Layout>>,
    messages: u64,
    counters: Arc<Counters>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    connect_seconds: f64,
}

#[derive(Default)]
struct Counters {
    messages: AtomicU64,
    bytes: AtomicU64,
    reconnects: AtomicU64,
}

/// What every subscriber task shares.
struct Shared {
    addr: SocketAddr,
    host: String,
    path: String,
    layout: Arc<OnceLock<Layout>>,
    messages: Mutex<Messages>,
    counters: Arc<Counters>,
}

impl Watchers {
    /// Connects `count` subscribers to `event_id`'s stream and waits until each has its
    /// first whole state.
    pub async fn connect(target: &str, event_id: i64, count: usize) -> anyhow::Result<Watchers> {
        let authority = target
            .strip_prefix("http://")
            .context("the target must be http://host:port")?
            .trim_end_matches('/');
        let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(authority)?
            .next()
            .with_context(|| format!("cannot resolve {authority}"))?;
        let layout = Arc::new(OnceLock::new());
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            addr,
            host: authority.to_string(),
            path: format!("/events/{event_id}/inventory/stream"),
            layout: layout.clone(),
            messages: Mutex::new(Messages::default()),
            counters: counters.clone(),
        });
        let stop = CancellationToken::new();
        let started = Instant::now();
        let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTING_AT_ONCE));
        let mut views = Vec::with_capacity(count);
        let mut tasks = Vec::with_capacity(count);
        let mut ready = Vec::with_capacity(count);
        for _ in 0..count {
            let view = Arc::new(Mutex::new(View::default()));
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let permit = gate.clone().acquire_owned().await.expect("never closed");
            tasks.push(tokio::spawn(follow(
                shared.clone(),
                view.clone(),
                stop.clone(),
                ready_tx,
                permit,
            )));
            views.push(view);
            ready.push(ready_rx);
        }
        for (i, r) in ready.into_iter().enumerate() {
            match tokio::time::timeout(Duration::from_secs(120), r).await {
                Ok(Ok(())) => {}
                _ => {
                    stop.cancel();
                    let why = views[i].lock().expect("not poisoned").failed.clone();
                    bail!(
                        "subscriber {i} never received its first state: {}",
                        why.unwrap_or_else(|| "no answer".into())
                    );
                }
            }
        }
        Ok(Watchers {
            views,
            layout,
            messages: 0,
            counters,
            stop,
            tasks,
            connect_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Waits (at most `within`) until every subscriber shows what PostgreSQL holds for
    /// `event_id`, then stops them and reports.
    pub async fn finish(
        mut self,
        pool: &PgPool,
        event_id: i64,
        within: Duration,
    ) -> anyhow::Result<WatchReport> {
        let (want_seats, want_sections) = self.stored(pool, event_id).await?;
        let deadline = Instant::now() + within;
        let mut mismatched: Vec<usize>;
        loop {
            mismatched = self
                .views
                .iter()
                .enumerate()
                .filter(|(_, v)| {
                    let v = v.lock().expect("not poisoned");
                    v.seats != want_seats || v.sections != want_sections
                })
                .map(|(i, _)| i)
                .collect();
            if mismatched.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.messages = self.counters.messages.load(Ordering::Relaxed);
        let failures = mismatched
            .iter()
            .take(5)
            .map(|&i| {
                let v = self.views[i].lock().expect("not poisoned");
                let wrong = v
                    .seats
                    .iter()
                    .zip(&want_seats)
                    .filter(|(a, b)| a != b)
                    .count();
                format!(
                    "subscriber {i}: {wrong} seats differ, sections {:?} vs {:?}, last id {}{}",
                    v.sections,
                    want_sections,
                    String::from_utf8_lossy(&v.last_id),
                    v.failed
                        .as_ref()
                        .map(|f| format!(", stopped: {f}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        let subscribers = self.views.len();
        Ok(WatchReport {
            subscribers,
            connect_seconds: self.connect_seconds,
            messages: self.messages,
            messages_per_subscriber: self.messages as f64 / subscribers.max(1) as f64,
            bytes: self.counters.bytes.load(Ordering::Relaxed),
            reconnects: self.counters.reconnects.load(Ordering::Relaxed),
            matching: subscribers - mismatched.len(),
            mismatched: mismatched.len(),
            failures,
        })
    }

    /// PostgreSQL's seats and counts, laid out as the subscribers keep them.
    async fn stored(&self, pool: &PgPool, event_id: i64) -> anyhow::Result<(Vec<u8>, Vec<Counts>)> {
        let layout = self
            .layout
            .get()
            .context("no subscriber received a state")?;
        let mut seats = vec![AVAILABLE; layout.seat_at.len()];
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, status FROM seats WHERE event_id = $1")
                .bind(event_id)
                .fetch_all(pool)
                .await?;
        for (id, status) in rows {
            let at = *layout
                .seat_at
                .get(&id)
                .with_context(|| format!("seat {id} was never streamed"))?;
            seats[at as usize] = status_byte(&status)?;
        }
        let mut sections = vec![(0, 0, 0); layout.section_at.len()];
        let rows: Vec<(i64, i32, i32, i32)> = sqlx::query_as(
            "SELECT id, available, held, booked FROM event_sections WHERE event_id = $1",
        )
        .bind(event_id)
        .fetch_all(pool)
        .await?;
        for (id, a, h, b) in rows {
            let at = *layout
                .section_at
                .get(&id)
                .with_context(|| format!("section {id} was never streamed"))?;
            sections[at as usize] = (a as u32, h as u32, b as u32);
        }
        Ok((seats, sections))
    }
}

/// One subscriber: connects, applies every message, and resumes with `Last-Event-ID` when
/// the server drops it, until stopped.
async fn follow(
    shared: Arc<Shared>,
    view: Arc<Mutex<View>>,
    stop: CancellationToken,
    ready: tokio::sync::oneshot::Sender<()>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut ready = Some(ready);
    let mut permit = Some(permit);
    let mut attempts = 0;
    let mut buf = Vec::with_capacity(4 << 10);
    let outcome = loop {
        let last_id = view.lock().expect("not poisoned").last_id.clone();
        buf.clear();
        let connected = tokio::select! {
            () = stop.cancelled() => break Ok(()),
            s = subscribe(&shared, &last_id, &mut buf) => s,
        };
        let ended = match connected {
            Ok(socket) => {
                read(
                    &shared,
                    &view,
                    socket,
                    &mut buf,
                    &stop,
                    &mut ready,
                    &mut permit,
                )
                .await
            }
            Err(e) => Err(e),
        };
        if stop.is_cancelled() {
            break Ok(());
        }
        attempts += 1;
        if attempts > RECONNECTS_MAX {
            break Err(anyhow::anyhow!(
                "gave up after {RECONNECTS_MAX} reconnections: {ended:?}"
            ));
        }
        if view.lock().expect("not poisoned").started {
            shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if let Err(e) = outcome {
        view.lock().expect("not poisoned").failed = Some(format!("{e:#}"));
    }
}

/// Asks for the stream over HTTP/1.0 (so the body is the raw stream, delimited by the
/// connection's end) and reads the response header; leaves in `buf` what followed it.
async fn subscribe(
    shared: &Shared,
    last_id: &[u8],
    buf: &mut Vec<u8>,
) -> anyhow::Result<TcpStream> {
    let mut socket = TcpStream::connect(shared.addr).await?;
    socket.set_nodelay(true)?;
    let mut request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: text/event-stream\r\n",
        shared.path, shared.host
    )
    .into_bytes();
    if !last_id.is_empty() {
        request.extend_from_slice(b"Last-Event-ID: ");
        request.extend_from_slice(last_id);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    socket.write_all(&request).await?;
    let end = loop {
        if let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") {
            break end;
        }
        if buf.len() > 16 << 10 || socket.read_buf(buf).await? == 0 {
            bail!("no response header");
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") && !head.starts_with("http/1.0 200") {
        bail!(
            "the stream answered {}",
            head.lines().next().unwrap_or_default()
        );
    }
    if head.contains("transfer-encoding") {
        bail!("a chunked answer to an HTTP/1.0 request");
    }
    buf.drain(..end + 4);
    Ok(socket)
}

/// Reads one connection's messages until it ends, parsing frames in place in `buf`.
async fn read(
    shared: &Shared,
    view: &Mutex<View>,
    mut socket: TcpStream,
    buf: &mut Vec<u8>,
    stop: &CancellationToken,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> anyhow::Result<()> {
    // How far `buf` has been searched for the end of a frame: a whole state arrives in many
    // reads, and searching it from the start after each would be quadratic.
    let mut searched = 0;
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let mut start = 0;
        while let Some(end) = memchr::memmem::find(&buf[searched..], b"\n\n") {
            let end = searched + end + 2;
            if let Some((id, state, data)) = sse_fields(&buf[start..end]) {
                let parsed = parsed(shared, id, state, data)?;
                apply(&mut view.lock().expect("not poisoned"), &parsed, id)?;
                shared.counters.messages.fetch_add(1, Ordering::Relaxed);
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                    permit.take();
                }
            }
            start = end;
            searched = end;
        }
        // Keep only the unfinished frame, at the front.
        buf.drain(..start);
        searched = buf.len().saturating_sub(1);
        if buf.len() >= MESSAGE_BYTES_MAX {
            bail!("a message over {MESSAGE_BYTES_MAX} bytes");
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(buf.len().max(4096));
        }
        let n = tokio::select! {
            () = &mut stopped => return Ok(()),
            n = socket.read_buf(buf) => n?,
        };
        if n == 0 {
            return Ok(()); // the server ended the stream
        }
        shared.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The `id`, whether it is a whole state, and the `data` of one frame, when it has data.
fn sse_fields(frame: &[u8]) -> Option<(&[u8], bool, &[u8])> {
    let (mut id, mut state, mut data) = (None, false, None);
    for line in memchr::memchr_iter(b'\n', frame).scan(0, |from, end| {
        let line = &frame[*from..end];
        *from = end + 1;
        Some(line)
    }) {
        if let Some(v) = line.strip_prefix(b"id: ") {
            id = Some(v);
        } else if let Some(v) = line.strip_prefix(b"event: ") {
            state = v == b"state";
        } else if let Some(v) = line.strip_prefix(b"data: ") {
            data = Some(v);
        }
    }
    Some((id?, state, data?))
}

/// The parsed form of message `id`, parsing it if nobody has; errors when this subscriber
/// received other bytes for the id than the first one did.
fn parsed(shared: &Shared, id: &[u8], state: bool, data: &[u8]) -> anyhow::Result<Arc<Parsed>> {
    let known = |messages: &mut Messages| -> anyhow::Result<Option<Arc<Parsed>>> {
        match messages.of(state).get(id) {
            Some((bytes, parsed)) if bytes == data => Ok(Some(parsed.clone())),
            Some(_) => bail!(
                "message {} arrived with different contents on two connections",
                String::from_utf8_lossy(id)
            ),
            None => Ok(None),
        }
    };
    if let Some(parsed) = known(&mut shared.messages.lock().expect("not poisoned"))? {
        return Ok(parsed);
    }
    let wire: WireMessage = serde_json::from_slice(data).context("a message is not JSON")?;
    let layout = shared.layout.get_or_init(|| layout_of(&wire));
    let parsed = Arc::new(parse(layout, state, &wire)?);
    let mut messages = shared.messages.lock().expect("not poisoned");
    if let Some(first) = known(&mut messages)? {
        return Ok(first); // another subscriber parsed it meanwhile
    }
    messages
        .of(state)
        .insert(id.to_vec(), (data.to_vec(), parsed.clone()));
    Ok(parsed)
}

fn layout_of(state: &WireMessage) -> Layout {
    let mut layout = Layout::default();
    for section in &state.sections {
        let next = layout.section_at.len() as u32;
        layout.section_at.insert(section.id, next);
        for id in section.seat_ids() {
            let next = layout.seat_at.len() as u32;
            layout.seat_at.insert(id, next);
        }
    }
    layout
}

fn parse(layout: &Layout, state: bool, wire: &WireMessage) -> anyhow::Result<Parsed> {
    if !wire.new_sections.is_empty() {
        bail!("a section was added during the run");
    }
    let section = |s: &WireSection| -> anyhow::Result<(u32, Counts)> {
        let at = *layout
            .section_at
            .get(&s.id)
            .with_context(|| format!("unknown section {}", s.id))?;
        Ok((at, (s.available, s.held, s.booked)))
    };
    let seat_at = |id: i64| -> anyhow::Result<u32> {
        layout
            .seat_at
            .get(&id)
            .copied()
            .with_context(|| format!("unknown seat {id}"))
    };
    if state {
        let mut seats = vec![AVAILABLE; layout.seat_at.len()];
        let mut sections = vec![(0, 0, 0); layout.section_at.len()];
        for s in &wire.sections {
            let (at, counts) = section(s)?;
            sections[at as usize] = counts;
            for id in s.seat_ids() {
                seats[seat_at(id)? as usize] = AVAILABLE;
            }
            for (status, ids) in &s.seats {
                let status = status_byte(status)?;
                for id in expand(ids) {
                    seats[seat_at(id)? as usize] = status;
                }
            }
        }
        return Ok(Parsed::State { seats, sections });
    }
    let mut seats = Vec::new();
    for (status, ids) in &wire.seats {
        let status = status_byte(status)?;
        for id in expand(ids) {
            seats.push((seat_at(id)?, status));
        }
    }
    let sections = wire
        .sections
        .iter()
        .map(section)
        .collect::<Result<_, _>>()?;
    Ok(Parsed::Change { seats, sections })
}

fn apply(view: &mut View, parsed: &Parsed, id: &[u8]) -> anyhow::Result<()> {
    match parsed {
        Parsed::State { seats, sections } => {
            view.seats.clone_from(seats);
            view.sections.clone_from(sections);
            view.started = true;
        }
        Parsed::Change { seats, sections } => {
            if !view.started {
                bail!("a change before any state");
            }
            for &(at, status) in seats {
                view.seats[at as usize] = status;
            }
            for &(at, counts) in sections {
                view.sections[at as usize] = counts;
            }
        }
    }
    view.last_id.clear();
    view.last_id.extend_from_slice(id);
    Ok(())
}
