-- Helpers shared by every script (prepended to each one). Keys of task records are built
-- here from the namespace prefix, so the queue needs a single Redis, not a Redis Cluster.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Whether `consumer` holds stream entry `entry` in the group's pending list: the fence of
-- every transition a worker makes.
local function owns(stream, group, entry, consumer)
  local p = redis.call('XPENDING', stream, group, entry, entry, 1)
  return #p == 1 and p[1][2] == consumer
end

-- Counts an event in the namespace's counters and in those of the stream's queue, whose key
-- is the stream's with the priority replaced by 'stats' ({ns}:q:{queue}:stats).
local function count(stats_key, stream, field)
  redis.call('HINCRBY', stats_key, field, 1)
  if stream and stream ~= '' then
    redis.call('HINCRBY', (string.gsub(stream, '[^:]+$', 'stats')), field, 1)
  end
end

-- Acks and deletes an entry. Scripts call it after their other writes: a script that fails
-- midway keeps the writes it made (Redis does not roll back), and a failure before the ack
-- leaves the entry held by its consumer, to be tried again, rather than gone half-done.
local function ack(stream, group, entry)
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end

-- Runs `apply` only while `consumer` owns `entry`. A call whose earlier copy already landed
-- (its reply was lost and the client retried) is recognised by the fence it left: 2.
local function fenced(stream, group, entry, consumer, task_key, apply)
  local fence = entry .. '@' .. consumer
  if not owns(stream, group, entry, consumer) then
    if redis.call('HGET', task_key, 'fence') == fence then return 2 end
    return 0
  end
  apply()
  redis.call('HSET', task_key, 'fence', fence)
  ack(stream, group, entry)
  return 1
end

-- Puts the task's envelope back on its stream as a fresh entry, so any worker can fetch it.
local function requeue(task_key)
  local stream, envelope = unpack(redis.call('HMGET', task_key, 'stream', 'envelope'))
  local entry = redis.call('XADD', stream, '*', 'id', redis.call('HGET', task_key, 'id'), 'task', envelope)
  redis.call('HSET', task_key, 'state', 'pending', 'entry', entry, 'worker', '', 'updated_ms', now_ms())
  return entry
end

-- Tells the task's submitter, blocked on its notification list, that the task finished. The
-- list lives as long as the outcome (ttl_s, 0: kept).
local function notify(task_key, ttl_s)
  local list, id = unpack(redis.call('HMGET', task_key, 'notify', 'id'))
  if list and list ~= '' then
    redis.call('RPUSH', list, id)
    if tonumber(ttl_s) > 0 then redis.call('EXPIRE', list, ttl_s) end
  end
end

-- Moves a task (or a raw entry of `stream` that is not one) to the dead-letter stream with
-- its reason.
local function dead_letter(dead_key, stats_key, stream, task_key, id, reason, raw)
  local at = now_ms()
  local known = task_key ~= '' and redis.call('EXISTS', task_key) == 1
  local deliveries = known and redis.call('HGET', task_key, 'deliveries') or ''
  local entry = redis.call('XADD', dead_key, 'MAXLEN', '~', '100000', '*',
    'id', id, 'reason', reason, 'task', raw, 'at_ms', at, 'stream', stream, 'deliveries', deliveries)
  if known then
    redis.call('HSET', task_key, 'state', 'dead', 'error', reason, 'dead_entry', entry, 'entry', '',
      'worker', '', 'finished_ms', at, 'updated_ms', at)
    notify(task_key, redis.call('HGET', task_key, 'result_ttl_s') or 0)
  end
  count(stats_key, stream, 'dead')
end

local function finish(task_key, stats_key, state, field, value, ttl_s)
  local at = now_ms()
  redis.call('HSET', task_key, 'state', state, field, value, 'entry', '', 'worker', '',
    'finished_ms', at, 'updated_ms', at)
  count(stats_key, redis.call('HGET', task_key, 'stream'), state)
  if tonumber(ttl_s) > 0 then redis.call('EXPIRE', task_key, ttl_s) end
  notify(task_key, ttl_s)
end
