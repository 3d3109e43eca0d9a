-- my_linear.lua — mergekit's linear written again as a user method, from
-- spec/mergekit-0.1.5.md §3.1 rather than by copying stdlib/linear.lua
-- (mergekit 0.1.5, the default release): weights as float32 0-dim tensors,
-- a float32 accumulator that starts at 0 and takes one fused multiply-add
-- per model (torch's addcmul_), divided by the weights' sum in torch's
-- order when normalize, rounded once to the dtype. Compiles to the same
-- bytecode as the built-in (test: tests/unit/test_lua_methods.c).
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
    local acc_dtype = dtype == "float64" and "float64" or "float32"
    local weights = {}
    for k, x in ipairs(ctx.inputs) do
      local w = x.params.weight
      if w == nil then cr.error(x.model .. ": weight is required") end
      weights[k] = cr.const(w, acc_dtype)
    end
    local acc = 0
    for k, x in ipairs(ctx.inputs) do acc = cr.fma(x:cast(dtype):cast(acc_dtype), weights[k], acc) end
    if ctx.params.normalize then acc = acc / cr.torch_sum_scalars(weights) end
    return acc:cast(dtype)
  end,
}
