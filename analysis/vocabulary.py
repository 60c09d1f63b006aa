"""The words the viewer shows for codes, Chinese first, from their one home (issue 22).

Codes are stored as the survey and the analyses give them (``YS``, ``ZM``, ``circular``,
``clearance_vertical``); people read them spelled out: 雨水 storm water, 直埋 direct burial.
:func:`vocabulary` gathers every list of codes from where it is declared (:mod:`twin.domain`,
:mod:`twin.schema`, :mod:`analysis.findings`, :mod:`analysis.proposal`, ...) and names each code
in Chinese and English; the names only this module knows are the ones no other module needed yet.
The viewer reads the result (GET /view/vocabulary) and shows ``tr(zh, en)``: there is no second
dictionary of codes in JavaScript.

>>> v = vocabulary()
>>> v["utility"]["YS"], v["burial"]["ZM"], v["finding_kind"]["clearance_vertical"]
(['雨水', 'storm water'], ['直埋', 'direct burial'], ['垂直净距不足', 'vertical clearance'])
>>> v["column"]["segment"]["material"]
['材质', 'material', None]
"""

from __future__ import annotations

from typing import Final

from analysis.findings import STATUS_LABELS, VERDICT_LABELS
from analysis.findings import STATUSES as SCAN_STATUSES
from analysis.proposal import FINDING_KINDS
from analysis.proposal_workflow import EVENT_ACTIONS, FINDING_STATUSES, PROPOSAL_STATUSES
from analysis.shutdown import MOVES as SHUTDOWN_MOVES
from analysis.shutdown import STATUS_ZH as SHUTDOWN_ZH
from analysis.shutdown import STATUSES as SHUTDOWN_STATUSES
from analysis.shutdown import VALVE_STATES
from twin.domain import APPURTENANCES, FEATURES, STATUSES, UTILITIES
from twin.schema import CATALOGUE

__all__ = ["SUBTYPES", "BURIAL", "NAMES", "vocabulary"]

#: Subtypes of CJJ 61 appendix B (twin.domain.UTILITIES[...].subtypes), Chinese and English.
SUBTYPES: Final[dict[str, tuple[str, str]]] = {
    "JY": ("原水", "raw water"), "SS": ("输水", "transmission"), "ZS": ("中水", "reclaimed water"),
    "JP": ("配水", "distribution"), "JZ": ("直饮水", "drinking water"), "XS": ("消防水", "fire water"),
    "LS": ("绿化水", "irrigation water"), "JH": ("循环水", "circulating water"),
    "YS": ("雨水", "storm water"), "WS": ("污水", "sewage"), "HS": ("合流", "combined sewer"),
    "MQ": ("煤气", "town gas"), "YH": ("液化气", "LPG"), "TR": ("天然气", "natural gas"),
    "RS": ("热水", "hot water"), "ZQ": ("蒸汽", "steam"),
    "GD": ("供电", "power supply"), "LD": ("路灯", "street lighting"), "XH": ("信号", "traffic signals"),
    "DC": ("电车", "tram"), "GG": ("广告", "advertising"),
    "DH": ("电话", "telephone"), "DS": ("有线电视", "cable TV"), "XX": ("信息网络", "data network"),
    "GB": ("广播", "broadcast"),
    "ZH": ("综合管廊", "utility tunnel"), "BM": ("不明", "unknown"),
}
#: Burial methods (埋设方式) the rule tables name; other codes are shown as they are.
BURIAL: Final[dict[str, tuple[str, str]]] = {
    "ZM": ("直埋", "direct burial"), "GM": ("管埋", "in a pipe"), "GK": ("管块", "duct block"),
    "GG": ("管沟", "pipe trench"), "ZH": ("综合管廊", "utility tunnel"),
}
_FEATURE_EN = {"service_entry": "service entry", "material_change": "material change"}
#: Every other list of codes: category -> code -> (Chinese, English).
NAMES: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "status": {"active": ("在用", "active"), "abandoned": ("废弃", "abandoned"),
               "planned": ("规划", "planned"), "proposed": ("拟建", "proposed"),
               "retired": ("已退役", "retired")},
    "shape": {"circular": ("圆形", "circular"), "rect": ("矩形", "rectangular")},
    "depth_reference": {"top": ("管顶", "top of pipe"), "invert": ("管内底", "invert")},
    "survey_class": {"exposed": ("明显点", "exposed"), "concealed": ("隐蔽点", "concealed")},
    "finding_kind": {"collision": ("碰撞", "collision"), "duplicate": ("重复管线", "duplicate"),
                     "clearance_vertical": ("垂直净距不足", "vertical clearance"),
                     "clearance_horizontal": ("水平净距不足", "horizontal clearance"),
                     "cover": ("覆土不足", "cover"), "no_rule": ("无规则", "no rule")},
    # a longitudinal profile (analysis.profile): a pipe's grade along the path, where a crossing lies
    "grade": {"level": ("平", "level"), "rises": ("上坡", "rises"), "falls": ("下坡", "falls")},
    "crossing": {"above": ("在上方", "above"), "below": ("在下方", "below")},
    # the whole-network scan's kinds (analysis.clash, analysis.clearance)
    "scan_kind": {"hard": ("硬碰撞", "collision"), "duplicate": ("重复管线", "duplicate"),
                  "horizontal": ("水平净距不足", "horizontal clearance"),
                  "vertical": ("垂直净距不足", "vertical clearance"), "no_rule": ("无规则", "no rule"),
                  "cover": ("覆土不足", "cover")},
    "finding_status": {"new": "new", "active": "active", "reviewed": "reviewed",
                       "approved": "approved", "resolved": "resolved"},  # Chinese: analysis.findings
    "verdict": {"violation": "violation", "uncertain": "uncertain", "no_rule": "no rule",
                "compliant": "compliant"},  # Chinese: analysis.findings
    "proposal_status": {"new": ("新提交", "new"), "reviewed": ("已审核", "reviewed"),
                        "approved": ("已批准", "approved"), "rejected": ("已驳回", "rejected"),
                        "withdrawn": ("已撤回", "withdrawn")},
    "proposal_finding_status": {"open": ("待处理", "open"), "accepted": ("已接受", "accepted"),
                                "rejected": ("已驳回", "rejected"), "resolved": ("已解决", "resolved")},
    "valve_state": {"pending": ("待关", "pending"), "closed": ("已关闭", "closed"), "failed": ("失败", "failed")},
    # a shutdown's event log (analysis.shutdown: "planned", its moves, "valve <state>")
    "shutdown_action": {"planned": ("计划", "planned"), "notify": ("通知", "notified"),
                        "execute": ("执行", "executed"), "restore": ("恢复供水", "restored"),
                        "cancel": ("取消", "cancelled"), "valve closed": ("阀门已关闭", "valve closed"),
                        "valve failed": ("阀门失败", "valve failed"), "valve pending": ("阀门待关", "valve pending")},
    # why a valve of a shutoff failed (analysis.shutoff)
    "failed_reason": {"reported failed": ("报告失效", "reported failed"),
                      "inoperable in the twin": ("孪生库中记为不可操作", "inoperable in the twin"),
                      "reported failed, not needed for this shutoff": ("报告失效，本次关阀不需要",
                                                                        "reported failed, not needed for this shutoff")},
    # a background job's status (api/jobs.py, OGC API - Processes)
    "job_status": {"accepted": ("已接受", "accepted"), "running": ("运行中", "running"),
                   "successful": ("已完成", "successful"), "failed": ("失败", "failed"),
                   "dismissed": ("已撤销", "dismissed")},
    "alarm_severity": {"critical": ("严重", "critical"), "warning": ("警告", "warning"), "info": ("提示", "info")},
    "alarm_state": {"open": ("未确认", "open"), "acknowledged": ("已确认", "acknowledged"),
                    "closed": ("已关闭", "closed")},
    "boolean": {"true": ("是", "yes"), "false": ("否", "no")},
    # a feature's history (twin.store.history): each version's change and the feature's state
    "history": {"created": ("新建", "created"), "changed": ("修改", "changed"),
                "retired": ("退役", "retired"), "revived": ("恢复", "revived"),
                "deleted": ("已删除", "deleted"), "current": ("现行", "current")},
}


