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
    """The plan a profile's workload asks for: Training's, Tiny's, else Inference's (whose
    calibration a `step_runner` may guide)."""
    if isinstance(profile.workload, TrainingWorkload):
        return TrainingPlan()
    if isinstance(profile.workload, TinyWorkload):
        return TinyPlan()
    return InferencePlan(step_runner=step_runner)
