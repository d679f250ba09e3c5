//! evalverse-serve: the composed judge as an HTTP reward server for RL loops and evaluator
//! agents (axum + tokio). Requests from many clients are batched together into the model: one
//! worker thread owns the judge and takes up to `max_batch` clips, waiting at most `max_wait`
//! for a batch to fill (TGI's queue + batching task, at clip granularity). Admission control
//! answers 429 (with Retry-After) beyond `max_concurrent` requests in flight and 413 beyond
//! `max_body` bytes; a request past its deadline gets 504 and a client that disconnects has its
//! queued work dropped. Local video paths must lie under an allowed media root; uploads live in
//! a private temporary folder; remote URLs are never fetched. `/metrics` speaks Prometheus.
//!
//! Endpoints: `POST /v1/score`, `POST /v1/compare`, `POST /v1/chat/completions` (the
//! OpenAI-compatible subset vLLM clients of video judges send), `GET /health`, `GET /v1/models`,
//! `GET /metrics` (docs/SERVE.md has the schemas).

pub mod chat;
pub mod media;
pub mod metrics;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use evalverse_data::cache::DecodeCache;
use evalverse_judge::score::ClipResult;
use evalverse_judge::{ClipInput, Judge};
use evalverse_model::ModelBackend;
use evalverse_train::judge_spec::OpenedJudge;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Semaphore};

use crate::metrics::Metrics;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Folders local video paths must lie in (none: local paths are refused).
    pub allowed_media_roots: Vec<PathBuf>,
    /// Most clips judged together in one model batch.
    pub max_batch: usize,
    /// Longest a batch waits to fill once its first clip arrived.
    pub max_wait: Duration,
    /// Requests served at once; more get 429.
    pub max_concurrent: usize,
    /// Largest request body in bytes; larger gets 413.
    pub max_body: usize,
    /// Most items in one request.
    pub max_items: usize,
    /// A request not answered by then gets 504 (its queued work is dropped).
    pub timeout: Duration,
    /// Bearer API key required on every endpoint but /health (none: open).
    pub api_key: Option<String>,
    /// Decode cache folder (clips and operator evidence, by content hash).
    pub cache_dir: PathBuf,
    /// The name `/v1/models` gives the judge.
    pub model_name: String,
    /// Prompts per forward pass inside a batch.
    pub prompts_per_pass: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            allowed_media_roots: vec![],
            max_batch: 8,
            max_wait: Duration::from_millis(20),
            max_concurrent: 64,
            max_body: 64 << 20,
            max_items: 256,
            timeout: Duration::from_secs(600),
            api_key: None,
            cache_dir: std::env::temp_dir().join("evalverse-serve-cache"),
            model_name: "evalverse-judge".into(),
            prompts_per_pass: 16,
        }
    }
}

/// An error answered to the client: `{"error": {"message", "type", "code"}}` with its status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: &str) -> Self {
        ApiError {
            status,
            message: message.to_string(),
        }
    }
    pub fn bad_request(m: &str) -> Self {
        ApiError::new(400, m)
    }
    pub fn forbidden(m: &str) -> Self {
        ApiError::new(403, m)
    }
    pub fn internal(m: &str) -> Self {
        ApiError::new(500, m)
    }
    fn kind(&self) -> &'static str {
        match self.status {
            401 => "authentication_error",
            403 => "permission_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            504 => "timeout_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        }
    }
    fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"message": self.message, "type": self.kind(), "code": self.status}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, axum::Json(self.body())).into_response();
        if self.status == 429 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        r
    }
}

