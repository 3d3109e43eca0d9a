0local s = (''):rep(math.maxinteger)
return { name = "x", inputs = { min = 1 }, params = {}, merge = function(ctx) return ctx.inputs[1] end }