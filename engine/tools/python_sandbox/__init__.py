"""The sandboxed `python` tool: `PythonSession` (one stateful kernel per chat) and `detect_isolation`."""

from engine.tools.python_sandbox.isolation import Isolation, detect_isolation
from engine.tools.python_sandbox.session import NO_OUTPUT, PythonSession, SandboxError, SandboxLimits, code_from_call

__all__ = ["NO_OUTPUT", "Isolation", "PythonSession", "SandboxError", "SandboxLimits", "code_from_call",
           "detect_isolation"]
