//! The ext-v1 HTTP client: one typed method per endpoint, and one classification of failures.
//!
//! The only module that knows HTTP on the client side. It sends the key in `x-api-key`, a
//! `User-Agent: telemetron-sync/<version>`, a per-request timeout, and reads answers tolerantly
//! (see `api`). Every failure becomes an [`ApiError`], classified once: transport errors,
//! timeouts, 408, 429 and 5xx are retryable (a 429 carries its `Retry-After`); 401 is fatal for
//! the whole run; other 4xx carry the server's message and what they mean for that endpoint.
//! Retrying, rate limiting and concurrency are the executor's business, not this module's.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{self, Endpoint, ErrorBody};

/// The Telemetron API key. Never printed: `Debug` shows a redaction, and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Trims the key; refuses an empty one or one that cannot be an HTTP header value.
    pub fn new(raw: &str) -> Result<ApiKey, String> {
        let k = raw.trim();
        if k.is_empty() {
            return Err("the API key is empty".into());
        }
        if k.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
            return Err("the API key contains spaces or characters that cannot be sent in a header".into());
        }
        Ok(ApiKey(k.to_string()))
    }

    /// Reads the key from a file (its first line).
    pub fn from_file(path: &Path) -> Result<ApiKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the API key file {}: {e}", path.display()))?;
        ApiKey::new(text.lines().next().unwrap_or("")).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Why a call failed, classified once for every caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{endpoint}: cannot reach Telemetron: {message}")]
    Transport { endpoint: Endpoint, message: String, kind: TransportKind },
    /// What no retry can mend: the base URL is not the API (a 404 that is not the API's
    /// error, a TLS or name failure, nothing answering at all).
    #[error(
        "{endpoint}: {why}. Check --base-url (or TELEMETRON_BASE_URL): it is the API's root, ending in /api/ext-v1{}",
        base_text(.base)
    )]
    Misconfigured { endpoint: Endpoint, why: String, base: Option<String> },
    #[error("{endpoint}: no answer within {}s", .timeout.as_secs_f64())]
    Timeout { endpoint: Endpoint, timeout: Duration },
    #[error(
        "{endpoint}: the API key was refused (401). Check that it was not regenerated (Settings > Integrations > Developer in Telemetron) and set the current key in TELEMETRON_API_KEY or --api-key-file"
    )]
    Unauthorized { endpoint: Endpoint },
    #[error("{endpoint}: rate limited (429){}", retry_after_text(.retry_after))]
    RateLimited { endpoint: Endpoint, retry_after: Option<Duration> },
    #[error("{endpoint}: server error {status}: {message}")]
    Server { endpoint: Endpoint, status: u16, message: String },
    #[error("{endpoint}: {status}: {message}{}", rejection_hint(.rejection))]
    Rejected { endpoint: Endpoint, status: u16, message: String, rejection: Rejection },
    #[error("{endpoint}: unreadable answer (HTTP {status}): {message}")]
    Decode { endpoint: Endpoint, status: u16, message: String },
    /// A 2xx that does not carry what the endpoint documents (`success: false`, `{}`, a field
    /// missing): it confirms nothing, and a write may or may not have been applied.
    #[error("{endpoint}: HTTP {status} that confirms nothing: {why}; body: {body}")]
    Unconfirmed { endpoint: Endpoint, status: u16, why: String, body: String },
    /// A 3xx: never followed, so the key never reaches another host (or plain http).
    #[error(
        "{endpoint}: the server redirected ({status}) to {target}; redirects are not followed, so that the API key goes nowhere but the base URL. Check --base-url (it ends in /api/ext-v1)"
    )]
    Redirected { endpoint: Endpoint, status: u16, target: String },
}

fn base_text(base: &Option<String>) -> String {
    base.as_ref().map(|b| format!("; now {b}")).unwrap_or_default()
}

fn retry_after_text(d: &Option<Duration>) -> String {
    d.map(|d| format!("; retry after {}s", d.as_secs_f64())).unwrap_or_default()
}

