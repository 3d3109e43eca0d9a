-- ties.lua — TIES (mergekit generalized_task_arithmetic.py + sparsify.py;
-- merge-methods.md §4.7): sparsifier "magnitude", sign consensus true,
-- defaults normalize=true, rescale=false.
return {
  name = "ties",
  pretty = "TIES",
  url = "https://arxiv.org/abs/2306.01708",
  base = "required",
  inputs = { min = 1 },
  params = cr.gta_params(true, false),
  merge = function(ctx)
    return cr.gta(ctx, "magnitude", true)
  end,
}