/// One clip of a `/v1/score` request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreItem {
    /// Echoed in the result (default: the item's index).
    #[serde(default)]
    pub id: Option<String>,
    /// A path under an allowed media root (or `file://` path), `data:video/mp4;base64,...`,
    /// `data:video/jpeg;base64,<f1>,<f2>,...`, or `{"frames": [base64 JPEG/PNG...], "fps": F}`.
    pub video: media::VideoArg,
    /// The prompt the clip was generated from.
    #[serde(default)]
    pub prompt: Option<String>,
    /// A reference video (not read by this judge: refused per item).
    #[serde(default)]
    pub reference: Option<String>,
    /// Dimensions to judge (all of the judge's taxonomy when absent).
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// Keep the VLM's rationale in each judgement (default false).
    #[serde(default)]
    pub rationale: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreRequest {
    items: Vec<ScoreItem>,
}

/// The items of a `/v1/score` body: a 400 naming what is wrong with a body that is not a score
/// request, has no items or more than `max_items`.
pub fn parse_score_request(body: &[u8], max_items: usize) -> Result<Vec<ScoreItem>, ApiError> {
    let req: ScoreRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(&format!("the body is not a score request: {e}")))?;
    if req.items.is_empty() {
        return Err(ApiError::bad_request("'items' is empty"));
    }
    if req.items.len() > max_items {
        return Err(ApiError::bad_request(&format!(
            "{} items; at most {max_items} per request",
            req.items.len()
        )));
    }
    Ok(req.items)
}

/// A `/v1/score` item's answer: the clip's result, or its error with a status.
#[derive(Debug, Serialize, Deserialize)]
pub struct ItemResult {
    #[serde(flatten)]
    pub result: ClipResult,
    /// The item's status: 200, or the 4xx/5xx of its error.
    pub status: u16,
}

/// The `/v1/score` answer: per item, in the order given, and the rewards array RL loops
/// consume (mean final soft score over the judged dimensions; null for an item that failed or
/// has nothing scored).
#[derive(Debug, Serialize, Deserialize)]
pub struct ScoreResponse {
    pub model: String,
    pub results: Vec<ItemResult>,
    pub rewards: Vec<Option<f64>>,
}

/// Work for the model thread: the clips of one request, and where to send the answer.
struct Work {
    job: Job,
    enqueued: Instant,
}

enum Job {
    /// Pointwise judgements; batched with other requests' clips.
    Score {
        clips: Vec<WorkClip>,
        reply: oneshot::Sender<Vec<ClipResult>>,
    },
    /// A prompt group compared pair by pair (its pairs are a batch of their own).
    Compare {
        group: CompareGroup,
        reply: oneshot::Sender<Result<CompareResponse, ApiError>>,
    },
}

impl Work {
    fn clips(&self) -> usize {
        match &self.job {
            Job::Score { clips, .. } => clips.len(),
            Job::Compare { group, .. } => group.videos.len(),
        }
    }
    fn abandoned(&self) -> bool {
        match &self.job {
            Job::Score { reply, .. } => reply.is_closed(),
            Job::Compare { reply, .. } => reply.is_closed(),
        }
    }
}

struct WorkClip {
    id: String,
    video: PathBuf,
    label: String,
    prompt: String,
    dimensions: Vec<String>,
    rationale: bool,
}

struct AppState {
    cfg: ServeConfig,
    roots: Vec<PathBuf>,
    uploads: tempfile::TempDir,
    queue: std::sync::Mutex<mpsc::Sender<Work>>,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    dimensions: Vec<String>,
    /// The judge's preprocessing (chat requests may restate it, not change it).
    frames: evalverse_data::video::FrameSpec,
    completions: AtomicU64,
}

/// A server ready to serve: its router and the model thread behind it.
pub struct Server {
    pub router: Router,
    worker: std::thread::JoinHandle<()>,
    state: Arc<AppState>,
}

