-- Signed carrier events, POST /webhooks/carrier, paced by LOADTEST_RATE
-- (scripts/loadtest.py). Bodies are signed in advance (the signature covers the timestamp,
-- valid for 5 minutes); each has its own event id, taken in order, so a process sends
-- min(sent, #items) distinct events (after that, repeats: a carrier redelivering).
-- Data: { items = { { "<timestamp>", "sha256=<hex>", "<json body>" }, ... } }
dofile(string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "common.lua")

local data, n, i

function init(args)
  data = load_data()
  n = #data.items
  i = 0
end

function request()
  i = i % n + 1
  local item = data.items[i]
  sent = sent + 1
  return wrk.format("POST", "/webhooks/carrier", {
    ["Content-Type"] = "application/json",
    ["X-Carrier-Timestamp"] = item[1],
    ["X-Carrier-Signature"] = item[2],
  }, item[3])
end

function response(status, headers, body)
  if tally(status, body) then
    ok = ok + 1
  end
end
