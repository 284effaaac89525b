-- KEYS: stream, task record, stats. ARGV: group, consumer, entry, state, field, value, ttl_s.
-- The fenced completion: writes the outcome once while the consumer owns the entry, acks and
-- deletes it. 1 recorded, 2 already recorded by this same call, 0 refused (lease lost).
local r = fenced(KEYS[1], ARGV[1], ARGV[3], ARGV[2], KEYS[2], function()
  finish(KEYS[2], KEYS[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
end)
if r == 0 then count(KEYS[3], KEYS[1], 'refused') end
return r
