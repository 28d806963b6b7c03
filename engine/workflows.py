"""Workflows (the brief's scenarios): a trigger, then steps of waits, conditions and actions.

A workflow's steps compile to a flat program with jumps, so a contact's progress is
just a program counter per run: small, picklable, and easy to count per step for the
"contacts in scenario" figure. Runs advance on events and on timers, both in event
time, so a replay fires the same triggers at the same instants as the live run.

Steps:
- ``{ action = "send_email", params = { template = "welcome" }, cooldown = "90d" }``
- ``{ wait = "3d" }``; with ``restart_on = {condition}`` a matching event restarts the wait
- ``{ wait_until = {condition}, timeout = "2d", on_timeout = [steps] }``
- ``{ if = {condition}, then = [steps], else = [steps] }``
- ``{ exit = true }``

Every step may carry a ``name``, which the warehouse shows in ``workflow_members``.
Action parameters may quote the entry event: ``template = "topic_{event.properties.topic}_1"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from sys import intern
from typing import Any, Callable, Final

import orjson

from .actions import ActionSpec, compile_actions
from .conditions import MISSING, CompileContext, Compiled, _event_getter, compile_condition
from .errors import Problems, did_you_mean


ENTRY_POLICIES = ("once", "every_time", "if_not_active", "restart")
_PLACEHOLDER = re.compile(r"\{(event\.[a-zA-Z_][\w.]*)\}")

# Final: compiled code inlines them instead of looking them up at every step.
ACTION: Final = "action"
WAIT: Final = "wait"
WAIT_UNTIL: Final = "wait_until"
IF: Final = "if"
EXIT: Final = "exit"
JUMP: Final = "jump"


@dataclass
class Step:
    """One instruction of a workflow program."""

    kind: str
    name: str
    duration_ms: int = 0  # wait, wait_until timeout (0: none)
    condition: Compiled | None = None  # wait_until, if, wait restart_on
    target: int = -1  # if: where the else branch starts; wait_until: the timeout branch; jump
    actions: list[ActionSpec] = field(default_factory=list)
    cooldown_ms: int = 0


@dataclass
class Workflow:
    """A compiled workflow: its trigger, entry policy, exit condition and program."""

    name: str
    description: str
    trigger_event: Compiled | None
    trigger_segment: str | None
    trigger_stage: str | None
    entry: str
    exit_when: Compiled | None
    program: list[Step]
    placeholders: tuple[str, ...]

    @property
    def rule_id(self) -> str:
        """The rule id the workflow's triggers carry."""
        return f"workflows.{self.name}"


@dataclass(slots=True, init=False)
class Run:
    """One contact's trip through a workflow: where it is and what it waits for."""

    workflow: str
    run_id: str  # the occurrence that started it (the entry event's messageId)
    pc: int = 0
    entered_at: int = 0
    since: int = 0  # when the current step began
    due: int | None = None  # the timer of a wait or a wait_until timeout
    vars: dict[str, Any] = field(default_factory=dict)
    key: str = ""  # the run's key among a contact's runs, also its timer's name (see run_key)

    def __init__(self, workflow: str, run_id: str, pc: int = 0, entered_at: int = 0, since: int = 0,
                 due: int | None = None, vars: dict[str, Any] | None = None, key: str = "") -> None:
        # Compiled with the class, unlike the __init__ dataclasses writes (see Event.__init__).
        self.workflow = workflow
        self.run_id = run_id
        self.pc = pc
        self.entered_at = entered_at
        self.since = since
        self.due = due
        self.vars = {} if vars is None else vars
        self.key = key

    def fields(self) -> tuple[Any, ...]:
        """The constructor's arguments, in order: what freezing and pickling keep of a run."""
        # Spelt out (pickling.ByFields loops over __match_args__ by name): compiled, these
        # are slot reads, and a frozen contact writes one tuple per run.
        return (self.workflow, self.run_id, self.pc, self.entered_at, self.since, self.due, self.vars, self.key)

    def copy(self) -> Run:
        """A copy that shares nothing mutable with this run."""
        return Run(self.workflow, self.run_id, self.pc, self.entered_at, self.since, self.due, dict(self.vars),
                   self.key)

    def __reduce__(self) -> tuple[Any, ...]:
        # Through the constructor, as ByFields pickles the other records.
        return (Run, self.fields())


