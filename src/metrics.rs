//! The Prometheus endpoint (`ptt-node run --metrics ADDR`, off by default).
//!
//! One registry holds three kinds of figures:
//! - the daemon's own counters and gauges (`ptt_*`), read from a status snapshot the scrape
//!   takes first, so they are the same numbers `ptt-node status` shows;
//! - the delivery latency histogram (`ptt_alert_delivery_latency_seconds`, created → shown),
//!   filled as alerts are delivered;
//! - libp2p's own metrics (`libp2p_*`: connections, bandwidth, gossipsub, identify, ping,
//!   relay), recorded from the swarm's events.
//!
//! The HTTP server is deliberately small: `GET /metrics` (and `HEAD`) in the OpenMetrics text
//! format, one request per connection, a bounded request size, a deadline and a bounded number
//! of connections, so that a scraper, or anything else that connects, cannot stall or grow
//! the daemon.

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::control::StatusInfo;

/// The port `--metrics` uses when given none.
pub const DEFAULT_PORT: u16 = 9464;
/// Bytes of a request read at most (its line and headers).
const MAX_REQUEST: usize = 8 * 1024;
/// Time a connection has to send its request and take the answer.
const DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once at most; more are closed at once.
const MAX_CONNECTIONS: usize = 8;
/// The OpenMetrics text content type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Parses `--metrics`: `PORT` (on loopback) or `IP:PORT`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!(
            "{s:?} is not a metrics address: give PORT (served on loopback) or IP:PORT, e.g. 127.0.0.1:{DEFAULT_PORT}"
        )
    })
}

/// What the event loop records into.
pub struct Recorders {
    /// libp2p's metrics, fed the swarm's events.
    pub libp2p: libp2p::metrics::Metrics,
    /// Seconds from an alert's creation (sender's clock) to its delivery here.
    pub latency: Histogram,
}

impl Recorders {
    /// Records the delivery of an alert created at `created_us` and received at
    /// `received_us` (µs since the Unix epoch). A sender's clock ahead of this one counts as
    /// zero.
    pub fn delivered(&self, created_us: u64, received_us: u64) {
        self.latency
            .observe(received_us.saturating_sub(created_us) as f64 / 1e6);
    }
}

/// The registry and the status snapshot its collector reads.
pub struct Exporter {
    registry: Registry,
    snapshot: Arc<Mutex<Option<StatusInfo>>>,
    /// One scrape at a time, so concurrent scrapes do not mix snapshots.
    scrape: Mutex<()>,
}

