"""The line cache's recipe (services.dataset._code_digest) covers the code that makes a line: every
flywheel module a line's making loads, found from the syntax trees, and nothing that has no say in
a line (a release that changes only webhooks or the database layer keeps the cache)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# in a fresh interpreter: what making lines (redaction, both formats, tokens, signatures, the
# residual scan) loads of flywheel, before the services module is imported to list its recipe
PROBE = """
import json, sys
from flywheel.domain import dataset as ds, near_duplicates as nd
from flywheel.domain.dataset_checks import check_example, record_texts, record_tokens, token_counter
from flywheel.domain.redaction import Redactor
row = {"outcome_id": "1", "org_id": "acme", "campaign_id": "c", "lead_industry": "saas", "framework": "PAS",
       "brief": "Dana Reyes at Acme, +1 415 555 0100", "subject": "Hi Dana", "body": "Hi Dana,\\n\\nCall me.\\n\\n-- \\nSam",
       "lead_first_name": "Dana", "lead_last_name": "Reyes", "lead_company": "Acme", "lead_country": "US",
       "lead_context": {"colleagues": ["Ann Lee"]}, "sender": {"name": "Sam Park"}, "training_label": "positive"}
bad = {**row, "outcome_id": "2", "training_label": "negative"}
count, _ = token_counter()
for item in ([row], [row, bad]):
    contexts = tuple(ds.context_of(r) for r in item)
    [example] = ds.examples_of([tuple(item)], Redactor(), [contexts])
    for payload, _ in (ds.to_nova(example), (ds.to_openai(example), 0)):
        for fmt in ("openai-sft", "openai-dpo", "nova-sft", "nova-dpo"):
            check_example(payload, fmt)
        record_tokens(payload, count)
        Redactor().find_each([(ds.data_only(t), contexts[0]) for t in record_texts(payload)])
    nd.signatures([example.targets[0]])
loaded = sorted(name for name in sys.modules if name == "flywheel" or name.startswith("flywheel."))
import flywheel
from flywheel.services.dataset import line_code
print(json.dumps({"loaded": loaded, "recipe": [str(p) for p in line_code()], "watched": sorted(flywheel.LOADED_SOURCES)}))
"""


def test_the_recipe_holds_every_module_that_making_a_line_loads_and_not_the_rest() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "layers" / "flywheel"), "PATH": "/usr/bin:/bin"},
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    package = ROOT / "layers" / "flywheel" / "flywheel"
    recipe = {Path(p).relative_to(package).as_posix() for p in found["recipe"]}
    for module in found["loaded"]:
        parts = module.split(".")[1:]
        as_file = "/".join(parts) + ".py" if parts else "__init__.py"
        as_package = "/".join([*parts, "__init__.py"])
        assert as_file in recipe or as_package in recipe, f"{module} makes lines but is not in the recipe"
    assert {"services/dataset.py", "domain/redaction.py", "domain/reply_text.py", "domain/near_duplicates.py"} <= recipe
    assert not {"dal/connection.py", "dal/training.py", "settings.py", "services/ingest.py"} & recipe
    # every file of it is one whose source the process notes when it loads flywheel (code_is_loaded)
    assert recipe <= set(found["watched"])


def test_a_package_without_its_sources_imports_and_builds_without_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every function imports flywheel: a source it cannot read (installed without sources) is left
    out of what it notes, never an import error; the build then does not use the line cache."""
    import flywheel
    from flywheel.services import dataset as dataset_service

    monkeypatch.setattr(flywheel, "_LINE_SOURCES", ("", "no-such-folder", "services/no_such_module.py"))
    noted = flywheel.source_digests()
    assert "__init__.py" in noted and not any(name.startswith(("no-such", "services/no_such")) for name in noted)

    def unreadable() -> list[Path]:
        raise FileNotFoundError("services/dataset.py")

    monkeypatch.setattr(dataset_service, "line_code", unreadable)
    assert dataset_service.code_is_loaded() is False


def test_a_file_that_read_otherwise_when_the_line_code_loaded_turns_the_cache_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A checkout, the first build's import of the line code, and a checkout back: the files read now
    as when flywheel loaded, but the modules running were loaded from other text."""
    from flywheel.services import dataset as dataset_service

    assert dataset_service.code_is_loaded()
    at_import = {**dataset_service._SOURCES_AT_IMPORT, "domain/reply_text.py": b"\0" * 16}
    monkeypatch.setattr(dataset_service, "_SOURCES_AT_IMPORT", at_import)
    assert not dataset_service.code_is_loaded()
