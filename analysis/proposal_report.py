"""The printable proposal report (管线审批报告): one HTML page, and the cross-section as SVG.

:func:`report_html` renders a proposal check (a :class:`analysis.proposal.ProposalReport`, or
the stored report of :func:`analysis.proposal_workflow.get_proposal`): a print stylesheet (A4
landscape), the result and status, the findings with their decisions, the findings of
earlier checks no longer found, the cross-section at the worst place as embedded SVG, the
event log and signature lines. :func:`section_svg` draws a stored report's cross-section
again (a stored report keeps the section as data).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from analysis import svg
from analysis.proposal import SECTION_TITLE, ProposalReport, unchecked_pairs
from analysis.section import CrossSection, SectionPipe, Spacing
from analysis.vocabulary import NAMES

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
.unchecked{border:2px solid #6a1b9a}.unchecked th{background:#f3e5f5}
ul.rules{margin:0;padding-left:14px}
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
    counts = ", ".join(f"{_kind(k)}: {v}" for k, v in (d.get("counts") or {}).items()) or "无 none"
    verdicts = d.get("verdicts") or {}
    title = f"管线审批 Proposal check — {d.get('name')}"
    return (
        "<!DOCTYPE html>\n<html lang='zh-CN'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f"<p><span class='badge {result}' id='result'>{result.upper()}</span> "
        f"<span class='badge st-{_e(status)}' id='status'>{_e(status)}</span> "
        f"{_RESULT[result]} · {_e(_named('proposal_status', status))} · {len(d.get('findings') or [])} 项问题 findings "
        f"({_e(counts)}), {d.get('open_findings', 0)} 项未接受 not accepted</p>"
        f"<p id='verdicts'>{_verdict_counts(verdicts)}</p>"
        f"<table class='meta'>{_meta(d)}</table>"
        f"<h2>问题 Findings</h2>{_findings(d)}{_unruled(d)}{_resolved(d)}{_drawing(d)}{_events(d)}"
        "<div class='sign'><div>审核 Checked by</div><div>审批 Approved by</div><div>日期 Date</div></div>"
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
        ("方案 proposal", f"{d.get('proposal_id') if d.get('proposal_id') is not None else '(未保存 not stored)'} · "
                         f"版本 version {d.get('version', 1)}"),
        ("类别/规格 utility / size", f"{d.get('utility')} · {d.get('size')} · {d.get('length_m', 0):.2f} m"),
        ("检查时间 checked", local_time(d.get("checked_at"))),
        ("提交人 submitted by", f"{d.get('created_by') or '—'} {local_time(d.get('created_at'))}"),
        ("审批人 decided by", f"{d.get('decided_by') or '—'} {local_time(d.get('decided_at'))}"),
        ("审批意见 note", d.get("note") or "—"),
    ]
    if d.get("override_note"):
        rows.append(("放行理由 approved with override", d["override_note"]))
    return "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)


#: How a result, a status, a kind and a finding's decision read in the report, Chinese first.
_RESULT = {"pass": "通过 pass", "fail": "未通过 fail"}


def _named(category: str, code: str) -> str:
    """A code as the report reads it: its Chinese name, then the code (``碰撞 collision``)."""
    names = NAMES[category].get(code)
    return f"{names[0]} {code}" if names else code


def _kind(kind: str) -> str:
    return _named("finding_kind", kind)


def local_time(value: str | dt.datetime | None) -> str:
    """A time in the server's local time with its offset (``2026-12-03 17:05:09+08:00``), not UTC;
    text that is not a time is shown as it is."""
    if value in (None, ""):
        return ""
    try:
        t = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).astimezone().isoformat(sep=" ", timespec="seconds")


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
    verified = "" if f.get("rule_verified") in (None, True) else " (待核实 unverified)"
    pipes = " / ".join(_pipe(i, u, z) for i, u, z in zip(f["ids"], f["utilities"], _sizes(f), strict=False))
    status = f.get("status", "open")
    verdict = f.get("verdict") or "violation"
    return (
        f"<tr class='finding' data-key='{_e(f['key'])}'><td class='num'>{n}</td><td>{_e(_kind(f['kind']))}</td>"
        f"<td class='v-{_e(verdict)}'>{_e(VERDICT_LABELS.get(verdict, verdict))}</td>"
        f"<td>{_e(pipes)}</td>"
        f"<td class='num'>{_num(f.get('measured_m'))}</td><td class='num'>{_num(f.get('required_m'))}</td>"
        f"<td class='num'>{_num(f.get('uncertainty_m'))}</td>"
        f"<td class='num'>{_num(f.get('shortfall_m'))}</td><td>{_e(where)}</td>"
        f"<td>{_rules(f, verified)}</td>"
        f"<td class='f-{_e(status)}'>{_e(_named('proposal_finding_status', status))}</td>"
        f"<td>{_e(f.get('decided_by') or '')} {_e(local_time(f.get('decided_at')))}</td><td>{_e(f.get('note') or '')}</td>"
        f"<td><code>{_e(f['key'])}</code></td></tr>")


def _sizes(f: dict) -> list[str]:
    return list(f.get("sizes") or []) + [""] * len(f.get("ids") or [])


def _pipe(i: str, utility: str, size: str) -> str:
    return f"{i} ({utility}{' ' + size if size else ''})"


def _rules(f: dict, verified: str) -> str:
    """Every rule a pair breaks (one line each), or the finding's one rule."""
    rules = f.get("rules") or []
    if len(rules) < 2:
        return _e(f.get("rule") or "") + _e(verified)
    return "<ul class='rules'>" + "".join(
        f"<li><span class='v-{_e(r.get('verdict') or '')}'>{_e(r.get('kind') or '')}</span> "
        f"{_e(r.get('rule') or '')} {_e(r.get('clause') or '')}: {_num(r.get('measured_m'))}"
        f"{'' if r.get('required_m') is None else ' / ' + _num(r.get('required_m'))} m</li>"
        for r in rules) + "</ul>"


