-- Moves what decide.lua committed by a signed number of units per entry,
-- after the decision: qo1_refund gives all of it back, for a Redis Cluster
-- decision whose keys span slots and that another slot denied;
-- qo1_settle charges what a request really cost once its response said
-- so, less the reserve its decision took (a refund when negative).
-- Same KEYS as decide.lua. ARGV[1] is the committed decision's time in µs
-- and ARGV[2] the time now (0: the server's TIME), then per entry 9 values:
-- alg, max, window ms (quota: grace ms), units, dry, start ms, end ms,
-- member, and 'created' for a quota subject the decision created. units
-- are the cost to give back (refund) or the signed units to add (settle).
-- A counter that has since expired (its window or period is over, or a
-- bucket refilled) is left alone, but a bucket is charged from now.
-- A value that drops to 0 or below goes: a window's count, a bucket's
-- debt, and a quota subject the decision created (a subject that was
-- there may hold a grant's credit, below 0, or a reset's 0, both of which
-- must stay). A quota's total moves with its subject and keeps its TTL.

-- moved applies units (a signed integer string) to each entry of keys and
-- args; refund or settle as above.
local function moved(keys, args, sign)
  local KEYS, ARGV = sealed(keys), args
  local SUB = 10
  local at_ms = math.floor(tonumber(ARGV[1]) / 1000)
  local now = tonumber(ARGV[2])
  if now == 0 then now = now_us() end

  local function fixed(e)
    if redis.call('EXISTS', KEYS[e.k]) == 1 and redis.call('INCRBY', KEYS[e.k], e.units) <= 0 then
      redis.call('DEL', KEYS[e.k])
    end
  end

  -- The units go to the sub-window the decision counted them in.
  local function sliding(e)
    -- Clamped: in a Cluster the decision's time is the latest node's.
    local i = math.min(math.max(math.floor((at_ms - e.start) * SUB / e.win), 0), SUB - 1)
    local key, field = KEYS[e.k + 1], tostring(i)
    local there = redis.call('HEXISTS', key, field) == 1
    if e.n > 0 and not there then there = redis.call('EXISTS', key) == 1 end
    if there and redis.call('HINCRBY', key, field, e.units) <= 0 then
      redis.call('HDEL', key, field)
    end
  end

  local function bucket(e)
    local raw = redis.call('GET', KEYS[e.k])
    local tat = now -- no key: a full bucket, the units taken from now
    if raw then
      tat = tonumber(raw)
      if not tat then fail('a token bucket holds no number') end
      if e.n > 0 and tat < now then tat = now end
    elseif e.n <= 0 then
      return
    end
    tat = tat + e.n * (e.win * 1000 / e.max)
    if tat <= now then
      redis.call('DEL', KEYS[e.k])
    else
      redis.call('SET', KEYS[e.k], string.format('%.17g', tat), 'PX', ttl(math.ceil((tat - now) / 1000)))
    end
  end

  local function quota(e)
    local use, sum = KEYS[e.k], KEYS[e.k + 1]
    if not redis.call('ZSCORE', use, e.member) then return end
    if tonumber(redis.call('ZINCRBY', use, e.units, e.member)) <= 0 and e.created then
      redis.call('ZREM', use, e.member)
    end
    if redis.call('EXISTS', sum) == 1 then
      redis.call('INCRBY', sum, e.units)
    end
  end

  local steps = {f = fixed, s = sliding, t = bucket, q = quota}
  if #ARGV > 9 * MAX_KEYS then fail('more than ' .. MAX_KEYS .. ' entries') end
  local k = 1
  for a = 3, #ARGV, 9 do
    local step = steps[ARGV[a]]
    local n = tonumber(ARGV[a + 3])
    if not step or not n or n ~= math.floor(n) then fail('an entry is not alg and units') end
    local units = ARGV[a + 3]
    if sign < 0 then units, n = '-' .. units, -n end
    step({max = tonumber(ARGV[a + 1]), win = tonumber(ARGV[a + 2]), units = units, n = n,
      start = tonumber(ARGV[a + 5]), member = ARGV[a + 7], created = ARGV[a + 8] == 'created', k = k})
    if ARGV[a] == 'f' or ARGV[a] == 't' then k = k + 1 else k = k + 2 end
  end
  return 1
end

fn('qo1_refund', function(keys, args) return moved(keys, args, -1) end)
fn('qo1_settle', function(keys, args) return moved(keys, args, 1) end)
