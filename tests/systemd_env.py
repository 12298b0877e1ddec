"""How systemd builds a service's environment: Environment= lines, then EnvironmentFile=.

A port of the state machine in systemd's src/basic/env-file.c (what `EnvironmentFile=` reads),
so the tests read the operator's env file the way PID 1 does, not the way python-dotenv does:
no comments after a value, quotes only where a value starts, backslash continuations.
"""

from __future__ import annotations

import re
import shlex

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_WHITESPACE = " \t\r"
_DOUBLE_QUOTE_ESCAPES = '"\\`$'


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE assignments in file order; a later one wins; invalid names are dropped."""
    result: dict[str, str] = {}
    state = "pre_key"
    key = ""
    value = ""
    trailing = 0  # unquoted whitespace at the end of `value`, trimmed when the line ends

    def push() -> None:
        name = key.rstrip(_WHITESPACE)
        if _NAME.match(name):
            result[name] = value[: len(value) - trailing] if trailing else value

    for char in text + "\n":
        if state == "pre_key":
            if char in "#;":
                state = "comment"
            elif char not in _WHITESPACE + "\n":
                state, key = "key", char
        elif state == "key":
            if char == "\n":
                state = "pre_key"  # no "=": ignored
            elif char == "=":
                state, value, trailing = "pre_value", "", 0
            else:
                key += char
        elif state == "pre_value":
            if char == "\n":
                push()
                state = "pre_key"
            elif char == "'":
                state = "single"
            elif char == '"':
                state = "double"
            elif char == "\\":
                state = "value_escape"
            elif char not in _WHITESPACE:
                state, value, trailing = "value", value + char, 0
        elif state == "value":
            if char == "\n":
                push()
                state = "pre_key"
            elif char == "\\":
                state, trailing = "value_escape", 0
            else:
                value += char
                trailing = trailing + 1 if char in _WHITESPACE else 0
        elif state == "value_escape":
            state = "value"
            if char != "\n":  # backslash-newline: the line goes on
                value += char
        elif state == "single":
            if char == "'":
                state = "pre_value"
            else:
                value += char
        elif state == "double":
            if char == '"':
                state = "pre_value"
            elif char == "\\":
                state = "double_escape"
            else:
                value += char
        elif state == "double_escape":
            state = "double"
            if char in _DOUBLE_QUOTE_ESCAPES:
                value += char
            elif char != "\n":
                value += "\\" + char
        elif state == "comment":
            if char == "\\":
                state = "comment_escape"
            elif char == "\n":
                state = "pre_key"
        elif state == "comment_escape":
            state = "comment"
    return result


def unit_environment(values: list[str]) -> dict[str, str]:
    """The assignments of a unit's Environment= lines (each may hold several, quoted)."""
    result: dict[str, str] = {}
    for line in values:
        for word in shlex.split(line):
            name, sep, value = word.partition("=")
            if sep and _NAME.match(name):
                result[name] = value
    return result


def service_environment(environment: list[str], env_files: list[dict[str, str]]) -> dict[str, str]:
    """Environment= first, then each EnvironmentFile= in order: files override (systemd.exec)."""
    merged = unit_environment(environment)
    for assignments in env_files:
        merged.update(assignments)
    return merged
