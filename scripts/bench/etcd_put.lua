-- wrk script: etcd v3 JSON gateway PUT of distinct keys with a 100-byte value (base64 in
-- VALUE_B64); keys are base64 of "bench/<run>/<thread>/<counter>".
local nthreads = 0
function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end
local b = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(data)
  return ((data:gsub(".", function(x)
    local r, byte = "", x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end
local run = os.getenv("RUN") or "0"
local value = os.getenv("VALUE_B64")
local counter = 0
local headers = { ["Content-Type"] = "application/json" }
function request()
  counter = counter + 1
  local key = b64(string.format("bench/%s/%d/%d", run, tid, counter))
  return wrk.format("POST", "/v3/kv/put", headers, '{"key":"' .. key .. '","value":"' .. value .. '"}')
end
