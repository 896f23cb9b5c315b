-- wrk script for the plugin-attack scenario: requests to a path (the
-- second script argument, default /spin), every Nth of them (N is the
-- first script argument, default 1: all; 0: none) with `x-spin: 1`, which
-- makes the hostile fixture plugin spin to its deadline. Counts answers
-- by status and prints them as one line of JSON prefixed by
-- "ATTACK_JSON ".

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  every = tonumber(args[1]) or 1
  path = args[2] or "/spin"
  sent = 0
  statuses = {}
end

local spin_req, plain_req

function request()
  if not spin_req then
    spin_req = wrk.format("GET", path, { ["x-spin"] = "1" })
    plain_req = wrk.format("GET", path, {})
  end
  sent = sent + 1
  if every > 0 and sent % every == 0 then
    return spin_req
  end
  return plain_req
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do
      total[k] = (total[k] or 0) + v
    end
  end
  local parts = {}
  for k, v in pairs(total) do
    table.insert(parts, string.format('"%d": %d', k, v))
  end
  io.write("ATTACK_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
