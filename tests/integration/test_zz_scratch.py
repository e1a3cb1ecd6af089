import json
from pathlib import Path
from flywheel.services.dataset import DatasetSpec, build_dataset
from flywheel.settings import get_settings
from tests.training_helpers import seed_outcomes

def test_scratch(db, tmp_path: Path) -> None:
    seed_outcomes(db, 60)
    built = build_dataset(DatasetSpec(), tmp_path, get_settings())
    m = built.manifest
    print(json.dumps({k: m[k] for k in ("counts", "redactions", "residual_scan", "problems", "valid", "tokens")}, indent=1)[:3000])
    print((tmp_path / "train.jsonl").read_text().splitlines()[0])
