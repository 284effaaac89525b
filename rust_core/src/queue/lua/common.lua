-- Helpers shared by every script (prepended to each one). Keys of task records are built
-- here from the namespace prefix, so the queue needs a single Redis, not a Redis Cluster.

-- Redis's clock, read once per script: every write of one script carries the same time.
local clock
local function now_ms()
  if not clock then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return clock
end

-- The fields of a task record the scripts decide on, read in one call (never the envelope
-- or the result, which may be large).
local function record(task_key)
  local r = redis.call('HMGET', task_key, 'state', 'entry', 'worker', 'fence', 'stream', 'id', 'notify',
    'result_ttl_s', 'attempts', 'deliveries', 'cancel', 'notify_outcome')
  return {state = r[1], entry = r[2], worker = r[3], fence = r[4], stream = r[5], id = r[6], notify = r[7],
    ttl_s = tonumber(r[8]) or 0, attempts = tonumber(r[9]) or 0, deliveries = tonumber(r[10]) or 0, cancel = r[11],
    notify_outcome = r[12] == '1'}
end

-- Whether `consumer` holds stream entry `entry` in the group's pending list.
local function owns(stream, group, entry, consumer)
  local p = redis.call('XPENDING', stream, group, entry, entry, 1)
  return #p == 1 and p[1][2] == consumer
end

-- Whether `consumer` runs the task from `entry`, by the task's record: the fence of the
-- completions. It says the same as the pending list, because every script that hands an
-- entry to another consumer (the sweeper's XAUTOCLAIM) or acks it rewrites the record's
-- entry or state in the same atomic step, and a worker's read is followed by START, which
-- checks the entry before it writes the worker's name.
local function runs(rec, entry, consumer)
  return rec.state == 'running' and rec.entry == entry and rec.worker == consumer
end

-- Acks and deletes an entry. Scripts call it after their other writes: a script that fails
-- midway keeps the writes it made (Redis does not roll back), and a failure before the ack
-- leaves the entry held by its consumer, to be tried again, rather than gone half-done.
local function ack(stream, group, entry)
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end

-- What a script's transitions write to keys they share (counters, notification lists, the
-- acks of a stream), gathered as it goes and written once at its end by `send`: one call per
-- key rather than one per task.
local Batch = {}
Batch.__index = Batch

local function batch(stats_key, group)
  return setmetatable({stats_key = stats_key, group = group, counts = {}, notes = {}, acks = {}, order = {}}, Batch)
end

-- Counts an event in the namespace's counters and in those of the stream's queue, whose key
-- is the stream's with the priority replaced by 'stats' ({ns}:q:{queue}:stats).
function Batch:count(stream, field)
  local keys = {self.stats_key}
  if stream and stream ~= '' then keys[2] = (string.gsub(stream, '[^:]+$', 'stats')) end
  for _, key in ipairs(keys) do
    local fields = self.counts[key] or {}
    self.counts[key] = fields
    fields[field] = (fields[field] or 0) + 1
  end
end

-- Outcomes up to this size travel with their notification (see `Batch:notify`).
local NOTE_OUTCOME_MAX = 1024

-- Tells the task's submitter, blocked on its notification list, that the task finished: its
-- id, followed by ' state value' (the result, or the error) when the submitter asked for the
-- outcome and it is small, so that it need not read the record. The list lives as long as
-- the outcome (ttl_s, 0: kept).
function Batch:notify(rec, state, value)
  if not rec.notify or rec.notify == '' then return end
  local note = self.notes[rec.notify]
  if not note then
    note = {ids = {}, ttl_s = 0}
    self.notes[rec.notify] = note
    self.order[#self.order + 1] = rec.notify
  end
  local text = rec.id
  if rec.notify_outcome and state and #value <= NOTE_OUTCOME_MAX then text = text .. ' ' .. state .. ' ' .. value end
  note.ids[#note.ids + 1] = text
  if rec.ttl_s > 0 then note.ttl_s = rec.ttl_s end
end

function Batch:ack(stream, entry)
  local entries = self.acks[stream] or {}
  self.acks[stream] = entries
  entries[#entries + 1] = entry
end

-- Writes what was gathered: counters and notifications, then the acks (last, as `ack` says).
function Batch:send()
  for key, fields in pairs(self.counts) do
    for field, n in pairs(fields) do redis.call('HINCRBY', key, field, n) end
  end
  for _, list in ipairs(self.order) do
    local note = self.notes[list]
    redis.call('RPUSH', list, unpack(note.ids))
    if note.ttl_s > 0 then redis.call('EXPIRE', list, note.ttl_s) end
  end
  for stream, entries in pairs(self.acks) do
    redis.call('XACK', stream, self.group, unpack(entries))
    redis.call('XDEL', stream, unpack(entries))
  end
end

-- Puts the task's envelope back on its stream as a fresh entry, so any worker can fetch it.
local function requeue(task_key)
  local stream, envelope, id = unpack(redis.call('HMGET', task_key, 'stream', 'envelope', 'id'))
  local entry = redis.call('XADD', stream, '*', 'id', id, 'task', envelope)
  redis.call('HSET', task_key, 'state', 'pending', 'entry', entry, 'worker', '', 'updated_ms', now_ms())
  return entry
end

-- Moves a task (or a raw entry of `stream` that is not one: `rec` nil) to the dead-letter
-- stream with its reason.
local function dead_letter(b, dead_key, stream, task_key, rec, id, reason, raw)
  local at = now_ms()
  local entry = redis.call('XADD', dead_key, 'MAXLEN', '~', '100000', '*',
    'id', id, 'reason', reason, 'task', raw, 'at_ms', at, 'stream', stream,
    'deliveries', rec and rec.state and rec.deliveries or '')
  if rec and rec.state then
    redis.call('HSET', task_key, 'state', 'dead', 'error', reason, 'dead_entry', entry, 'entry', '',
      'worker', '', 'finished_ms', at, 'updated_ms', at)
    b:notify(rec)
  end
  b:count(stream, 'dead')
end

-- Records a task's outcome (and `fence`, the call that recorded it, when given); the caller
-- acks the entry.
local function finish(b, task_key, rec, state, field, value, fence)
  local at = now_ms()
  local fields = {'state', state, field, value, 'entry', '', 'worker', '', 'finished_ms', at, 'updated_ms', at}
  if fence then
    fields[#fields + 1] = 'fence'
    fields[#fields + 1] = fence
  end
  redis.call('HSET', task_key, unpack(fields))
  b:count(rec.stream, state)
  if rec.ttl_s > 0 then redis.call('EXPIRE', task_key, rec.ttl_s) end
  b:notify(rec, state, value)
end

-- Runs `apply(rec, fence)` when `consumer` runs the task from `entry` (see `runs`), then acks
-- the entry: 1. A call whose earlier copy already landed (its reply was lost and the client
-- retried) is recognised by the fence it left: 2, and its ack is made again in case that
-- copy stopped before it. Otherwise 0, counted as refused: nothing is written.
local function fenced(b, stream, task_key, entry, consumer, apply)
  local rec = record(task_key)
  local fence = entry .. '@' .. consumer
  local applied = 1
  if runs(rec, entry, consumer) then
    apply(rec, fence)
  elseif rec.fence == fence then
    applied = 2
  else
    b:count(stream, 'refused')
    return 0
  end
  b:ack(stream, entry)
  return applied
end
