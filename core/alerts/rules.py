"""Alert rules: the file operators edit, its validation, and the resolved `Rule` values.

A rules file is TOML (`core/alerts.example.toml` is the annotated copy to start from; the
format is in docs/ALERTS.md). It holds `[defaults]` (whether the rules derived from the
registry, `core.alerts.defaults`, are included, and which of them are disabled) and one
`[[rules]]` table per rule; a rule with the id of a default one replaces it. Parsing is
pydantic (frozen specs, unknown keys refused); cross references (pilots, sensors, devices,
named thresholds) are checked against the registry afterwards. Every refusal is a
`core.errors.ConfigError` that names the file and the place, e.g. `rules[3].pending_s: ...`.

One kind is not judged on readings: `unhealthy` watches a component's health endpoint (an
ingest worker's or the API's `/health`). It has a URL and a component name instead of a pilot,
devices and a sensor; the evaluator is given it and ignores it (it feeds on no device), and
`alerts.health.HealthWatch` polls it (docs/ALERTS.md, "Unhealthy components").

This module reads no store, no network and no clock: `load_rules` reads one file (and an
`unhealthy` rule's `ca_file` is looked at to exist).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.errors import ConfigError
from core.registry import ID_PATTERN, Registry

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
#: The kinds; a new one goes last (`core.alerts.metrics` numbers them in this order).
Kind = Literal[
    "threshold", "mean_over_guideline", "rate_of_rise", "silent", "battery_low", "flat", "unhealthy"
]
KINDS: tuple[str, ...] = get_args(Kind)
Direction = Literal["above", "below"]
#: A `mean_over_guideline` rule's window: the last `window_s` of device time, or the pilot's
#: local calendar day so far.
MeanWindow = Literal["rolling", "day"]
MEAN_WINDOWS: tuple[str, ...] = get_args(MeanWindow)

#: Rule ids: stable strings such as `santa-fe.level.alert` (they name alarms and state).
RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"
RuleId = Annotated[str, Field(pattern=RULE_ID_PATTERN)]
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]

#: Defaults shared by the file format and the rules derived from the registry.
DEFAULT_CLEAR_S = 1800
#: The default hysteresis margin: this share of the level's size (5.30 m -> 5.3 cm).
DEFAULT_MARGIN_SHARE = 0.01
DEFAULT_MEAN_WINDOW_S = 86_400
DEFAULT_MIN_COVERAGE = 0.75
DEFAULT_RISE_WINDOW_S = 3 * 3600
DEFAULT_BATTERY_V = 3.4
DEFAULT_FLAT_SPAN_S = 2 * 3600
DEFAULT_SILENT_INTERVALS = 3.0
BATTERY_SENSOR = "battery_v"
#: `unhealthy`: unhealthy this long before it fires, healthy this long before it clears.
DEFAULT_UNHEALTHY_PENDING_S = 60
DEFAULT_UNHEALTHY_CLEAR_S = 0
DEFAULT_HEALTH_TIMEOUT_S = 5.0
MAX_HEALTH_TIMEOUT_S = 60.0
MAX_URL_LENGTH = 512
#: The pilot of `unhealthy` alarms and events (no registry pilot: the system itself).
SYSTEM_PILOT = "system"
#: The label of an `unhealthy` rule, and the start of its alarms' labels (`health_label`).
UNHEALTHY = "unhealthy"


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class _Common(_Spec):
    """What every rule has: its id, scope and severity."""

    id: RuleId
    pilot: Identifier | None = None
    devices: list[Identifier] | None = Field(default=None, min_length=1)
    severity: Severity = "warning"
    # printable: a label goes into message texts, titles and e-mail subjects
    label: str | None = Field(
        default=None, min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f]+$"
    )


class _Pending(_Common):
    """Rules judged on readings: how long past the level before firing, and how they clear."""

    pending_s: int = Field(default=0, ge=0)
    clear_s: int = Field(default=DEFAULT_CLEAR_S, ge=0)


class _Level(_Pending):
    """Rules with a level and a hysteresis band below (or above) it."""

    clear_level: float | None = None
    clear_margin: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_clear(self) -> _Level:
        if self.clear_level is not None and self.clear_margin is not None:
            raise ValueError("give clear_level or clear_margin, not both")
        return self


class ThresholdSpec(_Level):
    """`kind = "threshold"`: a sensor's value at or past a level."""

    kind: Literal["threshold"]
    sensor: Identifier
    level: float | None = None
    threshold: Identifier | None = None
    below: bool = False

    @model_validator(mode="after")
    def _one_level(self) -> ThresholdSpec:
        if (self.level is None) == (self.threshold is None):
            raise ValueError("give level (a number) or threshold (a registry name), not both")
        if self.threshold is not None and self.pilot is None:
            raise ValueError("threshold names a pilot's registry level: give pilot too")
        return self


