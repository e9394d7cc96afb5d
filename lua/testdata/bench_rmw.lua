local v = redis.call('GET', KEYS[1])
local doc
if v then doc = cjson.decode(v) else
  doc = {name = KEYS[1], items = {}, meta = {created = ARGV[1]}}
  for i = 1, 20 do doc.items[i] = {id = i, label = 'item ' .. i, value = i * 1.5} end
end
doc.meta.updated = ARGV[1]
doc.meta.count = (doc.meta.count or 0) + 1
redis.call('SET', KEYS[1], cjson.encode(doc))
return doc.meta.count
