return { name = "x", base = "optional", inputs = { min = 1 }, params = {},
  merge = function(ctx) return { ctx.inputs[1] } end }
