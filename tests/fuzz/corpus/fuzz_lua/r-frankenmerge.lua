-- frankenmerge.lua — a whole recipe in Lua: stack layers of two models
-- into a deeper one, choosing a method per tensor.
--   out layers 0..n-1   : model A's layers, attention slerped towards B
--   out layers n..2n-1  : model B's layers copied (passthrough)
-- Pre/post weights (embeddings, final norm, lm_head) are the mean of A and
-- B with an inline function. The output has 2n layers (config from A).
-- Run: crucible merge examples/recipes/frankenmerge.lua OUT --models-dir DIR
-- (DIR holding the models `a` and `b` of the same architecture).
local a = crucible.model("a")
local b = crucible.model("b")
crucible.settings{ donor = a, num_layers = 2 * a.n_layers, dtype = "bfloat16" }

local mean = function(ctx) return (ctx.inputs[1] + ctx.inputs[2]) / 2 end
for _, name in ipairs(a.pre) do
  crucible.merge{ name = name, method = mean, inputs = { {a, name}, {b, name} } }
end
local n, prefix = a.n_layers, a.layer_prefix
for i = 0, n - 1 do
  for _, rest in ipairs(a.layers[i + 1]) do
    local src = prefix .. "." .. i .. "." .. rest
    if rest:find("self_attn", 1, true) then
      crucible.merge{ name = src, method = "slerp", params = { t = 0.25 },
                      inputs = { {a, src, base = true}, {b, src} } }
    else
      crucible.merge{ name = src, method = "passthrough", inputs = { {a, src} } }
    end
  end
end
for i = 0, n - 1 do
  for _, rest in ipairs(b.layers[i + 1]) do
    crucible.merge{ name = prefix .. "." .. (n + i) .. "." .. rest, layer = n + i,
                    method = "passthrough", inputs = { {b, prefix .. "." .. i .. "." .. rest} } }
  end
end
for _, name in ipairs(a.post) do
  crucible.merge{ name = name, method = mean, inputs = { {a, name}, {b, name} } }
end
