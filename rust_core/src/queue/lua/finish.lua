-- KEYS: stats, then per task its stream and record. ARGV: group, consumer, then per task its
-- entry, state, field and value. The fenced completion of each task: writes the outcome once
-- while the consumer runs it, acks and deletes the entry. Per task 1 recorded, 2 already
-- recorded by this same call, 0 refused (lease lost).
local group, consumer = ARGV[1], ARGV[2]
local b = batch(KEYS[1], group)
local replies = {}
for i = 1, (#KEYS - 1) / 2 do
  local stream, task_key = KEYS[2 * i], KEYS[2 * i + 1]
  local entry, state, field, value = unpack(ARGV, 4 * i - 1, 4 * i + 2)
  replies[i] = fenced(b, stream, task_key, entry, consumer, function(rec, fence)
    finish(b, task_key, rec, state, field, value, fence)
  end)
end
b:send()
return replies
