-- wrk script: Flo enqueue of a 100-byte payload (base64 in PAYLOAD_B64) into queue
-- bench/<QUEUE>; every request is a durable enqueue.
local queue = os.getenv("QUEUE") or "jobs"
local body = '{"payload":"' .. os.getenv("PAYLOAD_B64") .. '"}'
local headers = { ["Content-Type"] = "application/json" }
function request()
  return wrk.format("POST", "/api/v1/queue/bench/" .. queue .. "/enqueue", headers, body)
end
