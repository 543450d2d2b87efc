"""relocate: move an app off its cloud onto a plain Linux host over SSH."""

__version__ = "0.1.0"
