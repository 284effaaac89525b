-- KEYS: task record, dead letters. ARGV: none.
-- Gives a dead-lettered task a fresh start (counters reset). 1 done, 0 if it is not dead.
local state, dead_entry = unpack(redis.call('HMGET', KEYS[1], 'state', 'dead_entry'))
if state ~= 'dead' then return 0 end
if dead_entry then redis.call('XDEL', KEYS[2], dead_entry) end
redis.call('HSET', KEYS[1], 'deliveries', 0, 'attempts', 0, 'cancel', 0, 'error', '', 'dead_entry', '')
requeue(KEYS[1])
return 1
