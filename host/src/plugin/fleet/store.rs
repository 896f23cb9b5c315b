//! The Redis store behind `[state] backend = "redis"`: its connections, the
//! `weir-fleet` thread that owns them and runs a round every
//! `sync_interval`, and `strict` operations sent from the workers.
//!
//! Connections are the `redis` crate's multiplexed connections, made on
//! the `weir-fleet` thread (whose event loop drives them) and shared with
//! the workers by handle: a `strict` operation sends its script from the
//! worker's task and waits for the answer there, without a hop through
//! this thread. `pool_size` connections are used in turn.
//!
//! A round, in one pipelined round trip: this gateway's heartbeat (which
//! answers how many gateways were seen in the last few intervals) and one
//! script per `sync` key to report and read back (`super::view`). A round
//! that fails (no connection, an error, no answer within
//! max(`command_timeout`, `sync_interval`)) marks Redis down: logged once,
//! counted, the connections dropped; `strict` operations then answer by
//! their plugin's fallback without trying Redis, and the next round
//! reconnects. The first round that succeeds marks it up again, logged
//! once. A `strict` operation that fails while Redis is up is answered by
//! its fallback too, and counted.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, Value};

use super::scripts::Scripts;
use super::view::{Push, Read};
use super::{Answer, Op, PluginFleet};
use crate::config::RedisConfig;
use crate::metrics::fleet::{FleetStats, StrictOutcome};
use crate::plugin::state::Bucket;

/// Most commands in one pipeline of a round; a round with more keys sends
/// several, one after the other.
const MAX_PIPELINE: usize = 1024;
/// A gateway that has not reported for this many of its intervals (and at
/// least [`MIN_STALE`]) is no longer counted among the fleet's.
const STALE_ROUNDS: u32 = 3;
const MIN_STALE: Duration = Duration::from_secs(1);
/// A `sync` gateway's part of a bucket follows the takes of about the
/// last this many intervals.
const AVERAGE_ROUNDS: u32 = 10;

