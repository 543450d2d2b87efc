"""`relocate demo`: an embedded source cloud (moto) and SSH target, no account needed."""
