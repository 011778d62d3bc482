-- placeOrder (paced by LOADTEST_RATE) with a fresh idempotency key per purchase; a share
-- of the requests repeat this thread's previous purchase exactly (same key and body: a
-- client retrying after a timeout, possibly while the first attempt is still running). The
-- code of every order answered is kept, so that scripts/loadtest.py can compare them with
-- the rows in PostgreSQL.
-- Data: { tokens = {...}, replay_share = 0.05,
--         items = { { token_index, "<body up to the key>", "<body after the key>" }, ... } }
dofile(string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "common.lua")

local data, n, prefix
local last_token, last_body
replays, keys = 0, 0
placed = {}

function init(args)
  data = load_data()
  n = #data.items
  prefix = os.getenv("LOADTEST_PREFIX") .. tid .. "-"
end

function request()
  local token, body
  if last_body ~= nil and math.random() < data.replay_share then
    token, body = last_token, last_body
    replays = replays + 1
  else
    local item = data.items[math.random(n)]
    keys = keys + 1
    token = data.tokens[item[1]]
    body = item[2] .. prefix .. keys .. item[3]
    last_token, last_body = token, body
  end
  sent = sent + 1
  return wrk.format("POST", "/graphql", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function response(status, headers, body)
  if tally(status, body) then
    local code = string.match(body, '"order":%s*{%s*"code":%s*"([%w%-]+)"')
    if code then
      ok = ok + 1
      placed[#placed + 1] = code
    else
      keep_sample(status, body)
    end
  end
end
