-- nearswap.lua — move each parameter of the base at most t toward the
-- other model (mergekit nearswap.py; merge-methods.md §4.11):
-- ω = clamp(t / max(|B − X|, 1e-6), 0, 1); ω·X + (1 − ω)·B.
return {
  name = "nearswap",
  pretty = "NearSwap",
  url = "https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001",
  base = "required",
  inputs = { min = 1, max = 1 },
  params = {
    { name = "t", scope = "global", kind = "number", required = true },
  },
  merge = function(ctx)
    local a = ctx.base
    if a == nil then cr.error(ctx.name .. ": nearswap needs a base model") end
    if #ctx.others == 0 then return a end
    if #ctx.others ~= 1 then cr.error(ctx.name .. ": nearswap takes the base and exactly one other model") end
    local b = ctx.others[1]
    local absdiff = cr.abs(a - b)
    -- `t / x` in torch is Tensor.__rtruediv__: x.reciprocal() * t, two
    -- rounded operations, not one division
    local w = cr.clamp((1 / cr.max(absdiff, 1e-6)) * ctx.params.t, 0, 1)
    return w * b + (1 - w) * a
  end,
}