class MeanSpec(_Level):
    """`kind = "mean_over_guideline"`: a mean above a guideline.

    `window = "rolling"`: over the last `window_s` of device time; `"day"`: over the pilot's
    local calendar day so far (no `window_s`: a day is as long as it is, 23 to 25 hours).
    """

    kind: Literal["mean_over_guideline"]
    sensor: Identifier
    level: float | None = None
    window: MeanWindow = "rolling"
    window_s: int | None = Field(default=None, gt=0)
    min_coverage: float = Field(default=DEFAULT_MIN_COVERAGE, gt=0, le=1)

    @model_validator(mode="after")
    def _window_s_rolls(self) -> MeanSpec:
        if self.window == "day" and self.window_s is not None:
            raise ValueError(
                'window_s is for window = "rolling"; window = "day" is the local calendar day'
            )
        return self


class RateSpec(_Level):
    """`kind = "rate_of_rise"`: the rise per hour over a window at or above a limit."""

    kind: Literal["rate_of_rise"]
    sensor: Identifier = "level"
    rise_per_h: float = Field(gt=0)
    window_s: int = Field(default=DEFAULT_RISE_WINDOW_S, gt=0)
    min_span_s: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _span_fits(self) -> RateSpec:
        if self.min_span_s is not None and self.min_span_s > self.window_s:
            raise ValueError(f"min_span_s ({self.min_span_s}) exceeds window_s ({self.window_s})")
        return self


class BatterySpec(_Level):
    """`kind = "battery_low"`: battery volts at or below a level."""

    kind: Literal["battery_low"]
    sensor: Identifier = BATTERY_SENSOR
    level: float = DEFAULT_BATTERY_V


class FlatSpec(_Pending):
    """`kind = "flat"`: the last n readings all within `epsilon` of each other (a stuck sensor)."""

    kind: Literal["flat"]
    sensor: Identifier
    span_s: int = Field(default=DEFAULT_FLAT_SPAN_S, gt=0)
    readings: int | None = Field(default=None, ge=2, le=100_000)
    epsilon: float = Field(default=0.0, ge=0)


class SilentSpec(_Common):
    """`kind = "silent"`: no reading from a device for `intervals` times its interval."""

    kind: Literal["silent"]
    sensor: Identifier | None = None
    intervals: float = Field(default=DEFAULT_SILENT_INTERVALS, gt=0)


class UnhealthySpec(_Spec):
    """`kind = "unhealthy"`: a component's health endpoint not answering 2xx.

    No pilot, devices, sensor or label: the alarm's pilot is `system`, its device the
    component's name (default `host:port` of the URL).
    """

    kind: Literal["unhealthy"]
    id: RuleId
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    component: Identifier | None = None
    severity: Severity = "critical"
    pending_s: int = Field(default=DEFAULT_UNHEALTHY_PENDING_S, ge=0)
    clear_s: int = Field(default=DEFAULT_UNHEALTHY_CLEAR_S, ge=0)
    timeout_s: float = Field(default=DEFAULT_HEALTH_TIMEOUT_S, gt=0, le=MAX_HEALTH_TIMEOUT_S)
    ca_file: str | None = Field(default=None, min_length=1)

    @field_validator("url")
    @classmethod
    def _plain_http(cls, url: str) -> str:
        check_health_url(url)
        return url

    @model_validator(mode="after")
    def _ca_for_https(self) -> UnhealthySpec:
        if self.ca_file is not None and not self.url.lower().startswith("https:"):
            raise ValueError("ca_file is for an https url only")
        return self


RuleSpec = Annotated[
    ThresholdSpec | MeanSpec | RateSpec | BatterySpec | FlatSpec | SilentSpec | UnhealthySpec,
    Field(discriminator="kind"),
]


class DefaultsSpec(_Spec):
    """`[defaults]`: the rules derived from the registry, included unless `include = false`."""

    include: bool = True
    disable: list[RuleId] = Field(default_factory=list)


