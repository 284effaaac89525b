-- KEYS: stream, task record. ARGV: group, consumer, entry, progress done, progress total.
-- Extends the lease (XCLAIM to itself resets the entry's idle time) while the worker still
-- owns the entry. Returns -1 when the lease was lost, else 1 if a cancel was asked, 0 if not.
if not owns(KEYS[1], ARGV[1], ARGV[3], ARGV[2]) then return -1 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
redis.call('HSET', KEYS[2], 'progress_done', ARGV[4], 'progress_total', ARGV[5], 'updated_ms', now_ms())
return tonumber(redis.call('HGET', KEYS[2], 'cancel') or '0')
