-- The store's own operations (store.Redis): every key a sidecar's local
-- API, a lock or the manager's marker writes goes through them. Each takes
-- one key; TTLs are ms.

-- qo1_incr: INCRBY; a key without a TTL (a new one) gets ARGV ttl, or
-- MAX_TTL when none is given, so a counter never outlives its bound.
fn('qo1_incr', function(keys, args)
  local k = sealed1(keys)
  local n = call('INCRBY', k, args[1])
  if call('PTTL', k) == -1 then call('PEXPIRE', k, ttl(args[2] or MAX_TTL)) end
  return n
end)

fn('qo1_expire', function(keys, args)
  return call('PEXPIRE', sealed1(keys), ttl(args[1]))
end)

fn('qo1_get', function(keys)
  return call('GET', sealed1(keys))
end, RO)

fn('qo1_has', function(keys)
  return call('EXISTS', sealed1(keys))
end, RO)

fn('qo1_ttl', function(keys)
  return call('PTTL', sealed1(keys))
end, RO)

fn('qo1_del', function(keys)
  return call('DEL', sealed1(keys))
end)

-- qo1_set: ARGV value, ttl ms (0: MAX_TTL), and NX to write only a key
-- that is not there (answers 1 when written).
fn('qo1_set', function(keys, args)
  local v = args[1]
  if #v > MAX_VALUE then fail('a value is larger than ' .. MAX_VALUE .. ' bytes') end
  local t = tonumber(args[2])
  if t == 0 then t = MAX_TTL end
  if args[3] == 'NX' then
    if call('SET', sealed1(keys), v, 'NX', 'PX', ttl(t)) then return 1 end
    return 0
  end
  call('SET', sealed1(keys), v, 'PX', ttl(t))
  return 1
end)

-- qo1_cas: the key's value must be ARGV[1]; then DEL, or with ARGV[2] a
-- new TTL.
fn('qo1_cas', function(keys, args)
  local k = sealed1(keys)
  if call('GET', k) ~= args[1] then return 0 end
  if args[2] then return call('PEXPIRE', k, ttl(args[2])) end
  return call('DEL', k)
end)

-- Sidecars report which config revision they enforce: a sorted set of
-- "pod/revision" members scored by the store's time in ms. ARGV member,
-- ttl ms; stale members go at each report.
fn('qo1_report', function(keys, args)
  local k = sealed1(keys)
  if #args[1] > MAX_NAME then fail('a member is longer than ' .. MAX_NAME .. ' bytes') end
  local now = floor(now_us() / 1000)
  call('ZREMRANGEBYSCORE', k, '-inf', now - tonumber(args[2]))
  call('ZADD', k, now, args[1])
  call('PEXPIRE', k, ttl(args[2]))
  return 1
end)

fn('qo1_reported', function(keys, args)
  local now = floor(now_us() / 1000)
  return call('ZRANGEBYSCORE', sealed1(keys), now - tonumber(args[1]), '+inf')
end, RO)

-- qo1_scan: one SCAN step on this node over sealed keys matching ARGV
-- pattern (as callers name keys); the names come back as callers name
-- them (a key without a hash tag comes back inside the braces sealed1
-- put around it). ARGV cursor, pattern, count.
fn('qo1_scan', function(_, args)
  local r = call('SCAN', args[1], 'MATCH', SEAL .. args[2], 'COUNT', args[3])
  local names, n = r[2], #SEAL
  for i = 1, #names do names[i] = sub(names[i], n + 1) end
  return {r[1], names}
end, RO)
