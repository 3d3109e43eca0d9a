1local ms = { crucible.model("a"), crucible.model("b"), crucible.model("c") }
local t = ms[1].tensors[1].name
crucible.merge{ name = t, method = "lua:../methods/median.lua", inputs = { {ms[1], t}, {ms[2], t}, {ms[3], t} } }
while true do end
