"""The domain engine: hot state in Redis, changed only by the Lua scripts in ``lua/``."""
