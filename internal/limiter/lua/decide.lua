-- Limiter decisions: the math of algorithms.go, each in one atomic step.
-- One call decides a batch of decisions, one after the other, so that
-- concurrent decisions share the cost of a script call; each sees the
-- writes of those before it, as if each were a call of its own.
-- A[1]: now in Unix µs, or 0 to take the server's TIME (production).
-- Then per decision: a header, 2 × the number of entries + 1 to peek
-- (decide, write nothing), then per entry: alg (f fixed, s sliding, t token
-- bucket, q quota), max, window ms (quota: grace ms), cost, dry (0/1),
-- start ms; a quota adds end ms, member and its bound on subjects per
-- period (0: none). Every argument costs Redis to read and intern: a fixed
-- window sends 6, not 9.
-- K, per decision, per entry: f: window; s: previous window, current
-- window; t: TAT; q: usage (sorted set), total.
-- Reply, flat (nested tables cost Redis more to build and send): now µs,
-- then per decision: per entry allowed, remaining, reset ms, retry ms; or
-- -1 when stale; or -2 and the error's message, for that decision alone.
-- allowed is 2 for a quota's new subject beyond its bound: denied, and
-- never recorded, even by a dry run; plus 4 when the decision, committed,
-- creates a quota's subject (refund.lua removes only such a one).
-- Stale: the server's clock puts a proposed window or period in the
-- past or future: nothing is read or written and the caller re-plans.
-- Every read and check of a decision happens before its first write, so an
-- error (a key of the wrong type, say) leaves every counter as it was, and
-- the decisions before and after it stand. A key gets its TTL in the
-- script that creates it; later writes keep it (the TTL is the same
-- absolute window or period end), which saves a command on most decisions.
-- Costs go back to Redis as the caller's strings: Lua prints a number above
-- 1e14 as 1e+14, which INCRBY refuses.
-- It builds no per-entry tables: the decide pass notes, per entry, the one
-- value its commit needs. Every TTL it sets is within the library's bound,
-- and it refuses windows and periods longer than any the API allows.

local SUB = 10
local BUCKETS = {'0', '1', '2', '3', '4', '5', '6', '7', '8', '9'}
-- Longest window (ms) and period: the API's bounds, with room.
local MAX_WINDOW, MAX_PERIOD = 8 * 24 * 3600 * 1000, 33 * 24 * 3600 * 1000

-- One call's state. Redis runs one function at a time, so the helpers
-- below share these instead of being closures built per call: A and K are
-- the call's arguments and sealed keys, out the reply and o the last
-- position written in it.
local A, K, now, now_ms, out, o
local KBUF = {} -- K's table, refilled at each call

-- bounded refuses an entry whose window, period or member no decision
-- the operator compiles would have.
local function bounded(alg, win, a)
  if not win or win < 1 or win > MAX_WINDOW then fail('a window is not within 1 ms and 8 days') end
  if alg == 'q' then
    local start, stop = tonumber(A[a + 5]), tonumber(A[a + 6])
    if not start or not stop or stop - start > MAX_PERIOD then fail('a period is longer than 33 days') end
    if #A[a + 7] > MAX_NAME then fail('a subject is longer than ' .. MAX_NAME .. ' bytes') end
  elseif alg ~= 'f' and alg ~= 's' and alg ~= 't' then
    fail('unknown algorithm')
  end
end

local function int(v)
  if not v then return 0 end
  if not match(v, '^%-?%d+$') then
    error({err = 'ERR quota-operator: a limiter counter is not an integer'})
  end
  return tonumber(v)
end

