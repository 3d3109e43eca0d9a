local a = crucible.model("a")
local n = a.tensors[1].name
crucible.merge{ name = n, method = "passthrough", inputs = { {a, n} } }
crucible.merge{ name = n, method = "passthrough", inputs = { {a, n} } }
