-- KEYS: stream, dead letters, stats. ARGV: group, sweeper consumer, lease_ms, max deliveries,
-- count, task key prefix. Reclaims entries idle past their lease (their worker died, hung or
-- lost Redis): puts the task back as a fresh entry, or dead-letters it once it was started
-- `max deliveries` times. Returns how many entries it reclaimed.
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[5])
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
  local state, current, deliveries, worker, cancel =
    unpack(redis.call('HMGET', task_key, 'state', 'entry', 'deliveries', 'worker', 'cancel'))
  if id == '' or not state then
    dead_letter(KEYS[2], KEYS[3], KEYS[1], '', id, 'lease expired on an entry that is not a known task', raw)
  elseif current ~= entry then
    -- A stale copy: the task has moved on, the copy is simply dropped.
  elseif state == 'running' and cancel == '1' then
    finish(task_key, KEYS[3], 'cancelled', 'error', 'cancelled (its worker was lost)', redis.call('HGET', task_key, 'result_ttl_s') or 0)
  elseif state == 'running' and tonumber(deliveries) >= tonumber(ARGV[4]) then
    dead_letter(KEYS[2], KEYS[3], KEYS[1], task_key, id, 'worker lost ' .. deliveries ..
      ' times while running it (lease expired; last worker ' .. tostring(worker) .. ')', raw)
  else
    requeue(task_key)
    count(KEYS[3], KEYS[1], 'reclaimed')
  end
  ack(KEYS[1], ARGV[1], entry)
end
return n
