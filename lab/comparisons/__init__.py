"""The compare tools: compare.py (finished runs), augment_compare.py and transfer_compare.py (train pairs of runs
on each backend, then compare them)."""
