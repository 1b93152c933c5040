-- wrk script: Flo GET /api/v1/kv/bench/k<N> of keys written beforehand (N below KEYS).
local keys = tonumber(os.getenv("KEYS") or "10000")
function request()
  return wrk.format("GET", string.format("/api/v1/kv/bench/k%d", math.random(0, keys - 1)))
end
