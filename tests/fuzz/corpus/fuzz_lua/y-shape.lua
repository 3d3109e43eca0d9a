return { name = "x", base = "optional", inputs = { min = 1 }, params = {},
  merge = function(ctx) local s = 0 for i, x in ipairs(ctx.inputs) do s = s + x:sum() end return s end }
