"""The prearchive: every source hands bytes and an Origin to ``receive()``."""
