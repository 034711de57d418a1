-- wrk script: POSTs pre-signed webhook bodies (one per line of $BODIES), each body once.
-- Thread k of $WRK_THREADS takes lines k, k+T, k+2T, ... so no two threads send the same
-- delivery. Requests are formatted once in init() so the load generator spends its CPU on I/O.
-- When a thread runs out of bodies it starts over (the bench script makes the file large
-- enough that this does not happen within one run; done() reports it if it did).

local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("BODIES")
  local stride = tonumber(os.getenv("WRK_THREADS") or "1")
  local target = os.getenv("TARGET_PATH") or "/webhooks/chup-main"
  local headers = { ["Content-Type"] = "application/json" }
  requests = {}
  local n = 0
  for line in io.lines(path) do
    if n % stride == tid then
      requests[#requests + 1] = wrk.format("POST", target, headers, line)
    end
    n = n + 1
  end
  index = 0
  wrapped = 0
end

function request()
  index = index + 1
  if index > #requests then
    index = 1
    wrapped = wrapped + 1
  end
  return requests[index]
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    local w = thread:get("wrapped")
    if w and w > 0 then
      io.write(string.format("WARNING: thread %d reused its bodies %d times (duplicates sent)\n",
        thread:get("tid"), w))
    end
  end
end