/// Completes `registry` (which may hold libp2p's bandwidth metrics already, registered when
/// the swarm was built) with the daemon's metrics and libp2p's event metrics.
pub fn new(mut registry: Registry) -> (Exporter, Recorders) {
    let snapshot = Arc::new(Mutex::new(None));
    registry.register_collector(Box::new(StatusCollector(snapshot.clone())));
    // 1 ms to about 70 minutes: live alerts fall in the first buckets, those fetched by
    // catch-up after a sleep in the last ones.
    let latency = Histogram::new(exponential_buckets(0.001, 2.0, 23));
    registry.register_with_unit(
        "ptt_alert_delivery_latency",
        "Time from an alert's creation (on the sender's clock) to its delivery on this device",
        Unit::Seconds,
        latency.clone(),
    );
    let libp2p = libp2p::metrics::Metrics::new(&mut registry);
    (
        Exporter {
            registry,
            snapshot,
            scrape: Mutex::new(()),
        },
        Recorders { libp2p, latency },
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Exporter {
    /// The OpenMetrics text of every metric, with the daemon's own figures from `status`
    /// (none when the daemon did not answer).
    pub fn encode(&self, status: Option<StatusInfo>) -> String {
        let _one = lock(&self.scrape);
        *lock(&self.snapshot) = status;
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}

/// The daemon's counters, encoded from the last status snapshot.
#[derive(Debug)]
struct StatusCollector(Arc<Mutex<Option<StatusInfo>>>);

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A metric with one label, a value per label value.
fn family<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (l, v) in values {
        let labels = [(label, l)];
        let fm = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(fm)?,
            _ => ConstGauge::new(v as i64).encode(fm)?,
        }
    }
    Ok(())
}

impl Collector for StatusCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let guard = lock(&self.0);
        let Some(s) = guard.as_ref() else {
            return Ok(());
        };
        let c = &s.counters;
        counter(
            &mut e,
            "ptt_alerts_sent",
            "Alerts this device sealed and sent",
            c.alerts_sent,
        )?;
        counter(
            &mut e,
            "ptt_alerts_received",
            "Alerts this device received and opened",
            c.alerts_received,
        )?;
        counter(
            &mut e,
            "ptt_alerts_relayed",
            "Authentic alerts this device passed on without being able to read them",
            c.alerts_relayed,
        )?;
        family(
            &mut e,
            "ptt_alerts_rejected",
            "Envelopes refused, by reason (bad signature, replay, unknown sender, …)",
            MetricType::Counter,
            "reason",
            c.rejected.iter().map(|(k, v)| (k.as_str(), *v)),
        )?;
        counter(
            &mut e,
            "ptt_alerts_unknown_epoch",
            "Authentic alerts under a key epoch this device holds no key for (yet)",
            c.unknown_epoch,
        )?;
        counter(
            &mut e,
            "ptt_peers_refused",
            "Peers refused at authentication",
            c.peers_refused,
        )?;
        family(
            &mut e,
            "ptt_peers",
            "Known peers by state",
            MetricType::Gauge,
            "state",
            [
                ("connected", s.peers.connected as u64),
                ("authenticated", s.peers.authenticated as u64),
                ("asleep", s.peers.asleep as u64),
                ("unreachable", s.peers.unreachable as u64),
            ],
        )?;
        counter(
            &mut e,
            "ptt_catch_up_sessions",
            "Catch-up sessions run with peers",
            s.catch_up.sessions,
        )?;
        counter(
            &mut e,
            "ptt_catch_up_failed",
            "Catch-up sessions that ended early",
            s.catch_up.failed,
        )?;
        counter(
            &mut e,
            "ptt_catch_up_fetched",
            "Envelopes fetched by catch-up",
            s.catch_up.fetched,
        )?;
        counter(
            &mut e,
            "ptt_catch_up_served",
            "Catch-up requests this device answered",
            s.catch_up.served,
        )?;
        gauge(
            &mut e,
            "ptt_store_envelopes",
            "Envelopes in the durable log",
            s.store.envelopes as i64,
        )?;
        let bytes = ConstGauge::new(s.store.bytes as i64);
        bytes.encode(e.encode_descriptor(
            "ptt_store_size",
            "Bytes of envelopes in the durable log",
            Some(&Unit::Bytes),
            bytes.metric_type(),
        )?)?;
        counter(
            &mut e,
            "ptt_store_dropped",
            "Received envelopes not logged because the store was busy",
            s.store.dropped,
        )?;
        gauge(&mut e, "ptt_rules", "Rules loaded", s.actions.rules as i64)?;
        counter(
            &mut e,
            "ptt_rules_matched",
            "Alerts that matched a rule",
            s.actions.matched,
        )?;
        counter(
            &mut e,
            "ptt_hooks_run",
            "Rule commands run",
            s.actions.hooks_run,
        )?;
        counter(
            &mut e,
            "ptt_rule_messages_sent",
            "Directed messages sent by rules",
            s.actions.sent,
        )?;
        counter(
            &mut e,
            "ptt_rule_actions_failed",
            "Rule actions that failed or were skipped",
            s.actions.failed,
        )?;
        counter(
            &mut e,
            "ptt_updates_applied",
            "Domain updates applied",
            c.updates_applied,
        )?;
        gauge(
            &mut e,
            "ptt_domain_revision",
            "Domain descriptor revision held",
            s.revision as i64,
        )?;
        gauge(
            &mut e,
            "ptt_revoked",
            "1 when the domain authority revoked this device",
            i64::from(s.revoked),
        )?;
        let up = ConstGauge::new(s.uptime_s as i64);
        up.encode(e.encode_descriptor(
            "ptt_uptime",
            "Seconds since the daemon started",
            Some(&Unit::Seconds),
            up.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped. `status` asks the daemon
/// for a fresh snapshot at each scrape.
pub async fn serve<F, Fut>(listener: TcpListener, exporter: Arc<Exporter>, status: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<StatusInfo>> + Send,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let exporter = exporter.clone();
        let status = status.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(DEADLINE, answer(stream, &exporter, status)).await;
        });
    }
}

