local a = crucible.model("a") while true do end
