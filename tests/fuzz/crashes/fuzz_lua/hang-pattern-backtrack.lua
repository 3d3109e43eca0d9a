0local s = string.find(("a"):rep(40), ("a*"):rep(40) .. "b")
return { name = "x", inputs = { min = 1 }, params = {}, merge = function(ctx) return ctx.inputs[1] end }
