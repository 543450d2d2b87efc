"""The one place with side effects on targets: runs a Plan's steps, journals, verifies."""