/// Load the judge on its own thread (on `device`) and build the server.
pub fn start<B: ModelBackend>(
    opened: OpenedJudge,
    taxonomy: evalverse_data::taxonomy::Taxonomy,
    dtype: evalverse_train::recipe::Dtype,
    device: B::Device,
    cfg: ServeConfig,
) -> Result<Server, String>
where
    B::Device: Send + 'static,
{
    let roots = media::canonical_roots(&cfg.allowed_media_roots)?;
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = mpsc::channel::<Work>();
    type Ready = Result<(Vec<String>, evalverse_data::video::FrameSpec), String>;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Ready>();
    let wcfg = cfg.clone();
    let wmetrics = metrics.clone();
    let worker = std::thread::Builder::new()
        .name("evalverse-judge".into())
        .spawn(move || {
            let judge = match evalverse_eval::pipeline::load::<B>(&opened, taxonomy, dtype, &device)
            {
                Ok(j) => j,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let dims = judge
                .taxonomy
                .dimension_ids()
                .iter()
                .map(|d| d.to_string())
                .collect();
            let _ = ready_tx.send(Ok((dims, judge.spec.frames.clone())));
            run_worker(&judge, rx, &wcfg, &wmetrics);
        })
        .map_err(|e| format!("model thread: {e}"))?;
    let (dimensions, frames) = ready_rx
        .recv()
        .map_err(|_| "the model thread ended while loading the judge".to_string())??;
    let uploads = tempfile::Builder::new()
        .prefix("evalverse-serve-uploads-")
        .tempdir()
        .map_err(|e| format!("upload folder: {e}"))?;
    let state = Arc::new(AppState {
        permits: Arc::new(Semaphore::new(cfg.max_concurrent.max(1))),
        roots,
        uploads,
        queue: std::sync::Mutex::new(tx),
        metrics,
        dimensions,
        frames,
        completions: AtomicU64::new(0),
        cfg,
    });
    let router = Router::new()
        .route("/v1/score", post(score))
        .route("/v1/compare", post(compare))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(state.cfg.max_body))
        .with_state(state.clone());
    Ok(Server {
        router,
        worker,
        state,
    })
}

impl Server {
    /// Serve on `listener` until `shutdown` resolves; in-flight requests finish (drain), new
    /// connections are refused, then the model thread ends.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let r = axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        // Closing the queue ends the model thread once it has answered what it holds.
        let Server { worker, state, .. } = self;
        drop(state);
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        r
    }
}

/// Serve on `addr` (`HOST:PORT`) in a tokio runtime of its own until SIGTERM or Ctrl-C, then
/// drain; `bound` is told the address actually bound (port 0 picks one).
pub fn run_blocking(
    server: Server,
    addr: &str,
    bound: impl FnOnce(std::net::SocketAddr),
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
        bound(listener.local_addr()?);
        server.serve(listener, shutdown_signal()).await
    })
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The model thread: take a batch (up to `max_batch` clips, waiting at most `max_wait` after
/// the first), drop the work whose client is gone, judge the rest together, answer each.
fn run_worker<B: ModelBackend>(
    judge: &Judge<B>,
    rx: mpsc::Receiver<Work>,
    cfg: &ServeConfig,
    m: &Metrics,
) {
    let cache = DecodeCache::new(&cfg.cache_dir);
    while let Ok(first) = rx.recv() {
        let mut clips = first.clips();
        let mut batch = vec![first];
        let deadline = Instant::now() + cfg.max_wait;
        while clips < cfg.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(w) => {
                    clips += w.clips();
                    batch.push(w);
                }
                Err(_) => break,
            }
        }
        m.queue_depth.fetch_sub(clips as i64, Ordering::Relaxed);
        batch.retain(|w| !w.abandoned());
        for w in &batch {
            m.queue_seconds.observe(w.enqueued.elapsed().as_secs_f64());
        }
        let mut scores = Vec::new();
        for w in batch {
            match w.job {
                Job::Score { clips, reply } => scores.push((clips, reply)),
                Job::Compare { group, reply } => {
                    m.batch_clips.observe(group.videos.len() as f64);
                    let _ = reply.send(compare_group(judge, &group, &cache, cfg, m));
                }
            }
        }
        if scores.is_empty() {
            continue;
        }
        m.batch_clips
            .observe(scores.iter().map(|(c, _)| c.len()).sum::<usize>() as f64);
        let lists: Vec<&[WorkClip]> = scores.iter().map(|(c, _)| c.as_slice()).collect();
        let answers = judge_batch(judge, &lists, &cache, cfg, m);
        for ((_, reply), a) in scores.into_iter().zip(answers) {
            let _ = reply.send(a);
        }
    }
}

