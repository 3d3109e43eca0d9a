3if k == 'handler' then while true do pcall(function() while true do end end) end end
if k == 'call' then error({}) end