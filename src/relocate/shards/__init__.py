"""Shards: one move split into N key ranges that N copies of relocate run side by side
(issue 16). partition.py cuts the ranges (pure), engines.py reads a worker's index from
the batch engine's own variable, worker.py moves one shard, state.py is what each shard
records on the target (what `status`, `move --finish` and `verify plan.json` read)."""
