-- wrk script: ShardKV HTTP KV API GET /v1/kv/<key> (linearizable: ReadIndex on the
-- leader) over keys written by kv_put.lua with the same tag (1..N per thread id).
-- Usage: wrk -t2 -c64 -d10s --latency -s kv_get.lua http://127.0.0.1:<admin port> -- <tag> <n>
local next_id = 1
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local counter = 0
local tag = "pp"
local n = 1000
function init(args)
  if args[1] then tag = string.sub(args[1] .. "xx", 1, 2) end
  if args[2] then n = tonumber(args[2]) end
end

function request()
  counter = counter % n + 1
  local key = string.format("%s%d%013d", tag, tid % 10, counter)
  return wrk.format("GET", "/v1/kv/" .. key)
end
