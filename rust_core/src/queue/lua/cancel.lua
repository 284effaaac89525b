-- KEYS: task record, delayed set, stats. ARGV: group, id.
-- A pending task is cancelled at once; a running one is flagged, and its worker sees the flag
-- at its next heartbeat. Returns 'cancelled' (just now), 'cancelling' (flagged), the state of
-- a task that had already finished (prefixed with 'was:'), or '' if there is no task.
local rec = record(KEYS[1])
if not rec.state then return '' end
if rec.state == 'pending' then
  local b = batch(KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  finish(b, KEYS[1], rec, 'cancelled', 'error', 'cancelled before it ran')
  if rec.entry and rec.entry ~= '' then b:ack(rec.stream, rec.entry) end
  b:send()
  return 'cancelled'
end
if rec.state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel', 1)
  return 'cancelling'
end
return 'was:' .. rec.state