/// Judge the clips of every work item of a batch together; one result list per work item.
fn judge_batch<B: ModelBackend>(
    judge: &Judge<B>,
    batch: &[&[WorkClip]],
    cache: &DecodeCache,
    cfg: &ServeConfig,
    m: &Metrics,
) -> Vec<Vec<ClipResult>> {
    let mut inputs = Vec::new();
    let mut clips: Vec<&WorkClip> = Vec::new();
    for (wi, w) in batch.iter().enumerate() {
        for (ci, c) in w.iter().enumerate() {
            inputs.push(ClipInput::new(format!("{wi}:{ci}"), &c.video, &c.prompt));
            clips.push(c);
        }
    }
    let t = Instant::now();
    let prepared = judge.prepare(&inputs, cache, |_, _| {});
    m.decode_seconds.observe(t.elapsed().as_secs_f64());
    let mut examples = Vec::new();
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    for (input, c) in inputs.iter().zip(&clips) {
        if let Some(w) = prepared.skip_reason(&input.id) {
            errors.insert(
                input.id.clone(),
                format!("the video could not be decoded: {w}"),
            );
            continue;
        }
        match judge.examples_for(input, &c.dimensions, &prepared) {
            Ok(e) => examples.extend(e),
            Err(e) => {
                errors.insert(input.id.clone(), e.to_string());
            }
        }
    }
    let t = Instant::now();
    let judged = judge.judge(
        examples,
        &inputs,
        &prepared,
        cfg.prompts_per_pass,
        |_, _| {},
    );
    m.inference_seconds.observe(t.elapsed().as_secs_f64());
    let mut by_clip: BTreeMap<String, Vec<evalverse_judge::Judgement>> = BTreeMap::new();
    let failure = match judged {
        Ok(js) => {
            m.judgements.fetch_add(js.len() as u64, Ordering::Relaxed);
            for j in js {
                by_clip.entry(j.clip_id.clone()).or_default().push(j);
            }
            None
        }
        Err(e) => Some(e.to_string()),
    };
    let mut out: Vec<Vec<ClipResult>> = batch.iter().map(|_| Vec::new()).collect();
    for (input, c) in inputs.iter().zip(&clips) {
        let wi: usize = input
            .id
            .split(':')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut r = match (errors.get(&input.id), &failure) {
            (Some(e), _) => error_result(c, e.clone()),
            (None, Some(e)) => error_result(c, e.clone()),
            (None, None) => {
                let mut js = by_clip.remove(&input.id).unwrap_or_default();
                for j in &mut js {
                    j.clip_id = c.id.clone();
                    if !c.rationale {
                        j.answer.clear();
                    }
                }
                ClipResult::judged(c.id.clone(), c.label.clone(), Some(c.prompt.clone()), js)
            }
        };
        r.id = c.id.clone();
        out[wi].push(r);
    }
    out
}

fn error_result(c: &WorkClip, e: String) -> ClipResult {
    let mut r = ClipResult::judged(
        c.id.clone(),
        c.label.clone(),
        Some(c.prompt.clone()),
        vec![],
    );
    r.error = Some(e);
    r
}

