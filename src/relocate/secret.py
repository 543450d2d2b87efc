"""Secret values as a type, so that printing or logging one cannot leak it."""

from __future__ import annotations

from typing import NoReturn


class Secret:
    """Holds a value that must never be shown. `reveal()` is the only way out,
    called only where the value is finally handed to a file or a process's stdin."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret('***')"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> NoReturn:  # pickling would carry the value out of the type
        raise TypeError("Secret values cannot be pickled")
