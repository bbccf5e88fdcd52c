"""Progressive traffic shift (``meshfed shift``, issue #21).

- :mod:`federation.shift.plan` -- the plan, each step's TrafficPolicy and the verdicts (pure);
- :mod:`federation.shift.run` -- the control loop against the controller's API: apply a step,
  watch the mesh's telemetry, roll back on a breach or an interrupt.
"""
