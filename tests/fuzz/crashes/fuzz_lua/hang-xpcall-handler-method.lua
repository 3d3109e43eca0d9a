0xpcall(function() while true do end end, function() while true do end end)
return { name = "x", inputs = { min = 1 }, params = {}, merge = function(ctx) return ctx.inputs[1] end }