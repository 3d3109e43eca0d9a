1local a = crucible.model('a')
crucible.merge{ name = '__metadata__', inputs = { {a, 'lm_head.weight'} }, method = function(ctx) return ctx.inputs[1] end }