-- KEYS: stream, dead letters, stats. ARGV: group, consumer, entry, reason, task id or '', raw
-- entry, task key prefix. Dead-letters an entry a worker cannot run (malformed envelope,
-- unknown kind, no task record). 1 done, 0 when the consumer no longer owns the entry.
if not owns(KEYS[1], ARGV[1], ARGV[3], ARGV[2]) then return 0 end
local task_key, rec = '', nil
if ARGV[5] ~= '' then
  task_key = ARGV[7] .. ARGV[5]
  rec = record(task_key)
  -- Only the task's current entry may change its record: a stale copy must not kill it.
  if rec.entry ~= ARGV[3] then task_key, rec = '', nil end
end
local b = batch(KEYS[3], ARGV[1])
dead_letter(b, KEYS[2], KEYS[1], task_key, rec, ARGV[5], ARGV[4], ARGV[6])
b:ack(KEYS[1], ARGV[3])
b:send()
return 1
