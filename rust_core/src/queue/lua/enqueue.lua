-- KEYS: task record, stream, queues set. ARGV: id, queue, kind, priority, envelope, group,
-- result ttl in seconds (0: kept until deleted), notification list ('' for none).
-- Returns 1 when added, 0 when a task with this id already exists (a de-duplicated enqueue).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
-- The group starts at 0 so that no entry added before the first worker joined is skipped.
redis.pcall('XGROUP', 'CREATE', KEYS[2], ARGV[6], '0', 'MKSTREAM')
local at = now_ms()
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'queue', ARGV[2], 'kind', ARGV[3], 'priority', ARGV[4],
  'envelope', ARGV[5], 'stream', KEYS[2], 'attempts', 0, 'deliveries', 0, 'cancel', 0,
  'result_ttl_s', ARGV[7], 'notify', ARGV[8], 'created_ms', at)
requeue(KEYS[1])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
