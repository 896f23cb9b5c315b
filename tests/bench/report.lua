-- wrk script for the Weir benchmark: counts responses whose status is not
-- 2xx (wrk itself only counts >= 400 as errors) and prints one line of JSON
-- with every figure the driver needs, prefixed by "BENCH_JSON ".
--
-- Each wrk thread has its own Lua state; `setup` keeps a handle on every
-- thread so `done` (which runs in the main state) can sum their counters.
--
-- An optional script argument (`wrk ... URL -- N`) makes each thread stop
-- sending after N responses: it prints "BENCH_LIMIT" and stops its loop
-- (wrk's main thread still waits for -d or SIGINT, which the driver sends
-- when it reads that line). The observe phase's callgrind runs use it.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  first_bad = 0
  answered = 0
  limit = tonumber(args[1] or "") or 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_bad == 0 then
      first_bad = status
    end
  end
  if limit > 0 then
    answered = answered + 1
    if answered == limit then
      io.write("BENCH_LIMIT\n")
      io.flush()
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local bad, first = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("non2xx")
    local f = t:get("first_bad")
    if first == 0 and f ~= 0 then
      first = f
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"non2xx":%d,"first_non2xx_status":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    bad, first,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
