-- wrk script: Flo PUT /api/v1/kv/bench/<prefix>-<thread>-<counter> of distinct keys with a
-- 100-byte value (base64 in VALUE_B64, given by the caller), so every request is a durable write.
local nthreads = 0
function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end
local prefix = os.getenv("RUN") or "0"
local value = os.getenv("VALUE_B64")
local counter = 0
local headers = { ["Content-Type"] = "application/json" }
local body = '{"value":"' .. value .. '"}'
function request()
  counter = counter + 1
  return wrk.format("PUT", string.format("/api/v1/kv/bench/p%s-%d-%d", prefix, tid, counter), headers, body)
end
