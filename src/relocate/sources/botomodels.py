"""botocore's model loader with two start-up costs taken out (issue 18).

Making a client loads a few big JSON models (S3's service model and endpoint rules,
the partitions' endpoints: ~3.5 MB) and, before the service model, lists every service
botocore knows to check that the one asked for is among them. On the path from a
`move`'s start to its first GET that cost (measured alone, this machine):

- the JSON read into OrderedDicts (`object_pairs_hook`): 70 ms where plain dicts, which
  keep their order too, take 37 ms;
- the list of services: ~420 directories listed and ~2,700 files looked for, ~35 ms,
  where looking for the one service asked for is a handful of stats.

Everything else is botocore's own Loader: the search paths (AWS_DATA_PATH, ~/.aws/models,
the built-in data), API versions, the sdk-extras merged into the models. The full list
of services is still there for whoever iterates over it (an unknown service's error
message names them).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from typing import Any, Callable, Iterator

from botocore.exceptions import DataNotFoundError
from botocore.loaders import JSONFileLoader, Loader

_OPENERS: tuple[tuple[str, Callable[..., Any]], ...] = ((".json", open), (".json.gz", gzip.open))  # botocore's order


class _PlainJson(JSONFileLoader):  # type: ignore[misc]  # botocore ships no type hints
    """botocore's JSON file loader, into plain dicts."""

    def load_file(self, file_path: str) -> Any:
        for ext, opener in _OPENERS:
            path = file_path + ext
            if os.path.isfile(path):
                with opener(path, "rb") as fh:
                    return json.loads(fh.read())
        return None


class _Services(Sequence[str]):
    """The services that have a `type_name` model: `in` looks for that one service; the
    whole sorted list is made only when something iterates over it."""

    def __init__(self, loader: "ModelLoader", type_name: str) -> None:
        self._loader, self._type = loader, type_name
        self._all: list[str] | None = None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or not name or os.sep in name or name in (".", ".."):
            return False
        try:
            return bool(self._loader.list_api_versions(name, self._type))
        except DataNotFoundError:
            return False

    def _listed(self) -> list[str]:
        if self._all is None:
            self._all = Loader.list_available_services(self._loader, self._type)
        return self._all

    def __getitem__(self, index: Any) -> Any:
        return self._listed()[index]

    def __len__(self) -> int:
        return len(self._listed())

    def __iter__(self) -> Iterator[str]:
        return iter(self._listed())


class ModelLoader(Loader):  # type: ignore[misc]  # botocore ships no type hints
    FILE_LOADER_CLASS = _PlainJson

    def list_available_services(self, type_name: str) -> Sequence[str]:
        return _Services(self, type_name)


def model_loader(data_path: str | None) -> ModelLoader:
    """The loader botocore's session would make for its `data_path` (AWS_DATA_PATH)."""
    if not data_path:
        return ModelLoader()
    return ModelLoader(extra_search_paths=[os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)])
