"""Run management. A run is one training of one experiment: ``<root>/<experiment>/<run id>/``, with
its config, metrics, W&B run and checkpoints, written by one process (``fit``), continued by resume.
:mod:`options` (``run:``), :mod:`layout` (ids, dirs), :mod:`env` (variables), :mod:`plan` (what the Trainer gets);
:mod:`checkpoints` (load, check, atomic save), :mod:`metrics_csv`, :mod:`resume`, :mod:`init_from`, :mod:`lock`;
callbacks :mod:`run_state`, :mod:`step_checkpoint`, :mod:`preemption`, :mod:`finite_guard`; :mod:`strategy`, :mod:`precision`;
:mod:`devices` (what each start trained on).
"""
