"""Entry point of the fresh processes: ``python -m benchmarks._worker MODULE.FUNCTION JSON_KWARGS``.

Prints ``RESULT <json>`` as its last line of output; the harness reads nothing else.
"""

from __future__ import annotations

import importlib
import json
import sys


def main(argv: list[str]) -> int:
    task, kwargs = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    module_name, function_name = task.rsplit(".", 1)
    module = importlib.import_module(f"benchmarks.{module_name}")
    result = getattr(module, function_name)(**kwargs)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
