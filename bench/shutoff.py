"""Shutoff benchmark: valve segmentation and query latency, against wntr's `valve_segments`.

Run with ``.venv/bin/python bench/shutoff.py``. In one run it

1. on the wntr networks Net3, ky10 and Net6 with a strategic valve layer: times wntr's
   ``valve_segments`` and :func:`analysis.segments.segment_labels` on the same network and
   layer (the ratio is the figure; both give the same partition, which is checked);
2. imports Net6 with that layer through the real ingest into a bench schema, builds the
   isolation model from PostGIS (read + segmentation + supply units + source distances) and
   times :func:`analysis.shutoff.isolate` on 1,000 random pipes (median, p95);
3. generates a pressurised grid network of about one million pipes in memory (random valves
   on 40 % of pipe ends, four sources, customers on a fifth of the nodes), segments it and
   times 1,000 random shutoffs, half of them with a failed valve;
4. prints the figures and appends them to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import wntr  # noqa: E402  (test dependency: the reference)

from analysis.criticality import compute, criticality, ensure_current, pipe_criticality, store  # noqa: E402
from analysis.segments import build_model, model_from_frames, segment_labels  # noqa: E402
from analysis.shutoff import isolate  # noqa: E402
from bench.machine import machine  # noqa: E402
from ingest.epanet import read_epanet  # noqa: E402
from ingest.pipeline import ingest_tables  # noqa: E402
from twin.db import make_engine, open_twin  # noqa: E402
from twin.settings import get_settings  # noqa: E402

NETWORKS = Path(wntr.__file__).parent / "library" / "networks"
SCHEMA = "bench_shutoff"
CRITICALITY_SCHEMA = "bench_criticality"


def _median_time(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def against_wntr(name: str) -> dict:
    """wntr's valve_segments and ours on one network and strategic layer."""
    wn = wntr.network.WaterNetworkModel(str(NETWORKS / f"{name}.inp"))
    layer = wntr.network.generate_valve_layer(wn, "strategic", 1, seed=1)
    graph = wn.to_graph()
    t = time.perf_counter()
    node_ref, link_ref, _ = wntr.metrics.topographic.valve_segments(graph, layer.copy())
    t_wntr = time.perf_counter() - t
    nodes = pd.Index(wn.node_name_list)
    links = pd.Index(wn.link_name_list)
    f = nodes.get_indexer([wn.get_link(n).start_node_name for n in links])
    to = nodes.get_indexer([wn.get_link(n).end_node_name for n in links])
    vl, vn = links.get_indexer(layer["link"]), nodes.get_indexer(layer["node"])
    t_ours = _median_time(lambda: segment_labels(f, to, vl, vn, len(nodes)))
    ns, ls, n = segment_labels(f, to, vl, vn, len(nodes))
    pairs = pd.DataFrame({"a": np.concatenate([ns, ls]),
                          "b": np.concatenate([node_ref.reindex(nodes), link_ref.reindex(links)])}).drop_duplicates()
    same = len(pairs) == pairs["a"].nunique() == pairs["b"].nunique()
    return {"network": name, "links": len(links), "valves": len(layer), "segments": n, "wntr_s": t_wntr,
            "ours_s": t_ours, "ratio": t_wntr / t_ours, "same_partition": bool(same), "layer": layer}


def latency(model, pipes: np.ndarray, failed: list[list[str]]) -> dict:
    """Median and p95 (ms) of isolate() over the given pipes."""
    ms = []
    for pipe, fv in zip(pipes, failed, strict=True):
        t = time.perf_counter()
        isolate(model, pipe=str(pipe), failed_valves=fv)
        ms.append((time.perf_counter() - t) * 1000)
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(max(ms))}


def random_queries(model, n: int, rng: np.random.Generator, fail_share: float = 0.5):
    pipes = rng.choice(model.links["id"].to_numpy(), n)
    valves = model.valves["id"].to_numpy()
    failed = [[str(rng.choice(valves))] if (rng.random() < fail_share and len(valves)) else [] for _ in range(n)]
    # a failed valve must be one that exists; whether it is on the way does not matter
    return pipes, failed


