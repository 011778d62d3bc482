-- login (argon2id: expensive; paced by LOADTEST_RATE) (scripts/loadtest.py).
-- Data: { items = { "<json body>", ... } }
dofile(string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "common.lua")

local data, n

function init(args)
  data = load_data()
  n = #data.items
end

function request()
  sent = sent + 1
  return wrk.format("POST", "/graphql", { ["Content-Type"] = "application/json" },
    data.items[math.random(n)])
end

function response(status, headers, body)
  if tally(status, body) then
    if string.find(body, '"accessToken"', 1, true) then
      ok = ok + 1
    else
      keep_sample(status, body)
    end
  end
end
