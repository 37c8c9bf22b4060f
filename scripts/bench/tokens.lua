-- wrk script for `scripts/bench/run.sh`.
--
-- Environment:
--   TOKENS_FILE  one access token per line, one line per seeded user (required)
--   MODE         `get` (default): GET /users/me/broker-credentials
--                `put`: PUT of one credential (the binance API secret) for the token's user
--   TARGETS      optional comma-separated host:port list; wrk thread i is sent to entry
--                i mod n (replicas mode), so connections are split evenly when the thread count
--                is a multiple of n
--
-- wrk runs setup() and done() in the main Lua state and request()/response() in one Lua state
-- per thread, sharing nothing: each thread loads the tokens itself, seeds its own random
-- generator (identical seeds would make every thread walk the same sequence of users), and keeps
-- its own counters, which done() collects through the thread objects kept by setup().
--
-- Prints, after the run:
--   RESULT requests=N duration_us=D p50_us=X p99_us=Y non2xx=E socket_errors=S codes=409:2,timeout:1
--   (codes: the non-2xx statuses, then the socket errors by kind; wrk times a request out after
--   2 s)
--   TARGET index=i addr=host:port responses=N non2xx=E     (one line per thread)

local threads = {}

function setup(thread)
  local index = #threads + 1
  thread:set("thread_index", index)
  local targets = os.getenv("TARGETS")
  if targets and targets ~= "" then
    local list = {}
    for target in string.gmatch(targets, "[^,]+") do
      list[#list + 1] = target
    end
    local target = list[(index - 1) % #list + 1]
    local host, port = string.match(target, "^(.*):(%d+)$")
    thread.addr = wrk.lookup(host, port)[1]
    thread:set("target", target)
  else
    thread:set("target", "")
  end
  threads[index] = thread
end

-- Per-thread state (each thread's own Lua state runs the code below).
local prepared = {}
responses = 0
non2xx = 0
codes = {}

function init(args)
  -- Different seeds per thread and per run; LuaJIT's generator is otherwise seeded identically.
  math.randomseed(os.time() * 1000 + thread_index * 7919)
  local mode = os.getenv("MODE") or "get"
  for token in io.lines(os.getenv("TOKENS_FILE")) do
    if token ~= "" then
      local headers = { ["Authorization"] = "Bearer " .. token }
      if mode == "put" then
        headers["Content-Type"] = "application/json"
        -- Always a real write: the service encrypts and stores a Set value even when it equals
        -- the stored one (it cannot compare without decrypting).
        local body = '{"credentials":[{"broker":"binance","api_secret":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYROTATED1"}]}'
        prepared[#prepared + 1] = wrk.format("PUT", "/users/me/broker-credentials", headers, body)
      else
        prepared[#prepared + 1] = wrk.format("GET", "/users/me/broker-credentials", headers)
      end
    end
  end
  if #prepared == 0 then
    error("no tokens in TOKENS_FILE")
  end
end

-- Prebuilt requests keep the load generator's CPU per request low and steady.
function request()
  return prepared[math.random(#prepared)]
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    codes[status] = (codes[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  local by_code = {}
  for index, thread in ipairs(threads) do
    local thread_bad = thread:get("non2xx") or 0
    bad = bad + thread_bad
    local thread_codes = thread:get("codes") or {}
    for code, n in pairs(thread_codes) do
      by_code[code] = (by_code[code] or 0) + n
    end
    io.write(string.format("TARGET index=%d addr=%s responses=%d non2xx=%d\n",
      index, thread:get("target"), thread:get("responses") or 0, thread_bad))
  end
  local listed = {}
  for code, n in pairs(by_code) do
    listed[#listed + 1] = code .. ":" .. n
  end
  table.sort(listed)
  local e = summary.errors
  for _, kind in ipairs({ "connect", "read", "write", "timeout" }) do
    if e[kind] > 0 then
      listed[#listed + 1] = kind .. ":" .. e[kind]
    end
  end
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d codes=%s\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), bad,
    e.connect + e.read + e.write + e.timeout, table.concat(listed, ",")))
end
