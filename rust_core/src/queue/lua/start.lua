-- KEYS: per entry its stream and task record. ARGV: group, consumer, then the entries.
-- Marks fetched tasks running. Per entry {'run', deliveries, attempts}; {'skip', state} when
-- the entry is stale (cancelled, already reclaimed, a duplicate), after dropping it;
-- {'missing'} when there is no task record.
local group, consumer = ARGV[1], ARGV[2]
local replies = {}
for i = 1, #KEYS / 2 do
  local stream, task_key, entry = KEYS[2 * i - 1], KEYS[2 * i], ARGV[i + 2]
  local rec = record(task_key)
  if not rec.state then
    replies[i] = {'missing'}
  elseif runs(rec, entry, consumer) then
    -- A retry of this very call whose first reply was lost: it was applied, so answer as it
    -- did. (Dropping the entry here would leave the task running with nothing to reclaim.)
    replies[i] = {'run', tostring(rec.deliveries), tostring(rec.attempts)}
  elseif rec.state == 'pending' and rec.entry == entry then
    -- The task's current entry, which this consumer read: nothing else can hold it, since
    -- whatever takes an entry from a consumer moves the task to another entry first.
    local at = now_ms()
    redis.call('HSET', task_key, 'state', 'running', 'worker', consumer, 'deliveries', rec.deliveries + 1,
      'started_ms', at, 'updated_ms', at, 'progress_done', 0, 'progress_total', 0)
    replies[i] = {'run', tostring(rec.deliveries + 1), tostring(rec.attempts)}
  else
    if owns(stream, group, entry, consumer) then ack(stream, group, entry) end
    replies[i] = {'skip', rec.state}
  end
end
return replies
