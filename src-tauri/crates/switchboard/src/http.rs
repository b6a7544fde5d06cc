//! The HTTP API: a user's voicemail, forwarding rules and greeting (see the crate docs and
//! `docs/switchboard-api.md`).
//!
//! hyper 1 (HTTP/1.1 only) on its own TCP port. Every request is authenticated; a user only
//! ever reaches their own data, because no path names a user. Database and file work runs on
//! the blocking pool. Bodies are bounded ([`MAX_JSON_BODY`], [`MAX_GREETING_BODY`]), request
//! heads must arrive within 10 s and bodies within 30 s, and at most
//! [`MAX_CONNECTIONS`] connections are served at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hookflash_core::auth::{ct_eq, fold_user, ha1, unix_now, Scope, Token};
use hookflash_core::privacy::redact;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, warn};

use crate::login_limits::LoginLimits;
use crate::rules::Rules;
use crate::service::Services;
use crate::users::VOICEMAIL_USER;
use crate::SwitchboardError;

/// The largest JSON body accepted (`PUT /api/rules`).
pub const MAX_JSON_BODY: usize = 64 * 1024;
/// The largest greeting accepted (`PUT /api/greeting`): 60 s of 48 kHz stereo 16-bit fits.
pub const MAX_GREETING_BODY: usize = 12 * 1024 * 1024;
/// At most this many connections at once; beyond it the oldest that never began a request
/// is closed to make room (a busy server refuses the newcomer instead).
pub const MAX_CONNECTIONS: usize = 256;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

type Body = Full<Bytes>;

/// What the API needs.
pub(crate) struct Api {
    pub services: Arc<Services>,
    pub secret: String,
    pub domain: String,
    /// Failed sign-ins, per user and address ([`LoginLimits`]).
    pub limits: std::sync::Mutex<LoginLimits>,
}

/// The running HTTP server.
pub(crate) struct HttpServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HttpServer {
    /// Bind `bind:port` (0 picks a port) and serve: over TLS with `tls`.
    pub async fn start(
        bind: IpAddr,
        port: u16,
        api: Api,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<HttpServer, SwitchboardError> {
        let tls = tls.map(tokio_rustls::TlsAcceptor::from);
        let listener = TcpListener::bind((bind, port))
            .await
            .map_err(SwitchboardError::Bind)?;
        let addr = listener.local_addr().map_err(SwitchboardError::Bind)?;
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let api = Arc::new(api);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            // The connections, oldest first, with whether each has begun a request: at the
            // cap, the oldest that never did (an idle or stalled one) makes room, so that a
            // flood of idle connections cannot lock real clients out.
            let mut open: VecDeque<(AbortHandle, Arc<AtomicBool>)> = VecDeque::new();
            loop {
                let accepted = tokio::select! {
                    _ = &mut stop_rx => break,
                    Some(done) = conns.join_next_with_id(), if !conns.is_empty() => {
                        let id = match done {
                            Ok((id, ())) => id,
                            Err(e) => e.id(),
                        };
                        open.retain(|(h, _)| h.id() != id);
                        continue;
                    }
                    a = listener.accept() => a,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if open.len() >= MAX_CONNECTIONS {
                    let idle = open
                        .iter()
                        .position(|(_, active)| !active.load(Ordering::Acquire));
                    match idle.and_then(|i| open.remove(i)) {
                        Some((oldest, _)) => {
                            debug!("HTTP at capacity: the oldest idle connection makes room");
                            oldest.abort();
                        }
                        None => {
                            warn!("too many busy HTTP connections: one refused");
                            continue;
                        }
                    }
                }
                let api = api.clone();
                let active = Arc::new(AtomicBool::new(false));
                let seen = active.clone();
                let tls = tls.clone();
                let handle = conns.spawn(async move {
                    let service = service_fn(move |req| {
                        seen.store(true, Ordering::Release);
                        handle(api.clone(), req, peer.ip())
                    });
                    let mut builder = http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT);
                    let served = match tls {
                        None => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        Some(tls) => {
                            // The handshake is held to the header timeout too.
                            match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)).await {
                                Ok(Ok(s)) => {
                                    builder.serve_connection(TokioIo::new(s), service).await
                                }
                                Ok(Err(e)) => {
                                    debug!(error = %e, "HTTPS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            }
                        }
                    };
                    if let Err(e) = served {
                        debug!(error = %e, "HTTP connection ended with an error");
                    }
                });
                open.push_back((handle, active));
            }
            conns.shutdown().await;
        });
        Ok(HttpServer {
            addr,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// Stop accepting, close every connection, and wait until done.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// An error answer: a status and the JSON `{code, message}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds to wait before trying again (429).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn too_many_failures(wait: Duration) -> ApiError {
        let secs = wait.as_secs().max(1);
        ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "http.locked_out",
                format!("too many failed sign-ins from this address: try again in {secs} s"),
            )
        }
    }

    fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "http.unauthorized", message)
    }

    fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "http.not_found", "no such resource")
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        warn!(error = %e, "HTTP API internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "http.internal",
            "internal error",
        )
    }
}

impl From<SwitchboardError> for ApiError {
    fn from(e: SwitchboardError) -> ApiError {
        match e {
            SwitchboardError::InvalidRules(_) | SwitchboardError::InvalidUser(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "http.invalid_rules", e.to_string())
            }
            SwitchboardError::InvalidGreeting(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "http.invalid_greeting",
                e.to_string(),
            ),
            other => ApiError::internal(other),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(v) => respond(status, "application/json", v.into()),
        Err(e) => error_response(ApiError::internal(e), ""),
    }
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error_response(e: ApiError, domain: &str) -> Response<Body> {
    let body = serde_json::to_vec(&ErrorBody {
        code: e.code,
        message: &e.message,
    })
    .unwrap_or_default();
    let mut r = respond(e.status, "application/json", body.into());
    if e.status == StatusCode::UNAUTHORIZED {
        let challenge = format!("Bearer realm=\"{}\"", domain.replace('"', ""));
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    if let Some(secs) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if e.status == StatusCode::METHOD_NOT_ALLOWED {
        if let Ok(v) = HeaderValue::from_str(&e.message) {
            r.headers_mut().insert(header::ALLOW, v);
        }
    }
    r
}

async fn handle(
    api: Arc<Api>,
    req: Request<Incoming>,
    peer: IpAddr,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let resp = match route(&api, req, peer).await {
        Ok(r) => r,
        Err(e) => error_response(e, &api.domain),
    };
    debug!(%method, status = resp.status().as_u16(), "HTTP request");
    Ok(resp)
}

/// Run blocking work (SQLite, files) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SwitchboardError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(e)),
    }
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "http.timeout",
            "the body took too long",
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "http.too_large",
            format!("at most {limit} bytes"),
        )),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "http.bad_body",
            "the body could not be read",
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

fn method_not_allowed(allow: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "http.method_not_allowed",
        allow,
    )
}

async fn route(
    api: &Arc<Api>,
    req: Request<Incoming>,
    peer: IpAddr,
) -> Result<Response<Body>, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let Some((&"api", rest)) = segs.split_first() else {
        return Err(ApiError::not_found());
    };
    let user = authenticate_limited(api, &parts.headers, peer).await?;
    let s = api.services.clone();
    let m = &parts.method;
    match rest {
        ["voicemail"] => match *m {
            Method::GET => {
                let list = blocking(move || s.messages(&user)).await?;
                Ok(json(StatusCode::OK, &list))
            }
            _ => Err(method_not_allowed("GET")),
        },
        ["voicemail", id] => {
            let id = (*id).to_owned();
            match *m {
                Method::GET => {
                    let file = blocking(move || {
                        let Some(msg) = s.message(&user, &id)? else {
                            return Ok(None);
                        };
                        match std::fs::read(&msg.path) {
                            Ok(b) => Ok(Some(b)),
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                            Err(e) => Err(SwitchboardError::Io(e.kind().to_string())),
                        }
                    })
                    .await?
                    .ok_or_else(ApiError::not_found)?;
                    Ok(respond(StatusCode::OK, "audio/wav", file.into()))
                }
                Method::DELETE => {
                    if blocking(move || s.delete_message(&user, &id)).await? {
                        Ok(no_content())
                    } else {
                        Err(ApiError::not_found())
                    }
                }
                _ => Err(method_not_allowed("GET, DELETE")),
            }
        }
        ["voicemail", id, "heard"] => {
            let id = (*id).to_owned();
            match *m {
                Method::POST => {
                    let msg = blocking(move || s.mark_heard(&user, &id))
                        .await?
                        .ok_or_else(ApiError::not_found)?;
                    Ok(json(StatusCode::OK, &msg))
                }
                _ => Err(method_not_allowed("POST")),
            }
        }
        ["rules"] => match *m {
            Method::GET => {
                let rules = blocking(move || s.rules(&user)).await?;
                Ok(json(StatusCode::OK, &rules))
            }
            Method::PUT => {
                let bytes = read_body(body, MAX_JSON_BODY).await?;
                let rules: Rules = serde_json::from_slice(&bytes).map_err(|e| {
                    ApiError::new(StatusCode::BAD_REQUEST, "http.bad_json", e.to_string())
                })?;
                let stored = blocking(move || {
                    s.set_rules(&user, &rules)?;
                    s.rules(&user)
                })
                .await?;
                Ok(json(StatusCode::OK, &stored))
            }
            _ => Err(method_not_allowed("GET, PUT")),
        },
        ["greeting"] => match *m {
            Method::GET => {
                let file = blocking(move || {
                    let p = s.greeting_file(&user);
                    std::fs::read(&p).map_err(|e| SwitchboardError::Io(e.kind().to_string()))
                })
                .await?;
                Ok(respond(StatusCode::OK, "audio/wav", file.into()))
            }
            Method::PUT => {
                let bytes = read_body(body, MAX_GREETING_BODY).await?;
                blocking(move || s.set_greeting(&user, &bytes)).await?;
                Ok(no_content())
            }
            Method::DELETE => {
                blocking(move || s.clear_greeting(&user)).await?;
                Ok(no_content())
            }
            _ => Err(method_not_allowed("GET, PUT, DELETE")),
        },
        _ => Err(ApiError::not_found()),
    }
}

