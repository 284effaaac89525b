-- KEYS: stream, task record, delayed set, stats. ARGV: group, consumer, entry, error, delay_ms, id.
-- A task error that will be retried: fenced like finish, then scheduled after the backoff.
local b = batch(KEYS[4], ARGV[1])
local r = fenced(b, KEYS[1], KEYS[2], ARGV[3], ARGV[2], function(rec, fence)
  local due = now_ms() + tonumber(ARGV[5])
  redis.call('HSET', KEYS[2], 'state', 'pending', 'error', ARGV[4], 'entry', '', 'worker', '',
    'attempts', rec.attempts + 1, 'retry_at_ms', due, 'updated_ms', now_ms(), 'fence', fence)
  redis.call('ZADD', KEYS[3], due, ARGV[6])
  b:count(KEYS[1], 'retried')
end)
b:send()
return r
