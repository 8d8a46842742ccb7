"""Plans: what a run measures, step by step. `labconsole.procedure.engine.RunEngine` runs one.

One module per MLPerf benchmark family: `inference` (the MLPerf Power procedure for Inference),
`tiny` (MLPerf Tiny's energy mode) and `training` (energy to train). A plan implements `engine.Plan`: its `steps()`
and its `analyse()`.
"""

from labconsole.procedure.plans.inference import InferencePlan
from labconsole.procedure.plans.tiny import TinyPlan
from labconsole.procedure.plans.training import TrainingPlan
from labconsole.profile import Profile, TinyWorkload, TrainingWorkload


def plan_for(profile: Profile, step_runner=None):
    """The plan a profile's workload asks for: Training's, Tiny's, the official power-dev
    workflow (`official: true`), else Inference's (whose calibration a `step_runner` may guide)."""
    if isinstance(profile.workload, TrainingWorkload):
        return TrainingPlan()
    if isinstance(profile.workload, TinyWorkload):
        return TinyPlan()
    if getattr(profile.workload, "official", False):
        from labconsole.procedure.plans.official import OfficialPlan

        return OfficialPlan(step_runner=step_runner)
    return InferencePlan(step_runner=step_runner)
