-- Gives back what decide.lua committed, for a Redis Cluster decision whose
-- keys span slots and that another slot denied. Same ARGV and KEYS as
-- decide.lua, with ARGV[1] the committed decision's time in µs and ARGV[2]
-- the time now (0: the server's TIME), and per entry 9 values, the last
-- 'created' for a quota subject the decision created. A counter that has
-- since expired is left alone.
fn('qo1_refund', function(keys, args)
  local KEYS, ARGV = sealed(keys), args
  local SUB = 10
  local at = tonumber(ARGV[1])
  local at_ms = math.floor(at / 1000)
  local now = tonumber(ARGV[2])
  if now == 0 then now = now_us() end

  local function fixed(e)
    if redis.call('EXISTS', KEYS[e.k]) == 1 and redis.call('DECRBY', KEYS[e.k], e.costs) <= 0 then
      redis.call('DEL', KEYS[e.k])
    end
  end

  local function sliding(e)
    local key, field = KEYS[e.k + 1], tostring(math.floor((at_ms - e.start) * SUB / e.win))
    if redis.call('HEXISTS', key, field) == 1 and redis.call('HINCRBY', key, field, '-' .. e.costs) <= 0 then
      redis.call('HDEL', key, field)
    end
  end

  local function bucket(e)
    local raw = redis.call('GET', KEYS[e.k])
    if not raw then return end
    local tat = tonumber(raw) - e.cost * (e.win * 1000 / e.max)
    if tat <= now then
      redis.call('DEL', KEYS[e.k])
    else
      redis.call('SET', KEYS[e.k], string.format('%.17g', tat), 'PX', ttl(math.ceil((tat - now) / 1000)))
    end
  end

  -- A subject's score goes down by the cost; its member goes only when
  -- the decision created it (e.created): one that was there may hold a
  -- grant's credit, below 0, or a reset's 0, both of which must stay. The
  -- total goes down too; it expires with its period (decide.lua sets both
  -- TTLs).
  local function quota(e)
    local use, sum = KEYS[e.k], KEYS[e.k + 1]
    if not redis.call('ZSCORE', use, e.member) then return end
    if tonumber(redis.call('ZINCRBY', use, '-' .. e.costs, e.member)) <= 0 and e.created then
      redis.call('ZREM', use, e.member)
    end
    if redis.call('EXISTS', sum) == 1 then
      redis.call('DECRBY', sum, e.costs)
    end
  end

  local steps = {f = fixed, s = sliding, t = bucket, q = quota}
  if #ARGV > 9 * MAX_KEYS then fail('more than ' .. MAX_KEYS .. ' entries') end
  local k = 1
  for a = 3, #ARGV, 9 do
    local e = {alg = ARGV[a], max = tonumber(ARGV[a + 1]), win = tonumber(ARGV[a + 2]),
      cost = tonumber(ARGV[a + 3]), costs = ARGV[a + 3], start = tonumber(ARGV[a + 5]), member = ARGV[a + 7],
      created = ARGV[a + 8] == 'created', k = k}
    steps[e.alg](e)
    if e.alg == 'f' or e.alg == 't' then k = k + 1 else k = k + 2 end
  end
  return 1
end)
