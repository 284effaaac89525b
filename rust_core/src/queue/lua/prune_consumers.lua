-- KEYS: stream. ARGV: group, idle_ms, consumer to remove now ('' for none).
-- Deletes consumers with an empty pending list that are idle past idle_ms (workers that died)
-- or named (a worker leaving), so consumer lists stay bounded across restarts. Atomic, so a
-- consumer cannot receive an entry between the check and the delete.
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if tonumber(info['pending']) == 0 and (info['name'] == ARGV[3] or tonumber(info['idle']) > tonumber(ARGV[2])) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
