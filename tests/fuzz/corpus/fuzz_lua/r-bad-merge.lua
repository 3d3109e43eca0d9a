local a = crucible.model("a")
crucible.settings{ dtype = "float64", donor = 3, num_layers = -1 }
crucible.merge{ name = a.tensors[1].name, method = "no_such", inputs = { {a, "missing.weight"} } }
