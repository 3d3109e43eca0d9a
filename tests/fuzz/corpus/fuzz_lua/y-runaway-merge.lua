return { name = "x", base = "optional", inputs = { min = 1 }, params = {},
  merge = function(ctx) while true do end end }
