-- KEYS: stream, task record, delayed set, stats. ARGV: group, consumer, entry, error, delay_ms, id.
-- A task error that will be retried: fenced like finish, then scheduled after the backoff.
local r = fenced(KEYS[1], ARGV[1], ARGV[3], ARGV[2], KEYS[2], function()
  local due = now_ms() + tonumber(ARGV[5])
  redis.call('HINCRBY', KEYS[2], 'attempts', 1)
  redis.call('HSET', KEYS[2], 'state', 'pending', 'error', ARGV[4], 'entry', '', 'worker', '',
    'retry_at_ms', due, 'updated_ms', now_ms())
  redis.call('ZADD', KEYS[3], due, ARGV[6])
  count(KEYS[4], KEYS[1], 'retried')
end)
if r == 0 then count(KEYS[4], KEYS[1], 'refused') end
return r
