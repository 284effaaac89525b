-- KEYS: stream, task record. ARGV: group, consumer, entry.
-- Hands a task back at once (worker shutting down): a fresh entry any worker can fetch. A
-- hand-back is not a crash, so a started task's delivery is not counted against the cap.
return fenced(KEYS[1], ARGV[1], ARGV[3], ARGV[2], KEYS[2], function()
  local state, entry = unpack(redis.call('HMGET', KEYS[2], 'state', 'entry'))
  if entry ~= ARGV[3] then return end
  if state == 'running' then redis.call('HINCRBY', KEYS[2], 'deliveries', -1) end
  if state == 'running' or state == 'pending' then requeue(KEYS[2]) end
end)