class RulesFile(_Spec):
    """The whole rules file."""

    defaults: DefaultsSpec = Field(default_factory=DefaultsSpec)
    rules: list[RuleSpec] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rule:
    """One resolved rule: its devices chosen, its levels filled in.

    `level` is what the metric is compared with (see docs/ALERTS.md, "Rule kinds"): a value, a
    mean, a rise per hour, volts, the largest range of a flat run (`epsilon`) or, for
    `silent`, the intervals of silence. The alarm fires when the metric is past `level`
    (`direction` "above": at or above, "below": at or below; `mean_over_guideline` needs
    the mean strictly above, as the report's exceedance days) for `pending_s`, and clears
    when it has been back beyond `clear_level` for `clear_s`. `sensor` is None only for a
    silent rule that listens to every sensor of its devices, and for `unhealthy`.

    A `mean_over_guideline` rule's `window` is `rolling` (over `window_s`) or `day` (the local
    calendar day of each device's pilot so far; `window_s` is then 86400, which only sets the
    cap on the readings a window holds, `core.alerts.metrics.window_cap`). Other kinds leave
    it `rolling`.

    An `unhealthy` rule has no pilot, no devices and no sensor (the evaluator feeds it
    nothing): `url` is its health endpoint, `component` the name its alarms carry as their
    device, `timeout_s` how long a request may take, `ca_file` the certificates an https
    endpoint is checked against (None: the system's); `level` and `clear_level` are
    `pending_s`. The other kinds leave these four at their defaults.
    """

    id: str
    kind: Kind
    pilot: str | None
    sensor: str | None
    devices: tuple[str, ...]
    severity: Severity
    label: str
    level: float
    clear_level: float
    direction: Direction
    pending_s: int
    clear_s: int
    window_s: int = 0
    window: MeanWindow = "rolling"
    min_coverage: float = 0.0
    min_span_s: int = 0
    span_s: int = 0
    readings: int | None = None
    url: str | None = None
    component: str | None = None
    timeout_s: float = 0.0
    ca_file: str | None = None


# --- loading --------------------------------------------------------------------------------


def load_rules(path: Path | None, registry: Registry) -> tuple[Rule, ...]:
    """The rules of a file, or the registry's defaults when `path` is None."""
    if path is None:
        from core.alerts.defaults import default_rules

        return default_rules(registry)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"alert rules file not found: {path}") from exc
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read alert rules {path}: {exc}") from exc
    return parse_rules(raw, registry, source=str(path))


def parse_rules(
    raw: dict[str, Any], registry: Registry, *, source: str = "<rules>"
) -> tuple[Rule, ...]:
    """Validate a parsed rules document against the registry and resolve it."""
    try:
        spec = RulesFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid alert rules {source}: {problems}") from exc
    return _Resolver(registry, source).resolve(spec)


def _where(loc: tuple[int | str, ...]) -> str:
    """`rules[3].pending_s` from pydantic's `('rules', 3, 'threshold', 'pending_s')`."""
    out = ""
    after_index = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            after_index = True
            continue
        if not (after_index and part in KINDS):  # the union's tag, not a place in the file
            out += f".{part}" if out else str(part)
        after_index = False
    return out or "(file)"


