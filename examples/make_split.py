"""Write examples/splits/shared.json: the one committed block split of ../shared/data.

Every bundled model and every README table cuts its chips through this file
(`satsr make-dataset ... --split-file examples/splits/shared.json`), so no model's training
area is another model's test area. Blocks of ~192 px, dealt per source (seeded) so that each
source with at least three blocks has train, val and test area in about 70 / 15 / 15 %.

    python examples/make_split.py [--data ../shared/data] [--out examples/splits/shared.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from satsr.data.splitfile import plan_split

ROOT = Path(__file__).resolve().parents[1]
BLOCK, FRACTIONS, SEED = 192, (0.7, 0.15, 0.15), 0


def sources(data: Path) -> list[Path]:
    """Every raster of the shared imagery (top level and neon/), in name order."""
    return sorted(data.glob("*.tif")) + sorted((data / "neon").glob("*.tif"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "examples" / "splits" / "shared.json")
    args = ap.parse_args()
    plan = plan_split(sources(args.data), BLOCK, FRACTIONS, SEED)
    plan.write(args.out)
    for s in plan.sources:
        n = {sp: sum(1 for b in s.blocks if b[4] == sp) for sp in ("train", "val", "test")}
        print(f"{s.name:40s} {s.width:5d}x{s.height:<5d} blocks {n}")
    print(f"wrote {args.out} (sha256 {plan.digest()[:12]})")


if __name__ == "__main__":
    main()
