3if k == 'params' then
  return { setmetatable({}, { __index = function(_, f) if f == 'name' then return 'weight' end end }) }
end