/// Bearer key check in constant time (no early exit on the first differing byte).
fn authorised(cfg: &ServeConfig, headers: &HeaderMap) -> bool {
    let Some(key) = &cfg.api_key else {
        return true;
    };
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let (a, b) = (got.as_bytes(), key.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

fn finish(st: &AppState, endpoint: &str, r: Result<Response, ApiError>) -> Response {
    let r = r.unwrap_or_else(|e| e.into_response());
    st.metrics.request(endpoint, r.status().as_u16());
    r
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    finish(
        &st,
        "/health",
        Ok(axum::Json(serde_json::json!({"status": "ok"})).into_response()),
    )
}

async fn models(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = if authorised(&st.cfg, &headers) {
        Ok(axum::Json(serde_json::json!({
            "object": "list",
            "data": [{"id": st.cfg.model_name, "object": "model", "owned_by": "evalverse",
                      "dimensions": st.dimensions}],
        }))
        .into_response())
    } else {
        Err(ApiError::new(401, "a valid bearer API key is required"))
    };
    finish(&st, "/v1/models", r)
}

async fn metrics_text(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = if authorised(&st.cfg, &headers) {
        Ok((
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            st.metrics.render(),
        )
            .into_response())
    } else {
        Err(ApiError::new(401, "a valid bearer API key is required"))
    };
    finish(&st, "/metrics", r)
}

/// A request body, or the error its reading gave (413 beyond `max_body`), counted like any
/// other answer.
type Body = Result<Bytes, BytesRejection>;

fn body_bytes(body: Body) -> Result<Bytes, ApiError> {
    body.map_err(|e| ApiError::new(e.status().as_u16(), &e.body_text()))
}

/// A judging endpoint: counted in flight while `inner` answers the body, then finished.
async fn judging<F: Future<Output = Result<Response, ApiError>>>(
    st: &AppState,
    endpoint: &str,
    body: Body,
    inner: impl FnOnce(Bytes) -> F,
) -> Response {
    st.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let r = match body_bytes(body) {
        Ok(b) => inner(b).await,
        Err(e) => Err(e),
    };
    st.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    finish(st, endpoint, r)
}

async fn score(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (st, headers) = (&*st, &headers);
    judging(st, "/v1/score", body, |b| async move {
        score_inner(st, headers, &b).await
    })
    .await
}

/// Judge `clips` (one request's) in the model thread's next batch.
async fn judge_clips(st: &AppState, clips: Vec<WorkClip>) -> Result<Vec<ClipResult>, ApiError> {
    let (tx, rx) = oneshot::channel();
    st.metrics
        .queue_depth
        .fetch_add(clips.len() as i64, Ordering::Relaxed);
    enqueue(
        st,
        Work {
            job: Job::Score { clips, reply: tx },
            enqueued: Instant::now(),
        },
    )?;
    answer(st, rx).await
}

async fn chat_completions(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (st, headers) = (&*st, &headers);
    judging(st, "/v1/chat/completions", body, |b| async move {
        chat_inner(st, headers, &b).await
    })
    .await
}

async fn chat_inner(st: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let _permit = admit(st, headers)?;
    let call = chat::parse_chat_request(body, &st.frames)?;
    known_dimensions(st, &call.dimensions, "")?;
    let v = media::resolve(&call.video, call.frames_fps, &st.roots, st.uploads.path())?;
    let clip = WorkClip {
        id: "0".into(),
        video: v.path.clone(),
        label: call.video.label(),
        prompt: call.prompt.clone(),
        dimensions: call.dimensions.clone(),
        rationale: true,
    };
    let mut judged = judge_clips(st, vec![clip]).await?;
    drop(v);
    let r = judged.pop().expect("one result per clip");
    if let Some(e) = &r.error {
        return Err(ApiError::new(422, e));
    }
    let id = st.completions.fetch_add(1, Ordering::Relaxed);
    Ok(axum::Json(chat::completion(&st.cfg.model_name, id, &r, call.rationale)).into_response())
}

async fn score_inner(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let _permit = admit(st, headers)?;
    let req = ScoreRequest {
        items: parse_score_request(body, st.cfg.max_items)?,
    };
    // Validate each item; the good ones go to the model, the bad ones answer with their error.
    let mut slots: Vec<Result<usize, ApiError>> = Vec::with_capacity(req.items.len());
    let mut clips = Vec::new();
    let mut uploads = Vec::new();
    for (i, it) in req.items.iter().enumerate() {
        let id = it.id.clone().unwrap_or_else(|| i.to_string());
        let checked = (|| {
            let prompt = it
                .prompt
                .as_deref()
                .filter(|p| !p.trim().is_empty())
                .ok_or_else(|| ApiError::bad_request(&format!("item {i}: no prompt")))?;
            if it.reference.is_some() {
                return Err(ApiError::bad_request(&format!(
                    "item {i}: a reference video is not read by this judge (its prompts have none)"
                )));
            }
            known_dimensions(st, &it.dimensions, &format!("item {i}: "))?;
            let v = media::resolve(&it.video, None, &st.roots, st.uploads.path())
                .map_err(|e| ApiError::new(e.status, &format!("item {i}: {}", e.message)))?;
            Ok((prompt.to_string(), v))
        })();
        match checked {
            Ok((prompt, v)) => {
                slots.push(Ok(clips.len()));
                clips.push(WorkClip {
                    id,
                    video: v.path.clone(),
                    label: it.video.label(),
                    prompt,
                    dimensions: it.dimensions.clone(),
                    rationale: it.rationale,
                });
                uploads.push(v);
            }
            Err(e) => slots.push(Err(e)),
        }
    }
    if clips.is_empty() {
        // Nothing to judge: the request fails with its first item's error.
        let first = slots.into_iter().find_map(Result::err).expect("an error");
        return Err(first);
    }
    let mut judged = judge_clips(st, clips)
        .await?
        .into_iter()
        .map(Some)
        .collect::<Vec<_>>();
    drop(uploads);
    let mut results = Vec::with_capacity(slots.len());
    for (i, s) in slots.into_iter().enumerate() {
        let item = &req.items[i];
        let id = item.id.clone().unwrap_or_else(|| i.to_string());
        results.push(match s {
            Ok(k) => {
                let r = judged[k].take().expect("one result per clip");
                let status = if r.error.is_some() { 422 } else { 200 };
                ItemResult { result: r, status }
            }
            Err(e) => ItemResult {
                result: ClipResult {
                    id,
                    video: item.video.label(),
                    prompt: item.prompt.clone(),
                    scores: BTreeMap::new(),
                    soft: BTreeMap::new(),
                    judgements: vec![],
                    error: Some(e.message),
                },
                status: e.status,
            },
        });
    }
    let rewards = results.iter().map(|r| r.result.reward()).collect();
    // 200 when any item was judged; when none was, the first item's own status.
    let status = if results.iter().any(|r| r.status == 200) {
        StatusCode::OK
    } else {
        StatusCode::from_u16(results[0].status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY)
    };
    Ok((
        status,
        axum::Json(ScoreResponse {
            model: st.cfg.model_name.clone(),
            results,
            rewards,
        }),
    )
        .into_response())
}

/// Every dimension named must be the judge's: a 400 naming the first that is not (after
/// `prefix`, e.g. the item) and the judge's own.
fn known_dimensions(st: &AppState, dims: &[String], prefix: &str) -> Result<(), ApiError> {
    match dims.iter().find(|d| !st.dimensions.contains(d)) {
        Some(d) => Err(ApiError::bad_request(&format!(
            "{prefix}dimension '{d}' is not the judge's (known: {})",
            st.dimensions.join(", ")
        ))),
        None => Ok(()),
    }
}

/// Admission of a judging request: the API key, then a place among `max_concurrent` (429
/// beyond it); the permit is held until the answer is sent.
fn admit(
    st: &AppState,
    headers: &HeaderMap,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    if !authorised(&st.cfg, headers) {
        return Err(ApiError::new(401, "a valid bearer API key is required"));
    }
    st.permits.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            429,
            &format!(
                "the server is serving {} requests; retry after a second",
                st.cfg.max_concurrent
            ),
        )
    })
}

