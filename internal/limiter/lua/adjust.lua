-- Applies one adjustment (a QuotaAdjustment) to the counters of one limit
-- and one subject, at most once per id: the marker KEYS[1] records it with
-- the values it found and left, and a second call answers from it.
-- KEYS: the marker, then per entry the keys decide.lua takes (f: window;
-- s: previous window, current window; t: TAT; q: usage set, total).
-- ARGV: now in Unix µs (0: the server's TIME), the action (reset or
-- grant), the units of a grant, the marker's TTL in ms beyond the last
-- entry's end, then per entry 9 values as refund.lua takes them: alg, max,
-- window ms (quota: grace ms), cost, dry, start ms, end ms, member, bound.
-- Reply: state, now µs, then per entry used before and used after. State 0:
-- applied now; 1: applied before, and the values are those of then; -1:
-- stale, a proposed window or period is not the server's current one, and
-- nothing was done.
-- "Used" is what counts against max: remaining is max - used. A grant is a
-- credit against the period's usage, so used may go below 0; the period's
-- total, what was really consumed, does not move.
fn('qo1_adjust', function(keys, args)
  local KEYS, ARGV = sealed(keys), args
  local SUB = 10
  local BUCKETS = {'0', '1', '2', '3', '4', '5', '6', '7', '8', '9'}

  local done = call('GET', KEYS[1])
  if done then
    local out = {1}
    for v in string.gmatch(done, '[^,]+') do out[#out + 1] = tonumber(v) end
    return out
  end

  local now = tonumber(ARGV[1])
  if now == 0 then now = now_us() end
  local now_ms = floor(now / 1000)
  local action, units, keep = ARGV[2], ARGV[3], tonumber(ARGV[4])

  local function int(v)
    if not v then return 0 end
    if not string.match(v, '^%-?%d+$') then
      error({err = 'ERR quota-operator: a limiter counter is not an integer'})
    end
    return tonumber(v)
  end

  -- used reads what counts against max for the entry at ARGV[a], KEYS[k].
  local function used(a, k)
    local alg, max, win, start = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 5])
    if alg == 'f' then return int(call('GET', KEYS[k])) end
    if alg == 'q' then return tonumber(call('ZSCORE', KEYS[k], ARGV[a + 7]) or '0') end
    if alg == 's' then
      local prev, cur = call('HMGET', KEYS[k], unpack(BUCKETS)), call('HMGET', KEYS[k + 1], unpack(BUCKETS))
      local i, n = floor((now_ms - start) * SUB / win), 0
      for j = 0, SUB - 1 do
        if j >= i then n = n + int(prev[j + 1]) end
        if j <= i then n = n + int(cur[j + 1]) end
      end
      return n
    end
    local raw = call('GET', KEYS[k])
    local tat = tonumber(raw or '0')
    if not tat or tat ~= tat then error({err = 'ERR quota-operator: a token bucket holds no number'}) end
    if tat < now then tat = now end
    local span = win * 1000
    local rem = floor((span - (tat - now)) / (span / max) + 1e-6)
    if rem < 0 then rem = 0 end
    return max - rem
  end

  -- apply changes the entry at ARGV[a], KEYS[k] and returns its used after.
  local function apply(a, k, before)
    local alg = ARGV[a]
    if action == 'grant' then
      -- The usage set and the total are created and expire together.
      local life = ttl(tonumber(ARGV[a + 6]) - now_ms + tonumber(ARGV[a + 2]))
      if call('EXISTS', KEYS[k + 1]) == 0 then call('SET', KEYS[k + 1], 0, 'PX', life) end
      call('ZINCRBY', KEYS[k], '-' .. units, ARGV[a + 7])
      if call('PTTL', KEYS[k]) < 0 then call('PEXPIRE', KEYS[k], life) end
      return before - tonumber(units)
    end
    if alg == 'q' then
      -- The subject stays counted against the quota's bound on subjects.
      call('ZADD', KEYS[k], 'XX', 0, ARGV[a + 7])
    elseif alg == 's' then
      call('DEL', KEYS[k], KEYS[k + 1])
    else
      call('DEL', KEYS[k])
    end
    return 0
  end

  -- Every read and check comes before the first write.
  local n = (#ARGV - 4) / 9
  if n > MAX_KEYS then fail('more than ' .. MAX_KEYS .. ' entries') end
  local ends, befores = now_ms, {}
  local a, k = 5, 2
  for e = 1, n do
    local alg, win, start = ARGV[a], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 5])
    local fin = tonumber(ARGV[a + 6])
    if (alg == 'f' or alg == 's') and start ~= now_ms - now_ms % win
        or alg == 'q' and (now_ms < start or now_ms >= fin) then
      return {-1, now}
    end
    if alg == 'q' then fin = fin + win elseif alg == 't' then fin = now_ms + win else fin = start + 2 * win end
    if fin > ends then ends = fin end
    befores[e] = used(a, k)
    if action == 'grant' and alg ~= 'q' then error({err = 'ERR quota-operator: only a quota takes a grant'}) end
    a = a + 9
    if alg == 's' or alg == 'q' then k = k + 2 else k = k + 1 end
  end

  -- The record is text: Lua would print a time in µs as 1.7e+15.
  local out, record = {0, now}, {string.format('%.0f', now)}
  a, k = 5, 2
  for e = 1, n do
    local after = apply(a, k, befores[e])
    out[#out + 1], out[#out + 2] = befores[e], after
    record[#record + 1], record[#record + 2] = string.format('%.0f', befores[e]), string.format('%.0f', after)
    if ARGV[a] == 's' or ARGV[a] == 'q' then k = k + 2 else k = k + 1 end
    a = a + 9
  end
  call('SET', KEYS[1], table.concat(record, ','), 'PX', ttl(ends - now_ms + keep))
  return out
end)
