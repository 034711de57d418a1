-- wrk script: POSTs one GraphQL request (the JSON body in the file $QUERY_BODY) to $TARGET_PATH
-- (default /graphql), with `Authorization: Bearer $API_KEY` when that is set. The request is
-- formatted once, in init() (wrk sets the Host header only by then; Node's HTTP server refuses a
-- request without one), so the load generator spends its CPU on I/O.
local path = os.getenv("TARGET_PATH") or "/graphql"
local file = assert(io.open(os.getenv("QUERY_BODY"), "rb"))
local body = file:read("*a")
file:close()
local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
local key = os.getenv("API_KEY")
if key and key ~= "" then
  headers["Authorization"] = "Bearer " .. key
end
local formatted

function init(args)
  formatted = wrk.format("POST", path, headers, body)
end

function request()
  return formatted
end
