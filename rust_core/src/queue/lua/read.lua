-- KEYS: streams, most urgent first. ARGV: group, consumer, count.
-- Up to `count` new entries for the consumer, most urgent stream first (an XREADGROUP of each
-- in turn, all in one round trip), in XREADGROUP's reply shape.
local left = tonumber(ARGV[3])
local reply = {}
for _, stream in ipairs(KEYS) do
  if left <= 0 then break end
  local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', stream, '>')
  if read then
    reply[#reply + 1] = read[1]
    left = left - #read[1][2]
  end
end
return reply
