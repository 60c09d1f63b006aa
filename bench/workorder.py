"""Work order benchmark: what the shutoff work order (关阀作业单) costs over the shutoff itself.

Run with ``.venv/bin/python bench/workorder.py [--pipes N] [--no-append]``. In one run, on the
demo district (``twin sample``, scale 1) loaded into a bench schema, for N random water pipes
it times

1. the reference: :func:`analysis.shutoff.shutoff` (the answer the work order is made from),
   and an empty :class:`documents.pdf.Document` written out (the floor: loading the CJK and
   Latin fonts, subsetting them);
2. its parts: the plan map (:func:`documents.planmap.plan_map`) and the dig-site picture
   (:func:`documents.pictures.site_picture`, VTK's start-up taken once before);
3. the whole :func:`documents.workorder.work_order_pdf`, as the CLI's ``--pdf`` and the API's
   ``?f=pdf`` call it;

prints median and max of each and appends them to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.shutoff import cached_model, shutoff  # noqa: E402
from bench.district import fresh_demo_twin  # noqa: E402
from bench.machine import machine  # noqa: E402
from documents.pdf import Document  # noqa: E402
from documents.pictures import site_picture  # noqa: E402
from documents.planmap import Mark, map_frame, plan_map  # noqa: E402
from documents.workorder import work_order_pdf, work_site  # noqa: E402

SCHEMA = "bench_workorder"
#: A work order's target (s) on this machine (the issue's package of 10 findings has 10 s).
TARGET_S = 5.0


def _load():
    return fresh_demo_twin(SCHEMA)


def _timed(fn, items) -> tuple[list[float], list]:
    times, out = [], []
    for item in items:
        t = time.perf_counter()
        out.append(fn(item))
        times.append(time.perf_counter() - t)
    return times, out


def _plan(engine: sa.Engine, answer: dict) -> bytes:
    """The plan map as the work order draws it (valves numbered, burst, isolated pipes)."""
    site = work_site(engine, answer)
    marks = [Mark(v["x"], v["y"], str(v["order"])) for v in answer["valves"]]
    marks.append(Mark(*site.burst, "burst", shape="X"))
    x, y, r = map_frame(np.array([[m.x, m.y] for m in marks]))
    return plan_map(engine, x, y, r, highlight=answer["isolated_pipes"], marks=marks)


def _fmt(name: str, times: list[float]) -> str:
    return f"{name}: median **{np.median(times):.2f} s**, max {max(times):.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipes", type=int, default=10)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    settings, engine = _load()
    model = cached_model(engine)
    rng = np.random.default_rng(0)
    water = model.link_ids[model.link_utility == "JS"]
    pipes = rng.choice(water, size=min(args.pipes, len(water)), replace=False).tolist()
    ref, answers = _timed(lambda p: shutoff(engine, pipe=p).as_dict(), pipes)
    floor, _ = _timed(lambda _: Document("关阀作业单", "Shutoff work order").to_bytes(), pipes)
    first = work_site(engine, answers[0]).burst
    t = time.perf_counter()
    site_picture(engine, *first)  # VTK's start-up: OSMesa context, shaders, fonts
    startup = time.perf_counter() - t
    maps, _ = _timed(lambda a: _plan(engine, a), answers)
    pictures, _ = _timed(lambda a: site_picture(engine, *work_site(engine, a).burst), answers)
    orders, pdfs = _timed(lambda a: work_order_pdf(engine, settings, a, by="bench"), answers)
    valves = np.mean([len(a["valves"]) for a in answers])
    customers = np.mean([len(a["customers"]) for a in answers])
    met = "met" if np.median(orders) <= TARGET_S else "NOT met"
    lines = [
        f"### work order 关阀作业单 (bench/workorder.py), {dt.date.today():%Y-%m-%d}",
        f"- {machine()}, load average {os.getloadavg()[0]:.1f} at the end; demo district (scale 1), "
        f"{len(water):,} water pipes; {len(pipes)} random water "
        f"pipes burst: {valves:.1f} valves and {customers:.1f} customers per answer on average",
        "- reference, " + _fmt("`shutoff` (the answer)", ref),
        "- reference, " + _fmt("an empty document written (fonts loaded and subset)", floor),
        f"- plan map (matplotlib): median {np.median(maps):.2f} s; dig-site 3D picture (pyvista, "
        f"after VTK's start-up of {startup:.2f} s): median {np.median(pictures):.2f} s",
        "- " + _fmt("`work_order_pdf` (as `--pdf` and `?f=pdf`)", orders)
        + f", {np.median([len(b) for b in pdfs]) / 1024:.0f} KiB; target {TARGET_S:.0f} s {met}",
    ]
    print("\n".join(lines))
    if not args.no_append:
        with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as out:
            out.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
