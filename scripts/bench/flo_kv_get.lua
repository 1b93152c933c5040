-- wrk script: Flo GET /api/v1/kv/bench/k<N> of keys written beforehand (N below KEYS), chosen at
-- random. The KEYS requests are built once, so a request costs the load generator about what a
-- static request does.
local keys = tonumber(os.getenv("KEYS") or "10000")
local requests = {}
function init(args)
  for n = 0, keys - 1 do
    requests[n + 1] = wrk.format("GET", "/api/v1/kv/bench/k" .. n)
  end
end
function request()
  return requests[math.random(keys)]
end
