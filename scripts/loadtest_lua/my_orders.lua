-- myOrders history pages (first, or a later one by cursor), paced by LOADTEST_RATE
-- (scripts/loadtest.py).
-- Data: { tokens = { "<jwt>", ... }, items = { { token_index, "<json body>" }, ... } }
dofile(string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "common.lua")

local data, n

function init(args)
  data = load_data()
  n = #data.items
end

function request()
  local item = data.items[math.random(n)]
  sent = sent + 1
  return wrk.format("POST", "/graphql", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. data.tokens[item[1]],
  }, item[2])
end

function response(status, headers, body)
  if tally(status, body) and string.find(body, '"edges":%s*%[%s*{') then
    ok = ok + 1
  end
end
