-- common.lua — shared helpers for merge methods, built only from the
-- generic `cr` operations. Every function returned here joins the `cr`
-- table (cr.sum_of, cr.task_vectors, ...), so methods call them directly.
local M = {}

-- torch's multi_row_sum over a list of values (SumKernel.cpp): one
-- accumulator chain in list order, cascaded every 16 values into 3 more
-- levels (nil stands for torch's 0).
local function add0(a, b)
  if a == nil then return b end
  if b == nil then return a end
  return a + b
end
local function multi_row_sum(xs)
  local n = #xs
  local lg = 0
  while (1 << lg) < n do lg = lg + 1 end
  local power = math.max(4, lg // 4)
  local step, mask = 1 << power, (1 << power) - 1
  local acc, i = {}, 0
  while i + step <= n do
    for _ = 1, step do i = i + 1; acc[1] = add0(acc[1], xs[i]) end
    for lev = 2, 4 do
      acc[lev] = add0(acc[lev], acc[lev - 1])
      acc[lev - 1] = nil
      if i & (mask << ((lev - 1) * power)) ~= 0 then break end
    end
  end
  while i < n do i = i + 1; acc[1] = add0(acc[1], xs[i]) end
  for lev = 2, 4 do acc[1] = add0(acc[1], acc[lev]) end
  return acc[1]
end
-- torch's row_sum: four interleaved chains (values k, k+4, k+8, ...), the
-- leftovers added to the first, then ((p1 + p2) + p3) + p4.
local function row_sum(xs)
  local q = #xs // 4
  local p = {}
  for k = 1, 4 do
    local part = {}
    for r = 0, q - 1 do part[#part + 1] = xs[4 * r + k] end
    p[k] = q > 0 and multi_row_sum(part) or nil
  end
  for i = 4 * q + 1, #xs do p[1] = add0(p[1], xs[i]) end
  return add0(add0(add0(p[1], p[2]), p[3]), p[4])
end

-- Sum of a list of values as torch's `stack(list).sum(dim=0)` computes it
-- (spec/mergekit-0.1.5.md R3): accumulated in float32 (float64 for f64),
-- rounded once to the list's dtype, 0 + … (an all −0 sum is +0). Element
-- j of an N-element tensor: for j < 32·⌊N/32⌋ (16·⌊N/16⌋ for f64) the
-- models in list order (multi_row_sum), for the last N mod 32 row_sum's
-- interleaved order — another order from 5 values on; tensors under 8
-- elements (16 for bf16/f16, 4 for f64) use 4·⌊N/4⌋. A list of scalars is
-- a contiguous 1-D sum (R4: torch_sum_scalars). Row or column vectors are
-- summed in list order (torch's outer order up to 4 values).
-- Checked against torch 2.15 for 1-70 values and 2-720 elements.
function M.sum_of(list)
  local dt = list[1].dtype
  for i = 2, #list do dt = cr.promote(dt, list[i].dtype) end
  local acc_dt = dt == "float64" and "float64" or "float32"
  local xs, x1, other = {}, nil, false
  for i, v in ipairs(list) do
    xs[i] = v:cast(acc_dt)
    if v.kind == "tensor" then x1 = x1 or v elseif v.kind ~= "scalar" then other = true end
  end
  if x1 == nil and not other then
    return (M.torch_sum_scalars(xs, dt ~= "float32" and dt ~= "float64") + 0):cast(dt)
  end
  local s = multi_row_sum(xs)
  if #xs > 4 and not other then
    local N = x1.numel
    local small = dt == "float32" and 8 or dt == "float64" and 4 or 16
    local block = dt == "float64" and 16 or 32
    local lim = N >= small and block * (N // block) or 4 * (N // 4)
    if lim == 0 then s = row_sum(xs)
    elseif lim < N then s = cr.where(cr.tail_mask(x1, N - lim), row_sum(xs), s) end
  end
  return (s + 0):cast(dt)
end

-- torch's 1-D sum of a few float32 scalars (torch.stack(list).sum() /
-- .mean() on CPU, spec/mergekit-0.1.5.md R4): with `reduced` (the values
-- came from bf16/f16, loaded 16 at a time) or fewer than 8 values,
-- row_sum's four interleaved accumulators, the leftovers added to the
-- first, then ((p0 + p1) + p2) + p3; else 8 lanes over whole vectors of 8,
-- 0 plus the leftover values in order, plus lane 0 … lane 7. float64
-- values use 4 lanes (a vector of 4 doubles) from 4 values on. Checked
-- against torch 2.15 for 1-15 values, f32 and f64 (whole vectors beyond 3,
-- from 32 f32 values, would need row_sum over the vectors: not done).
function M.torch_sum_scalars(list, reduced)
  local n = #list
  local W = list[1].dtype == "float64" and 4 or 8
  if reduced and n >= 16 or not reduced and n >= W then
    local nv = n // W
    local lanes = {}
    for l = 1, W do
      local a = list[l]
      for v = 1, nv - 1 do a = a + list[v * W + l] end
      lanes[l] = a
    end
    local s = nil
    for i = nv * W + 1, n do s = s and s + list[i] or list[i] end
    for l = 1, W do s = s and s + lanes[l] or lanes[l] end
    return s
  end
  local q = n - n % 4
  local p = {}
  for k = 1, 4 do
    local a = list[k]
    if a ~= nil and k <= q then
      for j = k + 4, q, 4 do a = a + list[j] end
    end
    p[k] = k <= q and a or nil
  end
  if q == 0 then
    local s = list[1]
    for i = 2, n do s = s + list[i] end
    return s
  end
  for i = q + 1, n do p[1] = p[1] + list[i] end
  return ((p[1] + p[2]) + p[3]) + p[4]
end

-- The weights of a list of inputs as `torch.tensor(weights, dtype=dt)`:
-- each rounded to dt (0.6 becomes 0.6015625 in bfloat16).
function M.weights_of(inputs, dt, name)
  name = name or "weight"
  local ws = {}
  for i, x in ipairs(inputs) do
    local w = x.params[name]
    if w == nil then cr.error("model " .. x.model .. " has no '" .. name .. "' for " .. x.name) end
    ws[i] = cr.const(w, dt)
  end
  return ws
end

-- Task vectors of the task-arithmetic family (merge-methods.md §4.7):
-- every non-base input cast to the base dtype, minus the base (mergekit
-- 0.1.4; under 0.1.5 the compiler has already cast every input to the
-- group's promoted dtype, so the cast does nothing). Returns the base and a
-- list of { delta = δ, input = x }.
function M.task_vectors(ctx)
  local B = ctx.base
  if B == nil then cr.error(ctx.name .. ": this method needs a base model") end
  local tvs = {}
  for _, x in ipairs(ctx.others) do
    tvs[#tvs + 1] = { delta = x:cast(B.dtype) - B, input = x }
  end
  return B, tvs
end

-- L1 rescale of a masked task vector (sparsify.py, rescaled_masked_tensor):
-- δ⊙m · (Σ|δ| / Σ|δ⊙m|) unless either sum is below 1e-7.
function M.l1_rescale(delta, mask)
  local kept = delta * mask
  local a = cr.torch_sum(cr.abs(delta))
  local b = cr.torch_sum(cr.abs(kept))
  local eps = cr.const(1e-7, a.dtype)   -- torch compares in the tensor dtype
  local small = cr.lor(cr.lt(a, eps), cr.lt(b, eps))
  return cr.where(small, kept, kept * (a / b))
end

-- TIES "sum" sign election over weighted deltas: 1 where a model's sign
-- agrees with the sign of the sum (ties of the sum count as +1).
function M.sign_agreement(wds)
  local total = M.sum_of(wds)
  local maj = cr.where(cr.ge(total, 0), 1, -1)
  local masks = {}
  for i, wd in ipairs(wds) do masks[i] = cr.eq(cr.sign(wd), maj) end
  return masks
end

-- The generalized task arithmetic of mergekit (§4.7). opts:
--   sparsify(delta, input) -> delta   optional sparsifier per task vector
--   consensus = true                  TIES sign election
function M.task_arithmetic(ctx, opts)
  local B, tvs = M.task_vectors(ctx)
  if #tvs == 0 then return B end
  local dt = B.dtype
  local p = ctx.params
  local wds, ws = {}, {}
  for i, tv in ipairs(tvs) do
    local d = tv.delta
    if opts.sparsify then d = opts.sparsify(d, tv.input) end
    local w = tv.input.params.weight
    if w == nil then cr.error("model " .. tv.input.model .. " has no 'weight' for " .. ctx.name) end
    ws[i] = cr.const(w, dt)
    wds[i] = d * ws[i]
  end
  local mixed, div
  if opts.consensus then
    local masks = M.sign_agreement(wds)
    local kept, wk = {}, {}
    for i = 1, #wds do
      kept[i] = wds[i] * masks[i]
      wk[i] = ws[i] * masks[i]
    end
    mixed = M.sum_of(kept)
    div = M.sum_of(wk)
    div = cr.where(cr.eq(div, 0), 1, div)
  else
    mixed = M.sum_of(wds)
    div = M.sum_of(ws)
    div = cr.where(cr.lt(cr.abs(div), 1e-8), 1, div)
  end
  if p.normalize then mixed = mixed / div end
  if p.lambda ~= nil and p.lambda ~= 1 then mixed = mixed * p.lambda end
  return (B + mixed):cast(dt)
end

-- ---- sparsifiers (mergekit sparsify.py; merge-methods.md §4.7) -----------
-- Each takes the task vector δ of one model and returns the sparsified δ,
-- L1-rescaled when `rescale` is set. `ctx` gives the element count.

local function numel(ctx)
  local n = 1
  for _, d in ipairs(ctx.shape) do n = n * d end
  return n
end
M.numel = numel

-- int(x) of a double, as Python's int() truncates toward zero.
local function int(x) if x < 0 then return -math.floor(-x) end return math.floor(x) end

-- torch.zeros_like(δ): 0 in δ's dtype everywhere, also where δ is NaN or
-- infinite (δ · 0 would keep those).
local function zeros_like(delta)
  local zero = cr.const(0, delta.dtype)
  return cr.where(cr.eq(delta, delta), zero, zero)
end

local function rescaled(delta, mask, rescale)
  if rescale then return M.l1_rescale(delta, mask) end
  return delta * mask
end

-- magnitude (TIES): keep exactly k = int(d·N) largest |δ|, the ones
-- torch.argsort(|δ|, descending=True)[:k] keeps when several equal the k-th
-- (spec/compat.md). mergekit 0.1.4: k = 0 is an error (an assertion), here
-- too. 0.1.5: density <= 0 (or an empty tensor) gives zeros and
-- k = max(1, int(d·N)), so a positive density keeps at least one element.
function M.magnitude(ctx, delta, density, rescale)
  if density >= 1 then return delta end
  local n = numel(ctx)
  if ctx.mergekit_version ~= "0.1.4" then
    if density <= 0 or n == 0 then return zeros_like(delta) end
    return rescaled(delta, cr.topk_mask(delta, math.max(1, int(density * n)), "torch_desc"), rescale)
  end
  local k = int(density * n)
  if k <= 0 then
    cr.error(string.format("%s: density %g keeps no element of %d (k = int(density*numel) = 0)",
                           ctx.name, density, n))
  end
  return rescaled(delta, cr.topk_mask(delta, k, "torch_desc"), rescale)
end

-- The mask of positions [start, stop) of torch.sort(|δ|) (ascending), with
-- Python's slice rules (a negative bound counts from the end, bounds are
-- clamped to [0, n]): in the n − start largest but not in the n − stop
-- largest, both cut from that one sort's order.
local function asc_slice(delta, n, start, stop)
  local function norm(i)
    if i < 0 then i = i + n end
    return math.min(math.max(i, 0), n)
  end
  start, stop = norm(start), norm(stop)
  if stop <= start then return nil end
  local keep = cr.topk_mask(delta, n - start, "torch_asc")
  if stop < n then keep = cr.land(keep, cr.lnot(cr.topk_mask(delta, n - stop, "torch_asc"))) end
  return keep
end

-- magnitude_outliers (breadcrumbs): drop the `top` largest and the `bot`
-- smallest |δ| (target = int(d·N), top = int(γ·N), both truncated).
-- mergekit 0.1.4: bot = N − target − top; bot < 0 moves into top; keeps
-- sorted positions [bot : −top], so top == 0 keeps nothing (its empty
-- slice, QUIRK kept for agreement). 0.1.5: bot = max(0, N − target − top),
-- keeps [bot : bot + target] (spec/mergekit-0.1.5.md §4.4).
function M.magnitude_outliers(ctx, delta, density, gamma, rescale)
  if density >= 1 then return delta end
  local n = numel(ctx)
  local target, top = int(density * n), int(gamma * n)
  local zero = cr.const(0, delta.dtype)
  if ctx.mergekit_version ~= "0.1.4" then
    local bot = math.max(0, n - target - top)
    local keep = asc_slice(delta, n, bot, bot + target)
    if keep == nil then return zeros_like(delta) end
    return rescaled(delta, keep, rescale)
  end
  local bot = n - target - top
  if bot < 0 then top = top + bot; bot = 0 end
  if top <= 0 then return rescaled(delta, zero, rescale) end
  return rescaled(delta, asc_slice(delta, n, bot, n - top) or zero, rescale)
end

-- The work dtype of the random sparsifiers on CPU: f16 → f32, bf16 stays.
local function work_dtype(dt)
  if dt == "float16" then return "float32" end
  return dt
end

-- random (DARE): keep each element with probability p = density (rounded
-- to the work dtype, as torch.full_like(density) is), from cr.rand.
function M.bernoulli(ctx, delta, density, rescale, key)
  if density >= 1 then return delta end
  local wd = work_dtype(delta.dtype)
  local d = delta:cast(wd)
  local keep = cr.lt(cr.rand(ctx, key), cr.const(density, wd))
  return rescaled(d, keep, rescale):cast(delta.dtype)
end

-- della_magprune (DELLA): keep probability grows linearly with the rank of
-- |δ| along dim 1 from d − ε to d + ε.
function M.della(ctx, delta, density, epsilon, rescale, key)
  if density >= 1 then return delta end
  if density <= 0 then return delta * 0 end
  if density + epsilon >= 1 or density - epsilon <= 0 then
    cr.error(string.format("%s: DELLA epsilon %g must keep density %g +/- epsilon inside (0, 1)",
                           ctx.name, epsilon, density))
  end
  local shape = ctx.shape
  if #shape > 2 then
    cr.error(ctx.name .. ": DELLA on tensors of more than 2 dimensions is not supported (mergekit ranks along dim 1)")
  end
  local n = shape[#shape]
  if #shape == 1 then n = shape[1] end
  if n < 2 then
    cr.error(ctx.name .. ": DELLA needs at least 2 elements per row (mergekit divides by zero here)")
  end
  local wd = work_dtype(delta.dtype)
  local d = delta:cast(wd)
  local ranks = cr.row_rank(d)                       -- 1..n, in the work dtype
  local rank_norm = cr.clamp((ranks - 1) / (n - 1), 0, 1)
  local probs = (rank_norm * 2) * epsilon + (density - epsilon)
  local keep = cr.lt(cr.rand(ctx, key), probs)
  return rescaled(d, keep, rescale):cast(delta.dtype)
end

-- ---- SLERP coefficients --------------------------------------------------

-- Whole-tensor SLERP as mergekit's slerp.py computes it in NumPy float32:
-- norms are np.linalg.norm (BLAS sdot order, cr.np_norm), the cosine is
-- np.sum in NumPy's pairwise order (cr.np_sum); vectors are normalised only
-- when their norm exceeds eps; |cos| > 0.9995 lerps; np.arccos and np.sin
-- are NumPy's own float32 functions (cr.np_acos, cr.np_sin). Python floats meeting
-- float32 scalars are rounded to float32 first (NumPy 2, NEP 50).
-- Returns the f32 result.
function M.slerp(t, a, b)
  local f32 = function(x) return cr.const(x, "float32") end
  local v0, v1 = a:cast("float32"), b:cast("float32")
  local n0, n1 = cr.np_norm(v0), cr.np_norm(v1)
  local eps = f32(1e-8)
  local u0 = v0 / cr.where(cr.gt(n0, eps), n0, 1)
  local u1 = v1 / cr.where(cr.gt(n1, eps), n1, 1)
  local c = cr.np_sum(u0 * u1)
  local lin = cr.gt(cr.abs(c), f32(0.9995))
  local theta = cr.np_acos(cr.where(lin, 0, c))
  local sin_theta = cr.np_sin(theta)
  local theta_t = theta * f32(t)
  local s0 = cr.np_sin(theta - theta_t) / sin_theta
  local s1 = cr.np_sin(theta_t) / sin_theta
  local ca = cr.where(lin, f32(1 - t), s0)
  local cb = cr.where(lin, f32(t), s1)
  return ca * v0 + cb * v1
end

-- Whole-tensor SLERP as mergekit 0.1.5's slerp.py computes it in torch
-- (spec/mergekit-0.1.5.md §3.2), for one group (G = 1): work dtype float32
-- (float64 for f64 inputs); norms in torch's norm-2 order; a norm not above
-- 1e-8 becomes 1; the cosine is torch's cascade sum of the normalised
-- products, clamped to [-1, 1]; |cos| > 0.9995 lerps with 1 − t and t;
-- else sin((1 − t)·θ)/sin θ and sin(t·θ)/sin θ, t and 1 − t float32.
-- torch.acos/sin are MKL VML HA there; cr.acos/cr.sin are correctly rounded
-- (spec/compat.md). mergekit chunks the norms and the dot every 1 048 576
-- elements (norm of the chunk norms, sum of the chunk sums), and so does
-- this (cr.torch_chunked_norm/sum) above one chunk; one chunk gives the
-- same bits as the whole tensor (sqrt(fl(n²)) = n). float64 work keeps the
-- f64 sums unchunked. Returns the result in the work dtype.
function M.slerp_torch(t, a, b)
  local wd = (a.dtype == "float64" or b.dtype == "float64") and "float64" or "float32"
  local function w(x) return cr.const(x, wd) end
  local x, y = a:cast(wd), b:cast(wd)
  -- slerp.py reduces chunks of 2^20 elements (_CHUNK_ELEMENTS): the norm of
  -- the chunk norms, the sum of the chunk sums; one chunk is the plain torch
  -- norm and sum (sqrt(fl(n^2)) == n)
  local chunked = a.numel > 1048576
  local norm = chunked and cr.torch_chunked_norm or cr.torch_norm
  local sum = chunked and cr.torch_chunked_sum or cr.torch_sum
  local na, nb
  if wd == "float32" then na, nb = norm(x), norm(y)
  else na, nb = x:norm(), y:norm() end
  na = cr.where(cr.gt(na, w(1e-8)), na, 1)
  nb = cr.where(cr.gt(nb, w(1e-8)), nb, 1)
  local prod = (x / na) * (y / nb)
  local dot = wd == "float32" and sum(prod) or prod:sum()
  dot = cr.clamp(dot, -1, 1)
  local lin = cr.gt(cr.abs(dot), w(0.9995))
  local theta = cr.acos(cr.where(lin, 0, dot))
  local sin_theta = cr.sin(theta)
  local tt = w(t)                                   -- torch.tensor(t, f32)
  local omt = w(1) - tt                             -- 1 - t: rsub in f32
  local ca = cr.where(lin, omt, cr.sin(omt * theta) / sin_theta)
  local cb = cr.where(lin, tt, cr.sin(tt * theta) / sin_theta)
  return ca * x + cb * y
end

-- n-ary sum of boolean masks as an integer count (torch sums bools to int64).
function M.count_of(masks)
  local c = masks[1]:cast("int64")
  for i = 2, #masks do c = c + masks[i]:cast("int64") end
  return c
end

-- The shared part of ram and ramplus_tl (ram.py _prepare_ram_vectors):
-- task vectors T_k, active masks |T_k| > ε, the count c of active models,
-- unique (c == 1) and shared (c > 1) masks, Z_k = T_k ⊙ active_k, and the
-- divisor c.clamp(min=1) as an integer tensor, so that Z_k / div stays in
-- the inputs' dtype (cr.max with a Lua number would be torch.maximum with a
-- Python float: an int64 count against a float makes float32).
function M.ram_parts(ctx)
  local B = ctx.base
  local eps = ctx.params.epsilon
  local r = { z = {}, active = {} }
  for k, x in ipairs(ctx.others) do
    local t = x - B
    r.active[k] = cr.gt(cr.abs(t), eps)
    r.z[k] = t * r.active[k]
  end
  local c = M.count_of(r.active)
  r.unique = cr.eq(c, 1)
  r.shared = cr.gt(c, 1)
  r.div = cr.clamp(c, 1, math.huge)
  return r
end

-- The task-arithmetic family with a named sparsifier (§4.7 variant table).
--   kind: "magnitude" | "outliers" | "random" | "della" | nil
function M.gta(ctx, kind, consensus)
  local p = ctx.params
  local sparsify = nil
  if kind then
    sparsify = function(delta, x)
      local d = x.params.density
      if d == nil then d = 1.0 end
      local key = "sparsify:" .. tostring(x.index)
      if kind == "magnitude" then return M.magnitude(ctx, delta, d, p.rescale) end
      if kind == "outliers" then
        local g = x.params.gamma
        if g == nil then g = 0.01 end
        return M.magnitude_outliers(ctx, delta, d, g, p.rescale)
      end
      if kind == "random" then return M.bernoulli(ctx, delta, d, p.rescale, key) end
      local e = x.params.epsilon
      if e == nil then e = 0.15 end
      return M.della(ctx, delta, d, e, p.rescale, key)
    end
  end
  return M.task_arithmetic(ctx, { sparsify = sparsify, consensus = consensus })
end

-- Parameter lists of the task-arithmetic family.
function M.gta_params(normalize, rescale, extra)
  local ps = {
    { name = "int8_mask", scope = "global", kind = "bool", default = false },
    { name = "normalize", scope = "global", kind = "bool", default = normalize },
    { name = "rescale", scope = "global", kind = "bool", default = rescale },
    { name = "lambda", scope = "global", kind = "number", default = 1.0 },
    { name = "weight", scope = "model", kind = "number", required = true },
    { name = "density", scope = "model", kind = "number", default = 1.0 },
  }
  if extra then ps[#ps + 1] = extra end
  return ps
end

return M
