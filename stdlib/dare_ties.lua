-- dare_ties.lua — DARE TIES (mergekit generalized_task_arithmetic.py + sparsify.py;
-- merge-methods.md §4.7): sparsifier "random", sign consensus true,
-- defaults normalize=false, rescale=true.
return {
  name = "dare_ties",
  pretty = "DARE TIES",
  url = "https://arxiv.org/abs/2311.03099",
  base = "required",
  inputs = { min = 1 },
  params = cr.gta_params(false, true),
  merge = function(ctx)
    return cr.gta(ctx, "random", true)
  end,
}
