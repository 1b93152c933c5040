-- wrk script: Flo consumers: dequeue COUNT messages of bench/<QUEUE>, then ack what the
-- thread holds (up to COUNT sequences per ack), and so on; done() prints the messages acked.
local queue = os.getenv("QUEUE") or "jobs"
local count = tonumber(os.getenv("COUNT") or "10")
local headers = { ["Content-Type"] = "application/json" }
local dequeue_body = '{"count":' .. count .. ',"visibility_timeout_ms":60000}'
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
local pending = {}
acked = 0
function request()
  if #pending > 0 then
    local n = math.min(#pending, count)
    local seqs = {}
    for i = 1, n do seqs[i] = table.remove(pending) end
    return wrk.format("POST", "/api/v1/queue/bench/" .. queue .. "/ack", headers,
      '{"sequences":[' .. table.concat(seqs, ",") .. ']}')
  end
  return wrk.format("POST", "/api/v1/queue/bench/" .. queue .. "/dequeue", headers, dequeue_body)
end
function response(status, headers, body)
  local n = body:match('^{"acked":(%d+)')
  if n then
    acked = acked + tonumber(n)
    return
  end
  for seq in body:gmatch('"seq":(%d+)') do
    table.insert(pending, seq)
  end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("acked") end
  io.write(string.format("acked %d\n", total))
end
