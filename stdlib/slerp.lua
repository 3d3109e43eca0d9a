-- slerp.lua — spherical interpolation of the base and one other model
-- (mergekit slerp.py; merge-methods.md §4.3): the whole tensor is one
-- vector. mergekit 0.1.4 computes it in NumPy float32 (cr.slerp), result
-- cast to the base dtype once; 0.1.5 in torch float32 (cr.slerp_torch,
-- spec/mergekit-0.1.5.md §3.2) on the group promoted to one dtype, which is
-- the result's.
return {
  name = "slerp",
  pretty = "SLERP",
  url = "https://en.wikipedia.org/wiki/Slerp",
  base = "required",
  inputs = { min = 1, max = 1 },
  params = {
    { name = "t", scope = "global", kind = "number", required = true },
  },
  merge = function(ctx)
    local B = ctx.base
    if #ctx.inputs == 1 then return ctx.inputs[1] end
    if B == nil or #ctx.inputs ~= 2 then
      cr.error(ctx.name .. ": slerp needs the base model and exactly one other model")
    end
    local other = ctx.others[1]
    if ctx.mergekit_version == "0.1.4" then
      return cr.slerp(ctx.params.t, B, other):cast(B.dtype)
    end
    return cr.slerp_torch(ctx.params.t, B, other):cast(cr.promote(B.dtype, other.dtype))
  end,
}
