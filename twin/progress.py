"""Progress messages in Chinese: one catalogue of the English step templates (issue 22).

Long work reports how far it is in English (``step("loading nodes")``, ``progress(45, f"{n:,}
candidate pairs; collision")``) from the modules that do it. People read Chinese first, so a
job's progress is served in both (``api/jobs.py``: ``message`` in the client's language,
``message_en``, ``message_zh``) and the Chinese comes from here: each template's placeholders
match any text, the table and feature names in them are spelled out, and ``{message}`` is a
message of its own (``build 2: meshing tiles 3/10``). ``tests/test_progress.py`` reads every
step message in the packages and checks it has its Chinese here, so none slips in English.

>>> chinese("loading: loading segments")
'入库：正在载入管段'
>>> chinese("1,024 candidate pairs; collision and clearance")
'1,024 对候选管线；碰撞与净距检查'
>>> chinese("something new") is None
True
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["TEMPLATES", "WORDS", "chinese", "bilingual", "shown"]

#: English step template -> Chinese. ``{name}`` matches any text; ``{message}`` is translated too.
TEMPLATES: Final[dict[str, str]] = {
    # wrappers the API puts around a step (api/uploads.py, api/tiles.py)
    "loading: {message}": "入库：{message}",
    "build {run}: {message}": "第 {run} 次构建：{message}",
    # shared steps
    "reading": "正在读取",
    "reading the network": "正在读取管网",
    "reading the tables": "正在读取表格",
    "checking": "正在检查",
    "checking the data": "正在检查数据",
    "checking the network": "正在检查管网",
    "writing": "正在写出",
    "writing the result": "正在写入结果",
    "recording the report": "正在记录报告",
    "done": "完成",
    "the server stopped before the job finished; nothing was applied": "作业完成前服务器已停止；未应用任何更改",
    # survey import (ingest/pipeline.py, ingest/load.py)
    "points {n}": "管点 {n}",
    "segments {n}": "管段 {n}",
    "copying {table}s": "正在复制{table}",
    "loading {table}s": "正在载入{table}",
    "merging {table}s": "正在合并{table}",
    "comparing {table}s": "正在比对{table}",
    "indexing {table}s ({index})": "正在重建{table}索引（{index}）",
    # the sample district (ingest/sample.py)
    "building {utility}": "正在生成 {utility}",
    "assembling the tables": "正在汇总表格",
    "writing {file}": "正在写出 {file}",
    # whole-network scan (analysis/scan.py, api/processes.py)
    "{n} segments read; finding candidate pairs": "已读取 {n} 条管段；正在查找候选管线对",
    "{n} candidate pairs; collision": "{n} 对候选管线；碰撞检查",
    "{n} candidate pairs; collision and clearance": "{n} 对候选管线；碰撞与净距检查",
    "{n} hard clashes; waiting for clearance": "{n} 处硬碰撞；等待净距检查",
    "{n} hard clashes; clearance": "{n} 处硬碰撞；净距检查",
    "cutting the network into partitions": "正在将管网分区",
    "{n} segments in {cells} partitions on {workers} workers": "{n} 条管段，{cells} 个分区，{workers} 个工作进程",
    "{done} of {cells} partitions scanned": "已扫描 {done}/{cells} 个分区",
    "merging the partitions": "正在合并分区结果",
    "{n} segments; checking": "{n} 条管段；正在检查",
    # criticality (analysis/criticality.py)
    "regions and supply graph": "正在划分区域并建立供水图",
    "what each segment cuts off": "正在计算各关阀段的停供范围",
    "the next ring of every valve": "正在计算每个阀门的外一圈阀门",
    "storing {n} rows of {table}": "正在保存 {table} 的 {n} 行",
    # tiles (tiles/build.py through api/tiles.py)
    "reading features": "正在读取要素",
    "meshing tiles": "正在生成瓦片网格",
    "meshing tiles {done}/{total}": "正在生成瓦片网格 {done}/{total}",
    # live simulation (live/simulate.py)
    "{elapsed}/{duration} s, {n} readings published": "{elapsed}/{duration} 秒，已发布 {n} 条读数",
    # backup and restore (twin/backup.py)
    "dumping schema {schema}": "正在导出模式 {schema}",
    "dumping {table}": "正在导出 {table}",
    "checking the backup": "正在检查备份",
    "migrating to this version's schema": "正在迁移到此版本的数据库结构",
    "restoring {file} into schema {schema}": "正在将 {file} 恢复到模式 {schema}",
    "restoring: {size} MB of SQL": "正在恢复：{size} MB SQL",
    "replacing the twin": "正在替换孪生库",
}

#: Table and feature names that appear inside the templates' placeholders.
WORDS: Final[dict[str, str]] = {
    "node": "管点", "segment": "管段", "valve": "阀门", "source": "水源", "customer": "用户",
    "criticality_segment": "关阀段重要性", "criticality_pipe": "管线重要性",
    "criticality_valve": "阀门重要性",
}


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts))
    return re.compile(regex + r"\Z", re.DOTALL)


#: The most specific template first (most literal text): "merging the partitions" before
#: "merging {table}s".
_PATTERNS: Final = [(_pattern(en), zh) for en, zh in
                    sorted(TEMPLATES.items(), key=lambda t: -len(re.sub(r"\{\w+\}", "", t[0])))]


def chinese(message: str | None) -> str | None:
    """The Chinese of a progress message, or None when the catalogue has no template for it."""
    if not message:
        return message
    for pattern, zh in _PATTERNS:
        m = pattern.match(message)
        if m is None:
            continue
        values = {}
        for name, value in m.groupdict().items():
            values[name] = chinese(value) if name == "message" else WORDS.get(value, value)
            if values[name] is None:
                break
        else:
            return zh.format(**values)
    return None


def bilingual(message: str | None) -> tuple[str | None, str | None]:
    """A stored job message as (English, Chinese): a failure stored as ``[CODE] 中文 — English``
    splits into its two languages; a step message gets its Chinese from the catalogue (None
    when it has none)."""
    if not message:
        return message, message
    m = re.match(r"(\[[A-Z0-9_]+\] )?(.*?[\u3400-\u9fff].*?) — (.*)\Z", message, re.DOTALL)
    if m:
        code = m.group(1) or ""
        return code + m.group(3), code + m.group(2)
    return message, chinese(message)


def shown(message: str) -> str:
    """A progress message as the terminal shows it, Chinese first like the CLI's errors:
    ``正在载入管段 — loading segments`` (the English alone when the catalogue has no Chinese).

    >>> shown("loading segments")
    '正在载入管段 — loading segments'
    """
    zh = chinese(message)
    return f"{zh} — {message}" if zh else message
