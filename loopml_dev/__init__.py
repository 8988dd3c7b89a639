"""loopml's development tools: the ``loopml`` CLI, the local stack, the benchmarks and the demo.

Nothing here ships to Lambda: the runtime library is the ``loopml`` package (``layers/loopml``), which
never imports this one (a test holds it to that).
"""
