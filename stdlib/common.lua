-- common.lua — shared helpers for merge methods, built only from the
-- generic `cr` operations. Every function returned here joins the `cr`
-- table (cr.sum_of, cr.task_vectors, ...), so methods call them directly.
local M = {}

-- Sum of a list of values as torch's `stack(list).sum(dim=0)` computes it:
-- accumulated in float32 in list order, rounded once to the list's dtype.
function M.sum_of(list)
  local dt = list[1].dtype
  for i = 2, #list do dt = cr.promote(dt, list[i].dtype) end
  local acc = list[1]:cast("float32")
  for i = 2, #list do acc = acc + list[i]:cast("float32") end
  return acc:cast(dt)
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
-- every non-base input cast to the base dtype, minus the base. Returns the
-- base and a list of { delta = δ, input = x }.
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
  local a = cr.abs(delta):sum()
  local b = cr.abs(kept):sum()
  local small = cr.lor(cr.lt(a, 1e-7), cr.lt(b, 1e-7))
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

return M
