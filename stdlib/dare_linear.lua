-- dare_linear.lua — Linear DARE (mergekit generalized_task_arithmetic.py + sparsify.py;
-- merge-methods.md §4.7): sparsifier "random", sign consensus false,
-- defaults normalize=false, rescale=true.
return {
  name = "dare_linear",
  pretty = "Linear DARE",
  url = "https://arxiv.org/abs/2311.03099",
  base = "required",
  inputs = { min = 1 },
  params = cr.gta_params(false, true),
  merge = function(ctx)
    return cr.gta(ctx, "random", false)
  end,
}