fn enqueue(st: &AppState, w: Work) -> Result<(), ApiError> {
    st.queue
        .lock()
        .expect("queue lock")
        .send(w)
        .map_err(|_| ApiError::new(503, "the server is shutting down"))
}

/// The model thread's answer, or 504 past the deadline (the work is dropped with the receiver).
async fn answer<T>(st: &AppState, rx: oneshot::Receiver<T>) -> Result<T, ApiError> {
    match tokio::time::timeout(st.cfg.timeout, rx).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(_)) => Err(ApiError::internal("the model thread dropped the request")),
        Err(_) => Err(ApiError::new(
            504,
            &format!("not judged within {} s", st.cfg.timeout.as_secs()),
        )),
    }
}

/// One video of a `/v1/compare` group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareVideo {
    #[serde(default)]
    pub id: Option<String>,
    /// As `/v1/score`'s `video`.
    pub video: media::VideoArg,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareRequest {
    /// The prompt every video of the group was generated from.
    prompt: String,
    videos: Vec<CompareVideo>,
    #[serde(default)]
    dimensions: Vec<String>,
}

struct CompareGroup {
    ids: Vec<String>,
    videos: Vec<PathBuf>,
    prompt: String,
    dimensions: Vec<String>,
}

/// One unordered pair of a dimension: P(a better) shown first and second, and their
/// order-debiased mean.
#[derive(Debug, Serialize, Deserialize)]
pub struct Preference {
    pub a: String,
    pub b: String,
    /// P(a better) with a shown as "Video A".
    pub p_a_first: f64,
    /// P(a better) with a shown as "Video B" (1 - P(b better) with b first).
    pub p_a_second: f64,
    /// The mean of the two: position bias removed.
    pub p_a_better: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DimensionComparison {
    /// Per video, in the order given: the mean debiased P(better) against every other video.
    pub win_rates: Vec<f64>,
    pub preferences: Vec<Preference>,
}

/// The `/v1/compare` answer (Pref-GRPO's per-video win rates).
#[derive(Debug, Serialize, Deserialize)]
pub struct CompareResponse {
    pub model: String,
    pub ids: Vec<String>,
    pub dimensions: BTreeMap<String, DimensionComparison>,
    /// Per video: the win rate averaged over the dimensions.
    pub win_rates: Vec<f64>,
    /// Mean P(first shown wins) - 0.5 over every ordered judgement of the group.
    pub position_bias: f64,
}

/// Judge every ordered pair of the group on every dimension and reduce to win rates.
fn compare_group<B: ModelBackend>(
    judge: &Judge<B>,
    g: &CompareGroup,
    cache: &DecodeCache,
    cfg: &ServeConfig,
    m: &Metrics,
) -> Result<CompareResponse, ApiError> {
    let inputs: Vec<ClipInput> = g
        .videos
        .iter()
        .enumerate()
        .map(|(i, v)| ClipInput::new(i.to_string(), v, &g.prompt))
        .collect();
    let t = Instant::now();
    let prepared = judge.prepare(&inputs, cache, |_, _| {});
    m.decode_seconds.observe(t.elapsed().as_secs_f64());
    if let Some((i, why)) = prepared.skipped.first() {
        let id = i
            .parse::<usize>()
            .ok()
            .map_or(i.as_str(), |k| g.ids[k].as_str());
        return Err(ApiError::new(
            422,
            &format!("video {id} could not be decoded: {why}"),
        ));
    }
    let dims: Vec<String> = if g.dimensions.is_empty() {
        judge
            .taxonomy
            .dimension_ids()
            .iter()
            .map(|d| d.to_string())
            .collect()
    } else {
        g.dimensions.clone()
    };
    let n = inputs.len();
    let t = Instant::now();
    let mut out = BTreeMap::new();
    let mut firsts = Vec::new();
    for d in &dims {
        let mut ex = Vec::with_capacity(n);
        for input in &inputs {
            let mut e = judge
                .examples_for(input, std::slice::from_ref(d), &prepared)
                .map_err(|e| ApiError::bad_request(&e.to_string()))?;
            ex.push(e.remove(0));
        }
        let mut ordered = Vec::new();
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    ordered.push((&ex[i], &ex[j]));
                }
            }
        }
        let pj = evalverse_eval::pairwise::judge_ordered(
            &judge.model,
            &judge.tok,
            &ordered,
            &prepared.clips,
            cfg.prompts_per_pass,
            |_, _| {},
        )
        .map_err(|e| ApiError::internal(&e))?;
        let mut p = vec![vec![0.5; n]; n];
        for x in &pj {
            let (i, j): (usize, usize) =
                (x.first.parse().unwrap_or(0), x.second.parse().unwrap_or(0));
            p[i][j] = x.p_first;
            firsts.push(x.p_first);
        }
        let mut preferences = Vec::new();
        let mut wins = vec![0.0; n];
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let better = (p[i][j] + 1.0 - p[j][i]) / 2.0;
                wins[i] += better / (n - 1) as f64;
                if i < j {
                    preferences.push(Preference {
                        a: g.ids[i].clone(),
                        b: g.ids[j].clone(),
                        p_a_first: p[i][j],
                        p_a_second: 1.0 - p[j][i],
                        p_a_better: better,
                    });
                }
            }
        }
        m.judgements.fetch_add(pj.len() as u64, Ordering::Relaxed);
        out.insert(
            d.clone(),
            DimensionComparison {
                win_rates: wins,
                preferences,
            },
        );
    }
    m.inference_seconds.observe(t.elapsed().as_secs_f64());
    let win_rates = (0..n)
        .map(|i| out.values().map(|c| c.win_rates[i]).sum::<f64>() / out.len().max(1) as f64)
        .collect();
    let position_bias = firsts.iter().sum::<f64>() / firsts.len().max(1) as f64 - 0.5;
    Ok(CompareResponse {
        model: cfg.model_name.clone(),
        ids: g.ids.clone(),
        dimensions: out,
        win_rates,
        position_bias,
    })
}

