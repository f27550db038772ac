"""The checks a careful quant runs on a strategy (``threadx strategy check NAME``): look-ahead,
contradictory entries, determinism, accounting invariants, param-role declarations and speed
(:mod:`threadx.checks.strategy`); the param-role perturbation (:mod:`threadx.checks.roles`);
the last report of each strategy (:mod:`threadx.checks.store`).

They run strategies through the engine, so they live outside ``threadx.strategy``, which
never imports the engine (see :mod:`threadx.contract`)."""
