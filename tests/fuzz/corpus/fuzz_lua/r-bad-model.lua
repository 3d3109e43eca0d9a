local a = crucible.model("nope")
crucible.merge{ name = "x", method = "linear", inputs = { {a, "x"} } }
