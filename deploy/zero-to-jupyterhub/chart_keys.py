"""The key paths a Zero to JupyterHub values file may use, read from the chart's values schema.

    cd deploy/zero-to-jupyterhub
    python chart_keys.py PATH/TO/jupyterhub/values.schema.json --source "chart VERSION, FILE" > chart-keys.yaml

writes the list that tests/course/test_deploy_z2jh.py checks values.yaml against when no chart is at hand.
Notation of a path: `a.b.c` is a key; `*` stands for any one key whose name you choose (labels, extraFiles
entries); a path ending in `.**` lets anything below it through (the chart passes that part on unchecked:
`hub.config.**`, `singleuser.extraPodConfig.**`). Lists end a path: the chart does not check their items.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

Path_ = tuple[str, ...]


def schema_key_paths(schema: dict, prefix: Path_ = ()) -> set[str]:
    """Every key path a JSON schema names: properties, patternProperties (`*`) and open objects (`**`)."""
    paths: set[str] = set()
    for name, sub in schema.get("properties", {}).items():
        paths.add(".".join(prefix + (name,)))
        paths |= schema_key_paths(sub, prefix + (name,))
    for sub in schema.get("patternProperties", {}).values():
        paths.add(".".join(prefix + ("*",)))
        paths |= schema_key_paths(sub, prefix + ("*",))
    for branch in ("if", "then", "else"):
        if isinstance(schema.get(branch), dict):
            paths |= schema_key_paths(schema[branch], prefix)
    for group in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(group, []):
            paths |= schema_key_paths(sub, prefix)
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    extra = schema.get("additionalProperties", "object" in types)  # JSON schema's default is open
    if prefix and extra is True:
        paths.add(".".join(prefix + ("**",)))
    return paths


def value_paths(values: object, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every key path of a values mapping, down to scalars and lists."""
    if isinstance(values, dict):
        for key, sub in values.items():
            yield prefix + (str(key),)
            yield from value_paths(sub, prefix + (str(key),))


def allowed(path: Path_, keys: set[str]) -> bool:
    """Whether a values key path is one the chart knows (see the module docstring for the notation)."""
    for pattern in keys:
        parts = pattern.split(".")
        if parts[-1] == "**":
            head = parts[:-1]
            if len(path) > len(head) and all(p in ("*", k) for p, k in zip(head, path)):
                return True
        elif len(parts) == len(path) and all(p in ("*", k) for p, k in zip(parts, path)):
            return True
    return False


def unknown_keys(values: dict, keys: set[str]) -> list[str]:
    """The key paths of values that the chart does not know, e.g. `singleuser.profilelist`."""
    return [".".join(path) for path in value_paths(values) if not allowed(path, keys)]


def load_schema(path: Path) -> dict:
    """A chart's values.schema.json (or the values.schema.yaml it is generated from)."""
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("schema", type=Path, help="the chart's values.schema.json (or values.schema.yaml)")
    parser.add_argument("--source", required=True, help="where the schema came from: chart version, repo, commit")
    args = parser.parse_args(argv)
    keys = sorted(schema_key_paths(load_schema(args.schema)))
    header = [
        "# Key paths of the Zero to JupyterHub chart's values, checked by tests/course/test_deploy_z2jh.py.",
        f"# Taken from: {args.source}",
        "# Made by deploy/zero-to-jupyterhub/chart_keys.py (its docstring: how to refresh, what * and ** mean).",
    ]
    sys.stdout.write("\n".join(header) + "\n" + yaml.safe_dump({"source": args.source, "keys": keys}, width=120))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
