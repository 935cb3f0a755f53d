"""The SIMPLE ``date`` transformer: parse a date/time value, format it with a pattern.

Formats use the moment/dayjs tokens integration engineers know from Node (seed 003's
gateway ran on Node), or ``strftime`` if the pattern contains ``%``:

    YYYY YY   MMMM MMM MM M   DD D   dddd ddd d   HH H hh h   mm m   ss s   SSS SS S
    A a (AM/PM am/pm)   Z (+05:30) ZZ (+0530)   X (unix seconds) x (unix milliseconds)
    [text] is literal; any other character is copied as is.

Named formats: ``iso`` (the default: ``2024-05-01T10:00:00.000Z`` like JavaScript's
``toISOString``, or with the offset when a ``timezone`` is given), ``date``
(``YYYY-MM-DD``), ``unix`` (``X``) and ``unixMillis`` (``x``).

Input: ISO 8601 strings (``2024-05-01``, ``2024-05-01T10:00:00Z``, with offsets or
fractions), epoch numbers (below 1e11 read as seconds, otherwise milliseconds) and digit
strings likewise, or any string matching ``inputFormat`` (same tokens, or ``strptime``).
A value without an offset is taken as UTC. ``timezone`` (IANA name) converts before
formatting. Names of months and days are English whatever the host locale.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from types import MappingProxyType
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
DAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_TOKENS: Final = re.compile(
    r"\[[^\]]*\]|YYYY|YY|MMMM|MMM|MM|M|DD|D|dddd|ddd|d|HH|H|hh|h|mm|m|ss|s|SSS|SS|S|A|a|ZZ|Z|X|x|.",
    re.DOTALL,
)
_NAMED: Final = MappingProxyType(
    {"date": "YYYY-MM-DD", "unix": "X", "unixmillis": "x", "epoch": "X"}
)
_EPOCH_MS_THRESHOLD: Final = 100_000_000_000  # 1e11: year 5138 in seconds, 1973 in millis

Formatter = Callable[[datetime], str]


class DateError(ValueError):
    pass


def _offset(dt: datetime, sep: str) -> str:
    delta = dt.utcoffset() or timedelta(0)
    minutes = int(delta.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{sep}{mins:02d}"


def _hour12(dt: datetime) -> int:
    return dt.hour % 12 or 12


_FIELDS: Final[Mapping[str, Formatter]] = MappingProxyType(
    {
        "YYYY": lambda d: f"{d.year:04d}",
        "YY": lambda d: f"{d.year % 100:02d}",
        "MMMM": lambda d: MONTHS[d.month - 1],
        "MMM": lambda d: MONTHS[d.month - 1][:3],
        "MM": lambda d: f"{d.month:02d}",
        "M": lambda d: str(d.month),
        "DD": lambda d: f"{d.day:02d}",
        "D": lambda d: str(d.day),
        "dddd": lambda d: DAYS[d.weekday()],
        "ddd": lambda d: DAYS[d.weekday()][:3],
        "d": lambda d: str((d.weekday() + 1) % 7),
        "HH": lambda d: f"{d.hour:02d}",
        "H": lambda d: str(d.hour),
        "hh": lambda d: f"{_hour12(d):02d}",
        "h": lambda d: str(_hour12(d)),
        "mm": lambda d: f"{d.minute:02d}",
        "m": lambda d: str(d.minute),
        "ss": lambda d: f"{d.second:02d}",
        "s": lambda d: str(d.second),
        "SSS": lambda d: f"{d.microsecond // 1000:03d}",
        "SS": lambda d: f"{d.microsecond // 10000:02d}",
        "S": lambda d: str(d.microsecond // 100000),
        "A": lambda d: "AM" if d.hour < 12 else "PM",
        "a": lambda d: "am" if d.hour < 12 else "pm",
        "Z": lambda d: _offset(d, ":"),
        "ZZ": lambda d: _offset(d, ""),
        "X": lambda d: str(int(d.timestamp())),
        "x": lambda d: str(int(d.timestamp() * 1000)),
    }
)

_STRPTIME: Final[Mapping[str, str]] = MappingProxyType(
    {
        "YYYY": "%Y",
        "YY": "%y",
        "MMMM": "%B",
        "MMM": "%b",
        "MM": "%m",
        "M": "%m",
        "DD": "%d",
        "D": "%d",
        "dddd": "%A",
        "ddd": "%a",
        "HH": "%H",
        "H": "%H",
        "hh": "%I",
        "h": "%I",
        "mm": "%M",
        "m": "%M",
        "ss": "%S",
        "s": "%S",
        "SSS": "%f",
        "SS": "%f",
        "S": "%f",
        "A": "%p",
        "a": "%p",
        "Z": "%z",
        "ZZ": "%z",
    }
)


def _iso_utc(dt: datetime) -> str:
    utc = dt.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _iso_local(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds")


def compile_format(pattern: str | None, *, has_timezone: bool = False) -> Formatter:
    """Build a formatter for ``pattern``; raise :class:`DateError` if it is unusable."""
    if pattern is None or pattern.strip().lower() in ("", "iso"):
        return _iso_local if has_timezone else _iso_utc
    pattern = _NAMED.get(pattern.strip().lower(), pattern)
    if "%" in pattern:
        strftime_pattern = pattern

        def fmt_strftime(dt: datetime) -> str:
            return dt.strftime(strftime_pattern)

        formatter: Formatter = fmt_strftime
    else:
        parts: list[Formatter | str] = []
        for token in _TOKENS.findall(pattern):
            if token.startswith("[") and token.endswith("]") and len(token) >= 2:
                parts.append(token[1:-1])
            elif token in _FIELDS:
                parts.append(_FIELDS[token])
            else:
                parts.append(token)
        frozen = tuple(parts)

        def fmt_tokens(dt: datetime) -> str:
            return "".join(p if isinstance(p, str) else p(dt) for p in frozen)

        formatter = fmt_tokens
    try:
        formatter(datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    except (ValueError, TypeError) as exc:
        raise DateError(f"invalid date format {pattern!r}: {exc}") from exc
    return formatter


Parser = Callable[[str], datetime]


def compile_input_format(pattern: str | None) -> Parser | None:
    """Build a parser for ``inputFormat``; None means ISO 8601 / epoch digits."""
    if pattern is None or not pattern.strip():
        return None
    if pattern in ("X", "x"):
        scale = 1 if pattern == "X" else 1000

        def parse_epoch(text: str) -> datetime:
            return datetime.fromtimestamp(float(text) / scale, UTC)

        return parse_epoch
    if "%" in pattern:
        strptime_pattern = pattern
    else:
        pieces: list[str] = []
        for token in _TOKENS.findall(pattern):
            if token.startswith("[") and token.endswith("]") and len(token) >= 2:
                pieces.append(token[1:-1].replace("%", "%%"))
            elif token in ("X", "x"):
                raise DateError("X and x can only be used alone in inputFormat")
            else:
                pieces.append(_STRPTIME.get(token, token.replace("%", "%%")))
        strptime_pattern = "".join(pieces)

    def parse_pattern(text: str) -> datetime:
        return datetime.strptime(text, strptime_pattern)

    return parse_pattern


def load_timezone(name: str | None) -> tzinfo | None:
    if name is None or not name.strip():
        return None
    if name.strip().upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DateError(f"unknown timezone {name!r}") from exc


def to_datetime(value: Any, parser: Parser | None) -> datetime:
    """Interpret ``value`` as an instant; raise :class:`DateError` if it cannot be."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, bool):
        raise DateError(f"a boolean is not a date ({value})")
    elif isinstance(value, int | float):
        dt = _from_epoch(float(value))
    elif isinstance(value, str):
        text = value.strip()
        try:
            if parser is not None:
                dt = parser(text)
            elif text.lstrip("-").isdigit():
                dt = _from_epoch(float(text))
            else:
                dt = datetime.fromisoformat(text)
        except (ValueError, OverflowError, OSError) as exc:
            raise DateError(f"cannot parse {value!r} as a date") from exc
    else:
        raise DateError(f"a {type(value).__name__} is not a date")
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _from_epoch(number: float) -> datetime:
    seconds = number / 1000 if abs(number) >= _EPOCH_MS_THRESHOLD else number
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise DateError(f"epoch value {number} is out of range") from exc


@dataclass(frozen=True, slots=True)
class DateTransform:
    """``date`` with its options compiled: call it with a value, get a string."""

    formatter: Formatter
    parser: Parser | None
    timezone: tzinfo | None

    def __call__(self, value: Any) -> str:
        dt = to_datetime(value, self.parser)
        if self.timezone is not None:
            dt = dt.astimezone(self.timezone)
        try:
            return self.formatter(dt)
        except (ValueError, OverflowError, OSError) as exc:
            raise DateError(f"cannot format {value!r}: {exc}") from exc


def compile_date(
    fmt: str | None, input_format: str | None = None, timezone: str | None = None
) -> DateTransform:
    tz = load_timezone(timezone)
    return DateTransform(
        compile_format(fmt, has_timezone=tz is not None), compile_input_format(input_format), tz
    )