-- decide makes the decision of n entries from A[first] and K[k0],
-- writes its reply after out[o] and returns the last position written.
local function decide(first, k0, n, peek)
  -- The proposals first: a stale one means no read and no write.
  local a = first
  for _ = 1, n do
    local alg, win, start = A[a], tonumber(A[a + 2]), tonumber(A[a + 5])
    bounded(alg, win, a)
    if (alg == 'f' or alg == 's') and start ~= now_ms - now_ms % win
      or alg == 'q' and (now_ms < start or now_ms >= tonumber(A[a + 6])) then
      out[o + 1] = -1
      return o + 1
    end
    if alg == 'q' then a = a + 9 else a = a + 6 end
  end

  local notes, pass = {}, not peek
  local r, k = o, k0
  a = first
  for _ = 1, n do
    local alg, max, win, cost, start = A[a], tonumber(A[a + 1]), tonumber(A[a + 2]), tonumber(A[a + 3]), tonumber(A[a + 5])
    -- Every branch sets the verdict (allowed, remaining, reset ms, retry ms;
    -- -1: never) and note, what its commit needs.
    local ok, rem, reset, retry, note, newm
    if alg == 'f' or alg == 'q' then
      -- A "used of max" counter, full again at the window or period end.
      local raw, used
      if alg == 'f' then
        raw = call('GET', K[k])
        used, reset = int(raw), start + win - now_ms
        note = reset -- the TTL of a new window
      else
        -- The usage set and the total are created, expire and (refund.lua)
        -- vanish together.
        raw = call('GET', K[k + 1])
        int(raw)
        used = call('ZSCORE', K[k], A[a + 7])
        reset, note = tonumber(A[a + 6]) - now_ms, tonumber(A[a + 6]) - now_ms + win -- the period end plus the grace
        if not used and A[a + 8] ~= '0' and call('ZCARD', K[k]) >= tonumber(A[a + 8]) then
          note = -1 -- a new subject beyond the bound: denied, never written
        end
        newm = not used
        used = tonumber(used or '0')
      end
      if raw and note ~= -1 then note = 0 end
      ok, rem, retry = used + cost <= max, max - used, 0
      if note == -1 then ok, rem, retry = false, 0, reset
      elseif ok then rem = rem - cost elseif cost > max then retry = -1 else retry = reset end
    elseif alg == 's' then
      -- The span counts prev[i..] and cur[..i]: the oldest bucket still
      -- touching it in full. Buckets leave oldest first: reset is when the
      -- last counted one leaves, retry when enough have left for this cost.
      local prev = call('HMGET', K[k], unpack(BUCKETS))
      local cur = call('HMGET', K[k + 1], unpack(BUCKETS))
      local i = floor((now_ms - start) * SUB / win)
      local used, fresh = 0, true
      for j = 0, SUB - 1 do
        if j >= i then used = used + int(prev[j + 1]) end
        if j <= i then used = used + int(cur[j + 1]) end
        fresh = fresh and not cur[j + 1]
      end
      ok, rem, reset, retry = used + cost <= max, max - used, 0, 0
      if ok then rem = rem - cost elseif cost > max then retry = -1 end
      local need, freed = used + cost - max, 0
      for j = i, SUB + i do
        local n, at
        if j < SUB then
          n, at = int(prev[j + 1]), start + floor(((j + 1) * win + SUB - 1) / SUB)
        else
          n, at = int(cur[j - SUB + 1]), start + win + floor(((j - SUB + 1) * win + SUB - 1) / SUB)
          if j - SUB == i and ok then n = n + cost end
        end
        if n > 0 then
          reset, freed = at - now_ms, freed + n
          if not ok and retry == 0 and freed >= need then retry = at - now_ms end
        end
      end
      note = i
      if fresh then note = -1 - i end -- a new window: set its TTL
    else
      -- GCRA: a token every window/max; times in µs as floats.
      local raw = call('GET', K[k])
      local tat = 0
      if raw then
        tat = tonumber(raw)
        if not tat or tat ~= tat or tat == math.huge or tat == -math.huge then
          error({err = 'ERR quota-operator: a token bucket holds no number'})
        end
      end
      local span = win * 1000
      local interval = span / max
      if tat < now then tat = now end
      note = tat + cost * interval
      -- 1 µs of slack absorbs float rounding in cost*interval == span.
      ok, retry = note - now <= span + 1, 0
      local left = note
      if not ok then
        left = tat
        if cost > max then retry = -1 else retry = ceil((note - now - span) / 1000) end
        -- A dry run counts, but a bucket holds at most its burst.
        if A[a + 4] == '1' and note > now + span then note = now + span end
      end
      rem, reset = floor((span - (left - now)) / interval + 1e-6), ceil((left - now) / 1000)
      if rem < 0 then rem = 0 end
    end
    pass = pass and (ok or A[a + 4] == '1')
    local allowed = 0
    if ok then allowed = 1 elseif alg == 'q' and note == -1 then allowed = 2 end
    -- +4: committing writes this quota's subject anew, which only a refund
    -- of this decision may remove again (a subject that was there may hold
    -- a grant's credit).
    if newm and note ~= -1 then allowed = allowed + 4 end
    out[r + 1], out[r + 2], out[r + 3], out[r + 4] = allowed, rem, reset, retry
    notes[#notes + 1] = note
    r = r + 4
    if alg == 'f' or alg == 't' then k = k + 1 else k = k + 2 end
    if alg == 'q' then a = a + 9 else a = a + 6 end
  end

  if not pass then return r end
  k, a = k0, first
  for e = 1, #notes do
    local alg, cost, note = A[a], A[a + 3], notes[e]
    if alg == 'f' then
      call('INCRBY', K[k], cost)
      if note > 0 then call('PEXPIRE', K[k], ttl(note)) end
      k = k + 1
    elseif alg == 'q' then
      if note >= 0 then
        call('ZINCRBY', K[k], cost, A[a + 7])
        call('INCRBY', K[k + 1], cost)
        -- Both expire at the period end plus the grace. NX sets it on
        -- whichever has none: a new period, or a key that came back alone
        -- (its twin evicted under an allkeys policy) and would else live
        -- without a TTL.
        local life = ttl(tonumber(A[a + 6]) - now_ms + tonumber(A[a + 2]))
        call('PEXPIRE', K[k], life, 'NX')
        call('PEXPIRE', K[k + 1], life, 'NX')
      end
      k = k + 2
    elseif alg == 's' then
      local i = note
      if note < 0 then i = -1 - note end
      call('HINCRBY', K[k + 1], BUCKETS[i + 1], cost)
      if note < 0 then
        -- The current window is read as the previous one until the next ends.
        call('PEXPIRE', K[k + 1], ttl(tonumber(A[a + 5]) + 2 * tonumber(A[a + 2]) - now_ms))
      end
      k = k + 2
    else
      call('SET', K[k], string.format('%.17g', note), 'PX', ttl(ceil((note - now) / 1000)))
      k = k + 1
    end
    if alg == 'q' then a = a + 9 else a = a + 6 end
  end
  return r
end

-- fixed_one is decide for the commonest decision, one fixed window, in
-- fewer steps: most decisions take it, and Redis's CPU is what every
-- sidecar shares.
local function fixed_one(a, k, n, peek)
  local max, win, cost, start = tonumber(A[a + 1]), tonumber(A[a + 2]), tonumber(A[a + 3]), tonumber(A[a + 5])
  if not win or win < 1 or win > MAX_WINDOW then bounded('f', win, a) end
  if start ~= now_ms - now_ms % win then
    out[o + 1] = -1
    return o + 1
  end
  local reset, dry, used = start + win - now_ms, A[a + 4] == '1'
  if peek or cost > max and not dry then
    -- A peek writes nothing, and a cost over the limit never passes: read.
    used = int(call('GET', K[k]))
  else
    -- Most decisions pass: count first, one command where a read and a
    -- write were two, and take it back when it is over the limit. The
    -- script is atomic, so no one sees the count in between.
    local after = pcall_redis('INCRBY', K[k], A[a + 3])
    if type(after) == 'table' then
      if after.err and match(after.err, 'not an integer') then
        error({err = 'ERR quota-operator: a limiter counter is not an integer'})
      end
      error(after)
    end
    -- A new window (or one refunded to 0) gets its TTL, even when the
    -- count is taken back: no key without one.
    if after == cost then call('PEXPIRE', K[k], ttl(reset)) end
    used = after - cost
    if used + cost > max and not dry then call('DECRBY', K[k], A[a + 3]) end
  end
  local ok, rem, retry = used + cost <= max, max - used, 0
  if ok then rem = rem - cost elseif cost > max then retry = -1 else retry = reset end
  local allowed = 0
  if ok then allowed = 1 end
  out[o + 1], out[o + 2], out[o + 3], out[o + 4] = allowed, rem, reset, retry
  return o + 4
end

-- qo1_decide: each decision stands alone: one that fails is answered with
-- its error and wrote nothing; the others go on.
fn('qo1_decide', function(keys, args)
  if #args > 10 * MAX_KEYS then fail('more than ' .. 10 * MAX_KEYS .. ' arguments in one call') end
  A, K = args, sealed(keys, KBUF)
  now = tonumber(A[1])
  if not now then fail('the time is not a number') end
  if now == 0 then now = now_us() end
  now_ms = floor(now / 1000)
  out, o = {now}, 1
  local h, k = 2, 1
  while h <= #A do
    local head = tonumber(A[h])
    if not head then fail('a decision has no header') end
    local n, peek = floor(head / 2), head % 2 == 1
    if n > MAX_KEYS then fail('a decision of more than ' .. MAX_KEYS .. ' entries') end
    local step = decide
    if n == 1 and A[h + 1] == 'f' then step = fixed_one end
    local ok, r = pcall(step, h + 1, k, n, peek)
    if ok then
      o = r
    else
      for i = o + 1, o + 4 * n do out[i] = nil end
      -- Redis's own errors come as a table or as a string with their code.
      if type(r) == 'table' and r.err then r = r.err end
      if type(r) ~= 'string' or not match(r, '^%u+ ') then r = 'ERR quota-operator: ' .. tostring(r) end
      out[o + 1], out[o + 2] = -2, r
      o = o + 2
    end
    local a = h + 1
    for _ = 1, n do
      local alg = A[a]
      if alg == 'f' or alg == 't' then k = k + 1 else k = k + 2 end
      if alg == 'q' then a = a + 9 else a = a + 6 end
    end
    h = a
  end
  local reply = out
  A, out = nil, nil
  return reply
end)
