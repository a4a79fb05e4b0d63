"""The shipped eval set: 40 questions about real photographs and rendered documents.

The photographs are scikit-image's sample images (``skimage/data/``: astronaut, chelsea the cat,
coffee, rocket, motorcycle, horse, coins, camera, page, text, Hubble deep field) and
matplotlib's ``grace_hopper.jpg``. They are found inside the installed packages at load time,
never copied into this repository: in ``items.jsonl`` an image written ``skimage:NAME`` or
``matplotlib:NAME`` names a file in those folders. The packages are located with
``importlib.util.find_spec``, which does not import them.

The documents (a receipt, a parking sign, a sales table, a menu, a row of shapes) are rendered
by ``tools/make_evalset.py`` with known contents and live in ``mmreact/data/evalset/``.
:func:`mmreact.eval.dataset.load_builtin` loads them.

Every answer was checked against the image itself (e.g. ``coins.png`` holds 24 coins in four
rows of six). Tags follow MM-Vet: rec, ocr, spat, math, know, gen.
"""

from __future__ import annotations

from pathlib import Path

EVALSET_DIR = Path(__file__).resolve().parents[1] / "data" / "evalset"
ITEMS_FILE = EVALSET_DIR / "items.jsonl"
