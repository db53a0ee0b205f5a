-- wrk: GENERAL holds of 1 ticket, each with the bearer token of the next buyer (round
-- robin over the scenario's buyers), counting answers by status per thread.
-- bench/wrk.sh writes the scenario (event, section, tokens) to $SCENARIO as three lines.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("SCENARIO") or "scenario.txt"))
  local event = f:read("*l")
  local section = f:read("*l")
  tokens = {}
  for line in f:lines() do tokens[#tokens + 1] = line end
  f:close()
  path = "/events/" .. event .. "/reservations"
  body = '{"type":"GENERAL","sectionId":' .. section .. ',"quantity":1}'
  -- Threads start at different buyers so that they do not move in step.
  n = tonumber(args[1] or "0") or 0
  n = n + math.random(#tokens)
  counts = {}
end

function request()
  n = n + 1
  local token = tokens[(n % #tokens) + 1]
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for status, k in pairs(c) do total[status] = (total[status] or 0) + k end
  end
  local out = io.open(os.getenv("COUNTS") or "counts.txt", "w")
  for status, k in pairs(total) do out:write(status, " ", k, "\n") end
  out:close()
end
