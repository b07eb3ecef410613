import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def prepare(images: Path, out: Path, steps: list[str] | None = None) -> Path:
    """`mammo-eval prepare --data IMAGES --out OUT` (the shipped model's preprocessing; `steps`
    instead of its full-field steps when given): what training reads."""
    from mammo_train.prepared import run_prepare

    description = run_prepare(["--data", str(images)], out, steps)
    assert not description["unreadable"], description["unreadable"]
    return out