class _Resolver:
    """Cross-reference checks against the registry, and defaults filled in."""

    def __init__(self, registry: Registry, source: str) -> None:
        self.registry = registry
        self.source = source

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"invalid alert rules {self.source}: {where}: {message}")

    def resolve(self, spec: RulesFile) -> tuple[Rule, ...]:
        from core.alerts.defaults import default_rules

        own: dict[str, Rule] = {}
        for index, rule_spec in enumerate(spec.rules):
            where = f"rules[{index}]"
            if rule_spec.id in own:
                raise self.fail(f"{where}.id", f"duplicate id {rule_spec.id!r}")
            own[rule_spec.id] = self.rule(where, rule_spec)
        defaults = {r.id: r for r in default_rules(self.registry)} if spec.defaults.include else {}
        for index, rule_id in enumerate(spec.defaults.disable):
            if rule_id not in defaults:
                raise self.fail(
                    f"defaults.disable[{index}]", f"{rule_id!r} is not a default rule id"
                )
            del defaults[rule_id]
        merged = {**defaults, **own}  # a rule of the file replaces the default of that id
        return tuple(merged.values())

    def rule(self, where: str, spec: Any) -> Rule:
        if isinstance(spec, UnhealthySpec):
            return self.unhealthy(where, spec)
        pilot = self.pilot(where, spec.pilot)
        sensor: str | None = spec.sensor
        if sensor is not None and sensor not in self.registry.sensors:
            raise self.fail(f"{where}.sensor", f"unknown sensor {sensor!r}")
        devices = self.devices(where, pilot, sensor, spec.devices)
        label = spec.label
        if isinstance(spec, SilentSpec):
            return Rule(
                id=spec.id,
                kind="silent",
                pilot=pilot,
                sensor=sensor,
                devices=devices,
                severity=spec.severity,
                label=label or f"{spec.intervals:g} intervals without a reading",
                level=spec.intervals,
                clear_level=spec.intervals,
                direction="above",
                pending_s=0,
                clear_s=0,
            )
        if isinstance(spec, FlatSpec):
            return Rule(
                id=spec.id,
                kind="flat",
                pilot=pilot,
                sensor=sensor,
                devices=devices,
                severity=spec.severity,
                label=label or "unchanged readings",
                level=spec.epsilon,
                clear_level=spec.epsilon,
                direction="below",
                pending_s=spec.pending_s,
                clear_s=spec.clear_s,
                span_s=spec.span_s,
                readings=spec.readings,
            )
        return self.level_rule(where, spec, pilot, devices)

    def unhealthy(self, where: str, spec: UnhealthySpec) -> Rule:
        """A health endpoint's rule: its component named, its CA file found."""
        if spec.ca_file is not None and not Path(spec.ca_file).is_file():
            raise self.fail(f"{where}.ca_file", f"no such file {spec.ca_file!r}")
        return Rule(
            id=spec.id,
            kind="unhealthy",
            pilot=None,
            sensor=None,
            devices=(),
            severity=spec.severity,
            label=UNHEALTHY,
            level=float(spec.pending_s),
            clear_level=float(spec.pending_s),
            direction="above",
            pending_s=spec.pending_s,
            clear_s=spec.clear_s,
            url=spec.url,
            component=spec.component or default_component(spec.url),
            timeout_s=spec.timeout_s,
            ca_file=spec.ca_file,
        )

    def level_rule(
        self, where: str, spec: Any, pilot: str | None, devices: tuple[str, ...]
    ) -> Rule:
        level, label = self.level(where, spec, pilot)
        below = bool(getattr(spec, "below", False)) or isinstance(spec, BatterySpec)
        clear_level = clear_level_of(level, below, spec.clear_level, spec.clear_margin)
        if below and clear_level < level:
            raise self.fail(f"{where}.clear_level", f"must be at or above the level {level}")
        if not below and clear_level > level:
            raise self.fail(f"{where}.clear_level", f"must be at or below the level {level}")
        extra: dict[str, Any] = {}
        if isinstance(spec, MeanSpec):
            extra = {
                "window_s": spec.window_s or DEFAULT_MEAN_WINDOW_S,
                "window": spec.window,
                "min_coverage": spec.min_coverage,
            }
        elif isinstance(spec, RateSpec):
            extra = {
                "window_s": spec.window_s,
                "min_span_s": spec.min_span_s or spec.window_s // 2,
            }
        return Rule(
            id=spec.id,
            kind=spec.kind,
            pilot=pilot,
            sensor=spec.sensor,
            devices=devices,
            severity=spec.severity,
            label=spec.label or label,
            level=level,
            clear_level=clear_level,
            direction="below" if below else "above",
            pending_s=spec.pending_s,
            clear_s=spec.clear_s,
            **extra,
        )

    def level(self, where: str, spec: Any, pilot: str | None) -> tuple[float, str]:
        """The level a rule compares with, and what it is called."""
        if isinstance(spec, ThresholdSpec) and spec.threshold is not None:
            assert pilot is not None
            for threshold in self.registry.pilots[pilot].thresholds:
                if threshold.sensor == spec.sensor and threshold.name == spec.threshold:
                    return threshold.value, threshold.name
            raise self.fail(
                f"{where}.threshold",
                f"pilot {pilot!r} has no {spec.sensor} threshold {spec.threshold!r}",
            )
        if isinstance(spec, MeanSpec):
            if spec.level is not None:
                return spec.level, mean_limit_label(spec.window, spec.window_s)
            guideline = self.registry.sensors[spec.sensor].guideline_24h
            if guideline is None:
                raise self.fail(
                    f"{where}.level", f"sensor {spec.sensor!r} has no guideline_24h: give level"
                )
            return guideline, "WHO 24-hour guideline"
        if isinstance(spec, RateSpec):
            return spec.rise_per_h, "rise per hour"
        if isinstance(spec, BatterySpec):
            return spec.level, "low battery"
        assert isinstance(spec, ThresholdSpec) and spec.level is not None
        return spec.level, "level"

    def pilot(self, where: str, pilot: str | None) -> str | None:
        if pilot is not None and pilot not in self.registry.pilots:
            raise self.fail(f"{where}.pilot", f"unknown pilot {pilot!r}")
        return pilot

    def devices(
        self, where: str, pilot: str | None, sensor: str | None, given: list[str] | None
    ) -> tuple[str, ...]:
        """The devices a rule watches: those given (checked), else all that fit."""
        if given is None:
            chosen = tuple(
                d.id
                for d in self.registry.device_list
                if (pilot is None or d.pilot == pilot) and (sensor is None or sensor in d.sensors)
            )
            if not chosen:
                raise self.fail(where, f"no device of {pilot or 'any pilot'} reports {sensor!r}")
            return chosen
        for index, device_id in enumerate(given):
            place = f"{where}.devices[{index}]"
            device = self.registry.devices.get(device_id)
            if device is None:
                raise self.fail(place, f"unknown device {device_id!r}")
            if pilot is not None and device.pilot != pilot:
                raise self.fail(place, f"device {device_id!r} belongs to {device.pilot!r}")
            if sensor is not None and sensor not in device.sensors:
                raise self.fail(place, f"device {device_id!r} does not report {sensor!r}")
        if len(set(given)) != len(given):
            raise self.fail(f"{where}.devices", "a device is listed twice")
        return tuple(given)


