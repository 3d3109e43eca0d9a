-- multislerp.lua — Multi-SLERP (mergekit multislerp.py; merge-methods.md
-- §4.5): weighted mean direction in the tangent space of the unit sphere,
-- scaled by the weighted mean of the norms; optionally on task vectors.
return {
  name = "multislerp",
  pretty = "Multi-SLERP",
  url = "https://goddard.blog/posts/multislerp-wow-what-a-cool-idea",
  base = "optional",
  inputs = { min = 1 },
  params = {
    { name = "normalize_weights", scope = "global", kind = "bool", default = true },
    { name = "eps", scope = "global", kind = "number", default = 1e-8 },
    { name = "weight", scope = "model", kind = "number", required = true },
  },
  merge = function(ctx)
    local B = ctx.base
    local xs = ctx.others
    if #xs == 0 then cr.error(ctx.name .. ": multislerp needs at least one non-base model") end
    if #xs == 1 then return xs[1] end
    local eps = ctx.params.eps
    local dt = xs[1].dtype
    local ws = cr.weights_of(xs, dt)
    if ctx.params.normalize_weights then
      local total = cr.sum_of(ws)
      for i = 1, #ws do ws[i] = ws[i] / total end
    end
    -- torch.norm / (a*b).sum(-1) in torch's float32 summation orders (both
    -- mergekit versions compute the same). bf16 norms (R6) add x[16i+l]²
    -- and x[16i+8+l]² to f32 lane l: the float32 order whenever the length
    -- mod 16 < 8 (the same scalar tail); otherwise, and for f16 (sequential
    -- f32 in torch), the f64 norm stands in. The dot rounds each product to
    -- the dtype and sums those in torch's reduced-float order, rounded once
    -- (f64 unrounded products were a bf16 ulp off on whole tensors).
    local f32 = dt == "float32"
    local function norm(x)
      if f32 then return cr.torch_norm(x) end
      if dt == "bfloat16" and x.numel % 16 < 8 then return cr.torch_norm(x:cast("float32")):cast(dt) end
      return x:norm()
    end
    local function dot(a, b)
      if dt == "float64" then return cr.dot(a, b) end
      return cr.torch_sum(a * b)
    end
    -- torch's bf16/f16 cos/sin are SLEEF's float32 ones rounded to dt: the
    -- correctly rounded value is rounded to float32 first
    local function trig(f, x)
      if dt == "bfloat16" or dt == "float16" then return f(x:cast("float32")):cast(dt) end
      return f(x)
    end
    local function c(x) return cr.const(x, dt) end   -- Python float meets a tensor
    local ys, us, rho = {}, {}, {}
    for i, x in ipairs(xs) do
      ys[i] = B and (x - B) or x
      rho[i] = norm(ys[i])
      us[i] = ys[i] / (rho[i] + c(eps))
    end
    local wu = {}
    for i = 1, #us do wu[i] = us[i] * ws[i] end
    local m = cr.sum_of(wu)
    local mnorm = norm(m)
    local mh = m / mnorm
    local tau = {}
    for i = 1, #us do tau[i] = (us[i] - mh * dot(us[i], mh)) * ws[i] end
    local t = cr.sum_of(tau)
    local phi = norm(t) + c(eps)
    local r = mh * trig(cr.cos, phi) + t * (trig(cr.sin, phi) / phi)
    local wr = {}
    for i = 1, #ws do wr[i] = ws[i] * rho[i] end
    local out = r * cr.sum_of(wr)
    if #xs == 2 then
      -- |m| < eps: mergekit's linear fallback for two models
      out = cr.where(cr.lt(mnorm, c(eps)), ys[1] * ws[1] + ys[2] * ws[2], out)
    end
    if B then out = B + out end
    return out
  end,
}
