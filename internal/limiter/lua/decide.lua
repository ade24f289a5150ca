#!lua
-- One limiter decision: the math of algorithms.go, in one atomic step.
-- ARGV[1]  now in Unix µs, or 0 to take the server's TIME (production)
-- ARGV[2]  1: peek (decide, write nothing)
-- then 8 values per entry: alg (f fixed, s sliding, t token bucket, q quota),
--   max, window ms (quota: grace ms), cost, dry (0/1), start ms, end ms, member
-- KEYS per entry: f: window; s: previous window, current window; t: TAT;
--   q: usage (sorted set), total.
-- Reply: {stale, now µs, then per entry: allowed, remaining, reset ms, retry ms}.
-- stale = 1 when the server's clock puts a proposed window or period in the
-- past or future: nothing is read or written and the caller re-plans.
-- Every read and check happens before the first write, so an error (a key
-- of the wrong type, say) leaves every counter as it was.
-- Counts and costs go back to Redis as the caller's strings: Lua would
-- print a number above 1e14 as 1e+14, which INCRBY refuses.
local SUB = 10
local BUCKETS = {'0', '1', '2', '3', '4', '5', '6', '7', '8', '9'}

local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local now_ms = math.floor(now / 1000)
local peek = ARGV[2] == '1'

local function int(v)
  if not v then return 0 end
  if not string.match(v, '^%-?%d+$') then
    error({err = 'ERR quota-operator: a limiter counter is not an integer'})
  end
  return tonumber(v)
end

local function counted(used, cost, max, reset)
  local v = {allowed = used + cost <= max, reset = reset, retry = 0}
  local after = used
  if v.allowed then
    after = used + cost
  elseif cost > max then
    v.retry = -1
  else
    v.retry = reset
  end
  v.remaining = math.max(0, max - after)
  return v
end

local function fixed(e)
  local key = KEYS[e.k]
  local left = e.start + e.win - now_ms
  local v = counted(int(redis.call('GET', key)), e.cost, e.max, left)
  v.commit = function()
    redis.call('INCRBY', key, e.costs)
    redis.call('PEXPIRE', key, left)
  end
  return v
end

local function bound(j, win)
  return math.floor((j * win + SUB - 1) / SUB)
end

local function sliding(e)
  local prev = redis.call('HMGET', KEYS[e.k], unpack(BUCKETS))
  local cur = redis.call('HMGET', KEYS[e.k + 1], unpack(BUCKETS))
  local i = math.floor((now_ms - e.start) * SUB / e.win)
  local used = 0
  for j = i, SUB - 1 do used = used + int(prev[j + 1]) end
  for j = 0, i do used = used + int(cur[j + 1]) end
  local v = {allowed = used + e.cost <= e.max, reset = 0, retry = 0}
  local after = used
  if v.allowed then after = used + e.cost end
  v.remaining = math.max(0, e.max - after)
  if not v.allowed and e.cost > e.max then v.retry = -1 end
  local need, freed = used + e.cost - e.max, 0
  local function leave(n, at)
    if n == 0 then return end
    v.reset, freed = at - now_ms, freed + n
    if not v.allowed and v.retry == 0 and freed >= need then v.retry = at - now_ms end
  end
  for j = i, SUB - 1 do leave(int(prev[j + 1]), e.start + bound(j + 1, e.win)) end
  for j = 0, i do
    local n = int(cur[j + 1])
    if j == i and v.allowed then n = n + e.cost end
    leave(n, e.start + e.win + bound(j + 1, e.win))
  end
  v.commit = function()
    redis.call('HINCRBY', KEYS[e.k + 1], BUCKETS[i + 1], e.costs)
    redis.call('PEXPIRE', KEYS[e.k + 1], e.start + 2 * e.win - now_ms)
  end
  return v
end

local function bucket(e)
  local key = KEYS[e.k]
  local raw = redis.call('GET', key)
  local tat = 0
  if raw then
    tat = tonumber(raw)
    if not tat or tat ~= tat or tat == math.huge or tat == -math.huge then
      error({err = 'ERR quota-operator: a token bucket holds no number'})
    end
  end
  local span = e.win * 1000
  local interval = span / e.max
  tat = math.max(tat, now)
  local next = tat + e.cost * interval
  local v = {allowed = next - now <= span + 1, retry = 0}
  local left = next
  if not v.allowed then
    left = tat
    if e.cost > e.max then v.retry = -1 else v.retry = math.ceil((next - now - span) / 1000) end
    if e.dry then next = math.min(next, now + span) end
  end
  v.reset = math.ceil((left - now) / 1000)
  v.remaining = math.max(0, math.floor((span - (left - now)) / interval + 1e-6))
  v.commit = function()
    redis.call('SET', key, string.format('%.17g', next), 'PX', math.max(1, math.ceil((next - now) / 1000)))
  end
  return v
end

local function quota(e)
  local use, sum = KEYS[e.k], KEYS[e.k + 1]
  int(redis.call('GET', sum))
  local v = counted(tonumber(redis.call('ZSCORE', use, e.member) or '0'), e.cost, e.max, e.stop - now_ms)
  v.commit = function()
    local ttl = e.stop + e.win - now_ms
    redis.call('ZINCRBY', use, e.costs, e.member)
    redis.call('INCRBY', sum, e.costs)
    redis.call('PEXPIRE', use, ttl)
    redis.call('PEXPIRE', sum, ttl)
  end
  return v
end

local steps = {f = fixed, s = sliding, t = bucket, q = quota}
local entries, k = {}, 1
for a = 3, #ARGV, 8 do
  local e = {alg = ARGV[a], max = tonumber(ARGV[a + 1]), win = tonumber(ARGV[a + 2]),
    cost = tonumber(ARGV[a + 3]), costs = ARGV[a + 3], dry = ARGV[a + 4] == '1', start = tonumber(ARGV[a + 5]),
    stop = tonumber(ARGV[a + 6]), member = ARGV[a + 7], k = k}
  if e.alg == 'f' or e.alg == 't' then k = k + 1 else k = k + 2 end
  if (e.alg == 'f' or e.alg == 's') and e.start ~= now_ms - now_ms % e.win then return {1, now} end
  if e.alg == 'q' and (now_ms < e.start or now_ms >= e.stop) then return {1, now} end
  entries[#entries + 1] = e
end

local verdicts, pass = {}, not peek
for i, e in ipairs(entries) do
  verdicts[i] = steps[e.alg](e)
  pass = pass and (verdicts[i].allowed or e.dry)
end
local reply = {0, now}
for i, v in ipairs(verdicts) do
  if pass then v.commit() end
  local allowed = 0
  if v.allowed then allowed = 1 end
  reply[#reply + 1] = allowed
  reply[#reply + 1] = v.remaining
  reply[#reply + 1] = v.reset
  reply[#reply + 1] = v.retry
end
return reply
