"""Plain ``nn.Module`` networks: no Lightning, no losses, no logging."""
