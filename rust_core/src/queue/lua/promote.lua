-- KEYS: delayed set. ARGV: task key prefix, count. Puts retries whose backoff has passed
-- back on their stream. Returns how many.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local task_key = ARGV[1] .. id
  local state, entry = unpack(redis.call('HMGET', task_key, 'state', 'entry'))
  if state == 'pending' and entry == '' then requeue(task_key) end
end
return #due