def _pairs(table: dict) -> dict[str, list[str]]:
    return {code: list(names) for code, names in table.items()}


def vocabulary() -> dict[str, dict]:
    """Every code the viewer shows, as ``{category: {code: [zh, en]}}``, and the column labels
    as ``{"column": {kind: {name: [zh, en, unit]}}}``."""
    utility = {code: [u.name_zh, u.name_en] for code, u in UTILITIES.items()}
    utility.update(_pairs(SUBTYPES))
    out: dict[str, dict] = {
        "utility": utility,
        "burial": _pairs(BURIAL),
        "feature": {k: [v[0], _FEATURE_EN.get(k, k)] for k, v in FEATURES.items()},
        "appurtenance": {k: [v[0], k.replace("_", " ")] for k, v in APPURTENANCES.items()},
    }
    out.update({name: _pairs(table) for name, table in NAMES.items()})
    out["finding_status"] = {k: [STATUS_LABELS[k], en] for k, en in NAMES["finding_status"].items()}
    out["shutdown_status"] = {k: [SHUTDOWN_ZH[k], k] for k in SHUTDOWN_STATUSES}
    out["verdict"] = {k: [VERDICT_LABELS[k], en] for k, en in NAMES["verdict"].items()}
    out["proposal_action"] = _pairs(EVENT_ACTIONS)
    out["column"] = {kind: {c.name: [c.label_zh, c.label_en, c.unit] for c in cols}
                     for kind, cols in CATALOGUE.items()}
    return out


def _check() -> None:
    """Every declared code has its names (run by the tests)."""
    declared = {
        "utility": [*UTILITIES, *(s for u in UTILITIES.values() for s in u.subtypes)],
        "status": STATUSES, "finding_kind": FINDING_KINDS, "finding_status": SCAN_STATUSES,
        "proposal_status": PROPOSAL_STATUSES, "proposal_finding_status": FINDING_STATUSES,
        "shutdown_status": SHUTDOWN_STATUSES, "valve_state": VALVE_STATES,
        "shutdown_action": ["planned", *SHUTDOWN_MOVES, *(f"valve {s}" for s in VALVE_STATES)],
    }
    words = vocabulary()
    missing = {k: sorted(set(codes) - set(words[k])) for k, codes in declared.items()}
    missing = {k: v for k, v in missing.items() if v}
    if missing:
        raise AssertionError(f"codes without names: {missing}")
