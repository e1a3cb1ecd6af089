"""Flywheel: outcome tracking, training and experimentation for outbound sales messages."""

import hashlib as _hashlib
import os as _os

__version__ = "0.1.0"

# where the dataset build's line-making code may come from (services.dataset.line_code): a test
# checks that every file of it is among these
_LINE_SOURCES = ("__init__.py", "domain", "services/__init__.py", "services/dataset.py")


def source_digests() -> dict[str, bytes]:
    """A digest of each of those source files that can be read, by path within the package. One that
    cannot (a package installed without its sources) is left out: the line cache is then not used,
    and says why (services.dataset.code_is_loaded); importing flywheel never fails for it."""
    root = _os.path.dirname(__file__)
    names = []
    for place in _LINE_SOURCES:
        if place.endswith(".py"):
            names.append(place)
        else:
            try:
                listed = _os.listdir(_os.path.join(root, place))
            except OSError:
                continue
            names += [f"{place}/{n}" if place else n for n in listed if n.endswith(".py")]
    found = {}
    for name in names:
        try:
            with open(_os.path.join(root, name), "rb") as source:
                found[name] = _hashlib.blake2b(source.read(), digest_size=16).digest()
        except OSError:
            continue
    return found


# those files as they were when this process loaded flywheel, before any of its modules: the line
# cache is used only while the line-making files still read the same (services.dataset.code_is_loaded)
LOADED_SOURCES = source_digests()
