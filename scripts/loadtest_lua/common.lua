-- Shared by the scripts/loadtest Lua scripts (see scripts/loadtest.py): per-thread
-- counters, the data file, and one JSON summary per wrk process written by done().
--
-- Environment (set by scripts/loadtest.py for each wrk process):
--   LOADTEST_DATA      a Lua file returning this operation's pre-generated requests
--   LOADTEST_OUT       where done() writes the JSON summary
--   LOADTEST_RATE      requests per second of this process (paced operations), 0 for none
--   LOADTEST_PREFIX    unique prefix of idempotency keys / event ids of this process

local threads = {}
local next_tid = 0

-- Counters of this thread (read by done() through thread:get).
non2xx, s5xx, gql_errors, user_errors, ok, sent = 0, 0, 0, 0, 0, 0
tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end

function load_data()
  local data = dofile(os.getenv("LOADTEST_DATA"))
  math.randomseed(os.time() * 1000 + tid * 7919 + (tonumber(os.getenv("LOADTEST_SEED")) or 0))
  return data
end

-- Pacing: LOADTEST_RATE requests per second for this process (one thread), whatever the
-- number of connections (they only absorb the latency); 0 or unset: as fast as answers come.
-- A slot missed because every connection was busy is not made up later (no bursts).
local rate = tonumber(os.getenv("LOADTEST_RATE") or "0") or 0
if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } loadtest_timespec;
    int clock_gettime(int clock_id, loadtest_timespec *tp);
  ]])
  local now = ffi.new("loadtest_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, now) -- CLOCK_MONOTONIC
    return tonumber(now.tv_sec) * 1000 + tonumber(now.tv_nsec) / 1e6
  end
  local interval = 1000 / rate
  local next_slot = nil
  function delay()
    local t = now_ms()
    if next_slot == nil then
      next_slot = t + math.random() * interval
    else
      next_slot = math.max(next_slot + interval, t)
    end
    return math.floor(next_slot - t)
  end
end

-- The first failed answer of this thread, for the report (JSON-safe, shortened).
function keep_sample(status, body)
  if sample == nil then
    sample = status .. " " .. string.gsub(string.sub(body or "", 1, 400), '[%c"\\]', " ")
  end
end

-- Counts one response. Returns true for a 2xx answer without GraphQL errors.
function tally(status, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if status >= 500 then
      s5xx = s5xx + 1
    end
    keep_sample(status, body)
    return false
  end
  if string.find(body, '"errors"', 1, true) then
    gql_errors = gql_errors + 1
    keep_sample(status, body)
    return false
  end
  if string.find(body, '"userErrors":%s*%[%s*{') then
    user_errors = user_errors + 1
  end
  return true
end

local COUNTERS = { "non2xx", "s5xx", "gql_errors", "user_errors", "ok", "sent", "replays", "keys" }
-- Latency percentiles written out, so that runs against several instances can be merged.
local GRID = { 1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97.5, 99, 99.5, 99.9, 100 }

function done(summary, latency, requests)
  local totals = {}
  for _, name in ipairs(COUNTERS) do
    totals[name] = 0
  end
  local codes = {}
  local samples = {}
  for _, thread in ipairs(threads) do
    for _, name in ipairs(COUNTERS) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
    local placed = thread:get("placed")
    if placed then
      for _, code in ipairs(placed) do
        codes[#codes + 1] = '"' .. code .. '"'
      end
    end
    local sample = thread:get("sample")
    if sample then
      samples[#samples + 1] = '"' .. sample .. '"'
    end
  end
  local grid = {}
  for _, p in ipairs(GRID) do
    local value = latency.max
    if p < 100 then
      value = latency:percentile(p)
    end
    grid[#grid + 1] = string.format("[%g, %d]", p, value)
  end
  local counters = {}
  for _, name in ipairs(COUNTERS) do
    counters[#counters + 1] = string.format('"%s": %d', name, totals[name])
  end
  local e = summary.errors
  local out = assert(io.open(os.getenv("LOADTEST_OUT"), "w"))
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "status_errors": %d, "timeouts": %d, "mean_us": %.1f, '
      .. '"max_us": %d, "percentiles": [%s], %s, "codes": [%s], "samples": [%s]}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, table.concat(grid, ", "), table.concat(counters, ", "),
    table.concat(codes, ", "), table.concat(samples, ", ")))
  out:close()
end