def run_key(workflow: str, run_id: str, single: bool) -> str:
    """The key of a workflow run: a contact's runs and timers are named by it.

    A workflow that holds at most one run per contact (every entry policy but
    ``every_time``) keys it by the workflow alone. A restarted wait then moves the
    same timer later, which the shard's timer queue absorbs without a heap push,
    instead of leaving a stale entry behind on every event.
    """
    # Interned: a single-run key is the same string for every contact.
    return intern(f"wf:{workflow}") if single else f"wf:{workflow}:{run_id}"


def placeholder_text(value: Any) -> str:
    """How a quoted value reads inside a parameter: a string as it is, nothing for a missing value,
    anything else as compact JSON (``true``, ``2.5``, ``{"a":[1,2]}``), never Python's repr."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def fill(value: Any, variables: dict[str, Any]) -> Any:
    """Fill ``{event.*}`` placeholders in action parameters from the run's entry event."""
    if isinstance(value, str) and "{" in value:
        return _PLACEHOLDER.sub(lambda m: placeholder_text(variables.get(m.group(1))), value)
    if isinstance(value, dict):
        return {k: fill(v, variables) for k, v in value.items()}
    return value


def capture(placeholders: tuple[str, ...], contact: Any, event: Any, now: int) -> dict[str, Any]:
    """Read the entry event's values that the workflow's actions quote."""
    out = {}
    for name in placeholders:
        sub, _, rest = name[6:].partition(".")
        value = _event_getter(sub, rest)(contact, event, now)
        out[name] = None if value is MISSING else value
    return out


# ---------------------------------------------------------------- compiling


_WORKFLOW_KEYS: Final = ("description", "trigger", "entry", "exit_when", "steps")
_STEP_KEYS = {
    ACTION: {"name", "action", "params", "cooldown"},
    WAIT: {"name", "wait", "restart_on"},
    WAIT_UNTIL: {"name", "wait_until", "timeout", "on_timeout"},
    IF: {"name", "if", "then", "else"},
    EXIT: {"name", "exit"},
}


class _Compiler:
    def __init__(self, p: Problems, ctx: Callable[..., CompileContext], profiles: frozenset[str]) -> None:
        self.p = p
        self.ctx = ctx
        self.profiles = profiles
        self.placeholders: set[str] = set()
        self.step_names: set[str] = set()  # named explicitly: the warehouse's workflow_members name steps

    def condition(self, node: Any, path: str, allow_event: bool = True) -> Compiled | None:
        return compile_condition(node, path, self.ctx(allow_event=allow_event))

    def duration(self, value: Any, path: str) -> int:
        return self.p.duration(value, path, positive=True) or 0

    def block(self, steps: Any, path: str, program: list[Step]) -> None:
        if not isinstance(steps, list) or not steps:
            self.p.add(path, "expected a non-empty array of steps")
            return
        for i, step in enumerate(steps):
            self.step(step, f"{path}[{i}]", program)

    def step(self, step: Any, path: str, program: list[Step]) -> None:
        p = self.p
        if not isinstance(step, dict):
            p.add(path, f"expected a step table, got {step!r}")
            return
        kinds = [k for k in _STEP_KEYS if k in step]
        if len(kinds) != 1:
            p.add(path, f"expected exactly one of {', '.join(_STEP_KEYS)} in a step, found {', '.join(kinds) or 'none'}")
            return
        kind = kinds[0]
        for key in step:
            if key not in _STEP_KEYS[kind]:
                p.add(f"{path}.{key}", f"unknown key {key!r}{did_you_mean(key, _STEP_KEYS[kind])} in a {kind} step "
                      f"(expected {', '.join(sorted(_STEP_KEYS[kind]))})")
        name = step.get("name", f"{len(program)}:{kind}")
        if not isinstance(name, str) or not name.strip():
            p.add(f"{path}.name", f"expected a non-empty string, got {name!r}")
            name = f"{len(program)}:{kind}"
        elif "name" in step:
            if name in self.step_names:
                p.add(f"{path}.name", f"step name {name!r} is used twice in this workflow; the warehouse's "
                      "workflow_members rows tell steps apart by name")
            self.step_names.add(name)
        if kind == ACTION:
            specs = compile_actions([{k: step[k] for k in ("action", "params") if k in step}], path, p, self.profiles)
            for spec in specs or []:
                self._collect(spec.params, path)
            cooldown = self.duration(step["cooldown"], f"{path}.cooldown") if "cooldown" in step else 0
            program.append(Step(ACTION, name, actions=specs or [], cooldown_ms=cooldown))
        elif kind == WAIT:
            restart = self.condition(step["restart_on"], f"{path}.restart_on") if "restart_on" in step else None
            program.append(Step(WAIT, name, self.duration(step["wait"], f"{path}.wait"), restart))
        elif kind == WAIT_UNTIL:
            cond = self.condition(step["wait_until"], f"{path}.wait_until")
            timeout = self.duration(step["timeout"], f"{path}.timeout") if "timeout" in step else 0
            if "on_timeout" in step and not timeout:
                p.add(f"{path}.on_timeout", "on_timeout needs a timeout")
            here = Step(WAIT_UNTIL, name, timeout, cond)
            program.append(here)
            if "on_timeout" in step:
                jump = Step(JUMP, f"{name}:done")
                program.append(jump)  # the event arrived: skip the timeout branch
                here.target = len(program)
                self.block(step["on_timeout"], f"{path}.on_timeout", program)
                jump.target = len(program)
            else:
                here.target = len(program)  # a timeout just moves on
        elif kind == IF:
            cond = self.condition(step["if"], f"{path}.if")
            here = Step(IF, name, condition=cond)
            program.append(here)
            self.block(step.get("then"), f"{path}.then", program)
            if "else" in step:
                jump = Step(JUMP, f"{name}:end")
                program.append(jump)
                here.target = len(program)
                self.block(step["else"], f"{path}.else", program)
                jump.target = len(program)
            else:
                here.target = len(program)
        elif kind == EXIT:
            if step["exit"] is not True:
                p.add(f"{path}.exit", "expected exit = true")
            program.append(Step(EXIT, name))

    def _collect(self, params: Any, path: str) -> None:
        if isinstance(params, str):
            # Braces are only ever placeholders: a typo ({evnt.x}, a missing brace) would
            # otherwise reach every action as literal text.
            stray = _PLACEHOLDER.sub("", params)
            if "{" in stray or "}" in stray:
                p = self.p
                p.add(f"{path}.params", f"{params!r}: braces must enclose a placeholder {{event.<field>}}, "
                      "e.g. {event.properties.topic}")
            for m in _PLACEHOLDER.finditer(params):
                ctx = self.ctx(allow_event=True, allow_state=False)
                compile_condition({"field": m.group(1), "op": "exists"}, f"{path}.params", ctx)
                self.placeholders.add(m.group(1))
        elif isinstance(params, dict):
            for value in params.values():
                self._collect(value, path)