def net6_in_the_twin(layer: pd.DataFrame, tmp: Path) -> tuple[dict, object]:
    settings = get_settings(db_schema=SCHEMA)
    engine = make_engine(settings, admin=True)  # the schema is the admin role's
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    engine.dispose()
    engine = open_twin(settings)
    valves = tmp / "net6_valves.csv"
    layer.rename(columns={"link": "pipe"}).to_csv(valves, index=False)
    tables = read_epanet(NETWORKS / "Net6.inp", valves=valves, twin_crs=settings.crs, offset="auto",
                         cover_m=settings.default_cover_m)
    report = ingest_tables(tables, settings, scope="epanet:Net6", check_long=False)
    assert report.status == "applied", report.as_dict()["errors"][:3]
    t = time.perf_counter()
    model = build_model(engine)
    total = time.perf_counter() - t
    return {"build_s": total, **model.timings, "links": len(model.links), "valves": len(model.valves),
            "segments": model.n_segments}, model


def grid_network(n_side: int, rng: np.random.Generator) -> tuple[pd.DataFrame, ...]:
    """A pressurised grid of about 2 * n_side**2 pipes with random valves, sources, customers."""
    ij = np.arange(n_side * n_side).reshape(n_side, n_side)
    a = np.concatenate([ij[:, :-1].ravel(), ij[:-1, :].ravel()])
    b = np.concatenate([ij[:, 1:].ravel(), ij[1:, :].ravel()])
    names = np.char.add("N", np.arange(n_side * n_side).astype(str)).astype(object)
    ids = np.char.add("P", np.arange(len(a)).astype(str)).astype(object)
    links = pd.DataFrame({"id": ids, "from_node": names[a], "to_node": names[b], "utility": "JS",
                          "shape": "circular", "diameter_mm": 200.0, "width_mm": np.nan, "height_mm": np.nan,
                          "length_m": 80.0, "remarks": ""})
    nodes = pd.DataFrame({"id": names, "utility": "JS", "x": (ij % n_side).ravel() * 80.0,
                          "y": (ij // n_side).ravel() * 80.0, "ground_z": 35.0})
    ends = rng.random(2 * len(a)) < 0.4
    v_link = np.concatenate([np.arange(len(a)), np.arange(len(a))])[ends]
    v_node = np.concatenate([a, b])[ends]
    nv = len(v_link)
    valves = pd.DataFrame({"id": np.char.add("V", np.arange(nv).astype(str)).astype(object),
                           "segment_id": ids[v_link], "node_id": names[v_node], "utility": "JS",
                           "kind": "valve", "operable": rng.random(nv) > 0.03,
                           "normally_closed": rng.random(nv) < 0.002, "x": 0.0, "y": 0.0})
    src_nodes = names[[0, n_side - 1, n_side * (n_side - 1), n_side * n_side - 1]]
    sources = pd.DataFrame({"id": "SRC-" + pd.Series(src_nodes), "node_id": src_nodes, "utility": "JS",
                            "kind": "plant", "name": None})
    cn = names[rng.random(len(names)) < 0.2]
    customers = pd.DataFrame({"id": "C-" + pd.Series(cn), "node_id": cn, "utility": "JS", "name": None,
                              "kind": "service", "critical": rng.random(len(cn)) < 0.01, "demand": 1.0})
    return links, nodes, valves, sources, customers


def _query_ms(fn, n: int) -> dict:
    ms = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        ms.append((time.perf_counter() - t) * 1000)
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}


def criticality_figures(model, rng: np.random.Generator, queries: int) -> dict:
    """Criticality of every segment and valve of ``model`` (in memory, then stored in a bench
    schema of its own) and the stored answers' latency: worst 20, at least 5 valves, one pipe."""
    t = time.perf_counter()
    crit = compute(model)
    t_compute = time.perf_counter() - t
    settings = get_settings(db_schema=CRITICALITY_SCHEMA)
    admin = make_engine(settings, admin=True)
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {CRITICALITY_SCHEMA} CASCADE"))
    admin.dispose()
    engine = open_twin(settings)
    t = time.perf_counter()
    store(engine, model, crit)
    t_store = time.perf_counter() - t
    pipes = rng.choice(model.link_ids, queries)
    top = _query_ms(lambda i: criticality(engine, top=20, refresh=False), queries)
    k = _query_ms(lambda i: criticality(engine, top=20, min_valves=5, refresh=False), queries)
    one = _query_ms(lambda i: pipe_criticality(engine, str(pipes[i]), with_valves=False), queries)

    def select_one(i: int) -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).all()

    ref = _query_ms(select_one, queries)  # the same-run reference: one round trip
    engine.dispose()
    return {"compute_s": t_compute, "store_s": t_store, "fallback": crit.fallback,
            "valves": len(crit.valve_pos), "top": top, "min_valves": k, "pipe": one, "select_1": ref}


def criticality_in_the_twin(schema: str) -> dict | None:
    """Recompute and store the criticality of a twin's network (read from PostGIS), when that
    twin is migrated to 0015; None otherwise."""
    settings = get_settings(db_schema=schema)
    admin = make_engine(settings, admin=True)
    with admin.connect() as conn:
        ready = conn.execute(sa.text("SELECT to_regclass(:t) IS NOT NULL"),
                             {"t": f"{schema}.criticality_run"}).scalar()
    admin.dispose()
    if not ready:
        return None
    engine = open_twin(settings)
    t = time.perf_counter()
    state = ensure_current(engine, force=True)
    total = time.perf_counter() - t
    engine.dispose()
    return {"total_s": total, "segments": state["segments"], "valves": state["valves"],
            "compute_s": state["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--side", type=int, default=708, help="grid side: 708 gives about 1,000,000 pipes")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    ap.add_argument("--criticality-only", action="store_true",
                    help="only the criticality figures (grid, stored answers, the bench_analysis twin)")
    args = ap.parse_args()
    if args.criticality_only:
        return criticality_main(args)
    rng = np.random.default_rng(0)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)

    print("wntr valve_segments vs segment_labels (strategic N-1 layer)")
    ref = [against_wntr(n) for n in ("Net3", "ky10", "Net6")]
    for r in ref:
        print(f"  {r['network']}: {r['links']:,} links, {r['valves']:,} valves, {r['segments']:,} segments; "
              f"wntr {r['wntr_s'] * 1000:,.1f} ms, ours {r['ours_s'] * 1000:,.2f} ms, "
              f"x{r['ratio']:,.0f}, same partition: {r['same_partition']}")

    print("Net6 in the twin")
    net6, model6 = net6_in_the_twin(ref[-1]["layer"], out)
    q6 = latency(model6, *random_queries(model6, args.queries, rng))
    print(f"  model from PostGIS {net6['build_s']:.3f} s (read {net6['read_s']:.3f}, segment "
          f"{net6['segment_s']:.4f}, supply {net6['supply_s']:.4f}); queries median {q6['median_ms']:.2f} ms, "
          f"p95 {q6['p95_ms']:.2f} ms")

    print(f"grid network, side {args.side}")
    frames = grid_network(args.side, rng)
    n_links = len(frames[0])
    link_pos = pd.Index(frames[1]["id"])
    f, to = link_pos.get_indexer(frames[0]["from_node"]), link_pos.get_indexer(frames[0]["to_node"])
    vl = pd.Index(frames[0]["id"]).get_indexer(frames[2]["segment_id"])
    vn = link_pos.get_indexer(frames[2]["node_id"])
    t_labels = _median_time(lambda: segment_labels(f, to, vl, vn, len(link_pos)), repeat=3)
    t = time.perf_counter()
    model = model_from_frames(*frames)
    t_model = time.perf_counter() - t
    t_seg = model.timings["segment_s"]  # from string ids to labels
    qg = latency(model, *random_queries(model, args.queries, rng))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {n_links:,} pipes, {len(frames[2]):,} valves, {model.n_segments:,} segments: segmentation "
          f"{t_seg:.3f} s from string ids ({t_labels:.3f} s of it labelling); whole model (segments + supply units + source distances + indexes) {t_model:.3f} s; "
          f"queries median {qg['median_ms']:.2f} ms, p95 {qg['p95_ms']:.2f} ms, max {qg['max_ms']:.1f} ms; "
          f"peak RSS {rss:,.0f} MiB")

    if args.no_record:
        return
    lines = [
        f"\n### shutoff, {dt.date.today().isoformat()}",
        f"- machine: {machine()}",
        "- wntr `valve_segments` vs `segment_labels` on the same network and strategic N-1 layer "
        "(same partition checked):",
        *[f"  - {r['network']}: {r['links']:,} links, {r['valves']:,} valves, {r['segments']:,} segments: "
          f"wntr {r['wntr_s'] * 1000:,.1f} ms, PipeTwin {r['ours_s'] * 1000:,.2f} ms, **x{r['ratio']:,.0f}**, "
          f"same partition: {r['same_partition']}" for r in ref],
        f"- Net6 through the twin: model from PostGIS {net6['build_s']:.3f} s (read {net6['read_s']:.3f} s, "
        f"segmentation {net6['segment_s'] * 1000:.1f} ms); {args.queries:,} shutoffs on random pipes "
        f"(half with a failed valve): median **{q6['median_ms']:.2f} ms**, p95 **{q6['p95_ms']:.2f} ms**",
        f"- generated grid: {n_links:,} pipes, {len(frames[2]):,} valves, {model.n_segments:,} segments: "
        f"segmentation from string ids **{t_seg:.2f} s** ({t_labels:.2f} s labelling), whole model "
        f"(supply tree, source distances, lookups) {t_model:.2f} s; {args.queries:,} shutoffs: median "
        f"**{qg['median_ms']:.2f} ms**, p95 **{qg['p95_ms']:.2f} ms**; peak RSS {rss:,.0f} MiB",
    ]
    results = ROOT / "bench" / "RESULTS.md"
    header = "" if "## Shutoff" in results.read_text(encoding="utf-8") else (
        "\n## Shutoff (`bench/shutoff.py`)\nTargets: segmentation of a one-million-segment network "
        "under 5 s, query p95 under 20 ms, at least 100 times faster than wntr's segmentation.\n")
    with results.open("a", encoding="utf-8") as out_file:  # append: other benches write here too
        out_file.write(header + "\n".join(lines) + "\n")
    print(f"recorded in {results}")


