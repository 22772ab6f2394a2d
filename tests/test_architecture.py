"""Layering: the core package (tvfast, tvfast.kernels) never imports tvfast.training, and no SPEC is cited."""

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import re
from pathlib import Path

import tvfast

ROOT = Path(__file__).resolve().parents[1]


def core_modules() -> list[str]:
    names = ["tvfast", "tvfast.kernels"]
    for info in pkgutil.walk_packages(tvfast.__path__, prefix="tvfast."):
        if not info.name.startswith(("tvfast.training", "tvfast.kernels")):
            names.append(info.name)
    kernels = importlib.import_module("tvfast.kernels")
    return names + [f"tvfast.kernels.{m.name}" for m in pkgutil.iter_modules(kernels.__path__)]


def test_core_modules_load_no_training_module():
    modules = core_modules()
    assert {"tvfast.models.lambda_net", "tvfast.models.unet", "tvfast.cli.main", "tvfast.cli.denoise", "tvfast.kernels.launch"} <= set(modules)
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tvfast'))))\n"
    )
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert set(modules) <= set(loaded)
    assert not [m for m in loaded if m.startswith("tvfast.training")]


def test_the_shipped_model_needs_no_training_module():
    code = (
        "import sys, tvfast\n"
        "m = tvfast.pretrained()\n"
        "print([n for n in sys.modules if n.startswith('tvfast.training')])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_every_cited_section_of_the_method_exists():
    """The code cites docs/method.md by section (``method.md §10.3``): every cited section has its heading."""
    headings = set()
    for line in (ROOT / "docs" / "method.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#{2,4} (\d+(?:\.\d+)*)[. ]", line)
        if m:
            headings.add(m.group(1))
    assert {"1", "4.2", "10"} <= headings, "the heading scan is broken"
    cited = {}
    for folder in ("tvfast", "kernels", "training"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for ref in re.findall(r"method\.md[^§\n]{0,3}§ ?(\d+(?:\.\d+)?)", text):
                cited.setdefault(ref, str(path.relative_to(ROOT)))
    assert len(cited) >= 5, "the citation scan is broken"
    missing = {ref: where for ref, where in cited.items() if ref not in headings}
    assert missing == {}, missing


def test_no_core_source_imports_training_even_lazily():
    """tvfast train / evaluate reach the training package through entry points, not imports."""
    offenders = []
    for folder in ("tvfast", "kernels"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip().startswith(("import tvfast.training", "from tvfast.training")):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == [], offenders


# Packages of the extras (figures, eval, train) and the compiler: the light core never loads them.
HEAVY = ("matplotlib", "tensorboard", "skimage", "scipy", "imageio", "torch._dynamo")


def loaded_after(code: str, cwd=None) -> list[str]:
    """Modules of HEAVY, and of tvfast.training, in sys.modules after ``code`` runs in a fresh interpreter."""
    probe = (
        "\nimport json, sys\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tvfast.training')\n"
        "                        or any(m == h or m.startswith(h + '.') for h in heavy))))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TVFAST_COMPILE"}
    out = subprocess.run([sys.executable, "-c", code + probe], capture_output=True, text=True, env=env, cwd=cwd,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_tvfast_loads_no_extra_and_no_compiler():
    assert loaded_after("import tvfast") == []


def test_probe_sees_heavy_modules():
    """The probe itself can fail: it reports a heavy module that the code loads."""
    assert "matplotlib" in loaded_after("import matplotlib")


def test_cli_help_loads_no_extra():
    code = (
        "from tvfast.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
    )
    assert loaded_after(code) == []


def test_denoise_of_one_image_loads_no_extra_and_no_compiler(tmp_path):
    """The shipped model on one small PNG: no figures, metrics, training package, nor torch.compile."""
    import numpy as np
    from PIL import Image

    pixels = (np.random.default_rng(0).random((40, 36)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "scan.png")
    code = (
        "from tvfast.cli.main import main\n"
        "assert main(['denoise', 'scan.png', '-o', 'out.png', '--iters', '8']) == 0\n"
    )
    # A solve imports Numba, which imports parts of SciPy itself where SciPy is installed (not tvfast's doing);
    # beyond what a bare solve loads, the command loads nothing heavy, and the solve loads only SciPy.
    solve = loaded_after("import torch, tvfast\ntvfast.pdhg(torch.rand(1, 1, 8, 8), 0.1, 2)")
    assert [m for m in solve if not m.startswith("scipy")] == []
    assert sorted(set(loaded_after(code, cwd=tmp_path)) - set(solve)) == []
    assert (tmp_path / "out.png").is_file()


def test_kernels_depend_on_torch_and_triton_only():
    """tvfast.kernels is the bottom room: it imports nothing else of tvfast (the solver imports it, lazily)."""
    offenders = []
    for path in (ROOT / "kernels").glob("*.py"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            words = line.split()
            if words[:1] in (["from"], ["import"]) and len(words) > 1 and words[1].startswith("tvfast") \
                    and not words[1].startswith("tvfast.kernels"):
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == [], offenders
