-- Takes a lock and issues a fencing number.
-- KEYS: lock, fence. ARGV: token, ttl ms, fence ttl ms.
-- Reply: {1, fence} when taken, {0, ms left on the holder's TTL} when held.
-- The fencing number is above the last one and at least the server's clock
-- in µs, so it keeps increasing even after the fence key expired.
fn('qo1_acquire', function(keys, args)
  local KEYS, ARGV = sealed(keys), args
  local last = redis.call('GET', KEYS[2])
  if last and not string.match(last, '^%d+$') then
    error({err = 'ERR quota-operator: a fencing counter is not an integer'})
  end
  if #ARGV[1] > MAX_NAME then fail('a lock token is longer than ' .. MAX_NAME .. ' bytes') end
  if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ttl(ARGV[2])) then
    return {0, redis.call('PTTL', KEYS[1])}
  end
  local fence = math.max(tonumber(last or '0') + 1, now_us())
  redis.call('SET', KEYS[2], string.format('%d', fence), 'PX', ttl(ARGV[3]))
  return {1, fence}
end)
