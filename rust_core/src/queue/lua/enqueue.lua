-- KEYS: queue names set, then per task its record and stream. ARGV: group, then per task its
-- id, queue, kind, priority, envelope, result ttl in seconds (0: kept until deleted) and
-- notification list ('' for none). Adds the tasks in order; per task 1 when added, 0 when a
-- task with its id already exists (a de-duplicated enqueue).
local group = ARGV[1]
local added, named = {}, {}
for i = 1, (#KEYS - 1) / 2 do
  local task_key, stream = KEYS[2 * i], KEYS[2 * i + 1]
  local id, queue, kind, priority, envelope, ttl_s, notify = unpack(ARGV, 7 * i - 5, 7 * i + 1)
  if redis.call('EXISTS', task_key) == 1 then
    added[i] = 0
  else
    local entry = redis.call('XADD', stream, 'NOMKSTREAM', '*', 'id', id, 'task', envelope)
    if not entry then
      -- A new stream gets its group at 0, so that no entry added before the first worker
      -- joined is skipped.
      redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
      entry = redis.call('XADD', stream, '*', 'id', id, 'task', envelope)
    end
    local at = now_ms()
    -- notify_outcome: this submitter reads notifications that carry the outcome (see notify).
    redis.call('HSET', task_key, 'id', id, 'queue', queue, 'kind', kind, 'priority', priority,
      'envelope', envelope, 'stream', stream, 'attempts', 0, 'deliveries', 0, 'cancel', 0,
      'result_ttl_s', ttl_s, 'notify', notify, 'notify_outcome', 1, 'created_ms', at,
      'state', 'pending', 'entry', entry, 'worker', '', 'updated_ms', at)
    if not named[queue] then
      redis.call('SADD', KEYS[1], queue)
      named[queue] = true
    end
    added[i] = 1
  end
end
return added
