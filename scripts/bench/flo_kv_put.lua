-- wrk script: Flo PUT /api/v1/kv/bench/<prefix>-<thread>-<counter> of distinct keys with a
-- 100-byte value (base64 in VALUE_B64, given by the caller), so every request is a durable write.
-- The request is built once around a placeholder key; each request only splices in the key, so
-- the load generator spends per request about what it spends on a static request.
local nthreads = 0
function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end
local prefix = os.getenv("RUN") or "0"
local value = os.getenv("VALUE_B64")
local counter = 0
local head, tail
function init(args)
  local template = wrk.format("PUT", "/api/v1/kv/bench/@KEY@", { ["Content-Type"] = "application/json" },
    '{"value":"' .. value .. '"}')
  local at = template:find("@KEY@", 1, true)
  head = template:sub(1, at - 1) .. "p" .. prefix .. "-" .. tid .. "-"
  tail = template:sub(at + 5)
end
function request()
  counter = counter + 1
  return head .. counter .. tail
end
