-- breadcrumbs_ties.lua — Model Breadcrumbs with TIES (mergekit generalized_task_arithmetic.py + sparsify.py;
-- merge-methods.md §4.7): sparsifier "outliers", sign consensus true,
-- defaults normalize=false, rescale=false.
return {
  name = "breadcrumbs_ties",
  pretty = "Model Breadcrumbs with TIES",
  url = "https://arxiv.org/abs/2312.06795",
  base = "required",
  inputs = { min = 1 },
  params = cr.gta_params(false, false, { name = "gamma", scope = "model", kind = "number", default = 0.01 }),
  merge = function(ctx)
    return cr.gta(ctx, "outliers", true)
  end,
}
