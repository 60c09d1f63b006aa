"""The printable proposal report (管线审批报告): one HTML page, and the cross-section as SVG.

:func:`report_html` renders a proposal check (a :class:`analysis.proposal.ProposalReport`, or
the stored report of :func:`analysis.proposal_workflow.get_proposal`): a print stylesheet (A4
landscape), the result and status, the findings with their decisions, the findings of
earlier checks no longer found, the cross-section at the worst place as embedded SVG, the
event log and signature lines. :func:`section_svg` draws a stored report's cross-section
again (a stored report keeps the section as data).
"""

from __future__ import annotations

import numpy as np

from analysis import svg
from analysis.proposal import SECTION_TITLE, ProposalReport
from analysis.section import CrossSection, SectionPipe, Spacing

__all__ = ["report_html", "section_svg", "section_from_dict"]

_CSS = """
body{font-family:'DejaVu Sans','Noto Sans CJK SC',Arial,sans-serif;margin:24px;color:#222;font-size:13px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:22px 0 6px;border-bottom:1px solid #999}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;
vertical-align:top}th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 8px;border-radius:3px;font-weight:bold;color:#fff}
.pass{background:#2e7d32}.fail{background:#c62828}.st-new{background:#757575}.st-reviewed{background:#1565c0}
.st-approved{background:#2e7d32}.st-rejected{background:#c62828}.st-withdrawn{background:#5d4037}
.v-violation{color:#c62828;font-weight:bold}.v-uncertain{color:#e65100;font-weight:bold}
.v-no_rule{color:#6a1b9a;font-weight:bold}
.f-open{color:#c62828;font-weight:bold}.f-accepted{color:#2e7d32}.f-rejected{color:#c62828}.f-resolved{color:#777}
.meta td{border:none;padding:1px 12px 1px 0}.drawing svg{max-width:100%;height:auto;border:1px solid #ccc}
.sign{margin-top:36px;display:flex;gap:60px}.sign div{border-top:1px solid #000;width:220px;padding-top:4px}
@media print{@page{size:A4 landscape;margin:12mm}body{margin:0;font-size:10pt}
.badge{border:1px solid #000;color:#000!important;background:none!important}
tr,.drawing{page-break-inside:avoid}h2{page-break-after:avoid}.noprint{display:none}}
"""
_e = svg.esc


def report_html(report: ProposalReport | dict) -> str:
    """A printable HTML page of a proposal report (a :class:`ProposalReport` or a stored report dict)."""
    if isinstance(report, ProposalReport):
        d = report.as_dict(with_svg=True)
    else:
        d = dict(report)
        if "section_svg" not in d and d.get("section"):
            d["section_svg"] = section_from_dict(d["section"]).to_svg(title=SECTION_TITLE)
    result = "pass" if d.get("passed") else "fail"
    status = d.get("status") or "new"
    counts = ", ".join(f"{k}: {v}" for k, v in (d.get("counts") or {}).items()) or "none"
    verdicts = d.get("verdicts") or {}
    title = f"Proposal check 管线审批 — {d.get('name')}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f"<p><span class='badge {result}' id='result'>{result.upper()}</span> "
        f"<span class='badge st-{_e(status)}' id='status'>{_e(status)}</span> "
        f"{len(d.get('findings') or [])} findings ({_e(counts)}), {d.get('open_findings', 0)} not accepted</p>"
        f"<p id='verdicts'>{_verdict_counts(verdicts)}</p>"
        f"<table class='meta'>{_meta(d)}</table>"
        f"<h2>Findings</h2>{_findings(d)}{_unruled(d)}{_resolved(d)}{_drawing(d)}{_events(d)}"
        "<div class='sign'><div>Checked by 审核</div><div>Approved by 审批</div><div>Date 日期</div></div>"
        "</body></html>\n"
    )


def section_svg(report: dict) -> str | None:
    """The cross-section at the worst place of a stored report as SVG (None: the check drew none)."""
    if not report.get("section"):
        return None
    return section_from_dict(report["section"]).to_svg(title=SECTION_TITLE)


def section_from_dict(s: dict) -> CrossSection:
    """Rebuild a cross-section from its JSON form (to draw a stored report)."""
    pipes = []
    for p in s.get("pipes", []):
        q = {k: v for k, v in p.items() if k != "depth_m"}
        q["cut_semi_axes_m"] = tuple(q.get("cut_semi_axes_m") or (q["cut_half_width_m"], q["cut_half_height_m"]))
        pipes.append(SectionPipe(**q))
    ground = np.asarray(s.get("ground") or np.empty((0, 2)), dtype=float).reshape(-1, 2)
    return CrossSection(line=np.asarray(s["line"], dtype=float), pipes=pipes,
                        spacings=[Spacing(**sp) for sp in s.get("spacings", [])], ground_offset_m=ground[:, 0],
                        ground_z=ground[:, 1], along=list(s.get("along", [])), crs=s.get("crs", ""),
                        created_at=s.get("created_at", ""))


