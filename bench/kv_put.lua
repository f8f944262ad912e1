-- wrk script: ShardKV HTTP KV API PUT /v1/kv/<key> with distinct 16-byte keys and
-- 100-byte values, the same shape as ../shared/bench/etcd_put.lua.
-- Usage: wrk -t2 -c64 -d10s --latency -s kv_put.lua http://127.0.0.1:<admin port> -- <tag>
local next_id = 1
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local counter = 0
local tag = "pp"
local value = string.rep("v", 100)
function init(args)
  if args[1] then tag = string.sub(args[1] .. "xx", 1, 2) end
  wrk.method = "PUT"
  wrk.body = value
  wrk.headers["Content-Type"] = "application/octet-stream"
end

function request()
  counter = counter + 1
  local key = string.format("%s%d%013d", tag, tid % 10, counter)
  return wrk.format(nil, "/v1/kv/" .. key)
end
