"""The built-in demo: a temporal-order video task, end to end (python -m squeezetime_jax.demo).

scenes: the synthetic scenes; generate: the mp4 dataset; shuffled: evaluation with
frames shuffled; report: figures; run: the stages.
"""
