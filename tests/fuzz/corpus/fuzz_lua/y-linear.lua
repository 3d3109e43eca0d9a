-- linear.lua — weighted average (mergekit linear.py; merge-methods.md §4.1).
--   S = Σ W_i ⊙ X_i  (weights rounded to the compute dtype, products rounded
--   per op, the sum accumulated in f32 and rounded once); S / Σ W_i when
--   normalize. No guard against Σ W = 0 (mergekit has none either).
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
    local ws = cr.weights_of(xs, dt)
    local terms = {}
    for i, x in ipairs(xs) do terms[i] = ws[i] * x:cast(dt) end
    local s = cr.sum_of(terms)
    if ctx.params.normalize then s = s / cr.sum_of(ws) end
    return s
  end,
}
