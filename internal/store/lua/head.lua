#!lua name=quotaops_v1
-- quota-operator's Redis Functions library. The manager loads it on every
-- master (FUNCTION LOAD REPLACE) with this install's seal; sidecars, the
-- gateway and the manager call its functions with FCALL and FCALL_RO.
-- Namespaces' users may call nothing else that writes, so every write any
-- of them can make is one of these functions: bounded in size, in TTL and
-- in work.
--
-- Sealed keys. Callers name keys as the limiter builds them
-- ("qo:v1:{ns/...}"); every function reads and writes SEAL .. name
-- instead. A namespace's user may write only sealed keys of its namespace,
-- and does not know the seal (it is only in this code, which users may not
-- read, and in an admin-only key), so it cannot write a key of its own,
-- with no TTL or of any size, outside these functions. The seal has no
-- brace, so a sealed key keeps its name's hash tag and Cluster slot.

local SEAL = '{{SEAL}}'
local DIGEST = '{{DIGEST}}'
-- While the library loads, Redis 7.0 gives it only redis.register_function:
-- no tonumber, no math, no redis.call. The functions bind these locals
-- (cheaper than a global lookup at each use) at their first call, from
-- globals(), which is defined before the locals and so sees the globals.
local function globals() return redis.call, redis.pcall, tonumber, math.floor, math.ceil, string.match, string.sub end
local call, pcall_redis, tonumber, floor, ceil, match, sub

-- Bounds every caller gets, whatever it sends.
local MAX_TTL = 45 * 24 * 3600 * 1000 -- ms: no key outlives this
local MAX_VALUE = 65536               -- bytes of one stored value
local MAX_NAME = 512                  -- bytes of one key name or member
local MAX_KEYS = 4096                 -- keys of one call

local function fail(msg) error({err = 'ERR quota-operator: ' .. msg}) end

-- sealed returns the sealed names of keys, refusing a call with more
-- keys, or longer names, than any decision builds. into, when given, is a
-- table to fill instead of a new one (the hot path reuses one: growing a
-- new table per call costs more than the names); only indexes 1 to #keys
-- then hold this call's names.
local function sealed(keys, into)
  local n = #keys
  if n > MAX_KEYS then fail('more than ' .. MAX_KEYS .. ' keys in one call') end
  local out = into or {}
  for i = 1, n do
    local k = keys[i]
    if #k > MAX_NAME then fail('a key name is longer than ' .. MAX_NAME .. ' bytes') end
    out[i] = SEAL .. k
  end
  return out
end

-- sealed1 is the sealed name of the one key of a store operation. The
-- seal must not move a key to another Cluster slot: a key without a hash
-- tag (the limiter's all have one) is sealed inside braces, which hash
-- what they hold, so the slot is the key's own. Such a key may not hold a
-- closing brace, which would end the tag early.
local function sealed1(keys)
  local k = keys[1]
  if not k or keys[2] then fail('a store operation takes one key') end
  if #k > MAX_NAME then fail('a key name is longer than ' .. MAX_NAME .. ' bytes') end
  local open = string.find(k, '{', 1, true)
  local close = open and string.find(k, '}', open + 1, true)
  if close and close > open + 1 then return SEAL .. k end
  if string.find(k, '}', 1, true) then fail('a key without a hash tag may not hold a closing brace') end
  return SEAL .. '{' .. k .. '}'
end

-- ttl is a TTL in ms within (0, MAX_TTL]: every key any function writes
-- expires, at most MAX_TTL after it was written.
local function ttl(ms)
  ms = tonumber(ms)
  if not ms or ms ~= ms then fail('a TTL is not a number') end
  if ms < 1 then return 1 end
  if ms > MAX_TTL then return MAX_TTL end
  return floor(ms)
end

local function now_us()
  local t = call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local RO = {'no-writes'}
local function fn(name, callback, flags)
  local function run(keys, args)
    if not call then call, pcall_redis, tonumber, floor, ceil, match, sub = globals() end
    return callback(keys, args)
  end
  redis.register_function{function_name = name, callback = run, flags = flags or {}}
end

-- qo1_digest names the library's build: the manager loads it again
-- wherever the answer differs from its own.
fn('qo1_digest', function() return DIGEST end, {'no-writes', 'allow-stale'})
