"""The close-code enum: the codes clients see, and which of them invite a reconnect."""

from __future__ import annotations

import ast
import pathlib

from provider.closecodes import CloseCode

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "provider"


def test_codes_are_the_documented_numbers() -> None:
    assert CloseCode.NORMAL == 1000
    assert CloseCode.GOING_AWAY == 1001
    assert CloseCode.POLICY == 1008
    assert CloseCode.TOO_BIG == 1009
    assert CloseCode.TRY_AGAIN == 1013
    assert CloseCode.RESUMED_ELSEWHERE == 4000
    assert CloseCode(1006) is CloseCode.ABNORMAL  # a peer's int maps back to the member


def test_which_codes_invite_a_reconnect() -> None:
    assert {c for c in CloseCode if c.may_reconnect} == {
        CloseCode.GOING_AWAY,
        CloseCode.ABNORMAL,
        CloseCode.INTERNAL_ERROR,
        CloseCode.TRY_AGAIN,
    }


def test_no_close_code_is_spelled_as_a_bare_number_or_constant_elsewhere() -> None:
    """Every close the provider makes names a `CloseCode` member: no `close(1008, …)` and no
    module-level CLOSE_* constants outside the enum."""
    offenders = []
    for path in sorted(SRC.glob("*.py")):
        if path.name == "closecodes.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    name = getattr(target, "id", "")
                    codes = ("NORMAL", "GOING_AWAY", "POLICY", "TOO_BIG", "TRY_AGAIN")
                    if name.startswith("CLOSE_") and name.endswith(codes):
                        offenders.append(f"{path.name}:{node.lineno} {name}")
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "close"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, int)
            ):
                offenders.append(f"{path.name}:{node.lineno} close({node.args[0].value}, …)")
    assert not offenders, offenders
