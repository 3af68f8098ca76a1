"""Standard benchmarks through lm-evaluation-harness (`klm evaluate RUN --tasks ...`).

`klm.evaluation.harness.KlmLM` is an `lm_eval.api.model.LM` over anything
`klm evaluate` loads; `klm.evaluation.tasks.run_tasks` runs
`lm_eval.simple_evaluate` with it. Neither module is imported here: lm-eval
is an optional extra (`pip install klm[eval]`) and is imported only when
tasks are run.
"""
