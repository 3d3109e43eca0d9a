-- ram.lua — Reinforced Agent Merging (mergekit ram.py; merge-methods.md
-- §4.9): entries changed by one model take its change, entries changed by
-- several take the mean over the models that changed them.
return {
  name = "ram",
  pretty = "Reinforced Agent Merging",
  url = "https://arxiv.org/abs/2601.13572",
  base = "required",
  inputs = { min = 0 },
  params = {
    { name = "epsilon", scope = "global", kind = "number", default = 1e-5 },
  },
  merge = function(ctx)
    local B = ctx.base
    if B == nil then cr.error(ctx.name .. ": ram needs a base model") end
    if #ctx.others == 0 then return B end
    local r = cr.ram_parts(ctx)
    local terms = {}
    for k, z in ipairs(r.z) do terms[k] = z * r.unique + z * r.shared / r.div end
    return B + cr.sum_of(terms)
  end,
}