async fn compare(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (st, headers) = (&*st, &headers);
    judging(st, "/v1/compare", body, |b| async move {
        compare_inner(st, headers, &b).await
    })
    .await
}

/// Most videos in one compared group (its pairs grow with the square).
pub const MAX_GROUP: usize = 16;

async fn compare_inner(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let _permit = admit(st, headers)?;
    let req: CompareRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(&format!("the body is not a compare request: {e}")))?;
    if req.prompt.trim().is_empty() {
        return Err(ApiError::bad_request("no prompt"));
    }
    if !(2..=MAX_GROUP).contains(&req.videos.len()) {
        return Err(ApiError::bad_request(&format!(
            "{} videos; a group has 2 to {MAX_GROUP}",
            req.videos.len()
        )));
    }
    known_dimensions(st, &req.dimensions, "")?;
    let mut uploads = Vec::new();
    let mut ids = Vec::new();
    for (i, v) in req.videos.iter().enumerate() {
        let r = media::resolve(&v.video, None, &st.roots, st.uploads.path())
            .map_err(|e| ApiError::new(e.status, &format!("video {i}: {}", e.message)))?;
        ids.push(v.id.clone().unwrap_or_else(|| i.to_string()));
        uploads.push(r);
    }
    let group = CompareGroup {
        ids,
        videos: uploads.iter().map(|u| u.path.clone()).collect(),
        prompt: req.prompt.clone(),
        dimensions: req.dimensions.clone(),
    };
    let (tx, rx) = oneshot::channel();
    st.metrics
        .queue_depth
        .fetch_add(group.videos.len() as i64, Ordering::Relaxed);
    enqueue(
        st,
        Work {
            job: Job::Compare { group, reply: tx },
            enqueued: Instant::now(),
        },
    )?;
    let r = answer(st, rx).await??;
    drop(uploads);
    Ok(axum::Json(r).into_response())
}
