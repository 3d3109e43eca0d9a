-- median-of-three.lua — every tensor the elementwise median of three
-- models, using the user method file examples/methods/median.lua by path
-- (a name in crucible.merge is looked up like `merge_method:`).
local ms = { crucible.model("a"), crucible.model("b"), crucible.model("c") }
crucible.settings{ out_dtype = "bfloat16" }
for _, t in ipairs(ms[1].tensors) do
  local inputs = {}
  for i, m in ipairs(ms) do inputs[i] = { m, t.name } end
  crucible.merge{ name = t.name, method = "lua:../methods/median.lua", inputs = inputs }
end
