"""The declared dependencies (setup.cfg) against the code and the README: every package the
code imports is declared (or comes with a declared one that requires it), and the README's
Dependencies table names exactly the declared packages."""
import ast
import configparser
import functools
import os
import re
import sys
from importlib import metadata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Packages the code imports by name that a declared package requires, so they are not
#: declared again: package -> the package that brings it (grpcio: keras-tuner requires it
#: only from 1.4.8 on, TensorFlow in every version the zoo allows).
COMES_WITH = {"protobuf": "tensorflow", "grpcio": "tensorflow", "starlette": "fastapi",
              "anyio": "starlette", "httptools": "uvicorn", "ml-dtypes": "tensorflow"}


def _name(requirement: str) -> str:
    """``uvicorn[standard]>=0.29`` -> ``uvicorn``."""
    return re.match(r"\s*([A-Za-z0-9_.-]+)", requirement).group(1).lower().replace("_", "-")


def _declared() -> dict:
    """``{"install": {...}, "serve": {...}, "test": {...}, "bench": {...}}`` from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    def names(text):
        return {_name(line) for line in text.splitlines() if line.strip()}
    out = {"install": names(cfg["options"]["install_requires"])}
    out.update({extra: names(text) for extra, text in cfg["options.extras_require"].items()})
    return out


def _imports(folder) -> set:
    """The top-level modules imported anywhere under ``folder``, standard library and the
    project's own packages left out."""
    found = set()
    for base, _, files in os.walk(os.path.join(ROOT, folder)):
        for file in files:
            if not file.endswith(".py"):
                continue
            with open(os.path.join(base, file), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    found.add(node.module.split(".")[0])
    own = {"zoo", "tuning", "benchmarks", "conftest", "tests"}
    return {m for m in found if m not in sys.stdlib_module_names and m not in own}


@functools.lru_cache(maxsize=None)
def _distributions() -> dict:
    return metadata.packages_distributions()


def _distribution(module) -> str:
    dists = _distributions().get(module)
    if not dists:
        pytest.skip(f"{module} is not installed here")
    # google.protobuf: protobuf (googleapis-common-protos shares the namespace)
    return "protobuf" if module == "google" else dists[0].lower().replace("_", "-")


def _requires(carrier, package) -> bool:
    """Whether installed ``carrier``'s metadata requires ``package`` (any extra)."""
    return any(_name(r) == package for r in metadata.requires(carrier) or [])


@pytest.mark.parametrize("folder, extras", [
    ("zoo", ("install", "serve")), ("tuning", ("install",)),
    ("benchmarks", ("install", "serve", "bench")), ("examples", ("install",)),
    ("tests", ("install", "serve", "test"))])
def test_every_imported_package_is_declared(folder, extras):
    declared = set().union(*(_declared()[e] for e in extras))
    missing = []
    for module in sorted(_imports(folder)):
        dist = _distribution(module)
        if dist in declared:
            continue
        carrier = COMES_WITH.get(dist)
        if carrier is None or not _requires(carrier, dist):
            missing.append(f"{module} ({dist})")
    assert not missing, f"{folder}/ imports undeclared packages: {', '.join(missing)}"


def test_the_readme_table_names_the_declared_packages():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    table = text.split("\n## Dependencies\n", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for row in re.findall(r"^\| (.+?) \|", table, flags=re.M)[2:]:   # after the header
        for cell in re.sub(r"\(`\w+`( and `\w+`)? extras?\)", "", row).split(","):
            listed.add(_name(cell.replace(" 3", "")))
    declared = set().union(*_declared().values())
    assert listed == declared, (f"README only: {sorted(listed - declared)}; "
                                f"setup.cfg only: {sorted(declared - listed)}")
