"""From results to what a person reads: metrics, analysis, figures, the run report, comparisons."""
