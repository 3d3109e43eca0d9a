-- slerp.lua — spherical interpolation of the base and one other model
-- (mergekit slerp.py; merge-methods.md §4.3): the whole tensor is one
-- vector, maths in float32 (NumPy), result cast to the base dtype once.
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
    return cr.slerp(ctx.params.t, B, other):cast(B.dtype)
  end,
}
