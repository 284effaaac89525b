-- KEYS: worker record, inbox stream, queue names. ARGV: inbox queue name.
-- Deletes the inbox of a worker that is gone (its record expired) once nothing waits in it,
-- so inboxes do not pile up across worker restarts. Atomic: nothing can be added between the
-- check and the delete. Returns 1 if it deleted the inbox.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('XLEN', KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
