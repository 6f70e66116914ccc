-- Each request takes the next line of BENCH_LINES ("<token> <json body>"), so every
-- request can carry its own credential (runner heartbeats) or consume a one-time token
-- (ExchangeToken). Threads take disjoint lines: thread i of n uses lines i, i+n, i+2n, ...
local path = os.getenv("BENCH_PATH")
local lines_file = os.getenv("BENCH_LINES")
local mode = os.getenv("BENCH_MODE") -- "bearer": token is the Authorization; "body": no header
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
  table.insert(threads, thread)
end

function init(args)
  local n = tonumber(os.getenv("BENCH_THREADS") or "1")
  lines = {}
  local i = 0
  for line in io.lines(lines_file) do
    if i % n == (index - 1) then table.insert(lines, line) end
    i = i + 1
  end
  position = 0
end

function request()
  position = position + 1
  local line = lines[((position - 1) % #lines) + 1]
  local space = line:find(" ", 1, true)
  local token = line:sub(1, space - 1)
  local body = line:sub(space + 1)
  local headers = { ["Content-Type"] = "application/json" }
  if mode == "bearer" then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", path, headers, body)
end
