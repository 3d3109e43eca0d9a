-- nuslerp.lua — NuSLERP (mergekit nuslerp.py; merge-methods.md §4.4):
-- SLERP of two models with t = w1/(w0+w1), over the whole tensor
-- (nuslerp_flatten, the default), per row (row_wise=false) or per column
-- (row_wise=true; the docs have these inverted: mergekit transposes dim 0
-- with -1, so the norms and dots run down each column), optionally on task
-- vectors against a base. Maths in the compute dtype.
-- float32 reductions in torch's own summation order (whole tensor, per
-- row: inner; per column: outer, vm/refsum.c), so that the coefficients
-- agree to the last bit; acos/sin are correctly rounded (torch's are MKL
-- VML's, spec/compat.md), the one remaining difference.
local function norm_of(x, along)
  local f32 = x.dtype == "float32"
  if along == "rows" then return f32 and cr.torch_row_norm(x) or x:row_norm() end
  if along == "cols" then return f32 and cr.torch_col_norm(x) or x:col_norm() end
  return f32 and cr.torch_norm(x) or x:norm()
end
local function dot_of(a, b, along)
  local f32 = a.dtype == "float32"
  if along == "rows" then return f32 and cr.torch_row_sum(a * b) or cr.row_dot(a, b) end
  if along == "cols" then return f32 and cr.torch_col_sum(a * b) or cr.col_dot(a, b) end
  return f32 and cr.torch_sum(a * b) or cr.dot(a, b)
end

local function nus(t, v0, v1, along)
  local dt = v0.dtype
  -- Python floats meet torch tensors in the tensor's dtype
  local function c(x) return cr.const(x, dt) end
  local u0 = v0 / cr.max(norm_of(v0, along), c(1e-7))
  local u1 = v1 / cr.max(norm_of(v1, along), c(1e-7))
  local cos = cr.clamp(dot_of(u0, u1, along), -1, 1)
  local theta = cr.acos(cos)
  local s = cr.sin(theta)
  local r = (cr.sin(c(1 - t) * theta) * v0 + cr.sin(c(t) * theta) * v1) / s
  return cr.where(cr.lt(cr.abs(s), c(1e-8)), v0 * c(1 - t) + v1 * c(t), r)
end

return {
  name = "nuslerp",
  pretty = "NuSLERP",
  base = "optional",
  inputs = { min = 2, max = 2 },
  params = {
    { name = "nuslerp_row_wise", scope = "global", kind = "bool", default = false },
    { name = "nuslerp_flatten", scope = "global", kind = "bool", default = true },
    { name = "weight", scope = "model", kind = "number", required = true },
  },
  merge = function(ctx)
    if #ctx.inputs == 1 then return ctx.inputs[1] end
    local B = ctx.base
    if B ~= nil and #ctx.inputs ~= 3 then
      cr.error(ctx.name .. ": nuslerp with a base model needs exactly two other models")
    end
    if B == nil and #ctx.inputs ~= 2 then
      cr.error(ctx.name .. ": nuslerp needs exactly two models")
    end
    local x0, x1 = ctx.others[1], ctx.others[2]
    local w0, w1 = x0.params.weight, x1.params.weight
    local t = 0.5
    if math.abs(w0 + w1) >= 1e-6 then t = w1 / (w0 + w1) end
    local v0, v1 = x0, x1
    if B ~= nil then v0, v1 = x0 - B, x1 - B end
    local p = ctx.params
    local r
    if p.nuslerp_flatten or #ctx.shape < 2 then
      r = nus(t, v0, v1, "all")
    elseif not p.nuslerp_row_wise then
      r = nus(t, v0, v1, "rows")                   -- vectors along the last dim: rows
    else
      r = nus(t, v0, v1, "cols")                   -- vectors along dim 0: columns
    end
    if B ~= nil then r = B + r end
    return r
  end,
}
