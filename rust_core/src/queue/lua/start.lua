-- KEYS: stream, task record. ARGV: group, consumer, entry.
-- Marks a fetched task running. {'run', deliveries, attempts}; {'skip', state} when the entry
-- is stale (cancelled, already reclaimed, a duplicate), after dropping it; {'missing'}.
if redis.call('EXISTS', KEYS[2]) == 0 then return {'missing'} end
local state, entry, worker = unpack(redis.call('HMGET', KEYS[2], 'state', 'entry', 'worker'))
local own = owns(KEYS[1], ARGV[1], ARGV[3], ARGV[2])
if own and state == 'running' and entry == ARGV[3] and worker == ARGV[2] then
  -- A retry of this very call whose first reply was lost: it was applied, so answer as it did.
  -- (Dropping the entry here would leave the task running with nothing left to reclaim.)
  return {'run', redis.call('HGET', KEYS[2], 'deliveries'), redis.call('HGET', KEYS[2], 'attempts')}
end
if state ~= 'pending' or entry ~= ARGV[3] or not own then
  if own then ack(KEYS[1], ARGV[1], ARGV[3]) end
  return {'skip', state}
end
local deliveries = redis.call('HINCRBY', KEYS[2], 'deliveries', 1)
local at = now_ms()
redis.call('HSET', KEYS[2], 'state', 'running', 'worker', ARGV[2], 'started_ms', at, 'updated_ms', at,
  'progress_done', 0, 'progress_total', 0)
return {'run', tostring(deliveries), redis.call('HGET', KEYS[2], 'attempts')}
