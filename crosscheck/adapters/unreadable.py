"""Cache entries that cannot be read: each is a miss, compiled again and replaced, and a run
says so once.

A cache only saves time, so an entry that is truncated, overwritten or otherwise spoiled must
never fail a check. Both caches in the folder that `CROSSCHECK_JAX_CACHE` names are covered:
the program cache (`program_cache`) and JAX's own persistent compilation cache, where the
harness chose that folder (`guard_jax_cache`). JAX treats an entry it cannot read as a miss
too, but warns once per entry and never replaces it, so it warns again in every later run.
"""

from __future__ import annotations

import os
import sys

# The folder told about in this process, if any: one line per run, not one per entry or cache.
_told: set[str] = set()


def tell(folder: str) -> None:
    """Say on stderr, the first time in this process, that `folder` held unreadable entries."""
    if _told:
        return
    _told.add(folder)
    print(f"crosscheck: the cache in {folder} held entries that could not be read; "
          "each is compiled again and replaced", file=sys.stderr)


def guard_jax_cache(folder: str):
    """From now on, JAX's persistent compilation cache in `folder` (one the harness owns)
    takes an entry it cannot read for a miss, and replaces it. It reaches into JAX's private
    modules; where those have changed, JAX's own handling stays (a warning per entry).

    Returns a function that takes the guard off again (None where none was put on here)."""
    try:
        from jax._src import compilation_cache as cc
        from jax._src import lru_cache
        from jax._src.compilation_cache_interface import CacheInterface

        opened, suffix = cc.get_file_cache, lru_cache._CACHE_SUFFIX
        check = (cc.decompress_executable, cc.extract_executable_and_time)
    except (ImportError, AttributeError):
        return None
    if getattr(opened, "guarding", None) is not None:  # guarded already
        return None

    class Guarded(CacheInterface):
        """The file cache of `folder`, reading each entry as JAX will before handing it over."""

        def __init__(self, base):
            self.base, self._path = base, base._path
            self.served: set[str] = set()  # keys handed over in this process

        def get(self, key):
            try:
                value = self.base.get(key)
                if value is not None:
                    check[1](check[0](value))
            except Exception:  # unreadable: a miss, and gone so that `put` writes it anew
                self.drop(key)
                return None
            if value is not None:
                self.served.add(key)
            return value

        def put(self, key, value):
            # JAX compiles a key it was handed only where that entry failed to load
            # (`compiler._cache_read`); the file cache would keep the failed one.
            if key in self.served:
                self.served.discard(key)
                self.drop(key)
            self.base.put(key, value)

        def drop(self, key):
            tell(folder)
            try:
                os.remove(os.path.join(folder, f"{key}{suffix}"))
            except OSError:
                pass

    def guarding(path):
        found = opened(path)
        if found is None or os.path.realpath(path) != os.path.realpath(folder):
            return found
        return Guarded(found[0]), found[1]

    guarding.guarding = folder
    cc.get_file_cache = guarding

    def unguard():
        if cc.get_file_cache is guarding:  # not where another guard was put on over this one
            cc.get_file_cache = opened

    return unguard
