return { name = "x", base = "required", inputs = { min = 1 },
  params = { { name = "weight", scope = "model", kind = "number", required = true } },
  merge = function(ctx) if ctx.layer == 1 then cr.error(ctx.name .. ": nope") end
    return cr.slerp(0.5, ctx.base, ctx.others[1]) * ctx.others[2].params.weight end }
