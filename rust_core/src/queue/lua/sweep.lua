-- KEYS: stream, dead letters, stats. ARGV: group, sweeper consumer, lease_ms, max deliveries,
-- count, task key prefix. Reclaims entries idle past their lease (their worker died, hung or
-- lost Redis): puts the task back as a fresh entry, or dead-letters it once it was started
-- `max deliveries` times. Returns how many entries it reclaimed.
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[5])
local b = batch(KEYS[3], ARGV[1])
local n = 0
for _, e in ipairs(claimed[2]) do
  -- Entries deleted from the stream come back without fields (Redis 6.2) or not at all (7+).
  local entry, fields = e[1], e[2] or {}
  local id, raw = '', ''
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then id = fields[i + 1] elseif fields[i] == 'task' then raw = fields[i + 1] end
  end
  n = n + 1
  local task_key = ARGV[6] .. id
  local rec = record(task_key)
  if id == '' or not rec.state then
    dead_letter(b, KEYS[2], KEYS[1], '', nil, id, 'lease expired on an entry that is not a known task', raw)
  elseif rec.entry ~= entry then
    -- A stale copy: the task has moved on, the copy is simply dropped.
  elseif rec.state == 'running' and rec.cancel == '1' then
    finish(b, task_key, rec, 'cancelled', 'error', 'cancelled (its worker was lost)')
  elseif rec.state == 'running' and rec.deliveries >= tonumber(ARGV[4]) then
    dead_letter(b, KEYS[2], KEYS[1], task_key, rec, id, 'worker lost ' .. rec.deliveries ..
      ' times while running it (lease expired; last worker ' .. tostring(rec.worker) .. ')', raw)
  else
    requeue(task_key)
    b:count(KEYS[1], 'reclaimed')
  end
  b:ack(KEYS[1], entry)
end
b:send()
return n
