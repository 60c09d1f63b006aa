"""The CJK fonts the documents embed and label with (Debian packages, installed by
``scripts/system-deps.sh``): nothing is fetched at run time.

>>> cjk_font().suffix
'.ttf'
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from twin.errors import ConfigError

__all__ = ["cjk_font", "CJK_FONTS"]

#: TrueType fonts with Chinese glyphs, best first (fpdf2 embeds a subset; VTK labels with it).
CJK_FONTS = (
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),  # fonts-droid-fallback
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
)


@cache
def cjk_font() -> Path:
    """The first CJK TrueType font present, or a ConfigError naming the package to install."""
    for path in CJK_FONTS:
        if path.is_file():
            return path
    raise ConfigError("no CJK font: install fonts-droid-fallback (scripts/system-deps.sh does)",
                      zh="没有中日韩字体：请安装 fonts-droid-fallback（scripts/system-deps.sh 会安装）")
