"""Where the app goes: the target's files, layout, runtimes and facts, over relocate.ssh."""
