"""run_lab.py's whole-lab pipeline: the plan (sections, presets), the searches, the lab report."""
