-- della_linear.lua — Linear DELLA (mergekit generalized_task_arithmetic.py + sparsify.py;
-- merge-methods.md §4.7): sparsifier "della", sign consensus false,
-- defaults normalize=false, rescale=true.
return {
  name = "della_linear",
  pretty = "Linear DELLA",
  url = "https://arxiv.org/abs/2406.11617",
  base = "required",
  inputs = { min = 1 },
  params = cr.gta_params(false, true, { name = "epsilon", scope = "model", kind = "number", default = 0.15 }),
  merge = function(ctx)
    return cr.gta(ctx, "della", false)
  end,
}
