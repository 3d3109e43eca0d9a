-- passthrough.lua — one input, optionally scaled (mergekit passthrough.py;
-- merge-methods.md §4.2). `scale` is per model and may be absent.
return {
  name = "passthrough",
  pretty = "Passthrough",
  base = "unused",
  inputs = { min = 1, max = 1 },
  params = {
    { name = "scale", scope = "model", kind = "number" },
  },
  merge = function(ctx)
    if #ctx.inputs ~= 1 then
      cr.error("passthrough takes exactly one input tensor, got " .. #ctx.inputs .. " for " .. ctx.name)
    end
    local x = ctx.inputs[1]
    local s = x.params.scale
    if s ~= nil then return x * s end
    return x
  end,
}