fn rejection_hint(r: &Rejection) -> String {
    match r {
        Rejection::AlreadyExists { telemetron_customer_id: Some(id) } => {
            format!(" (a customer with this email already exists: {id})")
        }
        Rejection::AlreadyExists { telemetron_customer_id: None } => {
            " (a customer with this email already exists)".into()
        }
        Rejection::NotAssigned { current_devices } if current_devices.is_empty() => {
            "; nothing to unassign: this customer has no devices".into()
        }
        Rejection::NotAssigned { current_devices } => {
            format!("; nothing to unassign: this customer's devices are {}", current_devices.join(", "))
        }
        Rejection::NotFound | Rejection::Invalid | Rejection::Other => String::new(),
    }
}

/// What failed below HTTP, as far as it matters for what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Nothing listens there.
    Refused,
    /// The host name does not resolve.
    Dns,
    /// The TLS handshake failed (a certificate, a plain-http server).
    Tls,
    Other,
}

/// What a 4xx means for the endpoint that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// createOrUpdateCustomer 409: the email exists (with the existing id when the body has it).
    AlreadyExists { telemetron_customer_id: Option<String> },
    /// unassignDeviceFromOwner 400: the device is not assigned to that customer.
    NotAssigned { current_devices: Vec<String> },
    /// 404: the customer, device or id does not exist.
    NotFound,
    /// 400: the request was refused as invalid.
    Invalid,
    /// Any other 4xx.
    Other,
}

impl ApiError {
    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ApiError::Transport { .. }
                | ApiError::Timeout { .. }
                | ApiError::RateLimited { .. }
                | ApiError::Server { .. }
                | ApiError::Decode { .. }
                | ApiError::Unconfirmed { .. }
        )
    }

    /// Whether the whole run must stop (the key is wrong, or the base URL redirects: every
    /// call would fail the same way).
    pub fn is_fatal(&self) -> bool {
        matches!(self, ApiError::Unauthorized { .. } | ApiError::Redirected { .. } | ApiError::Misconfigured { .. })
    }

    /// Whether Telemetron refused the request for what it holds: a 4xx other than auth, rate
    /// limiting and the answers an endpoint documents (404 not found, 409 exists, "not
    /// assigned"). Nothing of it was applied, and one record in a bulk request may be the cause.
    pub fn is_refused(&self) -> bool {
        matches!(self, ApiError::Rejected { status: 400..=499, rejection: Rejection::Invalid | Rejection::Other, .. })
    }

    /// Whether no answer came at all (the request may not have reached anything).
    pub fn is_unanswered(&self) -> bool {
        matches!(self, ApiError::Transport { .. } | ApiError::Timeout { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Unauthorized { .. } => Some(401),
            ApiError::RateLimited { .. } => Some(429),
            ApiError::Server { status, .. }
            | ApiError::Rejected { status, .. }
            | ApiError::Decode { status, .. }
            | ApiError::Unconfirmed { status, .. }
            | ApiError::Redirected { status, .. } => Some(*status),
            ApiError::Transport { .. } | ApiError::Timeout { .. } | ApiError::Misconfigured { .. } => None,
        }
    }

    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            ApiError::Rejected { rejection, .. } => Some(rejection),
            _ => None,
        }
    }
}

/// Checks that the customer a 409 led to (read back by its id or by email) is the one whose
/// email was sent: Telemetron may match emails more loosely than this tool keys them (accents,
/// say), and updating that customer would overwrite someone else. The refusal names both.
pub fn same_customer(sent: &str, found: &api::Customer) -> Result<(), ApiError> {
    let theirs = crate::model::Email::parse(&found.email).map(|e| e.as_str().to_string());
    if theirs.as_deref() == Ok(sent) {
        return Ok(());
    }
    Err(ApiError::Rejected {
        endpoint: Endpoint::CreateOrUpdateCustomer,
        status: 409,
        message: format!(
            "Telemetron says {sent} exists, but the customer it names ({}) has the email {:?}; not updated, so that another customer is not overwritten. Check the two in Telemetron and fix the export or the customer by hand",
            found.id, found.email
        ),
        rejection: Rejection::Other,
    })
}

/// Environment variable holding the API key.
pub const ENV_API_KEY: &str = "TELEMETRON_API_KEY";
/// Environment variable holding the base URL.
pub const ENV_BASE_URL: &str = "TELEMETRON_BASE_URL";
/// The default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A call's failure that stops a command, wrapped where the client is called (the stages
/// below know no HTTP).
impl From<ApiError> for crate::error::Error {
    fn from(e: ApiError) -> Self {
        crate::error::Error::Api(e.to_string())
    }
}

