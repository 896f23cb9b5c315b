//! The Lua scripts every fleet operation runs in Redis. Each touches one
//! key (so they run on Redis Cluster's slot rules too) and reads the time
//! from Redis itself (`TIME`), so gateways with skewed clocks refill the
//! same bucket alike. Written by hand: they are the data layout, and no
//! client library has it.
//!
//! Layout: a bucket is a hash `{t: tokens, at: ms}` (and, reported by
//! `sync` gateways, `{w: the fleet's averaged takes, wat: ms}`) under
//! `{prefix}:{plugin}:b:{key}`, deleted once full (a missing bucket is a
//! full one) and expiring when it would be full again; a counter is a
//! string under `{prefix}:{plugin}:c:{key}`; the gateways seen are a
//! sorted set `{prefix}:nodes` of node ids scored by their last round.

use redis::Script;

/// Reads a bucket, shared by the two bucket scripts: sets `cap`, `rate`,
/// `now`, and the `tokens` held at `at` (a missing bucket is full).
const HELD: &str = r"
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(held[1])
local at = tonumber(held[2])
if tokens == nil or at == nil then
  tokens = cap
  at = now
end
";

/// Refills a bucket read by [`HELD`] up to `now`.
const REFILL: &str = r"
if now > at then
  tokens = math.min(cap, tokens + (now - at) * rate / 1000)
end
";

/// Stores `tokens` (deleting a full bucket) and its expiry.
const STORE: &str = r"
if tokens >= cap then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', now)
  if rate > 0 then
    redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) * 1000 / rate) + 1000)
  else
    redis.call('PERSIST', KEYS[1])
  end
end
";

/// `sync` mode's report: ARGV = capacity, refill per second, tokens this
/// gateway took since its last report, the time constant of the takes'
/// average in ms, the sync interval in ms. The takes happened over the
/// last interval (a gateway reports every interval while it takes), as
/// the bucket refilled: they are subtracted from that interval's refill
/// before the bucket is capped at its capacity, so a gateway taking
/// steadily does not lose refill to a cap the bucket never reached. The
/// bucket goes down to a debt of one capacity. The takes are also added
/// to `w`, the fleet's takes averaged over the time constant (each take
/// weighs `e^(-age / constant)`). Answers `{tokens held, w}` (decimal
/// strings): a gateway that keeps the same average of its own reports
/// knows its part of the fleet's takes.
fn bucket_sync() -> String {
    format!(
        "{HELD}
local taken = tonumber(ARGV[3])
local tau = tonumber(ARGV[4])
local elapsed = math.max(now - at, 0)
local span = math.min(elapsed, tonumber(ARGV[5]))
tokens = math.min(cap, tokens + (elapsed - span) * rate / 1000)
tokens = math.min(cap, tokens + span * rate / 1000 - taken)
tokens = math.max(tokens, -cap)
local avg = redis.call('HMGET', KEYS[1], 'w', 'wat')
local w = tonumber(avg[1]) or 0
local wat = tonumber(avg[2]) or now
if now > wat then
  w = w * math.exp((wat - now) / tau)
end
w = w + taken
if tokens >= cap then
  redis.call('DEL', KEYS[1])
  return {{tostring(cap), tostring(w)}}
end
{STORE}
redis.call('HSET', KEYS[1], 'w', tostring(w), 'wat', now)
return {{tostring(tokens), tostring(w)}}"
    )
}

/// `strict` mode's take: ARGV = capacity, refill per second, cost.
/// Answers `{allowed (0 or 1), whole tokens left, ms until cost tokens
/// are held (-1: never)}`.
fn bucket_take() -> String {
    format!(
        "{HELD}{REFILL}
local cost = tonumber(ARGV[3])
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
elseif rate == 0 or cost > cap then
  retry = -1
else
  retry = math.ceil((cost - tokens) * 1000 / rate)
end
{STORE}
return {{allowed, math.floor(math.max(tokens, 0)), retry}}"
    )
}

/// Both modes' counter: ARGV = delta, window in ms (0: none). Answers
/// `{count (a decimal string), ms left in the window (-1: none, -2: no
/// counter)}`; a delta of 0 only reads.
const COUNTER: &str = r"
local delta = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
if delta == 0 then
  local held = redis.call('GET', KEYS[1])
  if not held then
    return {'0', -2}
  end
  return {held, redis.call('PTTL', KEYS[1])}
end
local existed = redis.call('EXISTS', KEYS[1])
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {tostring(count), redis.call('PTTL', KEYS[1])}
";

/// A gateway's round: ARGV = node id, ms after which a silent node is
/// forgotten. Answers how many gateways were seen within that time.
const HEARTBEAT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local stale = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - stale)
redis.call('PEXPIRE', KEYS[1], stale * 2)
return redis.call('ZCARD', KEYS[1])
";

/// The scripts, with their SHA-1s worked out once.
pub(super) struct Scripts {
    pub bucket_sync: Script,
    pub bucket_take: Script,
    pub counter: Script,
    pub heartbeat: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            bucket_sync: Script::new(&bucket_sync()),
            bucket_take: Script::new(&bucket_take()),
            counter: Script::new(COUNTER),
            heartbeat: Script::new(HEARTBEAT),
        }
    }

    pub fn all(&self) -> [&Script; 4] {
        [
            &self.bucket_sync,
            &self.bucket_take,
            &self.counter,
            &self.heartbeat,
        ]
    }
}
