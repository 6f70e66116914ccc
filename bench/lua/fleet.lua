-- A fleet at work: mostly heartbeats, some status reports, occasional registrations and
-- dashboard listings. Lines of BENCH_LINES are "<runner access token> <runner id>".
local user_key = os.getenv("BENCH_AUTH")
local lines_file = os.getenv("BENCH_LINES")
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
end

function init(args)
  runners = {}
  for line in io.lines(lines_file) do
    local space = line:find(" ", 1, true)
    table.insert(runners, { token = line:sub(1, space - 1), id = line:sub(space + 1) })
  end
  position = index * 7919
  math.randomseed(index)
end

local function json(headers_token, path, body)
  return wrk.format("POST", path, { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. headers_token }, body)
end

function request()
  position = position + 1
  local roll = math.random(100)
  if roll <= 3 then
    return json(user_key, "/gitpod.v1.RunnerService/CreateRunner", '{"name":"fleet runner","provider":"RUNNER_PROVIDER_AWS_EC2","spec":{"configuration":{"region":"us-west"}}}')
  elseif roll <= 5 then
    return json(user_key, "/gitpod.v1.RunnerService/ListRunners", '{"pagination":{"pageSize":25}}')
  end
  local runner = runners[(position % #runners) + 1]
  if roll <= 15 then
    return json(runner.token, "/gitpod.v1.RunnerInteractionService/UpdateRunnerStatus",
      '{"runnerId":"' .. runner.id .. '","version":"1.2.3","region":"us-west-2","capabilities":["RUNNER_CAPABILITY_WARM_POOL"]}')
  end
  return json(runner.token, "/gitpod.v1.RunnerInteractionService/MarkRunnerActive", '{"runnerId":"' .. runner.id .. '"}')
end
