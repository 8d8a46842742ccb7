"""Plans: what a run measures, step by step. `labconsole.procedure.engine.RunEngine` runs one.

One module per MLPerf benchmark family: `inference` (the MLPerf Power procedure for Inference)
now; Tiny's and Training's plans go beside it. A plan implements `engine.Plan`: its `steps()`
and its `analyse()`.
"""

from labconsole.procedure.plans.inference import InferencePlan
from labconsole.procedure.plans.training import TrainingPlan
from labconsole.profile import Profile, TrainingWorkload


def plan_for(profile: Profile, step_runner=None):
    """The plan a profile's workload asks for: Training's for `type: training`, else Inference's."""
    if isinstance(profile.workload, TrainingWorkload):
        return TrainingPlan()
    return InferencePlan(step_runner=step_runner)