def criticality_main(args: argparse.Namespace) -> None:
    """Criticality of every segment on the generated grid and on the bench_analysis twin."""
    rng = np.random.default_rng(0)
    frames = grid_network(args.side, rng)
    t = time.perf_counter()
    model = model_from_frames(*frames)
    t_model = time.perf_counter() - t
    c = criticality_figures(model, rng, args.queries)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    grid = (f"generated grid: {len(model.links):,} pipes, {c['valves']:,} valves that can close, "
            f"{model.n_segments:,} segments: criticality of every segment and N-1 of every valve **{c['compute_s']:.2f} s** "
            f"({c['fallback']:,} answered one by one) on the shutoff model (built in {t_model:.1f} s, the same-run "
            f"reference); stored in {c['store_s']:.1f} s; stored answers over {args.queries:,} queries: worst 20 "
            f"median **{c['top']['median_ms']:.2f} ms** (p95 {c['top']['p95_ms']:.2f}), >= 5 valves "
            f"{c['min_valves']['median_ms']:.2f} ms, one pipe **{c['pipe']['median_ms']:.2f} ms** "
            f"(p95 {c['pipe']['p95_ms']:.2f}); reference `SELECT 1` through the same pool "
            f"{c['select_1']['median_ms']:.2f} ms; peak RSS {rss:,.0f} MiB")
    print(grid)
    twin = criticality_in_the_twin("bench_analysis")
    line = ("bench_analysis twin: not migrated to 0015, skipped" if twin is None else
            f"bench_analysis twin: {twin['segments']:,} segments, {twin['valves']:,} valves: read from PostGIS, "
            f"computed ({twin['compute_s']:.1f} s) and stored in **{twin['total_s']:.1f} s**")
    print(line)
    if args.no_record:
        return
    results = ROOT / "bench" / "RESULTS.md"
    with results.open("a", encoding="utf-8") as out_file:
        out_file.write(f"\n### criticality, {dt.date.today().isoformat()}\n- machine: {machine()}\n- {grid}\n"
                       f"- {line}\n")
    print(f"recorded in {results}")


if __name__ == "__main__":
    main()
