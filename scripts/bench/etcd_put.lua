-- wrk script: etcd v3 JSON gateway PUT of distinct keys with a 100-byte value (base64 in
-- VALUE_B64); keys are base64 of "bench/<run>/<thread>/<counter>", the counter in 9 digits.
-- As in flo_kv_put.lua the request is built once and each request only splices in its key.
local nthreads = 0
function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local sym = {}
for i = 1, 64 do sym[i - 1] = alphabet:sub(i, i) end
-- base64 of a string whose length is a multiple of 3
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + b * 256 + c
    out[#out + 1] = sym[math.floor(n / 262144)] .. sym[math.floor(n / 4096) % 64]
      .. sym[math.floor(n / 64) % 64] .. sym[n % 64]
  end
  return table.concat(out)
end
local run = os.getenv("RUN") or "0"
local value = os.getenv("VALUE_B64")
local counter = 0
local head, tail
function init(args)
  -- the key's fixed part, padded to a multiple of 3 bytes so its base64 is a prefix of the key's
  local fixed = string.format("bench/%s/%d/", run, tid)
  fixed = fixed .. string.rep("/", (3 - #fixed % 3) % 3)
  local prefix = b64(fixed)
  -- a placeholder as long as every key, so that Content-Length is right
  local placeholder = string.rep("@", #prefix + 12)
  local template = wrk.format("POST", "/v3/kv/put", { ["Content-Type"] = "application/json" },
    '{"key":"' .. placeholder .. '","value":"' .. value .. '"}')
  local at = template:find(placeholder, 1, true)
  head = template:sub(1, at - 1) .. prefix
  tail = template:sub(at + #placeholder)
end
function request()
  counter = counter + 1
  return head .. b64(string.format("%09d", counter)) .. tail
end