# -- the parts of the page ----------------------------------------------------------------------
def _meta(d: dict) -> str:
    rows = [
        ("proposal", f"{d.get('proposal_id') if d.get('proposal_id') is not None else '(not stored)'} · "
                     f"version {d.get('version', 1)}"),
        ("utility / size", f"{d.get('utility')} · {d.get('size')} · {d.get('length_m', 0):.2f} m"),
        ("checked", d.get("checked_at") or ""),
        ("submitted by", f"{d.get('created_by') or '—'} {d.get('created_at') or ''}"),
        ("decided by", f"{d.get('decided_by') or '—'} {d.get('decided_at') or ''}"),
        ("note", d.get("note") or "—"),
    ]
    if d.get("override_note"):
        rows.append(("approved with override", d["override_note"]))
    return "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)


#: How a verdict reads in the report.
VERDICT_LABELS = {
    "violation": "违规 violation",
    "uncertain": "依探测精度无法判定 uncertain (trial trench or new detection needed)",
    "no_rule": "无规则 no rule, cannot judge",
}


def _verdict_counts(verdicts: dict) -> str:
    if not verdicts:
        return ""
    return " · ".join(f"<span class='v-{_e(k)}'>{_e(VERDICT_LABELS.get(k, k))}: {int(v)}</span>"
                      for k, v in verdicts.items())


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def _finding_row(n: int, f: dict) -> str:
    where = f"{f['x']:.2f}, {f['y']:.2f}" + ("" if f.get("z") is None else f", {f['z']:.2f}")
    verified = "" if f.get("rule_verified") in (None, True) else " (unverified)"
    pipes = " / ".join(f"{i} ({u})" for i, u in zip(f["ids"], f["utilities"], strict=False))
    status = f.get("status", "open")
    verdict = f.get("verdict") or "violation"
    return (
        f"<tr class='finding' data-key='{_e(f['key'])}'><td class='num'>{n}</td><td>{_e(f['kind'])}</td>"
        f"<td class='v-{_e(verdict)}'>{_e(VERDICT_LABELS.get(verdict, verdict))}</td>"
        f"<td>{_e(pipes)}</td>"
        f"<td class='num'>{_num(f.get('measured_m'))}</td><td class='num'>{_num(f.get('required_m'))}</td>"
        f"<td class='num'>{_num(f.get('uncertainty_m'))}</td>"
        f"<td class='num'>{_num(f.get('shortfall_m'))}</td><td>{_e(where)}</td>"
        f"<td>{_e(f.get('rule') or '')}{_e(verified)}</td>"
        f"<td class='f-{_e(status)}'>{_e(status)}</td>"
        f"<td>{_e(f.get('decided_by') or '')} {_e(f.get('decided_at') or '')}</td><td>{_e(f.get('note') or '')}</td>"
        f"<td><code>{_e(f['key'])}</code></td></tr>")


def _findings(d: dict) -> str:
    body = [_finding_row(n, f) for n, f in enumerate(d.get("findings") or [], 1)]
    if not body:
        return "<p>No collision, clearance or cover finding: the proposal passes the checks.</p>"
    head = ("<tr><th>#</th><th>kind</th><th>verdict</th><th>pipes</th><th>measured (m)</th><th>required (m)</th>"
            "<th>± survey (m)</th>"
            "<th>shortfall / overlap (m)</th><th>location (E, N, z)</th><th>rule</th><th>decision</th>"
            "<th>by / when</th><th>note</th><th>key</th></tr>")
    return f"<table class='findings'>{head}{''.join(body)}</table>"


def _resolved(d: dict) -> str:
    if not d.get("resolved"):
        return ""
    return ("<h2>Findings of earlier checks no longer found</h2><table><tr><th>key</th><th>kind</th>"
            "<th>summary</th><th>status</th></tr>" + "".join(
                f"<tr><td><code>{_e(r['key'])}</code></td><td>{_e(r['kind'])}</td><td>{_e(r['summary'] or '')}"
                f"</td><td class='f-{_e(r['status'])}'>{_e(r['status'])}</td></tr>" for r in d["resolved"])
            + "</table>")


def _drawing(d: dict) -> str:
    if not d.get("section_svg"):
        return ""
    sec = d.get("section") or {}
    return (f"<h2>Cross-section at the worst place</h2><p>{len(sec.get('pipes', []))} pipes cut; "
            "the proposal is drawn dashed.</p>"
            f"<div class='drawing'>{d['section_svg']}</div>")


def _events(d: dict) -> str:
    if not d.get("events"):
        return ""
    return ("<h2>History</h2><table><tr><th>when</th><th>who</th><th>action</th><th>finding</th>"
            "<th>from → to</th><th>note</th></tr>" + "".join(
                f"<tr><td>{_e(v['at'])}</td><td>{_e(v['by'])}</td><td>{_e(v['action'])}</td>"
                f"<td>{_e(v.get('finding_key') or '')}</td>"
                f"<td>{_e(v.get('from_status') or '')} → {_e(v.get('to_status') or '')}</td>"
                f"<td>{_e(v.get('note') or '')}</td></tr>" for v in d["events"]) + "</table>")


def _unruled(d: dict) -> str:
    if not d.get("unruled_pairs"):
        return ""
    return ("<p class='small'>Pairs no clearance rule covers (无规则, listed as findings): "
            + _e(", ".join(f"{k}: {v}" for k, v in d["unruled_pairs"].items())) + "</p>")
