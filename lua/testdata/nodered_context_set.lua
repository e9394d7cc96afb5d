local raw = redis.call('GET', KEYS[1])
local obj = {}
if raw then obj = cjson.decode(raw) end
local parts = {}
for p in string.gmatch(ARGV[1], '[^%.]+') do parts[#parts + 1] = p end
local cur = obj
for i = 1, #parts - 1 do
  local p = parts[i]
  if type(cur[p]) ~= 'table' then cur[p] = {} end
  cur = cur[p]
end
cur[parts[#parts]] = cjson.decode(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(obj))
return 1
