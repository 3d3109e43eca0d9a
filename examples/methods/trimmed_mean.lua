-- trimmed_mean.lua — elementwise mean after dropping the smallest and the
-- largest value (mergekit has no such method); needs at least 3 inputs.
-- Values are sorted with cr.min / cr.max (exact), the middle n-2 summed left
-- to right with every addition rounded to the promoted dtype, then divided
-- by n-2 (rounded once more).
return {
  name = "trimmed_mean",
  pretty = "Trimmed mean",
  base = "unused",
  inputs = { min = 3 },
  params = {},
  merge = function(ctx)
    local xs, dt = {}, ctx.inputs[1].dtype
    for i = 2, #ctx.inputs do dt = cr.promote(dt, ctx.inputs[i].dtype) end
    for i, x in ipairs(ctx.inputs) do xs[i] = x:cast(dt) end
    local n = #xs
    if n < 3 then cr.error(ctx.name .. ": trimmed_mean needs at least 3 models") end
    for i = 1, n - 1 do
      for j = 1, n - i do
        local lo, hi = cr.min(xs[j], xs[j + 1]), cr.max(xs[j], xs[j + 1])
        xs[j], xs[j + 1] = lo, hi
      end
    end
    local s = xs[2]
    for i = 3, n - 1 do s = s + xs[i] end
    return s / (n - 2)
  end,
}