/// The store, shared by every plugin's fleet policy.
pub struct Store {
    config: RedisConfig,
    client: Client,
    /// Connected handles (empty while Redis is down).
    conns: ArcSwap<Vec<MultiplexedConnection>>,
    next: AtomicUsize,
    up: AtomicBool,
    /// Gateways seen by the last round (at least 1).
    nodes: AtomicU32,
    /// `strict` operations sent and not yet answered.
    pending: AtomicUsize,
    /// The plugins in `sync` mode whose views the rounds reconcile.
    views: Mutex<Vec<(Arc<str>, Weak<PluginFleet>)>>,
    /// This gateway's id in the fleet's heartbeat set.
    node_id: String,
    scripts: Scripts,
    stats: &'static FleetStats,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .field("up", &self.up.load(Ordering::Relaxed))
            .field("nodes", &self.nodes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Why a `strict` operation was not decided in Redis.
type Why = &'static str;

/// One key of a round: its plugin's name and state, the key, the report.
type Report<'a> = (&'a Arc<str>, &'a Arc<PluginFleet>, String, Push);

impl Store {
    /// Makes the store and starts its `weir-fleet` thread, which connects
    /// at once. Redis being down is not an error here: the plugins'
    /// fallbacks answer until it is up.
    pub fn start(config: RedisConfig) -> std::io::Result<Arc<Store>> {
        let mut info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| std::io::Error::other(format!("[state] url: {e}")))?;
        if let Some(p) = &config.password {
            let settings = info.redis_settings().clone().set_password(p);
            info = info.set_redis_settings(settings);
        }
        let client = match &config.ca {
            Some(pem) => Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => Client::open(info),
        }
        .map_err(|e| std::io::Error::other(format!("[state]: {e}")))?;
        let mut id = [0u8; 8];
        getrandom::fill(&mut id)
            .map_err(|e| std::io::Error::other(format!("no system randomness: {e}")))?;
        let node_id = format!(
            "{}-{}",
            std::process::id(),
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let stats = crate::metrics::global().fleet.enable();
        let store = Arc::new(Store {
            config,
            client,
            conns: ArcSwap::from_pointee(Vec::new()),
            next: AtomicUsize::new(0),
            up: AtomicBool::new(false),
            nodes: AtomicU32::new(1),
            pending: AtomicUsize::new(0),
            views: Mutex::new(Vec::new()),
            node_id,
            scripts: Scripts::new(),
            stats,
        });
        let runner = store.clone();
        std::thread::Builder::new()
            .name("weir-fleet".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("fleet state: no event loop for the Redis thread: {e}");
                        return;
                    }
                };
                rt.block_on(runner.run());
            })?;
        Ok(store)
    }

    pub(super) fn stats(&self) -> &FleetStats {
        self.stats
    }

    /// Whether the last round reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Gateways seen by the last round that reached Redis (at least 1).
    pub fn nodes(&self) -> u32 {
        self.nodes.load(Ordering::Relaxed).max(1)
    }

    /// Adds a plugin's view to the rounds (once).
    pub(super) fn watch(&self, name: &Arc<str>, plugin: &Arc<PluginFleet>) {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        views.retain(|(_, w)| w.strong_count() > 0);
        if !views.iter().any(|(_, w)| w.as_ptr() == Arc::as_ptr(plugin)) {
            views.push((name.clone(), Arc::downgrade(plugin)));
        }
    }

    fn key(&self, plugin: &str, kind: char, key: &str) -> String {
        format!("{}:{plugin}:{kind}:{key}", self.config.prefix)
    }

    /// Decides `op` in Redis, in one round trip.
    pub(super) async fn strict(&self, plugin: &str, op: &Op) -> Result<Answer, Why> {
        let conns = self.conns.load();
        if conns.is_empty() {
            return Err("unreachable");
        }
        let taken = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.config.max_pending).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            self.stats.strict(StrictOutcome::Busy, None);
            return Err("too many operations in flight (max_pending)");
        }
        struct Held<'a>(&'a AtomicUsize);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Release);
            }
        }
        let _held = Held(&self.pending);
        let mut conn = conns[self.next.fetch_add(1, Ordering::Relaxed) % conns.len()].clone();
        drop(conns);
        let started = Instant::now();
        let sent = async {
            match op {
                Op::Take {
                    key,
                    capacity,
                    refill_per_second,
                    cost,
                } => {
                    let (allowed, remaining, retry): (i64, i64, i64) = self
                        .scripts
                        .bucket_take
                        .key(self.key(plugin, 'b', key))
                        .arg(capacity)
                        .arg(refill_per_second)
                        .arg(cost)
                        .invoke_async(&mut conn)
                        .await?;
                    Ok(Answer::Bucket(Bucket {
                        allowed: allowed == 1,
                        remaining: remaining.max(0) as u64,
                        retry_after_ms: u64::try_from(retry).unwrap_or(u64::MAX),
                    }))
                }
                Op::Increment { key, delta, ttl_ms } => {
                    let (count, _left): (i64, i64) = self
                        .scripts
                        .counter
                        .key(self.key(plugin, 'c', key))
                        .arg(delta)
                        .arg(ttl_ms.unwrap_or(0))
                        .invoke_async(&mut conn)
                        .await?;
                    Ok(Answer::Counter(count))
                }
            }
        };
        let r: Result<Result<Answer, redis::RedisError>, _> =
            tokio::time::timeout(self.config.command_timeout, sent).await;
        match r {
            Ok(Ok(answer)) => {
                self.stats
                    .strict(StrictOutcome::Redis, Some(started.elapsed()));
                Ok(answer)
            }
            Ok(Err(e)) => {
                tracing::debug!("fleet state: a strict operation failed: {e}");
                self.stats.strict(StrictOutcome::Failed, None);
                Err("failed")
            }
            Err(_) => {
                self.stats.strict(StrictOutcome::Timeout, None);
                Err("timed out (command_timeout)")
            }
        }
    }

    /// The `weir-fleet` thread: a round every `sync_interval`, the first at
    /// once.
    async fn run(self: Arc<Store>) {
        let mut tick = tokio::time::interval(self.config.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let r = self.round().await;
            self.stats.round(r.is_ok());
            match r {
                Ok(()) => {
                    if !self.up.swap(true, Ordering::Relaxed) {
                        tracing::info!(
                            nodes = self.nodes(),
                            "fleet state: Redis reachable; plugins share their fleet state"
                        );
                    }
                }
                Err(e) => {
                    self.conns.store(Arc::new(Vec::new()));
                    if self.up.swap(false, Ordering::Relaxed) || self.stats.outages() == 0 {
                        self.stats.outage();
                        tracing::warn!(
                            nodes = self.nodes(),
                            "fleet state: Redis cannot be reached ({e}); each plugin answers by \
                             its fleet_fallback until it is back"
                        );
                    }
                }
            }
            self.stats.set_state(self.is_up(), self.nodes());
        }
    }

    /// Connects `pool_size` connections and loads the scripts.
    async fn connect(&self) -> Result<Vec<MultiplexedConnection>, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.round_timeout()));
        let mut conns = Vec::with_capacity(self.config.pool_size);
        for _ in 0..self.config.pool_size {
            let conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| e.to_string())?;
            conns.push(conn);
        }
        for script in self.scripts.all() {
            script
                .load_async(&mut conns[0])
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(conns)
    }

    /// The time constant of the averaged takes by which `sync` gateways
    /// share a bucket out (`super::view`).
    fn average(&self) -> Duration {
        self.config.sync_interval * AVERAGE_ROUNDS
    }

    fn round_timeout(&self) -> Duration {
        self.config.command_timeout.max(self.config.sync_interval)
    }

    /// One round: the heartbeat, then every `sync` view's reports.
    async fn round(&self) -> Result<(), String> {
        let mut conn = match self.conns.load().first() {
            Some(c) => c.clone(),
            None => {
                let conns = tokio::time::timeout(
                    self.config.connect_timeout * 2 + self.round_timeout(),
                    self.connect(),
                )
                .await
                .map_err(|_| "connecting timed out".to_owned())??;
                let first = conns[0].clone();
                self.conns.store(Arc::new(conns));
                first
            }
        };
        let views: Vec<(Arc<str>, Arc<PluginFleet>)> = {
            let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
            views.retain(|(_, w)| w.strong_count() > 0);
            views
                .iter()
                .filter_map(|(n, w)| Some((n.clone(), w.upgrade()?)))
                .collect()
        };
        let now = Instant::now();
        let mut sends: Vec<Report<'_>> = Vec::new();
        for (name, plugin) in &views {
            for (key, push) in plugin.view.collect(self.config.sync_interval, now) {
                sends.push((name, plugin, key, push));
            }
        }
        self.stats.synced(sends.len() as u64);
        // The heartbeat goes in the first pipeline: a round is one round
        // trip unless it reports more than `MAX_PIPELINE` keys.
        let mut chunks = sends.chunks(MAX_PIPELINE);
        let first = chunks.next().unwrap_or(&[]);
        let mut result = self.report(first, true, &mut conn).await;
        for chunk in chunks {
            if result.is_ok() {
                result = self.report(chunk, false, &mut conn).await;
            }
            if result.is_err() {
                for (_, plugin, key, _) in chunk {
                    plugin.view.unsend(key);
                }
            }
        }
        result
    }

    /// Sends one pipeline of a round (the heartbeat first, when asked) and
    /// applies the answers. A report that fails is sent again next round.
    async fn report(
        &self,
        chunk: &[Report<'_>],
        heartbeat: bool,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), String> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if heartbeat {
            let stale = (self.config.sync_interval * STALE_ROUNDS).max(MIN_STALE);
            pipe.cmd("EVALSHA")
                .arg(self.scripts.heartbeat.get_hash())
                .arg(1)
                .arg(format!("{}:nodes", self.config.prefix))
                .arg(&self.node_id)
                .arg(stale.as_millis() as u64);
        }
        for (name, _, key, push) in chunk {
            match push {
                Push::Bucket {
                    capacity,
                    refill,
                    taken,
                } => pipe
                    .cmd("EVALSHA")
                    .arg(self.scripts.bucket_sync.get_hash())
                    .arg(1)
                    .arg(self.key(name, 'b', key))
                    .arg(capacity)
                    .arg(refill)
                    .arg(taken)
                    .arg(self.average().as_millis() as u64)
                    .arg(self.config.sync_interval.as_millis() as u64),
                Push::Counter { delta, ttl_ms } => pipe
                    .cmd("EVALSHA")
                    .arg(self.scripts.counter.get_hash())
                    .arg(1)
                    .arg(self.key(name, 'c', key))
                    .arg(delta)
                    .arg(ttl_ms.unwrap_or(0)),
            };
        }
        let unsend = || {
            for (_, plugin, key, _) in chunk {
                plugin.view.unsend(key);
            }
        };
        let answers: Vec<Value> =
            match tokio::time::timeout(self.round_timeout(), pipe.query_async(conn)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    unsend();
                    return Err(e.to_string());
                }
                Err(_) => {
                    unsend();
                    return Err("no answer within the round's time".into());
                }
            };
        // Redis restarted and lost the scripts: the next round reconnects,
        // which loads them.
        let lost = answers.iter().any(|v| {
            matches!(v, Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::NoScript))
        });
        if lost {
            unsend();
            return Err("Redis does not know the scripts (it restarted)".into());
        }
        let mut answers = answers.into_iter();
        if heartbeat {
            let nodes = answers
                .next()
                .and_then(|v| redis::from_redis_value::<u32>(v).ok())
                .ok_or_else(|| {
                    unsend();
                    "the heartbeat failed".to_owned()
                })?;
            self.nodes.store(nodes.max(1), Ordering::Relaxed);
        }
        let nodes = self.nodes();
        let now = Instant::now();
        for ((_, plugin, key, push), answer) in chunk.iter().zip(answers) {
            let read = match push {
                Push::Bucket { .. } => redis::from_redis_value::<(String, String)>(answer)
                    .ok()
                    .and_then(|(t, w)| Some((t.parse::<f64>().ok()?, w.parse::<f64>().ok()?)))
                    .filter(|(t, w)| t.is_finite() && w.is_finite())
                    .map(|(tokens, takes)| Read::Bucket { tokens, takes }),
                Push::Counter { .. } => redis::from_redis_value::<(i64, i64)>(answer)
                    .ok()
                    .map(|(count, left)| Read::Counter(count, u64::try_from(left).ok())),
            };
            match read {
                Some(read) => plugin.view.settle(key, read, (nodes, self.average()), now),
                // A key whose script failed (an overflow, a key of another
                // type written by hand): reported again next round.
                None => plugin.view.unsend(key),
            }
        }
        Ok(())
    }
}
