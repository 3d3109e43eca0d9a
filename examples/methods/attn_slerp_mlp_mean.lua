-- attn_slerp_mlp_mean.lua — a per-tensor schedule chosen by name: attention
-- weights (`self_attn` in ctx.name) are slerped from the base towards the
-- other model by `t`; everything else (MLP, norms, embeddings) is the plain
-- mean of the two, computed as mergekit's linear with equal weights. Gives
-- the same bytes as `slerp` on attention and `linear` (weight 1 each) on the
-- rest (tests/unit/test_lua_methods.c checks this).
return {
  name = "attn_slerp_mlp_mean",
  pretty = "Attention SLERP, MLP mean",
  base = "required",
  inputs = { min = 1, max = 1 },
  params = {
    { name = "t", scope = "global", kind = "number", default = 0.5 },
  },
  merge = function(ctx)
    local B, other = ctx.base, ctx.others[1]
    if ctx.name:find("self_attn", 1, true) then
      return cr.slerp(ctx.params.t, B, other):cast(B.dtype)
    end
    local xs = ctx.inputs
    local dt = cr.promote(xs[1].dtype, xs[2].dtype)
    local ws = { cr.const(1, dt), cr.const(1, dt) }
    local s = cr.sum_of({ ws[1] * xs[1]:cast(dt), ws[2] * xs[2]:cast(dt) })
    return s / cr.sum_of(ws)
  end,
}