/// [`authenticate`], within the [`LoginLimits`]: a user and address (or an address) with too
/// many failed sign-ins is answered 429 with `Retry-After`, without looking at the
/// credentials; presented credentials that fail count against the user they name.
async fn authenticate_limited(
    api: &Arc<Api>,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Result<String, ApiError> {
    let claimed = claimed_user(headers);
    if let Err(wait) = limits(api).check(&claimed, peer, std::time::Instant::now()) {
        warn!(user = %redact(&claimed), %peer, ?wait, "HTTP sign-in refused: locked out");
        return Err(ApiError::too_many_failures(wait));
    }
    match authenticate(api, headers).await {
        Ok(user) => {
            limits(api).succeeded(&claimed, peer);
            Ok(user)
        }
        Err(e)
            if e.status == StatusCode::UNAUTHORIZED
                && headers.contains_key(header::AUTHORIZATION) =>
        {
            limits(api).failed(&claimed, peer, std::time::Instant::now());
            Err(e)
        }
        Err(e) => Err(e),
    }
}

fn limits(api: &Api) -> std::sync::MutexGuard<'_, LoginLimits> {
    // A poisoned lock only means a panic mid-update; the counts are still usable.
    api.limits.lock().unwrap_or_else(|e| e.into_inner())
}

/// The user the credentials name (folded), before checking them; empty when unreadable.
fn claimed_user(headers: &HeaderMap) -> String {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    let user = if scheme.eq_ignore_ascii_case("Bearer") {
        Token::parse(rest).map(|t| t.user).unwrap_or_default()
    } else if scheme.eq_ignore_ascii_case("Basic") {
        base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|d| d.split_once(':').map(|(u, _)| u.to_owned()))
            .unwrap_or_default()
    } else {
        String::new()
    };
    fold_user(&user)
}

/// The user of a request: `Authorization: Bearer EXPIRY:USER:api=PASSWORD` (a token's `api`
/// grant; a token without one is refused) or `Basic` with a database user's password.
async fn authenticate(api: &Arc<Api>, headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("credentials required"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("unreadable credentials"))?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    let user = if scheme.eq_ignore_ascii_case("Bearer") {
        let token = Token::parse(rest).map_err(|_| ApiError::unauthorized("malformed token"))?;
        match token.verify(&api.secret, Scope::Api, unix_now()) {
            Ok(()) => fold_user(&token.user),
            Err(e) => {
                warn!(user = %redact(&token.user), code = e.code(), "HTTP token refused");
                return Err(ApiError::unauthorized("token refused"));
            }
        }
    } else if scheme.eq_ignore_ascii_case("Basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::unauthorized("malformed Basic credentials"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| ApiError::unauthorized("malformed Basic credentials"))?;
        let (user, password) = (user.to_owned(), password.to_owned());
        let services = api.services.clone();
        let domain = api.domain.clone();
        let ok = blocking(move || {
            let record = services.users.get(&user)?;
            Ok(record
                .filter(|r| r.realm == domain)
                .and_then(|r| r.ha1)
                .is_some_and(|h| ct_eq(h.as_bytes(), ha1(&user, &domain, &password).as_bytes()))
                .then_some(fold_user(&user)))
        })
        .await?;
        match ok {
            Some(u) => u,
            None => return Err(ApiError::unauthorized("wrong user name or password")),
        }
    } else {
        return Err(ApiError::unauthorized("use Bearer or Basic"));
    };
    if user.eq_ignore_ascii_case(VOICEMAIL_USER) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "http.forbidden",
            "the voicemail account has no mailbox",
        ));
    }
    Ok(user)
}