def compile_workflows(
    section: dict[str, Any], p: Problems, ctx: Callable[..., CompileContext], profiles: frozenset[str],
    segments: tuple[str, ...], stages: tuple[str, ...],
) -> list[Workflow]:
    """Validate and compile the ``[workflows.*]`` tables."""
    out = []
    for name, body in section.items():
        path = f"workflows.{name}"
        if not isinstance(body, dict):
            p.add(path, f"expected a table, got {body!r}")
            continue
        for key in body:
            if key not in _WORKFLOW_KEYS:
                p.add(f"{path}.{key}", f"unknown key {key!r}{did_you_mean(key, _WORKFLOW_KEYS)} "
                      f"(expected {', '.join(_WORKFLOW_KEYS)})")
        comp = _Compiler(p, ctx, profiles)
        trigger = body.get("trigger")
        t_event = t_segment = t_stage = None
        if not isinstance(trigger, dict) or len(trigger) != 1 or next(iter(trigger)) not in (
                "event", "entered_segment", "stage_became"):
            p.add(f"{path}.trigger", "expected one of { event = {condition} }, { entered_segment = \"name\" }, "
                                     "{ stage_became = \"stage\" }")
        elif "event" in trigger:
            t_event = comp.condition(trigger["event"], f"{path}.trigger.event")
        elif "entered_segment" in trigger:
            t_segment = trigger["entered_segment"]
            if t_segment not in segments:
                p.add(f"{path}.trigger.entered_segment", f"unknown segment {t_segment!r} (expected one of {', '.join(segments) or 'none'})")
        else:
            t_stage = trigger["stage_became"]
            if t_stage not in stages:
                p.add(f"{path}.trigger.stage_became", f"unknown stage {t_stage!r} (expected one of {', '.join(stages)})")
        entry = body.get("entry", "once")
        if entry not in ENTRY_POLICIES:
            p.add(f"{path}.entry", f"unknown entry policy {entry!r} (expected one of {', '.join(ENTRY_POLICIES)})")
        exit_when = comp.condition(body["exit_when"], f"{path}.exit_when") if "exit_when" in body else None
        program: list[Step] = []
        comp.block(body.get("steps"), f"{path}.steps", program)
        description = body.get("description", "")
        out.append(Workflow(name, description if isinstance(description, str) else "", t_event, t_segment, t_stage,
                            entry, exit_when, program, tuple(sorted(comp.placeholders))))
    return out
