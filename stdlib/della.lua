-- della.lua — DELLA (mergekit generalized_task_arithmetic.py + sparsify.py;
-- merge-methods.md §4.7): sparsifier "della", sign consensus true,
-- defaults normalize=true, rescale=true.
return {
  name = "della",
  pretty = "DELLA",
  url = "https://arxiv.org/abs/2406.11617",
  base = "required",
  inputs = { min = 1 },
  params = cr.gta_params(true, true, { name = "epsilon", scope = "model", kind = "number", default = 0.15 }),
  merge = function(ctx)
    return cr.gta(ctx, "della", true)
  end,
}
