1local a = crucible.model('a')
crucible.merge{ name = ('x'):rep(5000), inputs = { {a, 'lm_head.weight'} }, method = function(ctx) return ctx.inputs[1] end }