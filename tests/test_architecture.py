"""The floors of docs/architecture.md: no module imports from a floor above its own."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "squeezetime_jax"

# Module or package (under squeezetime_jax) -> floor; the longest matching name wins.
FLOORS = {
    "files": 0,
    "runtime": 0,
    "cli": 0,
    "config_utils": 0,
    "resources": 0,
    "models": 1,
    "data": 1,
    "checkpoints": 2,
    "interop": 2,
    "training": 3,
    "evaluation": 3,
    "inference": 3,
    "export": 3,
    # Entry points: commands, the demo, the experiment configs, the package's facade.
    "": 4,
    "export.__main__": 4,
}


def floor_of(module: str) -> int:
    """The floor of `module`, a dotted name below squeezetime_jax ('' is the package)."""
    best = max(
        (
            name
            for name in FLOORS
            if name == "" or module == name or module.startswith(name + ".")
        ),
        key=len,
    )
    return FLOORS[best]


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: pathlib.Path) -> set[str]:
    """The squeezetime_jax modules `path` imports anywhere (also inside functions),
    as names below squeezetime_jax."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package[: len(package) - node.level + 1]
                module = ".".join(["squeezetime_jax"] + base + [node.module or ""]).rstrip(
                    "."
                )
            else:
                module = node.module or ""
            # `from squeezetime_jax.data import pipeline` imports a module of data.
            targets = [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "squeezetime_jax" or target.startswith("squeezetime_jax."):
                found.add(target.removeprefix("squeezetime_jax").lstrip("."))
    return found


def test_no_module_imports_from_a_floor_above():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        for target in imported_modules(path):
            if floor_of(target) > floor_of(module):
                upward.append(
                    f"{module or 'squeezetime_jax'} (floor {floor_of(module)}) imports "
                    f"{target} (floor {floor_of(target)})"
                )
    assert not upward, "\n".join(upward)


def test_the_check_sees_relative_lazy_and_from_imports(tmp_path):
    package = tmp_path / "squeezetime_jax"
    (package / "models").mkdir(parents=True)
    source = package / "models" / "layer.py"
    source.write_text(
        "from . import convolution\n"
        "from ..training import step\n"
        "def f():\n"
        "    import squeezetime_jax.evaluation.job\n"
    )
    global PACKAGE
    saved, PACKAGE = PACKAGE, package
    try:
        found = imported_modules(source)
    finally:
        PACKAGE = saved
    assert found == {"models.convolution", "training.step", "evaluation.job"}
    assert floor_of("models.layer") == 1
    assert floor_of("training.step") == floor_of("evaluation.job") == 3
    assert floor_of("export.__main__") == 4 and floor_of("export.mobile") == 3
    assert floor_of("") == floor_of("demo.run") == 4
