import ast
from pathlib import Path

from conftest import ROOT, run_python


def test_default_flavour_is_keras3_and_clears_legacy_keras_flag():
    result = run_python(
        "import os; from vision_core.backend import keras, FLAVOUR; "
        "print(FLAVOUR, keras.__version__.split('.')[0], os.environ.get('TF_USE_LEGACY_KERAS'))",
        env_extra={"TF_USE_LEGACY_KERAS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == ["keras3", "3", "None"]


REFUSAL = "try:\n    {call}()\nexcept RuntimeError as e:\n    print('refused:', e)\n"


def test_tf_keras_flavour_gives_keras2_and_tfmot_and_refuses_keras_cv():
    result = run_python(
        "from vision_core.backend import keras, tfmot, keras_cv, FLAVOUR\n"
        "print(FLAVOUR, keras.__version__.split('.')[0], tfmot().__name__)\n" + REFUSAL.format(call="keras_cv"),
        flavour="tf_keras",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-2].split() == ["tf_keras", "2", "tensorflow_model_optimization"]
    assert lines[-1].startswith("refused:"), result.stderr


def test_unknown_flavour_is_refused_by_name():
    result = run_python("import vision_core.backend", flavour="keras4")
    assert result.returncode != 0
    assert "VISION_KERAS='keras4'" in result.stderr


def test_keras3_flavour_gives_keras_cv_and_refuses_tfmot():
    result = run_python(
        "from vision_core.backend import keras_cv, tfmot\nprint(keras_cv().__name__)\n" + REFUSAL.format(call="tfmot")
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == "keras_cv"
    assert lines[-1].startswith("refused:"), result.stderr


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_backend_imports_keras_tf_keras_or_tfmot():
    forbidden = {"keras", "tf_keras", "tensorflow_model_optimization", "keras_cv"}
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imported_modules(p) & forbidden)
        for folder in ("vision_core", "apps", "tflite", "benchmarks")
        for p in (ROOT / folder).rglob("*.py")
        if p != ROOT / "vision_core" / "backend.py" and _imported_modules(p) & forbidden
    }
    assert offenders == {}


def test_edge_kit_never_imports_tensorflow():
    offenders = [
        str(p) for p in (ROOT / "tflite").rglob("*.py") if {"tensorflow", "vision_core"} & _imported_modules(p)
    ]
    assert offenders == []
