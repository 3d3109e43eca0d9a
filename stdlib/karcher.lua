-- karcher.lua — Karcher (Riemannian) mean on the unit sphere with equal
-- weights, scaled by the mean norm (mergekit karcher.py; merge-methods.md
-- §4.6). The iteration is unrolled max_iter times; once converged
-- (‖T‖ < tol) later iterations keep u, as mergekit's break does.

-- mergekit 0.1.5's karcher_merge_tensors (spec/mergekit-0.1.5.md §3.5), op
-- by op in torch's dtypes: norms are float32 0-dim tensors (torch's norm-2
-- order), the scale Σ f32(α)·ρ_i is summed in float32. For bf16/f16 every
-- 0-dim op runs in float32 and rounds to the dtype; `x * s` and `x / s`
-- with a float32 0-dim s (or a Python float) use s in float32, while `s * x`
-- with s first casts s to the dtype first (measured: torch 2.15's mul takes
-- the float32 scalar only in operand 2). Not reproducible: torch.dot on
-- float32 is MKL's sdot (crucible: f32 products summed in f64, cr.dot) and
-- float32 acos/sin/cos are MKL VML (crucible: correctly rounded);
-- bf16/f16 trig is SLEEF in float32 (crucible: correctly rounded float32).
local function karcher_015(xs, tol, iters)
  local n = #xs
  local dt = xs[1].dtype
  for i = 2, n do dt = cr.promote(dt, xs[i].dtype) end
  local wd = dt == "float64" and "float64" or "float32"
  local reduced = dt == "bfloat16" or dt == "float16"
  local function norm(x)
    if wd == "float32" then return cr.torch_norm(x:cast("float32")) end
    return x:norm()
  end
  -- a 0-dim op in torch's arithmetic: float32 for bf16/f16, rounded to dt
  local function op0(f, ...)
    if not reduced then return f(...) end
    local args = table.pack(...)
    for i = 1, args.n do args[i] = args[i]:cast("float32") end
    return f(table.unpack(args, 1, args.n)):cast(dt)
  end
  local alpha = 1 / n
  -- Python's sum of the k valid alphas, k = 1..n, and α / that sum
  local nalpha, acc = {}, 0
  for k = 1, n do acc = acc + alpha; nalpha[k] = alpha / acc end
  local rho, unit, valid = {}, {}, {}
  local count = nil
  for i, x0 in ipairs(xs) do
    local x = x0:cast(dt)
    rho[i] = norm(x)
    local z = cr.eq(rho[i], 0)
    unit[i] = cr.where(z, cr.const(0, dt), x / cr.where(z, 1, rho[i]))
    valid[i] = cr.gt(rho[i], tol)
    local v = valid[i]:cast("float64")
    count = count and count + v or v
  end
  local a = cr.const(0, "float64")
  for k = 1, n do a = cr.where(cr.eq(count, k), cr.const(nalpha[k], "float64"), a) end
  local ab = {}
  for i = 1, n do ab[i] = cr.where(valid[i], a, cr.const(0, "float64")) end
  -- mean = zeros; mean += α_j·u_j over the valid j (invalid ones add ±0)
  local m = nil
  for i = 1, n do
    local t = unit[i] * ab[i]:cast(wd)
    m = m and m + t or t + 0
  end
  local mn = norm(m)
  local first = unit[n]
  for i = n - 1, 1, -1 do first = cr.where(valid[i], unit[i], first) end
  local small = cr.lt(mn, tol)
  m = cr.where(small, first, m / cr.where(small, 1, mn))
  local done = cr.lt(mn, -1)                     -- false
  for _ = 1, iters do
    local T = nil
    for i = 1, n do
      local d = cr.clamp(cr.dot(m, unit[i]), -1, 1)
      local th = op0(cr.acos, d)
      local q = op0(function(x, y) return x / y end, th, op0(cr.sin, th))
      local coef = op0(function(x, y) return x * y end, q, ab[i]:cast(wd))
      local skip = cr.lor(cr.lt(th, tol), cr.lnot(valid[i]))
      local term = cr.where(skip, cr.const(0, dt), coef) * (unit[i] - d * m)
      T = T and T + term or term + 0
    end
    local Tn = norm(T)
    local conv = cr.lt(Tn, tol)
    local ct, st = cr.cos(Tn), cr.sin(Tn)
    local nu = ct:cast(dt) * m + st:cast(dt) * (T / cr.where(conv, 1, Tn))
    local un = norm(nu)
    local big = cr.gt(un, tol)
    nu = cr.where(big, nu / cr.where(big, un, 1), nu)
    done = cr.lor(done, conv)
    m = cr.where(done, m, nu)
  end
  local scale = nil
  for i = 1, n do
    local p = rho[i] * cr.const(alpha, wd)
    scale = scale and scale + p or p + 0
  end
  local zero = nil
  for i = 1, n do
    local z = xs[i]:cast(dt) * 0
    zero = zero and zero + z or z + 0
  end
  return cr.where(cr.gt(count, 0), scale:cast(dt) * m, zero)
