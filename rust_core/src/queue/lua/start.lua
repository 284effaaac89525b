-- KEYS: stream, task record. ARGV: group, consumer, entry.
-- Marks a fetched task running. {'run', deliveries, attempts}; {'skip', state} when the entry
-- is stale (cancelled, already reclaimed, a duplicate), after dropping it; {'missing'}.
if redis.call('EXISTS', KEYS[2]) == 0 then return {'missing'} end
local state, entry = unpack(redis.call('HMGET', KEYS[2], 'state', 'entry'))
local own = owns(KEYS[1], ARGV[1], ARGV[3], ARGV[2])
if state ~= 'pending' or entry ~= ARGV[3] or not own then
  if own then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
    redis.call('XDEL', KEYS[1], ARGV[3])
  end
  return {'skip', state}
end
local deliveries = redis.call('HINCRBY', KEYS[2], 'deliveries', 1)
local at = now_ms()
redis.call('HSET', KEYS[2], 'state', 'running', 'worker', ARGV[2], 'started_ms', at, 'updated_ms', at,
  'progress_done', 0, 'progress_total', 0)
return {'run', tostring(deliveries), redis.call('HGET', KEYS[2], 'attempts')}
