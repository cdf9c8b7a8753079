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


def test_tf_keras_flavour_gives_keras2_and_tfmot():
    result = run_python(
        "from vision_core.backend import keras, tfmot, FLAVOUR; "
        "print(FLAVOUR, keras.__version__.split('.')[0], tfmot().__name__)",
        flavour="tf_keras",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == ["tf_keras", "2", "tensorflow_model_optimization"]


def test_unknown_flavour_is_refused_by_name():
    result = run_python("import vision_core.backend", flavour="keras4")
    assert result.returncode != 0
    assert "VISION_KERAS='keras4'" in result.stderr


def test_keras3_flavour_refuses_tfmot_and_tf_keras_refuses_keras_cv():
    code = (
        "from vision_core.backend import tfmot, keras_cv, FLAVOUR\n"
        "fn = tfmot if FLAVOUR == 'keras3' else keras_cv\n"
        "try:\n    fn()\nexcept RuntimeError as e:\n    print('refused:', e)\n"
    )
    for flavour in ("keras3", "tf_keras"):
        result = run_python(code, flavour=flavour)
        assert "refused:" in result.stdout, result.stderr


def test_keras_cv_imports_in_keras3_flavour():
    result = run_python("from vision_core.backend import keras_cv; print(keras_cv().__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "keras_cv"


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
    offenders = [str(p) for p in (ROOT / "tflite").rglob("*.py") if {"tensorflow", "vision_core"} & _imported_modules(p)]
    assert offenders == []
