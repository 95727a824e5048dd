"""What a run leaves in its folder: the folder itself (rundirs), the per-epoch record (recording), results.json
(results)."""
