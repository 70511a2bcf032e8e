"""The largest modules and longest functions of the package, by source lines.

docs/architecture.md quotes these numbers before and after a restructuring; a function or a
module that keeps growing is where a newcomer gets lost first.

Usage: python scripts/code_size.py [PACKAGE_DIR] [--top N]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_sizes(package: Path) -> list[tuple[int, str]]:
    """(lines, path) of every module, largest first."""
    sizes = [(len(p.read_text(encoding="utf-8").splitlines()), str(p.relative_to(package.parent)))
             for p in package.rglob("*.py")]
    return sorted(sizes, reverse=True)


def function_lengths(package: Path) -> list[tuple[int, str]]:
    """(lines from `def` to its last line, path:line name) of every function and method, longest first."""
    lengths = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{path.relative_to(package.parent)}:{node.lineno} {node.name}"
                lengths.append((node.end_lineno - node.lineno + 1, where))
    return sorted(lengths, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default=str(REPO / "convssl"))
    parser.add_argument("--top", type=int, default=5, help="rows per list")
    args = parser.parse_args()
    package = Path(args.package).resolve()
    print("largest modules (lines):")
    for lines, where in module_sizes(package)[: args.top]:
        print(f"  {lines:5d}  {where}")
    print("longest functions (lines):")
    for lines, where in function_lengths(package)[: args.top]:
        print(f"  {lines:5d}  {where}")


if __name__ == "__main__":
    main()
