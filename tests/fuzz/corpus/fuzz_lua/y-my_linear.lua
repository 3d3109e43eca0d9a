-- my_linear.lua — mergekit's linear written again as a user method, from
-- merge-methods.md §4.1 rather than by copying stdlib/linear.lua: weights as
-- 0-dim tensors of the compute dtype, products rounded per operation, the
-- sum accumulated in f32 and rounded once, divided by the summed weights
-- when normalize. Compiles to the same bytecode as the built-in (test:
-- tests/unit/test_lua_methods.c).
return {
  name = "my_linear",
  base = "unused",
  inputs = { min = 1 },
  params = {
    { name = "weight", scope = "model", kind = "number", required = true },
    { name = "normalize", scope = "global", kind = "bool", default = true },
  },
  merge = function(ctx)
    local dtype = ctx.inputs[1].dtype
    for k = 2, #ctx.inputs do dtype = cr.promote(dtype, ctx.inputs[k].dtype) end
    local weights, products = {}, {}
    for k, x in ipairs(ctx.inputs) do
      local w = x.params.weight
      if w == nil then cr.error(x.model .. ": weight is required") end
      weights[k] = cr.const(w, dtype)
      products[k] = weights[k] * x:cast(dtype)
    end
    local total = cr.sum_of(products)
    if not ctx.params.normalize then return total end
    return total / cr.sum_of(weights)
  end,
}
