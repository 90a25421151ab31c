"""User projections: loaded from the modules ``[projections] modules`` names, as translators are.

A projection module declares its reports in one of two ways:

* ``def projections(source: str) -> Sequence[Projection]``: reports over the events and mirrors of
  the source database named ``source`` (``[projections] source``, else the one source captured);
* ``PROJECTIONS: Sequence[Projection]``: reports that name what they read themselves.

Nothing in this package has to change for a user's report: the module only has to be importable by the
Dagster processes (installed, or on ``PYTHONPATH``). ``cdc.demo.projections`` is an example.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from pipelines.projection import Projection, ProjectionError


def load_projections(modules: Sequence[str], source: str | None) -> list[Projection]:
    """Every projection the modules declare, in order; a module that cannot be used raises
    :class:`ProjectionError` naming it and what to do."""
    found: dict[str, tuple[str, Projection]] = {}
    for name in modules:
        for p in _declared(name, source):
            if p.name in found:
                raise ProjectionError(f"projection {p.name!r} is declared by {found[p.name][0]} and by {name}")
            found[p.name] = (name, p)
    return [p for _, p in found.values()]


def _declared(name: str, source: str | None) -> list[Projection]:
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        raise ProjectionError(
            f"cannot import projection module {name!r} ({e}); install it or put its folder on PYTHONPATH"
        ) from e
    declare = getattr(module, "projections", None)
    if callable(declare):
        if source is None:
            raise ProjectionError(
                f"{name}.projections(source) needs a source: set [projections] source in cdc.toml "
                "(or CDC_PROJECTIONS__SOURCE)"
            )
        declared = declare(source)
    elif hasattr(module, "PROJECTIONS"):
        declared = module.PROJECTIONS
    else:
        raise ProjectionError(f"module {name!r} declares no projections: define projections(source) or PROJECTIONS")
    items = list(declared)
    wrong = [type(p).__name__ for p in items if not isinstance(p, Projection)]
    if wrong:
        raise ProjectionError(f"{name} declares something that is not a Projection: {', '.join(sorted(set(wrong)))}")
    return items
