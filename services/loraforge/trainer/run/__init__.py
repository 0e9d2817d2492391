"""The parts of one training job, each readable and testable alone; ``trainer/worker.py``
(``TrainingWork``) composes them in order:

    options.py   what a job's parameters may say (checked at StartTraining and again at run)
    fetch.py     the captioned dataset -> a local folder in the trainer core's seed layout
    context.py   RunContext (the job, its dataset and RunConfig, where it works) and the
                 training thread's state, shared with the progress ticks
    sync.py      local checkpoints <-> ``loras/<run>/checkpoints/`` (upload, resume)
    training.py  the Trainer run of a RunContext (previews rendered at each evaluation)
    evaluate.py  previews while training, then every checkpoint scored and one chosen
    commit.py    the LoRA files, the evaluation and ``run.json`` (written last); the JobOutcome
    layout.py    every key of a run's folder in ``loras/``
"""
