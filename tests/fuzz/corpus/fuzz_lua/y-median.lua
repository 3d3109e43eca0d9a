-- median.lua — elementwise median of all input models (mergekit has no
-- such method). Every element's values are sorted by a bubble-sort network
-- of cr.min / cr.max (exact: no rounding), in the inputs' promoted dtype;
-- odd n takes the middle value, even n the mean of the two middle ones,
-- (lo + hi) / 2 with each operation rounded to the dtype.
return {
  name = "median",
  pretty = "Elementwise median",
  base = "unused",          -- a base model, if given, is one more input
  inputs = { min = 1 },
  params = {},
  merge = function(ctx)
    local xs, dt = {}, ctx.inputs[1].dtype
    for i = 2, #ctx.inputs do dt = cr.promote(dt, ctx.inputs[i].dtype) end
    for i, x in ipairs(ctx.inputs) do xs[i] = x:cast(dt) end
    local n = #xs
    for i = 1, n - 1 do
      for j = 1, n - i do
        local lo, hi = cr.min(xs[j], xs[j + 1]), cr.max(xs[j], xs[j + 1])
        xs[j], xs[j + 1] = lo, hi
      end
    end
    if n % 2 == 1 then return xs[(n + 1) // 2] end
    return (xs[n // 2] + xs[n // 2 + 1]) / 2
  end,
}
