"""The window with a scripted harmony engine and a chat document: shared by the tools tests and the
tools screenshots (tests/app/tool_screenshots.py)."""

from __future__ import annotations

from pathlib import Path

from tests.tools.harmony_fake import HarmonyScriptEngine

POLICY_LINES = (["# Leave policy 2024", "", "This policy applies to every employee of the company."]
                + [f"Section {i}: rules for leave requests, approvals and records, part {i}." for i in range(1, 260)]
                + ["## Carry over", "Up to 5 unused days carry over to the next year.",
                   "Days beyond that expire on 31 March."])
CARRY_LINE = POLICY_LINES.index("Up to 5 unused days carry over to the next year.")
CARRY_PAGE_LINE = CARRY_LINE + 2          # an opened page starts with an empty line and the URL line

SEARCH = ('<|channel|>analysis<|message|>The user asks about carrying over leave days. '
          'Search the attached documents.<|end|>'
          '<|start|>assistant<|channel|>analysis to=browser.search code<|message|>{"query": "unused days carry over"}'
          '<|call|>')
OPEN = ('<|channel|>analysis<|message|>The first result looks right; open it at the carry-over section.<|end|>'
        f'<|start|>assistant<|channel|>analysis to=browser.open code<|message|>{{"id": 0, "loc": {CARRY_PAGE_LINE - 4}, '
        '"num_lines": 8}<|call|>')
PYTHON = ('<|channel|>analysis<|message|>Check the arithmetic for a 25-day allowance.<|end|>'
          '<|start|>assistant<|channel|>analysis to=python code<|message|>allowance = 25\nused = 21\n'
          'carried = min(allowance - used, 5)\nprint(f"carried over: {carried} days")<|call|>')
FINAL = ('<|channel|>analysis<|message|>The policy says up to 5 days; with 4 left, all 4 carry over.<|end|>'
         '<|start|>assistant<|channel|>final<|message|>Up to **5 unused days** carry over to the next year '
         f'【1†L{CARRY_PAGE_LINE}】; the rest expire on 31 March 【1†L{CARRY_PAGE_LINE + 1}】.\n\n'
         'With 21 of 25 days used, all 4 remaining days carry over.<|return|>')


def write_policy(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "leave-policy.md"
    path.write_text("\n".join(POLICY_LINES) + "\n", encoding="utf-8")
    return path


def scripted_round_trip() -> HarmonyScriptEngine:
    return HarmonyScriptEngine([SEARCH, OPEN, PYTHON, FINAL])
