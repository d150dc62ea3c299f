"""The CPU trainer behind the emulator's ``chat_completion_pipeline`` jobs.

``python -m emulator.training --base-model DIR --train FILE [--test FILE] --params FILE.json
--output DIR --metrics FILE.jsonl [--log-every N] [--pytorch-output DIR] [--base-model-name NAME]
[--threads N]`` runs the pipeline's steps in one process: validation, model_import, preprocess,
finetune (LoRA or full, on the CPU), evaluate (eval loss of the base and the fine-tuned model on the
test split) and model_converter (merge, write an MLflow model folder to ``--output``).

Progress goes to stdout, one line per event, line-buffered. The metrics file gets JSON lines (see
``report``). Exit code 0 on success; otherwise 1, and the last stderr line is ``<stage>: <message>``.
"""