/// The request line of what was read, when the headers are complete.
fn request_line(buf: &[u8]) -> Option<&str> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    // Only the request line is read: a header that is not UTF-8 does not matter.
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some(std::str::from_utf8(&buf[..end]).unwrap_or(""))
}

/// What a request gets: status, content type and body.
fn route(line: &str) -> (&'static str, &'static str, Option<()>) {
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", CONTENT_TYPE, Some(())),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain; charset=utf-8", None),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", None),
    }
}

async fn answer<F, Fut>(mut stream: TcpStream, exporter: &Exporter, status: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<StatusInfo>>,
{
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let line = loop {
        if let Some(l) = request_line(&buf) {
            break l.to_string();
        }
        if buf.len() >= MAX_REQUEST {
            let _ = respond(&mut stream, "431 Request Header Fields Too Large", "", "").await;
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let (code, ctype, ok) = route(&line);
    let head = line.starts_with("HEAD ");
    let body = match ok {
        Some(()) => exporter.encode(status().await),
        None if code.starts_with("404") => "not found: the metrics are at /metrics\n".to_string(),
        None => "only GET and HEAD\n".to_string(),
    };
    let _ = respond(&mut stream, code, ctype, if head { "" } else { &body }).await;
}

async fn respond(s: &mut TcpStream, code: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    let mut head = String::new();
    let _ = write!(
        head,
        "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_loopback() {
        assert_eq!(
            parse_addr("9100").unwrap(),
            "127.0.0.1:9100".parse().unwrap()
        );
        assert_eq!(
            parse_addr("0.0.0.0:9464").unwrap(),
            "0.0.0.0:9464".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:1").unwrap(), "[::1]:1".parse().unwrap());
        let e = parse_addr("localhost").unwrap_err();
        assert!(e.contains("PORT") && e.contains("IP:PORT"), "{e}");
        assert!(parse_addr("70000").is_err());
    }

    #[test]
    fn requests_are_routed() {
        assert_eq!(route("GET /metrics HTTP/1.1").0, "200 OK");
        assert_eq!(route("GET /metrics?x=1 HTTP/1.0").0, "200 OK");
        assert_eq!(route("HEAD /metrics HTTP/1.1").0, "200 OK");
        assert_eq!(route("GET / HTTP/1.1").0, "404 Not Found");
        assert_eq!(route("POST /metrics HTTP/1.1").0, "405 Method Not Allowed");
        assert_eq!(route("").0, "405 Method Not Allowed");
        assert_eq!(request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(
            request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some("GET /metrics HTTP/1.1")
        );
        // A request line that is not UTF-8 is answered (405); a bad header does not matter.
        assert_eq!(request_line(b"\xff\xfe\r\n\r\n"), Some(""));
        assert_eq!(
            request_line(b"GET /metrics HTTP/1.1\r\nX: \xff\r\n\r\n"),
            Some("GET /metrics HTTP/1.1")
        );
    }

    #[test]
    fn the_status_figures_and_the_histogram_are_encoded() {
        let (exp, rec) = new(Registry::default());
        // Without a snapshot only the histogram and libp2p's metrics are there.
        let empty = exp.encode(None);
        assert!(!empty.contains("ptt_alerts_sent"), "{empty}");
        assert!(
            empty.contains("ptt_alert_delivery_latency_seconds_count 0"),
            "{empty}"
        );
        rec.delivered(1_000_000, 1_003_000);
        rec.delivered(2_000_000, 1_000_000); // sender's clock ahead: zero
        let mut s = StatusInfo::default();
        s.counters.alerts_sent = 7;
        s.counters.rejected.insert("replayed".into(), 3);
        s.peers.authenticated = 2;
        s.store.bytes = 4096;
        let text = exp.encode(Some(s));
        for want in [
            "ptt_alerts_sent_total 7",
            "ptt_alerts_rejected_total{reason=\"replayed\"} 3",
            "ptt_peers{state=\"authenticated\"} 2",
            "ptt_store_size_bytes 4096",
            "ptt_alert_delivery_latency_seconds_count 2",
            "ptt_alert_delivery_latency_seconds_bucket{le=\"0.004\"} 2",
            "ptt_alert_delivery_latency_seconds_bucket{le=\"0.001\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