/// A client for one organization (one key) at one base URL.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

/// Checks a base URL: https anywhere, plain http only to a loopback host.
/// The most of an answer's body the client reads (a customer with tens of thousands of devices
/// is a few MiB).
pub const MAX_ANSWER: usize = 16 << 20;

pub fn check_base_url(raw: &str) -> Result<String, String> {
    let shown = redact_url(raw.trim());
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| format!("base URL {shown:?} is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        // It would go out as Basic auth beside the key, and be shown wherever the URL is.
        return Err(format!(
            "base URL {shown:?} holds a user name or password; ext-v1 takes only the API key (TELEMETRON_API_KEY or --api-key-file): remove the part before '@'"
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            if !is_loopback(&url) {
                return Err(format!(
                    "base URL {shown:?} uses plain http to a host that is not loopback; the API key would cross the network unencrypted: use https"
                ));
            }
        }
        other => return Err(format!("base URL {shown:?} has scheme {other:?}; use https")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("base URL {shown:?} must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Whether the URL's host is this machine.
fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A URL as it may be shown: whatever comes before an `@` in any of its `/`-separated parts
/// (a `user:password@`) replaced by `***`, even in text that does not parse as a URL.
pub fn redact_url(raw: &str) -> String {
    raw.split('/')
        .map(|part| match part.rfind('@') {
            Some(at) => format!("***{}", &part[at..]),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl Client {
    pub fn new(base_url: &str, key: &ApiKey, timeout: Duration) -> Result<Client, String> {
        install_crypto_provider();
        let base = check_base_url(base_url)?;
        let loopback = reqwest::Url::parse(&base).is_ok_and(|u| is_loopback(&u));
        let mut headers = HeaderMap::new();
        let mut value =
            HeaderValue::from_str(key.expose()).map_err(|_| "the API key cannot be sent in a header".to_string())?;
        value.set_sensitive(true);
        headers.insert(api::KEY_HEADER, value);
        let http = reqwest::Client::builder()
            .user_agent(concat!("telemetron-sync/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(64)
            // reqwest strips only the standard credential headers on a redirect, not x-api-key.
            .redirect(reqwest::redirect::Policy::none());
        // A proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY) would get a loopback request in clear, key
        // and all, and may be another machine: this machine is reached directly. An https base
        // URL may go through HTTPS_PROXY (honouring NO_PROXY): the proxy sees only CONNECT.
        let http = if loopback { http.no_proxy() } else { http };
        let http = http.build().map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Client { http, base, timeout })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn create_or_update_customer(
        &self,
        req: &api::CustomerUpsert,
    ) -> Result<api::CustomerUpsertResponse, ApiError> {
        self.post(Endpoint::CreateOrUpdateCustomer, req).await
    }

    pub async fn query_customer(&self, email: &str) -> Result<api::Customer, ApiError> {
        self.post(Endpoint::QueryCustomer, &api::CustomerQuery { email: email.to_string() }).await
    }

    pub async fn get_customer(&self, id: &str) -> Result<api::Customer, ApiError> {
        let endpoint = Endpoint::GetCustomer;
        let mut url = reqwest::Url::parse(&format!("{}{}/", self.base, endpoint.path()))
            .map_err(|e| ApiError::Transport { endpoint, message: e.to_string(), kind: TransportKind::Other })?;
        url.path_segments_mut()
            .map_err(|_| ApiError::Transport { endpoint, message: "bad base URL".into(), kind: TransportKind::Other })?
            .pop_if_empty()
            .push(id);
        self.send(endpoint, self.http.get(url)).await
    }

    pub async fn upsert_device(&self, req: &api::DeviceUpsert) -> Result<api::DeviceUpsertResponse, ApiError> {
        self.post(Endpoint::CreateOrUpdateDevice, req).await
    }

    pub async fn bulk_metadata(&self, req: &api::BulkMetadata) -> Result<api::BulkMetadataResponse, ApiError> {
        self.post(Endpoint::BulkUpdateDeviceMetadata, req).await
    }

    pub async fn assign_device_to_owners(
        &self,
        req: &api::AssignDeviceToOwners,
    ) -> Result<api::AssignDeviceToOwnersResponse, ApiError> {
        self.post(Endpoint::AssignDeviceToOwners, req).await
    }

    pub async fn assign_devices_to_owner(
        &self,
        req: &api::AssignDevicesToOwner,
    ) -> Result<api::AssignDevicesToOwnerResponse, ApiError> {
        self.post(Endpoint::AssignDevicesToOwner, req).await
    }

    pub async fn unassign_device_from_owner(
        &self,
        req: &api::UnassignDeviceFromOwner,
    ) -> Result<api::UnassignDeviceFromOwnerResponse, ApiError> {
        self.post(Endpoint::UnassignDeviceFromOwner, req).await
    }

    pub async fn unassign_devices_from_owner(
        &self,
        req: &api::UnassignDevicesFromOwner,
    ) -> Result<api::UnassignDevicesFromOwnerResponse, ApiError> {
        self.post(Endpoint::UnassignDevicesFromOwner, req).await
    }

    pub async fn create_ticket(&self, req: &api::CreateTicket) -> Result<api::CreateTicketResponse, ApiError> {
        self.post(Endpoint::CreateTicket, req).await
    }

    async fn post<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        body: &Req,
    ) -> Result<Resp, ApiError> {
        let url = format!("{}{}", self.base, endpoint.path());
        self.send(endpoint, self.http.post(url).json(body)).await
    }

    /// An answer's body, read up to [`MAX_ANSWER`]: a bigger one is not read on (its outcome
    /// is unknown, as for a body that does not parse), so that no server can make a run hold
    /// more than that per call in flight.
    async fn body(
        &self,
        endpoint: Endpoint,
        status: u16,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, ApiError> {
        let over = || ApiError::Decode {
            endpoint,
            status,
            message: format!(
                "the answer is over {} MiB and was not read on (ext-v1's answers are a few hundred KB at most)",
                MAX_ANSWER >> 20
            ),
        };
        if response.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return Err(over());
        }
        // Each chunk is copied at once into segments of our own: a chunk kept would pin the
        // connection's whole read buffer, and one buffer grown by doubling would leave the
        // allocator holding every size it passed through. An answer of one segment (nearly
        // all: the length is given, and under 1 MiB) is returned as it is.
        const SEGMENT: usize = 1 << 20;
        let first = response.content_length().map_or(16 << 10, |n| n as usize).min(SEGMENT);
        let (mut segments, mut len) = (vec![Vec::with_capacity(first)], 0);
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(endpoint, e))? {
            len += chunk.len();
            if len > MAX_ANSWER {
                return Err(over());
            }
            let mut rest = &chunk[..];
            while let Some(segment) = segments.last_mut().filter(|_| !rest.is_empty()) {
                let room = segment.capacity() - segment.len();
                if room == 0 {
                    segments.push(Vec::with_capacity(SEGMENT));
                    continue;
                }
                let (now, later) = rest.split_at(room.min(rest.len()));
                segment.extend_from_slice(now);
                rest = later;
            }
        }
        if segments.len() == 1 {
            return Ok(segments.pop().unwrap_or_default());
        }
        let mut bytes = Vec::with_capacity(len);
        for segment in segments {
            bytes.extend_from_slice(&segment);
        }
        Ok(bytes)
    }

    async fn send<Resp: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        req: reqwest::RequestBuilder,
    ) -> Result<Resp, ApiError> {
        let started = std::time::Instant::now();
        let response = req.send().await.map_err(|e| self.transport_error(endpoint, e))?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            let target = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| redirect_target(response.url(), l))
                .unwrap_or_else(|| "an unnamed location".into());
            return Err(ApiError::Redirected { endpoint, status, target });
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        let bytes = self.body(endpoint, status, response).await?;
        if status == 404 && !is_api_error(&bytes) {
            return Err(ApiError::Misconfigured {
                endpoint,
                why: format!("404 with a body that is not the API's JSON error ({})", snippet_or_empty(&bytes)),
                base: Some(self.base.clone()),
            });
        }
        tracing::debug!(%endpoint, status, elapsed_ms = started.elapsed().as_millis() as u64, "ext-v1 call");
        if (200..300).contains(&status) {
            let decode = |e: serde_json::Error| ApiError::Decode {
                endpoint,
                status,
                message: format!("{e}; body: {}", snippet(&bytes)),
            };
            // Only an answer that carries what the endpoint documents confirms the call.
            let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(decode)?;
            if let Some(why) = endpoint.unconfirmed(&value) {
                return Err(ApiError::Unconfirmed { endpoint, status, why, body: snippet(&bytes) });
            }
            return serde_json::from_value(value).map_err(decode);
        }
        Err(classify(endpoint, status, retry_after, &bytes))
    }

    fn transport_error(&self, endpoint: Endpoint, e: reqwest::Error) -> ApiError {
        if e.is_timeout() {
            return ApiError::Timeout { endpoint, timeout: self.timeout };
        }
        // reqwest's message names the URL, never headers; walk the sources for the cause.
        let mut message = e.to_string();
        let mut kind = TransportKind::Other;
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            if s.downcast_ref::<rustls::Error>().is_some() {
                kind = TransportKind::Tls;
            } else if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::ConnectionRefused {
                    kind = TransportKind::Refused;
                } else if io.get_ref().is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) {
                    kind = TransportKind::Tls;
                }
            }
            source = s.source();
        }
        // hyper wraps the TLS and resolver errors in types of its own: fall back on their words.
        if kind == TransportKind::Other {
            if message.contains("dns error") || message.contains("failed to lookup address") {
                kind = TransportKind::Dns;
            } else if ["received corrupt message", "peer certificate", "invalid certificate", "HandshakeFailure"]
                .iter()
                .any(|w| message.contains(w))
            {
                kind = TransportKind::Tls;
            }
        }
        ApiError::Transport { endpoint, message, kind }
    }
}

/// The longest `Retry-After` taken as given; a longer one is cut to it. The executor waits at
/// most its longest backoff (30 s) anyway, and never past `--max-duration`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A `Retry-After` in either of its forms (RFC 9110 §10.2.3): delta-seconds (a fraction taken
/// too) or an HTTP-date, capped at [`MAX_RETRY_AFTER`]; a date in the past is no wait. `None`
/// for a value that is neither.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        return Some(Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default().min(MAX_RETRY_AFTER))
}

/// Whether a body is the API's JSON error (`{"error": "..."}`), as every documented error is.
fn is_api_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("error").is_some_and(|e| e.is_string()))
}

