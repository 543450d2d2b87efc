"""Sharded moves: one plan split into N shards that N workers run under an engine (issue 16)."""
