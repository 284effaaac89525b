-- KEYS: task record, delayed set, stats. ARGV: group, id.
-- A pending task is cancelled at once; a running one is flagged, and its worker sees the flag
-- at its next heartbeat. Returns 'cancelled' (just now), 'cancelling' (flagged), the state of
-- a task that had already finished (prefixed with 'was:'), or '' if there is no task.
local state, stream, entry, ttl = unpack(redis.call('HMGET', KEYS[1], 'state', 'stream', 'entry', 'result_ttl_s'))
if not state then return '' end
if state == 'pending' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  finish(KEYS[1], KEYS[3], 'cancelled', 'error', 'cancelled before it ran', ttl or 0)
  if entry ~= '' then ack(stream, ARGV[1], entry) end
  return 'cancelled'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel', 1)
  return 'cancelling'
end
return 'was:' .. state
