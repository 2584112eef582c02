"""Runs: the run folder, trial events, the grid runner and its backends (local pool, Ray,
DDP launch), tracking and progress. Imports training, results and the components below it."""
