"""Small helpers shared by models, callbacks and commands (each exists once, here)."""