end

return {
  name = "karcher",
  pretty = "Karcher Mean",
  url = "https://en.wikipedia.org/wiki/Karcher_mean",
  base = "unused",
  inputs = { min = 1 },
  params = {
    { name = "max_iter", scope = "global", kind = "number", default = 10 },
    { name = "tol", scope = "global", kind = "number", default = 1e-5 },
  },
  merge = function(ctx)
    local xs = ctx.inputs
    local n = #xs
    if n == 1 then return xs[1] end
    local tol, iters = ctx.params.tol, math.floor(ctx.params.max_iter)
    if ctx.mergekit_version ~= "0.1.4" then return karcher_015(xs, tol, iters) end
    local alpha = 1 / n
    local rho, u_i, valid = {}, {}, {}
    for i, x in ipairs(xs) do
      rho[i] = x:cast("float32"):norm()
      local nz = cr.gt(rho[i], 0)
      u_i[i] = cr.where(nz, x / cr.where(nz, rho[i], 1):cast(x.dtype), x * 0)
      valid[i] = cr.gt(rho[i], tol):cast("float32")
    end
    local vsum = cr.float(valid[1])
    for i = 2, n do vsum = vsum + cr.float(valid[i]) end
    local ab = {}
    for i = 1, n do ab[i] = valid[i] * alpha / cr.max(vsum * alpha, 1e-300) end
    local terms = {}
    for i = 1, n do terms[i] = u_i[i] * ab[i] end
    local u = cr.sum_of(terms)
    local un = u:norm()
    -- first valid unit vector when the mean direction vanishes
    local first = u_i[n]
    for i = n - 1, 1, -1 do first = cr.where(cr.gt(valid[i], 0), u_i[i], first) end
    u = cr.where(cr.lt(un, tol), first, u / cr.where(cr.lt(un, tol), 1, un))
    local done = cr.lt(un, -1)                     -- false
    for _ = 1, iters do
      local T = {}
      for i = 1, n do
        local c = cr.clamp(cr.dot(u, u_i[i]), -1, 1)
        local th = cr.acos(c)
        local f = cr.where(cr.land(cr.ge(th, tol), cr.gt(valid[i], 0)),
                           ab[i] * th / cr.sin(cr.where(cr.ge(th, tol), th, 1)), 0)
        T[i] = (u_i[i] - u * c) * f
      end
      local Tt = cr.sum_of(T)
      local Tn = Tt:norm()
      local conv = cr.lt(Tn, tol)
      local nu = u * cr.cos(Tn) + Tt * (cr.sin(Tn) / cr.where(conv, 1, Tn))
      local nn = nu:norm()
      nu = cr.where(cr.gt(nn, tol), nu / cr.where(cr.gt(nn, tol), nn, 1), nu)
      done = cr.lor(done, conv)
      u = cr.where(done, u, nu)
    end
    local scale = cr.float(rho[1]) * alpha
    for i = 2, n do scale = scale + cr.float(rho[i]) * alpha end
    local anyv = cr.gt(vsum, 0)
    return cr.where(anyv, u * scale, xs[1] * 0)
  end,
}
