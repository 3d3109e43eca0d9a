-- arcee_fusion.lua — Arcee Fusion (mergekit arcee_fusion.py; merge-methods.md
-- §4.12): importance |b − a|·KL(softmax(b) ‖ softmax(a)) per row, a
-- Tukey-style threshold Q(0.5) + 1.5·(Q(0.75) − Q(0.25)) of its sorted
-- values, and the other model's value where the importance reaches it.
-- Quantiles are exact over the whole tensor (mergekit samples 10^6
-- elements at random above that size; spec/compat.md). Result in f32 (QUIRK).
local function softmax_rows(x)
  local e = cr.exp(x - x:row_max())
  return e / e:row_sum()
end

return {
  name = "arcee_fusion",
  pretty = "Arcee Fusion",
  url = "https://arcee.ai",
  base = "required",
  inputs = { min = 1, max = 1 },
  params = {},
  merge = function(ctx)
    local a = ctx.base
    if #ctx.inputs == 1 then return ctx.inputs[1] end
    if a == nil or #ctx.inputs ~= 2 then
      cr.error(ctx.name .. ": arcee_fusion needs the base model and exactly one other model")
    end
    local b = ctx.others[1]
    local p = softmax_rows(b) + 1e-8
    local q = softmax_rows(a) + 1e-8
    local kl = (p * cr.log(p / q)):row_sum()
    local imp = cr.abs(b - a) * kl
    local n = cr.numel(ctx)
    -- Q(q) = sorted_ascending[int(q·(n−1))] = the (n − idx)-th largest
    local function Q(frac)
      local idx = math.floor(frac * (n - 1))      -- f32 product, truncated
      return cr.kth_largest_abs(imp, n - idx)
    end
    local q50, q75, q25 = Q(0.5), Q(0.75), Q(0.25)
    local thr = q50 + (q75 - q25) * 1.5
    local mask = cr.ge(imp, thr):cast("float32")
    return a + (b - a) * mask
  end,
}
