-- wrk script: each request uses the token of a random seeded user (tokens.txt, one per line).
-- With PUT_BODY set, sends a PUT of one credential instead of a GET.
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  tokens[#tokens + 1] = line
end
local put = os.getenv("PUT_BODY") ~= nil
local counter = 0

request = function()
  counter = counter + 1
  local token = tokens[math.random(#tokens)]
  local headers = { ["Authorization"] = "Bearer " .. token }
  if put then
    headers["Content-Type"] = "application/json"
    local body = '{"credentials":[{"broker":"binance","api_secret":"secret-' .. counter .. '-abcdefghijklmnop"}]}'
    return wrk.format("PUT", "/users/me/broker-credentials", headers, body)
  end
  return wrk.format("GET", "/users/me/broker-credentials", headers)
end

done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT requests/s=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    errors, summary.requests))
end
