-- sce.lua — SCE (mergekit sce.py; merge-methods.md §4.8): optional
-- variance-based top-k selection shared by all models, TIES sign election,
-- then a mean weighted by each task vector's energy mean(δ²).
return {
  name = "sce",
  pretty = "SCE",
  url = "https://arxiv.org/abs/2408.07990",
  base = "required",
  inputs = { min = 0 },
  params = {
    { name = "int8_mask", scope = "global", kind = "bool", default = false },
    { name = "select_topk", scope = "global", kind = "number", default = 1.0 },
  },
  merge = function(ctx)
    local B, tvs = cr.task_vectors(ctx)
    if #tvs == 0 then return B end
    local n = #tvs
    local D = {}
    for i, tv in ipairs(tvs) do D[i] = tv.delta end
    local topk = ctx.params.select_topk
    if topk < 1 then
      -- torch.var(dim=0, unbiased=False): Welford in double over the models
      -- in order, m2/n in double, rounded to f32 and then to the dtype
      -- (spec/mergekit-0.1.5.md R9)
      local mean, m2
      for i = 1, n do
        local x = D[i]:cast("float64")
        if i == 1 then
          mean, m2 = x, x - x
        else
          local d = x - mean
          mean = mean + d / i
          m2 = m2 + d * (x - mean)
        end
      end
      local var = (m2 / n):cast("float32"):cast(D[1].dtype)
      -- k = int(count_nonzero(var) * select_topk): an int64 tensor times a
      -- Python float is a float32 product, truncated; k = 0 keeps nothing
      -- and the result is the base (mergekit returns a wrongly shaped
      -- tensor there)
      local nz = cr.ne(var, 0):cast("float32"):sum()
      local k = cr.trunc(nz * cr.const(topk, "float32"))
      if topk <= 0 then k = 0 end
      -- torch.topk keeps the ties at the k-th value in the order libstdc++'s
      -- nth_element / partial_sort leave them (many in bf16)
      local mask = cr.topk_mask(var, k, "torch_topk")
      for i = 1, n do D[i] = D[i] * mask end
    end
    local agree = cr.sign_agreement(D)
    -- torch.mean(tv**2): on CPU bf16/f16 are cast to f32, summed in torch's
    -- f32 order, divided and rounded back; f32 the same without the casts;
    -- weight_sum = torch.sum(weights).item() (accumulated in f32, rounded to
    -- the dtype, then a Python float)
    local g = {}
    for i = 1, n do
      g[i] = (cr.torch_sum((D[i] * D[i]):cast("float32")) / cr.numel(ctx)):cast(D[i].dtype)
    end
    local G = cr.float(cr.sum_of(g))
    local tiny = cr.lt(cr.abs(G), 1e-6)
    local num, den = {}, {}
    for i = 1, n do
      local w = cr.where(tiny, cr.const(1 / n, B.dtype), g[i] / G)
      local e = agree[i] * w
      num[i] = D[i] * e
      den[i] = e
    end
    return B + cr.sum_of(num) / cr.max(cr.sum_of(den), 1e-6)
  end,
}
