-- wrk script: POST /runtasks with 4 random coin ids per request (JSON body).
-- Usage: wrk ... -s bench/wrk/runtasks.lua http://host:port/runtasks -- coin-ids.txt
local ids = {}
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  for line in io.lines(args[1]) do
    ids[#ids + 1] = line
  end
  math.randomseed(os.time() * 100 + (tid or 0))
end

function request()
  local picked = {}
  for i = 1, 4 do
    picked[i] = '"' .. ids[math.random(#ids)] .. '"'
  end
  local body = '{"coins":[' .. table.concat(picked, ",") .. ']}'
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
