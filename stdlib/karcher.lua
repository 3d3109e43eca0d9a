-- karcher.lua — Karcher (Riemannian) mean on the unit sphere with equal
-- weights, scaled by the mean norm (mergekit karcher.py; merge-methods.md
-- §4.6). The iteration is unrolled max_iter times; once converged
-- (‖T‖ < tol) later iterations keep u, as mergekit's break does.
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
