"""Backend-free code: experiment settings, architectures, results, analysis and reports."""