fn snippet_or_empty(body: &[u8]) -> String {
    if body.iter().all(u8::is_ascii_whitespace) { "an empty body".into() } else { format!("{:?}", snippet(body)) }
}

/// Turns a non-2xx answer into an [`ApiError`], reading whatever body came with it.
pub fn classify(endpoint: Endpoint, status: u16, retry_after: Option<Duration>, body: &[u8]) -> ApiError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let message = match &parsed {
        Some(b) if !b.error.is_empty() => b.error.clone(),
        _ if body.iter().all(u8::is_ascii_whitespace) => "(empty body)".to_string(),
        _ => format!("(not a JSON error) {}", snippet(body)),
    };
    match status {
        401 => ApiError::Unauthorized { endpoint },
        429 => ApiError::RateLimited { endpoint, retry_after },
        408 | 500..=599 => ApiError::Server { endpoint, status, message },
        _ => {
            let body = parsed.unwrap_or_default();
            let rejection = match (status, endpoint) {
                (409, Endpoint::CreateOrUpdateCustomer) => {
                    Rejection::AlreadyExists { telemetron_customer_id: body.telemetron_customer_id.clone() }
                }
                (400, Endpoint::UnassignDeviceFromOwner)
                    if body.current_devices.is_some() || message.to_ascii_lowercase().contains("not assigned") =>
                {
                    Rejection::NotAssigned { current_devices: body.current_devices.clone().unwrap_or_default() }
                }
                (404, _) => Rejection::NotFound,
                (400, _) => Rejection::Invalid,
                _ => Rejection::Other,
            };
            ApiError::Rejected { endpoint, status, message, rejection }
        }
    }
}

