"""Load and validate ``config.yaml``.

pydantic reports every problem with its key path; we only turn that into one
readable message per problem. Secrets come from ``${VAR}`` references that
are resolved from the environment before validation.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

PRIORITIES = ("P1", "P2", "P3", "P4")
Priority = Literal["P1", "P2", "P3", "P4"]


class ConfigError(Exception):
    """A config problem, phrased for the operator (key path first)."""


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, environ: dict[str, str] | os._Environ = os.environ, path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of the tree."""
    if isinstance(value, dict):
        return {k: expand_env(v, environ, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{path or '(top level)'}: environment variable {name} is not set (write ${{{name}:-default}} to give a default)")

    return _VAR.sub(substitute, value)


def problem_at(key_path: tuple, message: str) -> PydanticCustomError:
    """A problem a validator of a whole section finds at one key inside it: the message names that key."""
    return PydanticCustomError("config_key", "{detail}", {"detail": message, "key_path": key_path})


_CLOCK = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


def _clock_minutes(clock: str) -> int:
    """Minutes after midnight of "HH:MM"; "24:00" is the midnight that ends the day."""
    found = _CLOCK.match(clock.strip())
    if not found or (found.group(1) == "24" and found.group(2) != "00"):
        raise ValueError(f"{clock.strip()!r} is not a time of day from 00:00 to 24:00")
    return int(found.group(1)) * 60 + int(found.group(2))


class Strict(BaseModel):
    # A misspelt key is a config error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Brand(Strict):
    name: str = Field(min_length=1)
    keywords: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    # The brand's own accounts: their posts are not complaints.
    own_accounts: list[str] = Field(default_factory=list)

    @property
    def terms(self) -> list[str]:
        return [self.name, *self.keywords]


class SmtpSettings(Strict):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    starttls: bool = False
    ssl: bool = False
    timeout: float = Field(default=30.0, gt=0)
    # A CA bundle for a server whose certificate an internal CA signed; the system's CAs otherwise.
    ca_file: str | None = None

    @model_validator(mode="after")
    def _tls_mode(self) -> "SmtpSettings":
        if self.ssl and self.starttls:
            raise ValueError("choose one of ssl (TLS from the first byte, port 465) and starttls (port 587)")
        return self


class EmailSettings(Strict):
    from_: str = Field(default="complaint-monitor@localhost", alias="from")
    smtp: SmtpSettings | None = None
    outbox_dir: str = "outbox"
    # Give up retrying an alert after this long; it stays visible in status.
    max_retry_hours: float = Field(default=72, gt=0)
    # How often a responder with digest_below gets the gathered lower-priority alerts.
    digest_minutes: float = Field(default=60, gt=0)
    # How often the daemon sends what is due in the outbox (seconds).
    send_interval: float = Field(default=30, gt=0)
    # A story already alerted at its level gets a follow-up in its thread when its score + comments grew
    # this many times since the last email, or it turned up in a new place; at most one per thread
    # every follow_up_minutes.
    follow_up_growth: float = Field(default=4, gt=1)
    follow_up_minutes: float = Field(default=60, ge=0)
    # More alerts than this for one responder in one delivery round become one storm summary email.
    storm_threshold: int = Field(default=10, ge=1)


class Responder(Strict):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    brands: list[str] | Literal["all"] = "all"
    min_priority: Priority = "P4"
    # "22:00-07:00" in the responder's timezone: only P1 is sent then; the rest waits.
    quiet_hours: str | None = None
    timezone: str = "UTC"
    # Priorities below this one are gathered into a periodic digest instead of one email each.
    digest_below: Priority | None = None
    # Mentions that spread without being complaints (praise, jokes, news): a separate "viral" alert from this
    # priority of their virality risk on. Off (None) by default: only complaints are paged.
    viral_min_priority: Priority | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (use an IANA name like Europe/Berlin)") from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _valid_window(cls, value: str | None) -> str | None:
        # Checked here, not when the first alert falls into the window (a crash in the delivery round).
        if value is not None:
            start, end = _quiet_window(value)
            if start % 1440 == end:
                raise ValueError(f"{value!r} starts and ends at the same time (all day is \"00:00-24:00\")")
        return value

    @property
    def quiet_window(self) -> tuple[int, int] | None:
        """Quiet hours as (start, end) in minutes after local midnight; end may be 1440 (24:00)."""
        return _quiet_window(self.quiet_hours) if self.quiet_hours else None

    def digests(self, priority: str) -> bool:
        return self.digest_below is not None and PRIORITIES.index(priority) > PRIORITIES.index(self.digest_below)

    def wants(self, brand: str | None, priority: str, *, about: str = "complaint") -> bool:
        if self.brands != "all" and brand not in self.brands:
            return False
        lowest = self.min_priority if about == "complaint" else self.viral_min_priority
        return lowest is not None and PRIORITIES.index(priority) <= PRIORITIES.index(lowest)


def _quiet_window(text: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"{text!r} is not a window like \"22:00-07:00\"")
    # 24:00 as a start is the midnight that begins the day.
    return _clock_minutes(start) % 1440, _clock_minutes(end)


class Thresholds(Strict):
    """A complaint's priority from its level: urgency and virality risk combined (0-100; see score.priority_for)."""

    p1: float = Field(default=75, ge=0, le=100)
    p2: float = Field(default=50, ge=0, le=100)
    p3: float = Field(default=25, ge=0, le=100)

    @model_validator(mode="after")
    def _in_order(self) -> "Thresholds":
        # Out of order, a level can never be reached: p2 above p1 would make every P1 a P2.
        if not self.p1 > self.p2 > self.p3:
            raise ValueError(f"must be p1 > p2 > p3 (got p1 {self.p1:g}, p2 {self.p2:g}, p3 {self.p3:g})")
        return self


class ComplaintSettings(Strict):
    # The complaint model: this file when it exists (``complaint-monitor train --local`` writes it), else the
    # model shipped in the package. The daemon reads it again at its next poll when the file changes.
    model: str = "complaint-model.npz"
    # A mention is a complaint (paged as one) from this model probability on, or when a rule marks it one.
    threshold: float = Field(default=0.7, gt=0, lt=1)
    # Urgency starts at probability x this many points; rules add severity on top (0-100 in all).
    urgency_points: float = Field(default=60, ge=0, le=100)


class SentimentSettings(Strict):
    # Words VADER finds neutral but customers use to complain, with a valence (-4..4).
    lexicon: dict[str, Annotated[float, Field(ge=-4, le=4)]] = Field(default_factory=dict)


class HealthSettings(Strict):
    # Who hears about failures that repeat (a feed down, bad credentials, SMTP refusing).
    operator_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    # A failure becomes one operator email once it has lasted this long.
    notify_after_minutes: float = Field(default=60, ge=0)

    @field_validator("operator_email", mode="before")
    @classmethod
    def _unset_when_empty(cls, value):
        # "${OPERATOR_EMAIL:-}" with the variable unset means: nobody to tell.
        return None if isinstance(value, str) and not value.strip() else value


class RetentionSettings(Strict):
    # Growth snapshots and poll records are pruned; mentions and alerts never are.
    snapshots_days: float = Field(default=30, gt=0)
    poll_runs_days: float = Field(default=14, gt=0)


class StorySettings(Strict):
    # Two titles of one brand are one story from this token-set Jaccard on, within this many hours.
    title_similarity: float = Field(default=0.6, gt=0, le=1)
    window_hours: float = Field(default=72, gt=0)


class SpikeSettings(Strict):
    # A brand's mentions in the last hour against its mean hourly count over baseline_days (never
    # below min_baseline_per_hour); no baseline until the store has watched for min_history_hours.
    baseline_days: float = Field(default=7, gt=0)
    min_baseline_per_hour: float = Field(default=1.0, gt=0)
    min_history_hours: float = Field(default=24, ge=0)
    # From this ratio the spikes job re-scores up to `rescore` of the hour's mentions (the points
    # come from the brand-spike rule, which reads brand_spike: keep its threshold in step).
    ratio: float = Field(default=3.0, gt=1)
    rescore: int = Field(default=3, ge=0)


class MetricsSettings(Strict):
    # Prometheus endpoint on 127.0.0.1:port; off when no port is set.
    port: int | None = Field(default=None, ge=1, le=65535)


class Config(Strict):
    brands: list[Brand] = Field(min_length=1)
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # A SQLite file (relative to the config file), or postgresql://user@host:port/database (the password in
    # PGPASSWORD, never in the URL): several daemons may share a PostgreSQL store.
    store: str = "complaint-monitor.db"
    email: EmailSettings = Field(default_factory=EmailSettings)
    responders: list[Responder] = Field(default_factory=list)
    # Rule-pack files; absent: the packs shipped with the package. [] means no rules at all.
    rules: list[str] | None = None
    thresholds: Thresholds = Field(default_factory=Thresholds)
    sentiment: SentimentSettings = Field(default_factory=SentimentSettings)
    complaint: ComplaintSettings = Field(default_factory=ComplaintSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    stories: StorySettings = Field(default_factory=StorySettings)
    spikes: SpikeSettings = Field(default_factory=SpikeSettings)
    # Several daemons on one PostgreSQL store: a daemon that stops renewing its leases (it died) loses its work
    # to the others after this many seconds; it renews every third of it. Used only with a PostgreSQL store.
    lease_seconds: float = Field(default=60, ge=3, le=3600)
    # Where relative paths (store, rules, outbox) are resolved; set by load_config.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("store")
    @classmethod
    def _store_is_a_path_or_url(cls, value: str) -> str:
        from .store.database import StoreUrlError, engine_url, is_url

        if not value.strip():
            raise ValueError("give a SQLite file path or a postgresql://user@host:port/database URL")
        if is_url(value):
            try:
                engine_url(value)
            except StoreUrlError as err:
                raise ValueError(str(err)) from None
        return value

    @field_validator("sources")
    @classmethod
    def _sections_are_mappings(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, section in value.items():
            if section is not None and not isinstance(section, dict):
                raise ValueError(f"sources.{name} must be a mapping of settings")
        return {name: section or {} for name, section in value.items()}

    @model_validator(mode="after")
    def _responders_can_be_reached(self) -> "Config":
        # The outbox knows a responder by address and a brand by its exact name: a second entry with
        # the same address, or a brand spelt another way, would silently never get its alerts.
        names = [b.name for b in self.brands]
        first: dict[str, int] = {}
        for i, responder in enumerate(self.responders):
            earlier = first.setdefault(responder.email.casefold(), i)
            if earlier != i:
                raise problem_at(("responders", i, "email"), f"{responder.email} is already responders.{earlier}:"
                                 " one entry per address (list all its brands there)")
            for j, name in enumerate([] if responder.brands == "all" else responder.brands):
                if name not in names:
                    close = ([n for n in names if n.casefold() == name.casefold()]
                             or difflib.get_close_matches(name, names, n=1))
                    hint = f"; did you mean {close[0]!r}?" if close else f" (brands: {', '.join(names)})"
                    raise problem_at(("responders", i, "brands", j), f"{name!r} is not a configured brand{hint}")
        return self

    def path(self, relative: str) -> Path:
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def store_path(self) -> Path | str:
        """The SQLite file (resolved against the config's folder), or the PostgreSQL URL as given."""
        from .store.database import is_url

        return self.store if is_url(self.store) else self.path(self.store)

    @property
    def rule_paths(self) -> list[Path | Traversable]:
        return shipped_rule_packs() if self.rules is None else [self.path(r) for r in self.rules]

    @property
    def complaint_model_path(self) -> Path:
        return self.path(self.complaint.model)

    def brand(self, name: str) -> Brand | None:
        return next((b for b in self.brands if b.name == name), None)


def shipped_rule_packs() -> list[Traversable]:
    """The rule packs installed with the package (the repository's rules/ folder), in file-name order."""
    return sorted((p for p in files("monitor.rule_packs").iterdir() if p.name.endswith(".yaml")),
                  key=lambda p: p.name)


def _alternatives(kind: Any) -> list[Any]:
    """The members of a union (``X | None``), else the type itself."""
    if get_origin(kind) in (Union, types.UnionType):
        return [member for arg in get_args(kind) for member in _alternatives(arg)]
    return [kind]


def _models(kinds: list[Any]) -> list[type[BaseModel]]:
    return [k for kind in kinds for k in _alternatives(kind) if isinstance(k, type) and issubclass(k, BaseModel)]


def _known_keys(model: type[BaseModel], key_path: tuple) -> list[str]:
    """The keys accepted in the mapping at ``key_path`` inside ``model``: what a misspelt key may have meant."""
    kinds: list[Any] = [model]
    for part in key_path:
        inner = [f.annotation for m in _models(kinds) for name, f in m.model_fields.items() if part in (name, f.alias)]
        # A list's item or a dict's value: the part was an index or a free-form key.
        inner += [get_args(k)[-1] for kind in kinds for k in _alternatives(kind) if get_origin(k) in (list, dict)]
        kinds = inner
    return [f.alias or name for m in _models(kinds) for name, f in m.model_fields.items() if not f.exclude]


def format_validation_error(err: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> str:
    """One line per problem, key path first; ``model`` (what was validated) lets a misspelt key get a suggestion."""
    lines = []
    for problem in err.errors():
        key_path = problem["loc"] + tuple((problem.get("ctx") or {}).get("key_path", ()))
        loc = ".".join(str(p) for p in key_path if p != "from_") or "(top level)"
        loc = loc.replace(".from_", ".from")
        if prefix:
            loc = f"{prefix}.{loc}"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden" and model is not None:
            known = _known_keys(model, key_path[:-1])
            close = difflib.get_close_matches(str(key_path[-1]), known, n=1)
            message = f"unknown key; did you mean {close[0]!r}?" if close else f"unknown key (known: {', '.join(known)})"
        lines.append(f"{loc}: {message}")
    return "\n".join(lines)


def parse_config(raw: Any, *, base_dir: Path, environ=os.environ) -> Config:
    if raw is None:
        raise ConfigError("the config is empty")
    if not isinstance(raw, dict):
        raise ConfigError("(top level): the config must be a mapping of keys to values")
    expanded = expand_env(raw, environ)
    try:
        config = Config.model_validate({**expanded, "base_dir": base_dir})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, model=Config)) from None
    return config


def load_config(path: str | Path, *, environ=os.environ) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_config(raw, base_dir=path.resolve().parent, environ=environ)
