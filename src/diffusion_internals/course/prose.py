"""Numbers from a chapter's cells into its prose: glue them, format them, and check what the text says of them.

Every number in a chapter's text is computed by a cell on that page and glued into the prose with myst-nb
(``{glue:text}`fid_ddim:.2f``` in the text); tests/course/test_prose_numbers.py fails on a number typed by
hand. A sentence that draws a conclusion from the numbers ("DDIM beats DDPM at 20 steps") is checked by
:func:`claim` in the cell that computes them, so the build stops when retrained models or a new seed stop
supporting it, instead of publishing a page whose text contradicts its tables.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["glue_values", "claim", "times_ten"]


def glue_values(**values: Any) -> None:
    """Glue each value under its name for the page's prose (myst-nb glue, not displayed in the cell)."""
    from myst_nb import glue  # the book's toolchain; imported here so the package does not need it

    for name, value in values.items():
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()  # numpy and torch scalars -> Python: glue:text formats only Python numbers
        glue(name, value, display=False)


def claim(holds: bool, statement: str) -> None:
    """Stop the page when the numbers computed above no longer support what its text says (`statement`)."""
    if hasattr(holds, "item") and getattr(holds, "ndim", 0) == 0:
        holds = holds.item()  # a numpy or torch boolean scalar
    if not isinstance(holds, bool):
        raise TypeError(f"holds must be a bool (a comparison of the numbers), got {type(holds).__name__}: {holds!r}")
    if not holds:
        raise AssertionError(f"the text says that {statement}, and the numbers computed above no longer show it")


def times_ten(x: float, digits: int = 3) -> str:
    """x as prose in scientific notation, 2.03 · 10⁴, with `digits` significant digits."""
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be an int >= 1 (significant digits), got {digits!r}")
    if not math.isfinite(x) or x == 0:
        raise ValueError(f"x must be a finite non-zero number, got {x!r}")
    exponent = math.floor(math.log10(abs(x)))
    mantissa = float(f"{x / 10**exponent:.{digits}g}")
    if abs(mantissa) >= 10:  # rounding carried into the next power: 9.996e3 at 3 digits is 1.00 · 10⁴
        mantissa, exponent = mantissa / 10, exponent + 1
    superscript = str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{mantissa:.{max(digits - 1, 0)}f} · 10{superscript}"  # fixed, so 1.0 keeps its zero
