3if k == 'handler' then while true do end end
if k == 'call' then error('x') end