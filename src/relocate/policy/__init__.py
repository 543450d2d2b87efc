"""Acceptable-use profiles and the verdict engine (pure: no network, no side effects).

Entry points: `profiles.load_profiles`, `engine.evaluate`, `engine.verdict_for`, `engine.check`.
"""
