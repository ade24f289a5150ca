-- qo1_usage reads a quota period: KEYS usage set, total; ARGV top (0: no
-- ranking, at most 100). Reply: subjects, total (false: none), then the top
-- subjects' member and score, heaviest first.
fn('qo1_usage', function(keys, args)
  local k = sealed(keys)
  local top = tonumber(args[1]) or 0
  if top > 100 then top = 100 end
  local out = {call('ZCARD', k[1]), call('GET', k[2])}
  if top > 0 then
    local ranks = call('ZREVRANGE', k[1], 0, top - 1, 'WITHSCORES')
    for i = 1, #ranks do out[i + 2] = ranks[i] end
  end
  return out
end, RO)
