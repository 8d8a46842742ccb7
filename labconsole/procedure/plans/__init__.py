"""Plans: what a run measures, step by step. `labconsole.procedure.engine.RunEngine` runs one.

One module per MLPerf benchmark family: `inference` (the MLPerf Power procedure for Inference)
now; Tiny's and Training's plans go beside it. A plan implements `engine.Plan`: its `steps()`
and its `analyse()`.
"""


def plan_for(loaded, step_runner=None):
    """The plan a profile asks for: the official power-dev workflow when its workload says
    `official: true`, else the MLPerf Inference procedure."""
    if getattr(loaded.profile.workload, "official", False):
        from labconsole.procedure.plans.official import OfficialPlan

        return OfficialPlan(step_runner=step_runner)
    from labconsole.procedure.plans.inference import InferencePlan

    return InferencePlan(step_runner=step_runner)