def _findings(d: dict) -> str:
    body = [_finding_row(n, f) for n, f in enumerate(d.get("findings") or [], 1)]
    if not body:
        return "<p>无碰撞、净距或覆土问题：方案通过检查。No collision, clearance or cover finding: the proposal passes.</p>"
    head = ("<tr><th>#</th><th>类型 kind</th><th>判定 verdict</th><th>管线 pipes</th><th>实测 measured (m)</th>"
            "<th>要求 required (m)</th><th>± 探测精度 survey (m)</th>"
            "<th>不足/重叠 shortfall / overlap (m)</th><th>位置 location (E, N, z)</th><th>规则 rule</th>"
            "<th>处理 decision</th><th>处理人/时间 by / when</th><th>说明 note</th><th>key</th></tr>")
    return f"<table class='findings'>{head}{''.join(body)}</table>"


def _resolved(d: dict) -> str:
    if not d.get("resolved"):
        return ""
    return ("<h2>已消除的问题 Findings of earlier checks no longer found</h2><table><tr><th>key</th>"
            "<th>类型 kind</th><th>摘要 summary</th><th>状态 status</th></tr>" + "".join(
                f"<tr><td><code>{_e(r['key'])}</code></td><td>{_e(r['kind'])}</td><td>{_e(r['summary'] or '')}"
                f"</td><td class='f-{_e(r['status'])}'>{_e(r['status'])}</td></tr>" for r in d["resolved"])
            + "</table>")


def _drawing(d: dict) -> str:
    if not d.get("section_svg"):
        return ""
    sec = d.get("section") or {}
    return (f"<h2>最不利处横断面 Cross-section at the worst place</h2><p>剖到 {len(sec.get('pipes', []))} 条管线 "
            "pipes cut；拟建管线以虚线表示 the proposal is drawn dashed.</p>"
            f"<div class='drawing'>{d['section_svg']}</div>")


def _events(d: dict) -> str:
    if not d.get("events"):
        return ""
    return ("<h2>记录 History</h2><table><tr><th>时间 when</th><th>操作人 who</th><th>操作 action</th>"
            "<th>问题 finding</th><th>状态 from → to</th><th>说明 note</th></tr>" + "".join(
                f"<tr><td>{_e(local_time(v['at']))}</td><td>{_e(v['by'])}</td><td>{_e(v['action'])}</td>"
                f"<td>{_e(v.get('finding_key') or '')}</td>"
                f"<td>{_e(v.get('from_status') or '')} → {_e(v.get('to_status') or '')}</td>"
                f"<td>{_e(v.get('note') or '')}</td></tr>" for v in d["events"]) + "</table>")


def _unruled(d: dict) -> str:
    """The pairs no clearance rule covers, as warning rows naming both pipes."""
    rows = unchecked_pairs(d.get("findings") or [])
    if not rows:
        return ""
    return ("<h2>未核查管线对 Pairs no rule covers (无规则: cannot judge)</h2>"
            "<table class='unchecked'><tr><th>#</th><th>proposed pipe 拟建管线</th><th>existing pipe 现状管线</th>"
            "<th>clearance 净距</th><th>measured (m)</th><th>key</th></tr>" + "".join(
                f"<tr class='unchecked-pair v-no_rule'><td class='num'>{n}</td>"
                + "".join(f"<td>{_e(_pipe(p['id'], p['utility'], p['size']))}</td>" for p in r["pipes"][:2])
                + f"<td>{_e(r['clearance'])}</td><td class='num'>{_num(r.get('measured_m'))}</td>"
                f"<td><code>{_e(r['key'])}</code></td></tr>" for n, r in enumerate(rows, 1)) + "</table>")