/// Where a redirect points, as a message names it: scheme, host and port (and the path), the
/// query left out, since it may carry a token.
fn redirect_target(from: &reqwest::Url, location: &str) -> String {
    match from.join(location) {
        Ok(u) => {
            format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or("?"),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + u.path()
        }
        Err(_) => format!("{:?}", snippet(location.as_bytes())),
    }
}

/// The start of a body, as text, for messages (HTML from a proxy, say).
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 200 { format!("{}...", flat.chars().take(200).collect::<String>()) } else { flat }
}

/// rustls needs a process-wide crypto provider; ring is built in (no C toolchain beyond cc).
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_show_in_debug() {
        let k = ApiKey::new(" tlm_secret123 ").unwrap();
        assert_eq!(format!("{k:?}"), "ApiKey(<redacted>)");
        assert!(ApiKey::new("  ").is_err());
        assert!(ApiKey::new("a b").is_err());
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            check_base_url("https://admin.telemetron.ai/api/ext-v1/").unwrap(),
            "https://admin.telemetron.ai/api/ext-v1"
        );
        assert!(check_base_url("http://127.0.0.1:8080/api/ext-v1").is_ok());
        assert!(check_base_url("http://localhost:1/x").is_ok());
        assert!(check_base_url("http://[::1]:1/x").is_ok());
        assert!(check_base_url("http://example.com/api").unwrap_err().contains("use https"));
        assert!(check_base_url("http://10.0.0.1/api").is_err());
        assert!(check_base_url("ftp://x/").is_err());
        for raw in ["https://ann:s3cret@admin.telemetron.ai/api", "http://s3cret@127.0.0.1:1/x", "https://:s3cret@h/"] {
            let e = check_base_url(raw).unwrap_err();
            assert!(e.contains("user name or password") && !e.contains("s3cret"), "{e}");
        }
        assert!(!check_base_url("htp:/ann:s3cret@x").unwrap_err().contains("s3cret"));
        assert_eq!(redact_url("https://a:b@h:1/p"), "https://***@h:1/p");
        assert_eq!(redact_url("https://h/p"), "https://h/p");
    }

    #[test]
    fn retry_after_in_both_forms_capped() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |d: u64| httpdate::fmt_http_date(now + Duration::from_secs(d));
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 ", now), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("1e20", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after(&at(120), now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(&at(10_000_000), now), Some(MAX_RETRY_AFTER));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(60));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        for bad in ["-1", "NaN", "inf", "", "soon", "Wed, 99 Foo 2026 25:61:61 GMT"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn classification() {
        let e = Endpoint::CreateOrUpdateCustomer;
        assert!(classify(e, 500, None, b"").is_retryable());
        assert!(classify(e, 502, None, b"<html><body>Bad gateway</body></html>").to_string().contains("Bad gateway"));
        assert!(classify(e, 408, None, b"").is_retryable());
        let rl = classify(e, 429, Some(Duration::from_secs(2)), b"");
        assert!(rl.is_retryable() && rl.retry_after() == Some(Duration::from_secs(2)));
        assert!(classify(e, 401, None, b"{}").is_fatal());
        let conflict = classify(e, 409, None, br#"{"error":"exists","telemetronCustomerId":"cust_1"}"#);
        assert_eq!(
            conflict.rejection(),
            Some(&Rejection::AlreadyExists { telemetron_customer_id: Some("cust_1".into()) })
        );
        assert!(!conflict.is_retryable());
        let bare = classify(e, 409, None, b"");
        assert_eq!(bare.rejection(), Some(&Rejection::AlreadyExists { telemetron_customer_id: None }));
        let na = classify(
            Endpoint::UnassignDeviceFromOwner,
            400,
            None,
            br#"{"error":"Device is not assigned to this customer","currentDevices":["A"]}"#,
        );
        assert_eq!(na.rejection(), Some(&Rejection::NotAssigned { current_devices: vec!["A".into()] }));
        assert!(na.to_string().contains("nothing to unassign: this customer's devices are A"), "{na}");
        let invalid = classify(Endpoint::UnassignDeviceFromOwner, 400, None, br#"{"error":"Invalid email format"}"#);
        assert_eq!(invalid.rejection(), Some(&Rejection::Invalid));
    }
}
