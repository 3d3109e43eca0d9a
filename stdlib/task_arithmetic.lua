-- task_arithmetic.lua — B + Σ w_k (X_k − B), optionally normalised by Σ w
-- and scaled by lambda (mergekit generalized_task_arithmetic.py, no
-- sparsifier, no sign consensus; merge-methods.md §4.7).
return {
  name = "task_arithmetic",
  pretty = "Task Arithmetic",
  url = "https://arxiv.org/abs/2212.04089",
  base = "required",
  inputs = { min = 1 },
  params = {
    { name = "int8_mask", scope = "global", kind = "bool", default = false },
    { name = "normalize", scope = "global", kind = "bool", default = false },
    { name = "rescale", scope = "global", kind = "bool", default = false },
    { name = "lambda", scope = "global", kind = "number", default = 1.0 },
    { name = "weight", scope = "model", kind = "number", required = true },
    { name = "density", scope = "model", kind = "number", default = 1.0 },
  },
  merge = function(ctx)
    return cr.task_arithmetic(ctx, {})
  end,
}
