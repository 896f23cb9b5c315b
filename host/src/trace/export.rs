//! The span exporter: a bounded queue from the workers to one thread of
//! its own (`weir-otlp`, a single-threaded tokio runtime), which batches
//! the finished records, encodes them (`otlp.rs`) and posts them to the
//! collector over HTTP/1.1 with hyper's client connection.
//!
//! The workers never wait for it: a worker offers its record with
//! `try_send` and, when the queue is full (the collector is slow or
//! down), drops it and counts it. The thread posts a batch once it holds
//! `max_batch_spans` records or `export_interval` after its first, each
//! post within `export_timeout`; a failed post is counted with its spans
//! and not retried, so a collector that is down costs counted drops, never
//! memory or a growing backlog. One connection is kept and reused; it is
//! dropped after any failure and opened again for the next batch.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::otlp;
use super::record::SpanRecord;
use crate::config::OtlpConfig;
use crate::metrics::{self, trace::SpanDrop};

/// The collector's answer is read (to reuse the connection, and for its
/// rejected-span count) up to this size.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The workers' side of the export queue.
pub struct Exporter {
    queue: mpsc::Sender<SpanRecord>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("capacity", &self.queue.max_capacity())
            .finish()
    }
}

impl Exporter {
    /// Starts the exporter thread for `cfg`. The thread runs until every
    /// [`Exporter`] handle is gone.
    pub fn start(cfg: &OtlpConfig) -> std::io::Result<Arc<Exporter>> {
        let (queue, records) = mpsc::channel(cfg.max_queue_spans);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut post = Post::new(cfg.clone());
        std::thread::Builder::new()
            .name("weir-otlp".to_owned())
            .spawn(move || runtime.block_on(post.run(records)))?;
        metrics::global().trace.enable();
        Ok(Arc::new(Exporter { queue }))
    }

    /// Offers a finished record to the queue; a full queue drops it,
    /// counted with its children.
    pub fn submit(&self, record: SpanRecord) {
        let spans = 1 + record.children.len() as u64;
        if self.queue.try_send(record).is_err() {
            metrics::global().trace.dropped(SpanDrop::QueueFull, spans);
        }
    }
}

/// The exporter thread's state: where to post, and the open connection.
struct Post {
    cfg: OtlpConfig,
    /// `Host`, made once.
    host: HeaderValue,
    conn: Option<http1::SendRequest<Full<Bytes>>>,
    /// Whether the last post failed (a failure is logged when it starts
    /// and when it ends, not per batch).
    failing: bool,
}

impl Post {
    fn new(cfg: OtlpConfig) -> Post {
        let authority = cfg
            .endpoint
            .authority()
            .map_or(cfg.host.as_str(), |a| a.as_str());
        let host =
            HeaderValue::from_str(authority).unwrap_or_else(|_| HeaderValue::from_static(""));
        Post {
            cfg,
            host,
            conn: None,
            failing: false,
        }
    }

    async fn run(&mut self, mut records: mpsc::Receiver<SpanRecord>) {
        let max = self.cfg.max_batch_spans;
        let mut batch = Vec::with_capacity(max);
        loop {
            // Idle until a record comes: no timer runs while nothing is
            // traced.
            if records.recv_many(&mut batch, max).await == 0 {
                return;
            }
            let due = tokio::time::Instant::now() + self.cfg.export_interval;
            while batch.len() < max {
                let room = max - batch.len();
                match tokio::time::timeout_at(due, records.recv_many(&mut batch, room)).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            self.export(&batch).await;
            batch.clear();
        }
    }

    async fn export(&mut self, batch: &[SpanRecord]) {
        let (body, spans) = otlp::encode(batch, &self.cfg.service_name);
        let stats = &metrics::global().trace;
        let outcome = tokio::time::timeout(self.cfg.export_timeout, self.post(body)).await;
        let outcome = outcome.unwrap_or_else(|_| {
            Err(format!(
                "no answer within export_timeout ({:?})",
                self.cfg.export_timeout
            ))
        });
        match outcome {
            Ok(rejected) => {
                let rejected = rejected.min(spans);
                stats.exported(spans - rejected);
                if rejected > 0 {
                    stats.dropped(SpanDrop::ExportFailed, rejected);
                }
                if self.failing {
                    self.failing = false;
                    tracing::info!(endpoint = %self.cfg.endpoint, "span export works again");
                }
            }
            Err(reason) => {
                self.conn = None;
                stats.export_failed();
                stats.dropped(SpanDrop::ExportFailed, spans);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(
                        endpoint = %self.cfg.endpoint,
                        %reason,
                        spans,
                        "span export failed; spans are dropped (and counted) until it works again"
                    );
                }
            }
        }
    }

    /// Posts one batch; the number of spans the collector says it
    /// rejected, or why the post failed.
    async fn post(&mut self, body: Vec<u8>) -> Result<u64, String> {
        let mut conn = match self.conn.take() {
            Some(c) if !c.is_closed() => c,
            _ => self.connect().await?,
        };
        conn.ready().await.map_err(|e| e.to_string())?;
        let path = self
            .cfg
            .endpoint
            .path_and_query()
            .map_or("/", |p| p.as_str());
        let req = http::Request::post(path)
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let answer = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the collector's answer: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("the collector answered {status}"));
        }
        self.conn = Some(conn);
        // OTLP/HTTP: a 200 may still say some spans were rejected.
        let rejected =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
                answer,
            )
            .ok()
            .and_then(|a| a.partial_success)
            .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
        Ok(rejected)
    }

    async fn connect(&self) -> Result<http1::SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect((self.cfg.host.as_str(), self.cfg.port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}
