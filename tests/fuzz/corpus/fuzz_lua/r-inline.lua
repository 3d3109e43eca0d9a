local a, b = crucible.model("a"), crucible.model("c")
for _, t in ipairs(a.tensors) do
  crucible.merge{ name = t.name, method = function(ctx) return ctx.inputs[1] * 0.5 + ctx.inputs[2] * 0.5 end,
                  inputs = { {a, t.name}, {b, t.name} } }
end
