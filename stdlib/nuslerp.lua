-- nuslerp.lua — NuSLERP (mergekit nuslerp.py; merge-methods.md §4.4):
-- SLERP of two models with t = w1/(w0+w1), over the whole tensor
-- (nuslerp_flatten, the default), per row (row_wise=false) or per column
-- (row_wise=true; the docs have these inverted), optionally on task
-- vectors against a base. Maths in the compute dtype.
local function nus(t, v0, v1, rows)
  local norm = rows and function(x) return x:row_norm() end or function(x) return x:norm() end
  local dot = rows and cr.row_dot or cr.dot
  local u0 = v0 / cr.max(norm(v0), 1e-7)
  local u1 = v1 / cr.max(norm(v1), 1e-7)
  local c = cr.clamp(dot(u0, u1), -1, 1)
  local theta = cr.acos(c)
  local s = cr.sin(theta)
  local r = (cr.sin(theta * (1 - t)) * v0 + cr.sin(theta * t) * v1) / s
  return cr.where(cr.lt(cr.abs(s), 1e-8), v0 * (1 - t) + v1 * t, r)
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
      r = nus(t, v0, v1, false)
    elseif not p.nuslerp_row_wise then
      r = nus(t, v0, v1, true)                     -- vectors along the last dim: rows
    else
      cr.error(ctx.name .. ": nuslerp_row_wise (per-column SLERP) is not supported yet")
    end
    if B ~= nil then r = B + r end
    return r
  end,
}
