-- ramplus_tl.lua — RAM Plus, tensor-local (mergekit ram.py; merge-methods.md
-- §4.9): unique entries of model k are scaled by
-- λ_k = 1 + r·clamp(shared_k / max(unique_k, ε), 0, α). λ is float32, so
-- bf16/f16 inputs give a float32 result, as in mergekit (QUIRK).
return {
  name = "ramplus_tl",
  pretty = "Reinforced Agent Merging Plus (Tensor-Local)",
  url = "https://arxiv.org/abs/2601.13572",
  base = "required",
  inputs = { min = 0 },
  params = {
    { name = "r", scope = "global", kind = "number", default = 0.1 },
    { name = "alpha", scope = "global", kind = "number", default = 0.2 },
    { name = "epsilon", scope = "global", kind = "number", default = 1e-5 },
  },
  merge = function(ctx)
    local B = ctx.base
    if B == nil then cr.error(ctx.name .. ": ramplus_tl needs a base model") end
    if #ctx.others == 0 then return B end
    local p = ctx.params
    local r = cr.ram_parts(ctx)
    local terms = {}
    for k, z in ipairs(r.z) do
      local a = r.active[k]
      local sh = cr.land(a, r.shared):cast("float32"):sum()
      local un = cr.land(a, r.unique):cast("float32"):sum()
      local rho = sh / cr.max(un, p.epsilon)
      local lam = cr.clamp(rho, 0, p.alpha) * p.r + 1
      terms[k] = (z * r.unique):cast("float32") * lam + z * r.shared / r.div
    end
    return B + cr.sum_of(terms)
  end,
}
