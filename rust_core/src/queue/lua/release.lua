-- KEYS: stream, task record. ARGV: group, consumer, entry.
-- Hands a task back at once (worker shutting down): a fresh entry any worker can fetch. A
-- hand-back is not a crash, so a started task's delivery is not counted against the cap.
-- Fenced by the pending list, not the record: entries read but not yet started are handed
-- back too. 1 done, 2 done earlier by this same call, 0 not held.
local fence = ARGV[3] .. '@' .. ARGV[2]
if not owns(KEYS[1], ARGV[1], ARGV[3], ARGV[2]) then
  if redis.call('HGET', KEYS[2], 'fence') == fence then return 2 end
  return 0
end
local rec = record(KEYS[2])
if rec.entry == ARGV[3] and (rec.state == 'running' or rec.state == 'pending') then
  if rec.state == 'running' then redis.call('HINCRBY', KEYS[2], 'deliveries', -1) end
  requeue(KEYS[2])
end
redis.call('HSET', KEYS[2], 'fence', fence)
ack(KEYS[1], ARGV[1], ARGV[3])
return 1
