-- _pending.lua — declarations of the mergekit methods whose Lua
-- implementation has not landed yet (branch `golden` writes them as
-- stdlib/NAME.lua). The registry uses an entry here only when no NAME.lua
-- exists, so recipes validate; merging with one fails with "not implemented
-- yet". Delete this file once every method has its own file.
local function pending(decl)
  decl.merge = function(ctx)
    cr.error("merge method '" .. decl.name .. "' is not implemented yet")
  end
  return decl
end

local function gta(norm, resc, extra)
  local ps = {
    { name = "int8_mask", scope = "global", kind = "bool", default = false },
    { name = "normalize", scope = "global", kind = "bool", default = norm },
    { name = "rescale", scope = "global", kind = "bool", default = resc },
    { name = "lambda", scope = "global", kind = "number", default = 1.0 },
    { name = "weight", scope = "model", kind = "number", required = true },
    { name = "density", scope = "model", kind = "number", default = 1.0 },
  }
  if extra then ps[#ps + 1] = extra end
  return ps
end

local req, opt, unused = "required", "optional", "unused"
local arxiv = "https://arxiv.org/abs/"
return { pending = {
  pending { name = "slerp", pretty = "SLERP", url = "https://en.wikipedia.org/wiki/Slerp", base = req,
            inputs = { min = 1, max = 1 }, params = { { name = "t", scope = "global", required = true } } },
  pending { name = "nuslerp", pretty = "NuSLERP", base = opt, inputs = { min = 2, max = 2 },
            params = { { name = "nuslerp_row_wise", kind = "bool", default = false },
                       { name = "nuslerp_flatten", kind = "bool", default = true },
                       { name = "weight", scope = "model", required = true } } },
  pending { name = "multislerp", pretty = "Multi-SLERP", url = "https://goddard.blog/posts/multislerp-wow-what-a-cool-idea",
            base = opt, inputs = { min = 1 },
            params = { { name = "normalize_weights", default = 1 }, { name = "eps", default = 1e-8 },
                       { name = "weight", scope = "model", required = true } } },
  pending { name = "karcher", pretty = "Karcher Mean", url = "https://en.wikipedia.org/wiki/Karcher_mean",
            base = unused, inputs = { min = 1 },
            params = { { name = "max_iter", default = 10 }, { name = "tol", default = 1e-5 } } },
  pending { name = "ties", pretty = "TIES", url = arxiv .. "2306.01708", base = req, inputs = { min = 1 }, params = gta(true, false) },
  pending { name = "dare_ties", pretty = "DARE TIES", url = arxiv .. "2311.03099", base = req, inputs = { min = 1 }, params = gta(false, true) },
  pending { name = "dare_linear", pretty = "Linear DARE", url = arxiv .. "2311.03099", base = req, inputs = { min = 1 }, params = gta(false, true) },
  pending { name = "breadcrumbs", pretty = "Model Breadcrumbs", url = arxiv .. "2312.06795", base = req, inputs = { min = 1 },
            params = gta(false, false, { name = "gamma", scope = "model", default = 0.01 }) },
  pending { name = "breadcrumbs_ties", pretty = "Model Breadcrumbs with TIES", url = arxiv .. "2312.06795", base = req,
            inputs = { min = 1 }, params = gta(false, false, { name = "gamma", scope = "model", default = 0.01 }) },
  pending { name = "della", pretty = "DELLA", url = arxiv .. "2406.11617", base = req, inputs = { min = 1 },
            params = gta(true, true, { name = "epsilon", scope = "model", default = 0.15 }) },
  pending { name = "della_linear", pretty = "Linear DELLA", url = arxiv .. "2406.11617", base = req, inputs = { min = 1 },
            params = gta(false, true, { name = "epsilon", scope = "model", default = 0.15 }) },
  pending { name = "sce", pretty = "SCE", url = arxiv .. "2408.07990", base = req, inputs = { min = 0 },
            params = { { name = "int8_mask", default = 0 }, { name = "select_topk", default = 1.0 } } },
  pending { name = "ram", pretty = "Reinforced Agent Merging", url = arxiv .. "2601.13572", base = req, inputs = { min = 0 },
            params = { { name = "epsilon", default = 1e-5 } } },
  pending { name = "ramplus_tl", pretty = "Reinforced Agent Merging Plus (Tensor-Local)", url = arxiv .. "2601.13572",
            base = req, inputs = { min = 0 },
            params = { { name = "r", default = 0.1 }, { name = "alpha", default = 0.2 }, { name = "epsilon", default = 1e-5 } } },
  pending { name = "model_stock", pretty = "Model Stock", url = arxiv .. "2403.19522", base = req, inputs = { min = 2 },
            params = { { name = "filter_wise", kind = "bool", default = false } } },
  pending { name = "nearswap", pretty = "NearSwap", url = "https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001",
            base = req, inputs = { min = 1, max = 1 }, params = { { name = "t", required = true } } },
  pending { name = "arcee_fusion", pretty = "Arcee Fusion", url = "https://arcee.ai", base = req,
            inputs = { min = 1, max = 1 }, params = {} },
} }
