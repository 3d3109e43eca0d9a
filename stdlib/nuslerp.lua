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
-- mergekit 0.1.5 (spec/mergekit-0.1.5.md §3.3) tests colinearity as
-- 1 − c² ≤ 1e-16 (0.1.4: |sin θ| < 1e-8, which differs at c = −1), and
-- crucible follows torch there for bf16/f16 too: Python-float scalars are
-- float32 in the op (R1), the bf16 norms and the rounded-product dots in
-- torch's order. 0.1.4 keeps the scalars rounded to the dtype and the f64
-- bf16 reductions it was matched with.
local function norm_of(x, along, torchy)
  local f32 = x.dtype == "float32"
  -- torch's bf16 norm-2 path adds x[16i+l]² and x[16i+8+l]² to f32 lane l:
  -- the float32 order whenever the length mod 16 < 8 (the same tail); else,
  -- for columns (a strided reduction, not that path) and for f16
  -- (sequential f32 in torch), the f64 norm stands in
  if torchy and x.dtype == "bfloat16" and along ~= "cols" then
    local shape = x.shape
    local n = along == "all" and x.numel or shape[#shape]
    if n % 16 < 8 then
      local y = x:cast("float32")
      if along == "rows" then return cr.torch_row_norm(y):cast(x.dtype) end
      return cr.torch_norm(y):cast(x.dtype)
    end
  end
  if along == "rows" then return f32 and cr.torch_row_norm(x) or x:row_norm() end
  if along == "cols" then return f32 and cr.torch_col_norm(x) or x:col_norm() end
  return f32 and cr.torch_norm(x) or x:norm()
end
local function dot_of(a, b, along, torchy)
  local f32 = a.dtype == "float32"
  if torchy and not f32 and a.dtype ~= "float64" then
    -- (u0*u1) rounds each product to the dtype; torch sums in f32, rounds once
    local p = a * b
    if along == "rows" then return cr.torch_row_sum(p:cast("float32")):cast(a.dtype) end
    if along == "cols" then return cr.torch_col_sum(p:cast("float32")):cast(a.dtype) end
    return cr.torch_sum(p)
  end
  if along == "rows" then return f32 and cr.torch_row_sum(a * b) or cr.row_dot(a, b) end
  if along == "cols" then return f32 and cr.torch_col_sum(a * b) or cr.col_dot(a, b) end
  return f32 and cr.torch_sum(a * b) or cr.dot(a, b)
end

local function nus(t, v0, v1, along, v015)
  local dt = v0.dtype
  local function c(x) return cr.const(x, dt) end
  -- s * x for a Python float s: 0.1.5 follows torch (R1: for bf16/f16 the
  -- scalar is float32 and the product rounds to f32, then to the dtype);
  -- 0.1.4 rounds s to the dtype
  local function scale(s, x)
    if not v015 then return x * c(s) end
    if dt == "float32" or dt == "float64" then return x * c(s) end
    return (x:cast("float32") * cr.const(s, "float32")):cast(dt)
  end
  -- torch's bf16/f16 acos/sin are SLEEF's float32 ones, rounded to dt:
  -- 0.1.5 rounds the correctly rounded value to float32 first
  local reduced = v015 and (dt == "bfloat16" or dt == "float16")
  local function trig(f, x)
    if reduced then return f(x:cast("float32")):cast(dt) end
    return f(x)
  end
  local u0 = v0 / cr.max(norm_of(v0, along, v015), c(1e-7))
  local u1 = v1 / cr.max(norm_of(v1, along, v015), c(1e-7))
  local cos = cr.clamp(dot_of(u0, u1, along, v015), -1, 1)
  local colinear
  if v015 then colinear = cr.le(c(1) - cos * cos, c(1e-16)) end
  local theta = trig(cr.acos, v015 and cr.where(colinear, 0, cos) or cos)
  local s = trig(cr.sin, theta)
  local r = (trig(cr.sin, scale(1 - t, theta)) * v0 + trig(cr.sin, scale(t, theta)) * v1) / s
  if not v015 then colinear = cr.lt(cr.abs(s), c(1e-8)) end
  return cr.where(colinear, scale(1 - t, v0) + scale(t, v1), r)
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
    local v015 = ctx.mergekit_version ~= "0.1.4"
    local r
    if p.nuslerp_flatten or #ctx.shape < 2 then
      r = nus(t, v0, v1, "all", v015)
    elseif not p.nuslerp_row_wise then
      r = nus(t, v0, v1, "rows", v015)                   -- vectors along the last dim: rows
    else
      r = nus(t, v0, v1, "cols", v015)                   -- vectors along dim 0: columns
    end
    if B ~= nil then r = B + r end
    return r
  end,
}
