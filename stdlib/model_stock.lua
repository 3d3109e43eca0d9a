-- model_stock.lua — Model Stock (mergekit model_stock.py; merge-methods.md
-- §4.10): t = N·c / (1 + (N−1)·c) from the mean pairwise cosine c of the
-- offsets w_i − w0 (whole tensor, or per row with filter_wise), then
-- t·mean(w_i) + (1 − t)·w0. t is not clamped; at c = −1/(N−1) mergekit
-- 0.1.4 divides by zero (inf/NaN) and 0.1.5 sets t = 0 where
-- |1 + (N−1)c| < 1e-6.
return {
  name = "model_stock",
  pretty = "Model Stock",
  url = "https://arxiv.org/abs/2403.19522",
  base = "required",
  inputs = { min = 2 },
  params = {
    { name = "filter_wise", scope = "global", kind = "bool", default = false },
  },
  merge = function(ctx)
    local w0 = ctx.base
    if w0 == nil then cr.error(ctx.name .. ": model_stock needs a base model") end
    if #ctx.inputs == 1 then return w0 end
    if #ctx.inputs < 3 then
      cr.error(ctx.name .. ": model_stock needs the base plus at least two other models")
    end
    local ws = ctx.others
    local rows = ctx.params.filter_wise
    -- torch.norm and (a*b).sum(dim=-1) in torch's float32 summation orders.
    -- bf16/f16 dots: (a*b) rounds each product to the dtype, then torch's
    -- sum (f32 cascade, rounded to the dtype). bf16 norms: torch's bf16
    -- norm-2 path adds x[16i+l]² and x[16i+8+l]² to f32 lane l, which is the
    -- float32 path's order whenever numel mod 16 < 8 (tail the same); else
    -- (and for f16, sequential f32 in torch) the f64 norm, rounded to the
    -- dtype, stands in (spec/compat.md).
    local f32 = w0.dtype == "float32"
    local n_el = cr.numel(ctx)
    local bf16_torch = w0.dtype == "bfloat16" and n_el % 16 < 8
    local shape = w0.shape
    local cols = #shape > 0 and shape[#shape] or 1
    local bf16_rows = w0.dtype == "bfloat16" and cols % 16 < 8
    local function norm(x)
      if rows and bf16_rows then return cr.torch_row_norm(x:cast("float32")):cast(x.dtype) end
      if rows then return f32 and cr.torch_row_norm(x) or x:row_norm() end
      if bf16_torch then return cr.torch_norm(x:cast("float32")):cast(x.dtype) end
      return f32 and cr.torch_norm(x) or x:norm()
    end
    local function dot(a, b)
      if rows and not f32 then return cr.torch_row_sum((a * b):cast("float32")):cast(a.dtype) end
      if rows then return cr.torch_row_sum(a * b) end
      return cr.torch_sum(a * b)
    end
    local offsets = {}
    for i, w in ipairs(ws) do offsets[i] = w - w0 end
    local cs = {}
    for i = 1, #offsets do
      for j = i + 1, #offsets do
        local np = norm(offsets[i]) * norm(offsets[j])
        cs[#cs + 1] = cr.clamp(dot(offsets[i], offsets[j]) / cr.max(np, 1e-6), -1, 1)
      end
    end
    -- torch.stack(cs).mean(0): the cosines in f32, summed in torch's order
    -- (M.torch_sum_scalars), divided by P in f32, rounded once to the dtype
    -- (bf16(Σ)/P rounded twice before)
    local c
    if rows then
      -- per row over the pairs (torch's outer order: sequential up to 4
      -- pairs, i.e. N <= 4)
      local cf = {}
      for i, x in ipairs(cs) do cf[i] = x:cast("float32") end
      c = (cr.sum_of(cf) / #cs):cast(w0.dtype)
    else
      local cf = {}
      for i, x in ipairs(cs) do cf[i] = x:cast("float32") end
      c = (cr.torch_sum_scalars(cf, w0.dtype ~= "float32") / #cs):cast(w0.dtype)
    end
    local N = #ws
    local den = (c * (N - 1)) + 1
    local t
    if ctx.mergekit_version == "0.1.4" then
      t = (c * N) / den
    else
      -- 0.1.5: where |1 + (N-1)c| < 1e-6 there is no finite estimate and
      -- t = 0 keeps the base (model_stock.py's singular guard)
      local singular = cr.lt(cr.abs(den), cr.const(1e-6, den.dtype))
      t = cr.where(singular, cr.const(0, den.dtype), (c * N) / cr.where(singular, 1, den))
    end
    local sum = ws[1]
    for i = 2, N do sum = sum + ws[i] end          -- Python sum(): rounds per add
    local avg = sum / N
    return t * avg + (1 - t) * w0
  end,
}
