2return { name = "x", inputs = { min = 1 }, params = {}, merge = function(ctx)
  getmetatable(ctx.inputs[1]).__gc = function() while true do end end
  return ctx.inputs[1] * 1
end }
