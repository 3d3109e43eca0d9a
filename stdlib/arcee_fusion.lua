-- arcee_fusion.lua — Arcee Fusion (mergekit arcee_fusion.py; merge-methods.md
-- §4.12): importance |b − a|·KL(softmax(b) ‖ softmax(a)) per row, a
-- Tukey-style threshold Q(0.5) + 1.5·(Q(0.75) − Q(0.25)) of its sorted
-- values, and the other model's value where the importance reaches it.
-- Quantiles are exact over the whole tensor (mergekit samples 10^6
-- elements at random above that size; spec/compat.md). Result in f32 (QUIRK).
-- F.softmax(x, dim=-1) is cr.torch_softmax_rows: torch's CPU kernel bit
-- for bit (its sum order, SLEEF's exp, 1/S products; bf16/f16 rows in
-- float32, rounded once), in the lane order of an AVX2 host.
local softmax_rows = cr.torch_softmax_rows

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
    -- torch.sum(dim=-1) in torch's order (bf16/f16: its reduced-float
    -- order, rounded to the dtype); float64 has no such op (wide sum)
    local prod = p * cr.log(p / q)
    local kl = prod.dtype == "float64" and prod:row_sum() or cr.torch_row_sum(prod)
    local imp = cr.abs(b - a) * kl
    local n = cr.numel(ctx)
    -- Q(q) = sorted_ascending[int(q·(n−1))] = the k-th largest value,
    -- k = n − idx. The selection ops rank by magnitude, and the importance
    -- can be negative (a float KL divergence dips below zero, often in
    -- bf16), so rank the P non-negative values and the negative ones apart:
    -- k ≤ P: the k-th largest magnitude of the non-negatives; otherwise
    -- minus the (n − k + 1)-th largest magnitude of the negatives.
    local nonneg = cr.ge(imp, 0)
    local P = nonneg:cast("float32"):sum()
    local pos = cr.where(nonneg, imp, 0)
    local neg = cr.where(nonneg, 0, imp)
    local function Q(frac)
      local idx = math.floor(frac * (n - 1))      -- f32 product, truncated
      local k = n - idx
      return cr.where(cr.le(k, P), cr.kth_largest_abs(pos, k), -cr.kth_largest_abs(neg, n - k + 1))
    end
    local q50, q75, q25 = Q(0.5), Q(0.75), Q(0.25)
    local thr = q50 + (q75 - q25) * 1.5
    local mask = cr.ge(imp, thr):cast("float32")
    return a + (b - a) * mask
  end,
}
