-- greedy-soup.lua — the model-soup papers' greedy soup (Wortsman et al.
-- 2022, "Model soups", Recipe 1), run by `crucible soup --greedy` (and
-- `--uniform`). Copy and edit it, then pass it with --script FILE.
--
-- Greedy: rank the fine-tunes by their own held-out perplexity (lower is
-- better; ties keep the command line's order), start the soup with the
-- best, then try each next one: the uniform average of the soup plus it
-- is merged into a temporary folder and scored; it stays only if the
-- perplexity goes down. Uniform: the average of all of them.
-- The result is written with `crucible merge` of the recipe printed at
-- the end, and the ranking, every step and the choice go into its model
-- card. Every score is what `crucible eval OUT --text FILE` prints for
-- that merge.

local args = crucible.args()
local text = args.eval

-- The uniform average of a list of model paths as a mergekit recipe.
local function recipe(list)
  local lines = { "merge_method: linear", "parameters:", "  normalize: true", "models:" }
  for _, m in ipairs(list) do
    lines[#lines + 1] = string.format("  - model: %q", m)
    lines[#lines + 1] = "    parameters:"
    lines[#lines + 1] = "      weight: 1.0"
  end
  return table.concat(lines, "\n") .. "\n"
end

local function fmt(x) return string.format("%.6f", x) end

local card = { "", "## Soup", "" }
local function say(line)
  crucible.print(line)
  card[#card + 1] = line
end

local chosen
if args.mode == "uniform" then
  chosen = args.models
  local s = crucible.eval(recipe(chosen), text)
  say(string.format("uniform soup of %d models: perplexity %s (mean NLL %s)",
                    #chosen, fmt(s.perplexity), fmt(s.mean_nll)))
else
  -- 1. each model on its own
  local ranked = {}
  for i, m in ipairs(args.models) do
    local s = crucible.eval(m, text)
    ranked[#ranked + 1] = { model = m, index = i, score = s.perplexity }
  end
  table.sort(ranked, function(a, b)
    if a.score ~= b.score then return a.score < b.score end
    return a.index < b.index
  end)
  say("ranking (perplexity of each model alone):")
  say("")
  for r, e in ipairs(ranked) do say(string.format("%d. %s: %s", r, e.model, fmt(e.score))) end
  say("")
  -- 2. add one at a time, keep it only if the soup improves
  chosen = { ranked[1].model }
  local best = ranked[1].score
  say(string.format("step 1: %s: perplexity %s, kept", ranked[1].model, fmt(best)))
  for k = 2, #ranked do
    local trial = { table.unpack(chosen) }
    trial[#trial + 1] = ranked[k].model
    local s = crucible.eval(recipe(trial), text).perplexity
    local keep = s < best
    say(string.format("step %d: + %s: perplexity %s, %s", k, ranked[k].model, fmt(s),
                      keep and "kept" or "dropped"))
    if keep then chosen, best = trial, s end
  end
  say("")
  say(string.format("greedy soup: %d of %d models, perplexity %s", #chosen, #ranked, fmt(best)))
end

local yaml = recipe(chosen)
crucible.write(yaml, args.out)
card[#card + 1] = ""
card[#card + 1] = "Held-out text: `" .. text .. "`."
card[#card + 1] = ""
crucible.card(args.out, table.concat(card, "\n") .. "\n")
crucible.print("written: " .. args.out)
