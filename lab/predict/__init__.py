"""predict.py: a finished run's network classifying new image files (classify.py), its command line
(predict_cli.py)."""
