0local s = ("x"):rep(1e8)
for i = 1, 1e9 do local t = s .. i end