def clear_level_of(
    level: float, below: bool, clear_level: float | None, clear_margin: float | None
) -> float:
    """The level a value must be back beyond to clear: given, or the level less a margin.

    The margin defaults to `DEFAULT_MARGIN_SHARE` of the level's size (5.30 m -> 5.3 cm).
    """
    if clear_level is not None:
        return clear_level
    margin = clear_margin if clear_margin is not None else DEFAULT_MARGIN_SHARE * abs(level)
    return level + margin if below else level - margin


def mean_limit_label(window: MeanWindow, window_s: int | None) -> str:
    """What a mean's own level is called: `24-hour mean limit`, `local-day mean limit`."""
    if window == "day":
        return "local-day mean limit"
    return f"{format_window(window_s or DEFAULT_MEAN_WINDOW_S)} mean limit"


def format_window(seconds: int) -> str:
    """`24-hour`, `90-minute`, `45-second`: a window's length as an adjective."""
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            return f"{seconds // size}-{unit}"
    return f"{seconds}-second"


def check_health_url(url: str) -> None:
    """Refuse a health URL that is not plain `http(s)://host[:port]/path` (a `ValueError`).

    No credentials (`user:password@`), query or fragment: the URL is shown in alarms and
    notifications, so it must hold no secret. The message never repeats the URL.
    """
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("url must hold no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"url is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("url must start with http:// or https://")
    if "@" in parts.netloc:
        raise ValueError(
            "url must not hold credentials (user:password@): alarms and messages show it"
        )
    if not parts.hostname:
        raise ValueError("url has no host")
    if port == 0:
        raise ValueError("url's port must be 1 to 65535")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(
            "url must have no query or fragment (?... #...): alarms and messages show it"
        )


def default_component(url: str) -> str:
    """The component an `unhealthy` rule names by default: its URL's `host:port`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    return f"{host}:{port}"


def health_label(reason: str, url: str) -> str:
    """An `unhealthy` alarm's label: `unhealthy: HTTP 503 (http://127.0.0.1:9101/health)`.

    The label carries what the alarm's words need besides its fields: why the endpoint was
    judged unhealthy when the episode began, and the URL. `parse_health_label` reads it back
    (the URL is its last parenthesis: a URL holds no space).
    """
    return f"{UNHEALTHY}: {reason} ({url})"


def parse_health_label(label: str) -> tuple[str, str | None]:
    """The reason and the URL of a `health_label` (URL None when the label is another)."""
    prefix = f"{UNHEALTHY}: "
    body = label.removeprefix(prefix)
    at = body.rfind(" (")
    if not label.startswith(prefix) or at < 0 or not body.endswith(")"):
        return body, None
    url = body[at + 2 : -1]
    if not url or any(c.isspace() for c in url):
        return body, None
    return body[:at], url


def rule_ids(rules: Iterable[Rule]) -> tuple[str, ...]:
    """The ids of rules, in order (checked unique)."""
    ids = tuple(r.id for r in rules)
    if len(set(ids)) != len(ids):
        raise ValueError("rule ids must be unique")
    return ids


def check_finite(rule: Rule) -> None:
    """Refuse a rule whose numbers are not finite (a programming error, not an operator's)."""
    if not (math.isfinite(rule.level) and math.isfinite(rule.clear_level)):
        raise ValueError(f"rule {rule.id}: level and clear_level must be finite")
