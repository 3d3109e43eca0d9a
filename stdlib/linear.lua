-- linear.lua — weighted average (mergekit linear.py; merge-methods.md §4.1,
-- spec/mergekit-0.1.5.md §3.1). The inputs are first promoted to one dtype
-- (torch.promote_types over all of them). No guard against Σ W = 0
-- (mergekit has none either).
--   0.1.5: weights rounded to float32 (float64 for float64 inputs);
--     acc = 0, then acc.addcmul_(X_i, W_i) in model order — one fused
--     multiply-add per model (torch's kernel is contracted to FMA), so
--     cr.fma; acc / Σ W_i (torch's 1-D sum order) when normalize; one
--     rounding to the dtype.
--   0.1.4: S = Σ W_i ⊙ X_i (weights rounded to the dtype, products rounded
--     per op, the sum as torch's stack(...).sum(0)); S / Σ W_i when
--     normalize, in the dtype.
local function linear_015(ctx, xs, dt)
  local acc_dt = dt == "float64" and "float64" or "float32"
  local ws = cr.weights_of(xs, acc_dt)
  local acc = 0
  for i, x in ipairs(xs) do acc = cr.fma(x:cast(dt):cast(acc_dt), ws[i], acc) end
  if ctx.params.normalize then acc = acc / cr.torch_sum_scalars(ws) end
  return acc:cast(dt)
end

local function linear_014(ctx, xs, dt)
  local ws = cr.weights_of(xs, dt)
  local terms = {}
  for i, x in ipairs(xs) do terms[i] = ws[i] * x:cast(dt) end
  local s = cr.sum_of(terms)
  if ctx.params.normalize then s = s / cr.sum_of(ws) end
  return s
end

return {
  name = "linear",
  pretty = "Linear",
  url = "https://arxiv.org/abs/2203.05482",
  base = "unused",
  inputs = { min = 1 },
  params = {
    { name = "normalize", scope = "global", kind = "bool", default = true },
    { name = "weight", scope = "model", kind = "number", required = true },
  },
  merge = function(ctx)
    local xs = ctx.inputs
    local dt = xs[1].dtype
    for i = 2, #xs do dt = cr.promote(dt, xs[i].dtype) end
    if ctx.mergekit_version == "0.1.4" then return linear_014(ctx, xs, dt) end
    return linear_015(ctx, xs, dt)
  end,
}
