"""Plans: what a run measures, step by step. `labconsole.procedure.engine.RunEngine` runs one.

One module per MLPerf benchmark family: `inference` (the MLPerf Power procedure for Inference)
now; Tiny's and Training's plans go beside it. A plan implements `engine.Plan`: its `steps()`
and its `analyse()`.
"""
