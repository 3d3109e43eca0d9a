-- model_stock.lua — Model Stock (mergekit model_stock.py; merge-methods.md
-- §4.10): t = N·c / (1 + (N−1)·c) from the mean pairwise cosine c of the
-- offsets w_i − w0 (whole tensor, or per row with filter_wise), then
-- t·mean(w_i) + (1 − t)·w0. t is not clamped (c = −1/(N−1) gives inf/NaN,
-- as in mergekit).
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
    -- torch.norm and (a*b).sum(dim=-1) in torch's float32 summation orders
    local f32 = w0.dtype == "float32"
    local function norm(x)
      if rows then return f32 and cr.torch_row_norm(x) or x:row_norm() end
      return f32 and cr.torch_norm(x) or x:norm()
    end
    local function dot(a, b)
      if rows then return f32 and cr.torch_row_sum(a * b) or cr.row_dot(a, b) end
      return f32 and cr.torch_sum(a * b) or cr.dot(a, b)
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
    local c = cr.sum_of(cs) / #cs
    local N = #ws
    local t = (c * N) / ((c * (N - 1)) + 1)
    local sum = ws[1]
    for i = 2, N do sum = sum + ws[i] end          -- Python sum(): rounds per add
    local avg = sum / N
    return t * avg + (1 - t) * w0
  end,
}
